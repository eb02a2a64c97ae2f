"""The async store never blocks the event loop (DESIGN §3.15), and keeps the contract.

Every test here runs its coroutines on an event loop with ``blockbuster`` active (the
detector ``langgraph dev`` runs), so a blocking call on the loop fails it. The contract
itself runs through the async methods in ``test_store_contract.py`` and friends (the
``async`` flavour of the ``store`` fixture), and SQLite's write lock in
``test_store_sqlite_lock.py``; this file has the rest of what only async callers meet: many
coroutines and threads at once against one budget, the loop's lag while the store waits for
a lock held by another thread or transaction, broken connections, several event loops,
closing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.store import MemoryStore, open_store
from agent_guardrails.store.base import AuditEvent
from tests.store.async_helpers import LoopThread, assert_loop_free, lagging, watched_loop
from tests.store.store_helpers import StoreFactory

DAY_END = 1_704_326_400


def budget(amount: float = 1.0, limit: float = 100.0, name: str = "hot") -> Charge:
    return Charge(f"budget:{name}|USD@1704240000", "budget", amount, limit, DAY_END, name)


def decision(key: str) -> AuditEvent:
    return AuditEvent("decision", {"key": key}, key, f"{key}:d")


# ------------------------------------------------------------------ no overspend


def test_coroutines_and_threads_never_overspend(
    store_url: str, open_stores: StoreFactory, event_loop_thread: LoopThread
) -> None:
    """200 coroutines on one loop and 8 threads at once, against one budget of 100: exactly
    100 reservations succeed, each once, and the log has each of their records."""
    if store_url.startswith("postgres"):
        pytest.skip("PostgreSQL's async API comes with the next commit")
    store: Any = open_stores(store_url)
    limit = 100.0
    thread_oks: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(9)

    def thread_worker(n: int) -> None:
        start.wait()
        try:
            for i in range(25):
                key = f"t{n}-{i}"
                ok = store.reserve(key, [budget(limit=limit)], audit=decision(key)).ok
                thread_oks.append(ok)
        except BaseException as exc:
            errors.append(exc)

    async def coroutine(n: int) -> bool:
        key = f"c{n}"
        res = await store.areserve(
            key, [budget(limit=limit)], audit=decision(key), start=decision(f"{key}:s")
        )
        if res.ok:
            await store.afinish(key, ok=True)
        return bool(res.ok)

    async def coroutines() -> list[bool]:
        await asyncio.to_thread(start.wait)
        return await asyncio.gather(*(coroutine(n) for n in range(200)))

    threads = [threading.Thread(target=thread_worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    async_oks = event_loop_thread.run(coroutines())
    for t in threads:
        t.join()
    assert errors == []
    assert async_oks.count(True) + thread_oks.count(True) == 100
    assert store.counters() == {budget().key: limit}
    records = store.audit_records()
    assert len([r for r in records if r.kind == "decision"]) == 100 + async_oks.count(True)
    assert store.verify_audit().ok


# ------------------------------------------------------------------ memory: a held lock


def test_memory_store_does_not_wait_for_its_lock_on_the_loop() -> None:
    """A thread holds the memory store's lock: the async call goes to a worker thread,
    the loop keeps running, and the call completes once the lock is free."""
    store = MemoryStore()
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with store._lock:
            held.set()
            release.wait(5)

    lags: list[float] = []

    async def scenario() -> tuple[bool, float]:
        began = time.perf_counter()
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, release.set)
        res = await lagging(store.areserve("k", [budget()]), lags)
        return res.ok, time.perf_counter() - began

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    with watched_loop() as loop:
        ok, waited = loop.run(scenario())
    thread.join()
    assert ok
    assert waited >= 0.25  # it waited for the lock...
    assert_loop_free(lags)  # ...and the loop did not
    assert store.counters() == {budget().key: 1.0}


def test_a_closed_store_is_unavailable_to_async_callers(
    durable_url: str, event_loop_thread: LoopThread
) -> None:
    if durable_url.startswith("postgres"):
        pytest.skip("PostgreSQL's async API comes with the next commit")
    store: Any = open_store(durable_url)
    store.get_level("w")
    event_loop_thread.run(store.aclose())
    with pytest.raises(StoreUnavailable, match="closed"):
        event_loop_thread.run(store.aget_level("w"))
    store.close()  # closing again is harmless
