"""SQLite's write lock: a writer waits for it at most the URL's ``timeout`` (issue 18).

Another process holds the lock in these tests: the writers' lock file (``flock``), SQLite's
own write lock (``BEGIN IMMEDIATE``, as a writer that does not queue on the file would), or
both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import StoreUnavailable
from tests.store.store_helpers import StoreFactory

DAY_END = 1_704_326_400


def budget(amount: float = 1.0, limit: float = 100.0) -> Charge:
    return Charge("budget:hot|USD@1704240000", "budget", amount, limit, DAY_END, "hot")


HOLD_SCRIPT = r"""
import fcntl, sqlite3, sys, time
path, how, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
lock = open(path + "-writer.lock", "ab")
db = sqlite3.connect(path, isolation_level=None)
if how in ("flock", "both"):
    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
if how in ("begin", "both"):
    db.execute("BEGIN IMMEDIATE")
    db.execute("UPDATE ag_counters SET used = used")
print("locked", flush=True)
time.sleep(seconds)
if how in ("begin", "both"):
    db.execute("COMMIT")
print("released", flush=True)
"""


@contextlib.contextmanager
def lock_held(url: str, how: str, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process holds the store's write lock for ``seconds``: the writers' lock file
    (``flock``), SQLite's own write lock (``BEGIN IMMEDIATE``, as a writer that does not
    queue would) or ``both``. Yields once it holds it."""
    path = url.removeprefix("sqlite:///")
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, path, how, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(30)


@pytest.mark.parametrize("how", ["flock", "begin"])
def test_a_write_lock_held_past_the_timeout_is_store_unavailable(
    tmp_path: Path, open_stores: StoreFactory, how: str
) -> None:
    """A writer waits at most the URL's ``timeout`` for the write lock, in all, then gets
    ``StoreUnavailable`` saying the database is locked by another writer; once the lock is
    free, writes go through again."""
    url = f"sqlite:///{tmp_path / 'store.db'}?timeout=0.5"
    store: Any = open_stores(url)
    assert store.reserve("k0", [budget()]).ok
    with lock_held(url.partition("?")[0], how, 3.0):
        began = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="locked by another writer") as caught:
            store.reserve("k1", [budget()])
        waited = time.perf_counter() - began
    assert 0.4 < waited < 1.5, waited
    assert "timeout is 0.5 s" in str(caught.value)
    assert store.reserve("k1", [budget()]).ok
    assert store.counters() == {budget().key: 2.0}


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_stopped_lock_holder_costs_each_writer_its_timeout_not_forever(
    tmp_path: Path, open_stores: StoreFactory
) -> None:
    """The issue's case: a process stopped (SIGSTOP) while it holds the writers' lock used
    to stall every other writer until it resumed. Now each writer gives up after the
    timeout; when the holder resumes and lets go, writes go through."""
    url = f"sqlite:///{tmp_path / 'store.db'}?timeout=0.3"
    store: Any = open_stores(url)
    assert store.reserve("k0", [budget()]).ok
    with lock_held(url.partition("?")[0], "flock", 30.0) as child:
        os.kill(child.pid, signal.SIGSTOP)
        try:
            for attempt in range(3):
                began = time.perf_counter()
                with pytest.raises(StoreUnavailable, match="locked by another writer"):
                    store.set_level("w", attempt, by="ops", reason="r")
                assert time.perf_counter() - began < 1.0

        finally:
            os.kill(child.pid, signal.SIGCONT)
            child.kill()
    assert store.reserve("k1", [budget()]).ok
    assert store.counters() == {budget().key: 2.0}
