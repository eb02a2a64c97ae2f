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
from collections.abc import Awaitable
from typing import Any

import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.store import MemoryStore, open_store
from agent_guardrails.store.base import AuditEvent
from tests.store.async_helpers import LoopThread, assert_loop_free, lagging, p99, watched_loop
from tests.store.store_helpers import StoreFactory, pg_execute

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
    store: Any = open_store(durable_url)
    store.get_level("w")
    event_loop_thread.run(store.aclose())
    with pytest.raises(StoreUnavailable, match="closed"):
        event_loop_thread.run(store.aget_level("w"))
    store.close()  # closing again is harmless


# ------------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
def test_a_locked_counter_row_makes_areserve_wait_without_blocking_the_loop(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """Another transaction holds the budget's row (``SELECT ... FOR UPDATE``) for 1 s:
    ``areserve`` waits on the server, the loop does not."""
    import psycopg

    store: Any = open_stores(pg_url)
    assert store.reserve("k0", [budget()]).ok
    lags: list[float] = []
    holding = threading.Event()

    def hold_row() -> None:
        with psycopg.connect(pg_url.partition("?")[0]) as conn, conn.transaction():
            conn.execute(
                f'SELECT used FROM "{pg_schema}".ag_counters WHERE key = %s FOR UPDATE',
                (budget().key,),
            )
            holding.set()
            time.sleep(1.0)

    async def scenario() -> tuple[bool, float]:
        await store.asnapshot(dial_key="w", counter_keys=[], call_key="x")  # pool open
        await asyncio.to_thread(holding.wait, 10)
        began = time.perf_counter()
        res = await lagging(store.areserve("k1", [budget()], audit=decision("k1")), lags)
        return res.ok, time.perf_counter() - began

    holder = threading.Thread(target=hold_row)
    with watched_loop() as loop:
        holder.start()
        ok, waited = loop.run(scenario())
    holder.join()
    assert ok
    assert 0.5 < waited < 5.0, waited
    assert_loop_free(lags)
    print(
        f"\nrow lock: waited {waited:.2f} s, loop lag p99 {p99(lags) * 1000:.2f} ms, "
        f"max {max(lags) * 1000:.2f} ms over {len(lags)} ticks"
    )
    assert store.counters() == {budget().key: 2.0}


BUDGET = Charge("budget:conn|USD@1704240000", "budget", 1.0, 1e9, DAY_END, "conn")


async def _ahammer(store: Any, tag: str, tasks: int = 8, rounds: int = 10) -> list[BaseException]:
    """Every kind of operation from ``tasks`` coroutines at once: the errors they met."""
    errors: list[BaseException] = []

    async def work(n: int) -> None:
        try:
            for i in range(rounds):
                key = f"{tag}-{n}-{i}"
                res = await store.areserve(
                    key,
                    [BUDGET],
                    audit=AuditEvent("decision", {"n": n}, key, f"{key}:d"),
                    start=AuditEvent("execution.started", {}, key, f"{key}:s"),
                )
                assert res.ok
                assert res.started
                await store.afinish(key, ok=True, audit=AuditEvent("done", {}, key, f"{key}:f"))
                snap = await store.asnapshot(dial_key="w", counter_keys=[BUDGET.key], call_key=key)
                assert snap.call is not None
                assert snap.call.state == "finished"
                if i % 5 == 0:
                    await store.aset_level(f"w{n}", i % 4, by="ops", reason="test")
                    await store.aappend_audit(AuditEvent("note", {"n": n, "i": i}))
                    await store.aaudit_records(after=0, limit=5)
        except BaseException as exc:
            errors.append(exc)

    await asyncio.gather(*(work(n) for n in range(tasks)))
    return errors


def _terminate(app: str) -> int:
    rows = pg_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (app,),
    )
    return sum(1 for (killed,) in rows if killed)


def _sessions(app: str) -> int:
    rows = pg_execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
    return int(rows[0][0])


