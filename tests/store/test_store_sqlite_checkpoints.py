"""The SQLite store's WAL checkpoints run on its own thread, not in the callers' commits
(store/_sqlite_checkpoints.py), and the log stays bounded whether that thread keeps up or
not. Observed from the files: a checkpoint is what copies pages into the database file."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.store import _sqlite_checkpoints
from agent_guardrails.store._sqlite_checkpoints import Checkpoints
from agent_guardrails.store.base import AuditEvent
from agent_guardrails.store.sqlite import SQLiteStore

PAGE = 4096
DAY_END = 4_102_444_800


def budget() -> Charge:
    return Charge("budget:b|USD@1704240000", "budget", 1.0, 1e12, DAY_END, "b")


def calls(store: SQLiteStore, n: int, prefix: str = "c") -> None:
    """``n`` guarded calls' writes: a reservation with its decision, then the finish."""
    for i in range(n):
        key = f"{prefix}{i}"
        event = AuditEvent("decision", {"key": key, "pad": "x" * 400}, key, f"{key}:d")
        store.reserve(key, [budget()], audit=event)
        store.finish(key, ok=True, audit=AuditEvent("execution.finished", {"ok": True}, key))


def checkpoints(store: SQLiteStore) -> Checkpoints:
    found: Checkpoints = store._conns._checkpoints
    return found


def held_off(store: SQLiteStore) -> int:
    """Hold the store's thread off (after it checkpointed the schema); its runs so far."""
    wait_for(lambda: checkpoints(store).runs >= 1)
    checkpoints(store).interval = 3600.0
    return checkpoints(store).runs


def wait_for(what: Callable[[], bool], seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def thread_of(store: SQLiteStore) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.endswith(f":{store.path}")]


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "store.db")


@pytest.fixture
def store(path: str) -> Iterator[SQLiteStore]:
    s = SQLiteStore(f"sqlite:///{path}")
    yield s
    s.close()


def test_a_commit_past_a_thousand_pages_does_not_checkpoint(store: SQLiteStore) -> None:
    # SQLite's default makes the commit that passes 1,000 pages of log copy them into the
    # database file; here only the store's thread does, and it is held off.
    runs = held_off(store)
    before = size(store.path)
    calls(store, 300)  # ~2,500 pages of log
    assert size(store.path + "-wal") > 1_500 * PAGE
    assert size(store.path) == before
    assert checkpoints(store).runs == runs


def test_the_thread_checkpoints_soon_after_commits(store: SQLiteStore) -> None:
    calls(store, 300)
    wait_for(lambda: checkpoints(store).runs > 0)
    wait_for(lambda: size(store.path) > 100 * PAGE)  # the pages reached the database file


def test_after_the_threads_checkpoint_the_log_starts_over(store: SQLiteStore) -> None:
    # Bursts with pauses: the checkpoint after a burst copies everything, the next commit
    # starts the log over, so it never nears the backstop (10,000 pages, ~40 MB). The log
    # file keeps the largest size it reached: about 11 pages a call here.
    for burst in range(10):
        calls(store, 150, prefix=f"b{burst}-")
        wait_for(checkpoints(store).settled)
    assert size(store.path + "-wal") < 4_000 * PAGE
    assert checkpoints(store).runs >= 5


def test_the_log_stays_bounded_when_the_thread_never_checkpoints(store: SQLiteStore) -> None:
    runs = held_off(store)
    before = size(store.path)
    calls(store, 1_400)  # past the backstop's 10,000 pages
    assert checkpoints(store).runs == runs
    assert size(store.path) > before  # a commit checkpointed inline, at the backstop
    assert size(store.path + "-wal") < (_sqlite_checkpoints.BACKSTOP + 500) * PAGE


def test_the_thread_ends_when_idle_empties_the_log_and_starts_with_the_next_commit(
    store: SQLiteStore,
) -> None:
    checkpoints(store).idle = 0.2
    calls(store, 300)
    wait_for(lambda: not thread_of(store))
    assert size(store.path + "-wal") == 0  # as it ended, it emptied the log file
    runs = checkpoints(store).runs
    calls(store, 3, prefix="again")
    assert thread_of(store)
    wait_for(lambda: checkpoints(store).runs == runs + 1)


def test_close_stops_the_thread(path: str) -> None:
    store = SQLiteStore(f"sqlite:///{path}")
    calls(store, 3)
    assert thread_of(store)
    store.close()
    assert not thread_of(store)


def test_a_store_dropped_unclosed_keeps_no_thread(path: str) -> None:
    store = SQLiteStore(f"sqlite:///{path}")
    calls(store, 3)
    (thread,) = thread_of(store)
    del store
    gc.collect()
    thread.join(5)  # without the finalizer it would wait out IDLE (10 s) first
    assert not thread.is_alive()


def test_the_thread_checkpoints_odd_file_names_and_never_makes_a_removed_file_anew(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "odd name?#%20.db")  # characters a file: URI must escape
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x TEXT)")
    writer.executemany("INSERT INTO t VALUES (?)", [("y" * 1000,) for _ in range(2000)])
    before = size(path)
    found = Checkpoints(path, interval=0.01)
    found.wrote()
    wait_for(lambda: found.runs > 0)
    found.close()
    assert size(path) > before + 1_000_000  # the log's pages reached this very file
    writer.close()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)
    gone = Checkpoints(path, interval=0.01)
    gone.wrote()
    wait_for(lambda: gone.runs > 0)
    gone.close()
    assert not os.path.exists(path)


def _child(out: multiprocessing.Queue[int]) -> None:  # pragma: no cover - in the child
    inherited = _INHERITED[0]  # the parent's store, as fork copied it
    before = checkpoints(inherited).runs  # the parent's count, copied
    calls(inherited, 50, prefix=f"child{os.getpid()}-")
    wait_for(lambda: checkpoints(inherited).runs > before)
    out.put(checkpoints(inherited).runs - before)


_INHERITED: list[SQLiteStore] = []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_forked_child_checkpoints_with_a_thread_of_its_own(store: SQLiteStore) -> None:
    calls(store, 20)
    wait_for(lambda: checkpoints(store).runs > 0)  # the parent's thread exists at the fork
    _INHERITED[:] = [store]
    try:
        ctx = multiprocessing.get_context("fork")
        out: multiprocessing.Queue[int] = ctx.Queue()
        child = ctx.Process(target=_child, args=(out,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert out.get(timeout=5) > 0
    finally:
        _INHERITED.clear()
