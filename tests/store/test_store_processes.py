"""Many processes on one store (SQLite and PostgreSQL): no overspend, no lost record.

Workers are separate processes started with the ``spawn`` context; each opens its own store
from the URL. See ``store_workers.py`` for what they run.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from agent_guardrails.store import Store
from agent_guardrails.store.base import CallRecord
from tests.store import store_workers
from tests.store.store_helpers import StoreFactory

pytestmark = pytest.mark.slow

PROCESSES = 8
THREADS = 8
ATTEMPTS = 5


def test_eight_processes_of_eight_threads_never_overspend(
    durable_url: str, open_stores: StoreFactory
) -> None:
    """64 workers x 5 attempts = 320 reservations at a budget and a contact cap of 100:
    exactly 100 succeed, the counters never pass 100, and the audit chain verifies."""
    store = open_stores(durable_url)
    store.get_level("w")  # creates the schema before the workers race for it
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES + 1)
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=store_workers.reserve_hammer,
            args=(durable_url, p, THREADS, ATTEMPTS, barrier, out),
        )
        for p in range(PROCESSES)
    ]
    for p in procs:
        p.start()

    seen: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # the counters never exceed the cap, at any moment
        while not stop.is_set():
            snap = store.snapshot(
                dial_key="x",
                counter_keys=[store_workers.HOT_BUDGET.key, store_workers.HOT_CONTACT.key],
                call_key="x",
            )
            seen.extend(snap.used.values())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    try:
        barrier.wait(timeout=120)
        watcher.start()
        reports = [out.get(timeout=120) for _ in procs]
    finally:
        stop.set()
        if watcher.is_alive():
            watcher.join()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()

    errors = [e for report in reports for e in report[3]]
    assert errors == []
    results = [r for report in reports for r in report[1]]
    assert len(results) == PROCESSES * THREADS * ATTEMPTS
    ok_keys = [key for key, ok in results if ok]
    assert len(ok_keys) == 100
    assert all(replay for report in reports for replay in report[2])
    assert max(seen) <= 100.0
    assert store.counters() == {
        store_workers.HOT_BUDGET.key: 100.0,
        store_workers.HOT_CONTACT.key: 100.0,
    }
    assert store.in_doubt() == []
    records = store.audit_records()
    assert len(records) == 300  # decision, started, finished for each success
    assert [r.seq for r in records] == list(range(1, 301))
    assert sorted(str(r.call_key) for r in records if r.kind == "decision") == sorted(ok_keys)
    result = store.verify_audit()
    assert result.ok, result.problem
    assert result.checked == 300


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_worker_leaves_its_call_in_doubt_and_loses_nothing(
    durable_url: str, open_stores: StoreFactory, tmp_path: Path
) -> None:
    store = open_stores(durable_url)
    ready = tmp_path / "ready"
    ctx = multiprocessing.get_context("spawn")
    victim = ctx.Process(target=store_workers.crash_victim, args=(durable_url, str(ready)))
    victim.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert victim.is_alive(), "the worker died before it was ready"
            assert time.monotonic() < deadline, "the worker never became ready"
            time.sleep(0.02)
        time.sleep(0.2)  # let it write some more, then kill it mid-transaction
        assert victim.pid is not None
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=30)
    finally:
        if victim.is_alive():
            victim.kill()
    assert victim.exitcode == -signal.SIGKILL

    doubt = {r.key: r for r in store.in_doubt()}
    assert "crash-1" in doubt
    assert doubt["crash-1"].charges == (store_workers.HOT_BUDGET,)
    assert not store.start("crash-1")  # never run twice
    result = store.verify_audit()
    assert result.ok, result.problem

    _assert_calls_and_audit_agree(store)

    # The chain goes on after the crash.
    store.release("crash-1")
    assert store.verify_audit().ok


def _assert_calls_and_audit_agree(store: Store) -> None:
    """Every call the dead worker committed has its audit records, and nothing else does:
    a call and its audit record were written in one transaction, or neither was."""
    by_call: dict[str | None, set[str]] = {}
    for record in store.audit_records():
        by_call.setdefault(record.call_key, set()).add(record.kind)
    calls: dict[str, CallRecord] = {}
    i = 0
    while (call := store.call_record(f"churn-{i}")) is not None:
        calls[call.key] = call
        i += 1
    assert i > 0, "the worker wrote nothing before it was killed"
    held = 0.0
    for key, call in calls.items():
        expected = {"decision"}
        if call.state in ("started", "finished"):
            expected.add("execution.started")
        if call.state == "finished":
            expected.add("execution.finished")
        assert by_call.get(key) == expected, (key, call.state)
        held += store_workers.CHURN_BUDGET.amount
    assert set(by_call) - set(calls) == {"crash-1"}
    assert by_call["crash-1"] == {"decision", "execution.started"}
    assert store.counters("budget:churn") == {store_workers.CHURN_BUDGET.key: held}