@pytest.mark.postgres
def test_async_calls_after_terminated_backends_cost_nothing(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    app = f"agent-guardrails-{pg_schema}"
    store: Any = open_stores(f"{pg_url}&application_name={app}&pool_min=2&pool_max=4")

    async def scenario() -> tuple[list[BaseException], list[BaseException], int]:
        before = await _ahammer(store, "before")
        killed = await asyncio.to_thread(_terminate, app)
        after = await _ahammer(store, "after")
        await asyncio.to_thread(_terminate, app)
        assert await store.aget_level("w0") is not None
        return before, after, killed

    with watched_loop() as loop:
        before, after, killed = loop.run(scenario())
        assert before == []
        assert killed >= 2
        assert after == []
        assert loop.run(store.acounters()) == {BUDGET.key: 160.0}
        records = loop.run(store.aaudit_records())
        assert len([r for r in records if r.kind == "decision"]) == 160
        assert loop.run(store.averify_audit()).ok
        loop.run(store.aclose())


@pytest.mark.postgres
def test_one_store_sync_and_async_on_several_loops_then_closed(pg_url: str, pg_schema: str) -> None:
    """A store used sync (its pool) and async from two loops one after the other (two
    ``asyncio.run``) and from a loop that is still running: each loop gets a pool, a closed
    loop's pool is let go, and ``close()`` closes what is left, the running loop's on it."""
    app = f"ag-loops-{pg_schema}"
    store: Any = open_store(f"{pg_url}&application_name={app}&pool_min=1&pool_max=2")
    try:
        store.set_level("w", 1, by="ops", reason="sync first")
        with watched_loop() as loop:
            assert loop.run(store.aget_level("w")) == 1
            assert asyncio.run(store.aget_level("w")) == 1  # another loop, closed after
            assert asyncio.run(store.areserve("k", [budget()])).ok  # and another
            assert _sessions(app) >= 2
            store.close()  # from this thread: the running loop's pool is closed on it
            assert loop.run(_quiet(store.aget_level("w"))) == "closed"
        deadline = time.monotonic() + 10
        while _sessions(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sessions(app) == 0
    finally:
        store.close()


async def _quiet(call: Awaitable[Any]) -> Any:
    try:
        return await call
    except StoreUnavailable as exc:
        return "closed" if "closed" in str(exc) else str(exc)


@pytest.mark.postgres
def test_aclose_chains_what_async_calls_left_waiting(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_guardrails.store.postgres import PostgresStore
    from tests.store.store_helpers import raw_sql

    monkeypatch.setattr(PostgresStore, "CHAIN_INTERVAL", 3600.0)  # no chain steps of its own
    store: Any = open_store(pg_url)

    async def scenario() -> None:
        assert (await store.areserve("k1", [budget()], audit=decision("k1"))).ok
        await store.afinish("k1", ok=True, audit=AuditEvent("done", {}, "k1"))
        outbox = await asyncio.to_thread(raw_sql(pg_url), "SELECT count(*) FROM {t}audit_outbox")
        assert outbox == [(2,)]
        await store.aclose()

    with watched_loop() as loop:
        loop.run(scenario())
    run = raw_sql(pg_url)
    assert run("SELECT count(*) FROM {t}audit_outbox") == [(0,)]
    assert run("SELECT kind FROM {t}audit ORDER BY seq") == [("decision",), ("done",)]


@pytest.mark.postgres
def test_an_unreachable_server_fails_async_calls_quickly(event_loop_thread: LoopThread) -> None:
    store: Any = open_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")
    began = time.perf_counter()
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
        event_loop_thread.run(store.asnapshot(dial_key="w", counter_keys=[], call_key="k"))
    assert time.perf_counter() - began < 5
    event_loop_thread.run(store.aclose())


def test_store_threads_hand_work_over_and_fail_it_once_closed() -> None:
    """SQLite's hand-off (``StoreThreads``): results and errors come back to the awaiting
    coroutine; shutting down finishes the work queued so far, and work handed over after
    fails with StoreUnavailable instead of hanging; a reply to a loop that was closed
    meanwhile does not kill a thread."""
    from agent_guardrails.store._offload import StoreThreads

    threads = StoreThreads(1, "test-store-thread", "test://")
    release = threading.Event()

    def boom() -> int:
        raise ValueError("boom")

    async def scenario() -> tuple[int, str, list[Any]]:
        ok = await threads.run(lambda: 42)
        try:
            await threads.run(boom)
            error = ""
        except ValueError as exc:
            error = str(exc)
        blocker = asyncio.ensure_future(threads.run(lambda: release.wait(10)))
        queued = [asyncio.ensure_future(threads.run(lambda: 1)) for _ in range(3)]
        await asyncio.sleep(0.05)
        closing = asyncio.ensure_future(asyncio.to_thread(threads.shutdown))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(threads.run(lambda: 2))
        release.set()
        await closing
        results = await asyncio.gather(blocker, *queued, late, return_exceptions=True)
        return ok, error, results

    with watched_loop() as loop:
        ok, error, results = loop.run(scenario())
    assert (ok, error) == (42, "boom")
    assert results[:4] == [True, 1, 1, 1]  # queued before the shutdown: done
    assert isinstance(results[4], StoreUnavailable), results

    # A caller whose loop is gone by the time the answer comes back.
    again = StoreThreads(1, "test-store-thread-2", "test://")
    gate = threading.Event()

    pending: list[asyncio.Future[Any]] = []

    async def leave() -> None:
        pending.append(asyncio.ensure_future(again.run(lambda: gate.wait(10))))
        await asyncio.sleep(0.05)

    dead = asyncio.new_event_loop()
    dead.run_until_complete(leave())
    for task in asyncio.all_tasks(dead):
        task.cancel()
    dead.run_until_complete(asyncio.sleep(0))
    dead.close()
    gate.set()
    with watched_loop() as loop:
        assert loop.run(again.run(lambda: "still serving")) == "still serving"
    again.shutdown()
