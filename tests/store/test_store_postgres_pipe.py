"""The PostgreSQL store's pipelined connection for the async hot path (``_postgres_pipe``).

Statements from many coroutines share one connection in libpq's pipeline mode: each gets
its own answer, each commits or fails alone, an expected SQLSTATE is an answer, a lost
connection fails what waits on it with ``PipeLost``, and the store then runs the operation
on a pooled connection, so terminated backends cost no call. Everything runs with
``blockbuster`` active.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.store._postgres_connections import StatementFailed
from agent_guardrails.store._postgres_pipe import HotPipe, PipeLost
from agent_guardrails.store.base import AuditEvent
from tests.store.async_helpers import LoopThread
from tests.store.store_helpers import StoreFactory, pg_base, pg_execute

pytestmark = pytest.mark.postgres

DAY_END = 1_704_326_400
BUDGET = Charge("budget:pipe|USD@1704240000", "budget", 1.0, 1e9, DAY_END, "pipe")


def _statements(table: str) -> dict[bytes, bytes]:
    return {
        b"echo": b"SELECT $1::text || '!'",
        b"number": b"SELECT $1::int",  # 'x' raises 22P02 (invalid text representation)
        b"put": f"INSERT INTO {table} VALUES ($1::text) RETURNING 1".encode(),
        b"slow": b"SELECT pg_sleep($1::float8)::text",
    }


async def _pipe(table: str) -> HotPipe:
    conn = await psycopg.AsyncConnection.connect(pg_base(), autocommit=True)
    return HotPipe(conn, _statements(table))


@pytest.fixture
def table(pg_schema: str) -> str:
    pg_execute(f'CREATE SCHEMA "{pg_schema}"')
    name = f'"{pg_schema}".keys'
    pg_execute(f"CREATE TABLE {name} (k text PRIMARY KEY)")
    return name


def test_many_coroutines_each_get_their_own_answer(
    table: str, event_loop_thread: LoopThread
) -> None:
    async def main() -> list[Any]:
        pipe = await _pipe(table)
        try:
            return await asyncio.gather(*(pipe.run(b"echo", [str(i).encode()]) for i in range(500)))
        finally:
            pipe.close()

    answers = event_loop_thread.run(main())
    assert answers == [(f"{i}!".encode(),) for i in range(500)]


def test_each_statement_commits_or_fails_alone(table: str, event_loop_thread: LoopThread) -> None:
    """A duplicate key and a bad number among good writes: the good ones commit, the bad
    ones fail alone (or answer ``None`` for the SQLSTATE the caller expects)."""

    async def main() -> list[Any]:
        pipe = await _pipe(table)
        try:
            calls = []
            for i in range(60):
                if i % 10 == 3:
                    calls.append(pipe.run(b"put", [b"k0"]))  # a duplicate of the first
                elif i % 10 == 7:
                    calls.append(pipe.run(b"number", [b"x"], "22P02"))
                else:
                    calls.append(pipe.run(b"put", [f"k{i}".encode()]))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            pipe.close()

    answers = event_loop_thread.run(main())
    for i, answer in enumerate(answers):
        if i % 10 == 3:
            assert isinstance(answer, StatementFailed)
            assert "duplicate key" in str(answer)
        elif i % 10 == 7:
            assert answer is None
        else:
            assert answer == (b"1",)
    written = {k for (k,) in pg_execute(f"SELECT k FROM {table}")}
    assert written == {f"k{i}" for i in range(60) if i % 10 not in (3, 7)}


def test_a_cancelled_caller_leaves_the_others_their_answers(
    table: str, event_loop_thread: LoopThread
) -> None:
    async def main() -> tuple[Any, Any]:
        pipe = await _pipe(table)
        try:
            slow = asyncio.ensure_future(pipe.run(b"slow", [b"0.2"]))
            after = asyncio.ensure_future(pipe.run(b"echo", [b"after"]))
            await asyncio.sleep(0.05)
            slow.cancel()
            return await after, await pipe.run(b"echo", [b"later"])
        finally:
            pipe.close()

    assert event_loop_thread.run(main()) == ((b"after!",), (b"later!",))


def test_a_lost_connection_fails_what_waits_and_what_comes(
    table: str, event_loop_thread: LoopThread
) -> None:
    async def main() -> tuple[list[Any], bool, BaseException | None]:
        pipe = await _pipe(table)
        pid = pipe._pgconn.backend_pid
        waiting = [asyncio.ensure_future(pipe.run(b"slow", [b"5"])) for _ in range(3)]
        await asyncio.sleep(0.1)
        await asyncio.to_thread(pg_execute, "SELECT pg_terminate_backend(%s)", (pid,))
        results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
        later: BaseException | None = None
        try:
            await pipe.run(b"echo", [b"x"])
        except PipeLost as exc:
            later = exc
        return results, pipe.alive, later

    results, alive, later = event_loop_thread.run(main())
    assert all(isinstance(r, PipeLost) for r in results), results
    assert not alive
    assert isinstance(later, PipeLost)


async def _reserve_and_finish(store: Any, tag: str, n: int) -> list[BaseException]:
    """``n`` guarded calls' reservation and settlement at once: the errors they met."""

    async def one(i: int) -> None:
        key = f"{tag}-{i}"
        res = await store.areserve(
            key,
            [BUDGET],
            audit=AuditEvent("decision", {"i": i}, key, f"{key}:d"),
            start=AuditEvent("execution.started", {}, key, f"{key}:s"),
        )
        assert res.ok
        assert res.started
        await store.afinish(key, ok=True, audit=AuditEvent("done", {}, key, f"{key}:f"))

    out = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    return [r for r in out if isinstance(r, BaseException)]


def test_the_store_uses_the_pipe_and_terminated_backends_cost_no_call(
    pg_url: str, pg_schema: str, open_stores: StoreFactory, event_loop_thread: LoopThread
) -> None:
    """Once a loop's pipe is open, reservations and settlements go through it; after every
    backend of the store is terminated (the pipe's and the pool's), no call fails: those
    in flight run again on a pooled connection and the pipe is opened again."""
    app = f"ag-pipe-{pg_schema}"
    store: Any = open_stores(f"{pg_url}&application_name={app}&pool_min=2&pool_max=4")
    run: Any = event_loop_thread.run
    wants: list[int] = []

    assert run(_reserve_and_finish(store, "warm", 20)) == []

    async def pipes() -> list[HotPipe]:
        """The loop's open pipes, once one is open: calls want it, it opens in the
        background (again at most once a second after a failure)."""
        for _ in range(40):
            assert await _reserve_and_finish(store, f"want{len(wants)}", 1) == []
            wants.append(1)
            await asyncio.sleep(0.1)
            found = [p for p in store._aconns._pipes.values() if p.alive]
            if found:
                return found
        return []

    (pipe,) = run(pipes())
    sent_before = len(pipe._prepared)
    assert run(_reserve_and_finish(store, "piped", 50)) == []
    assert pipe.alive
    assert len(pipe._prepared) >= max(sent_before, 2)  # reserve1, settle, ...

    async def cut_while_busy() -> list[BaseException]:
        calls = asyncio.ensure_future(_reserve_and_finish(store, "cut", 100))
        await asyncio.sleep(0.01)
        await asyncio.to_thread(
            pg_execute,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (app,),
        )
        errors = await calls
        for _ in range(100):  # the calls may all be done before the cut: then the pipe
            if not pipe.alive:  # learns of it when the server's goodbye is read
                break
            await asyncio.sleep(0.02)
        return errors

    assert run(cut_while_busy()) == []
    assert not pipe.alive
    assert run(_reserve_and_finish(store, "after", 20)) == []
    (reopened,) = run(pipes())
    assert reopened is not pipe
    assert run(_reserve_and_finish(store, "again", 20)) == []
    calls = 210 + len(wants)
    assert store.counters() == {BUDGET.key: float(calls)}
    records = store.audit_records()
    assert len([r for r in records if r.kind == "decision"]) == calls
    assert store.verify_audit().ok


def test_closing_the_store_closes_its_pipes(
    pg_url: str, pg_schema: str, open_stores: StoreFactory, event_loop_thread: LoopThread
) -> None:
    app = f"ag-close-{pg_schema}"
    store: Any = open_stores(f"{pg_url}&application_name={app}&pool_min=1&pool_max=2")
    event_loop_thread.run(_reserve_and_finish(store, "a", 5))

    async def settle() -> None:
        await asyncio.sleep(0.2)
        await _reserve_and_finish(store, "b", 5)
        await store.aclose()

    event_loop_thread.run(settle())
    left = pg_execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
    assert left == [(0,)]


def test_the_snapshot_reads_numbers_exactly(
    pg_url: str, open_stores: StoreFactory, event_loop_thread: LoopThread
) -> None:
    """The hot path's snapshot comes back as JSON text: its counters and the call's time
    are the stored doubles to the last bit, on both APIs (through the pipe once open)."""
    store: Any = open_stores(pg_url)
    key = "budget:f|USD@1704240000"
    amounts = [0.1, 1 / 3, 2.0**-30, 123456789.123456789, 1e-300, 7e22]
    for i, amount in enumerate(amounts):
        charge = Charge(key, "budget", amount, 1e300, DAY_END, "f")
        assert store.reserve(f"k{i}", [charge]).ok
    stored = store.counters()[key]
    row = pg_execute(f"SELECT updated_at FROM {store.schema}.ag_calls WHERE key = 'k1'")

    async def read() -> list[Any]:
        snaps = []
        for _ in range(10):  # the first through the pool, later ones through the pipe
            snaps.append(await store.asnapshot(dial_key="w", counter_keys=[key], call_key="k1"))
            await asyncio.sleep(0.05)
        return snaps

    for snap in [
        store.snapshot(dial_key="w", counter_keys=[key], call_key="k1"),
        *event_loop_thread.run(read()),
    ]:
        assert snap.used == {key: stored}
        assert snap.call.updated_at == row[0][0]
        assert snap.call.charges[0].amount == 1 / 3


def test_a_nul_in_a_key_is_refused_not_cut(
    pg_url: str, open_stores: StoreFactory, event_loop_thread: LoopThread
) -> None:
    """libpq reads text parameters up to a NUL: two keys that differ after one would be
    one key (the second call a replay, never charged). The store refuses them instead, on
    both APIs, through the pipe and the pool alike."""
    store: Any = open_stores(pg_url)
    with pytest.raises(StoreUnavailable, match="NUL"):
        store.reserve("call\x00one", [BUDGET])

    async def main() -> list[BaseException]:
        errors: list[BaseException] = []
        for i in range(10):  # the first through the pool, later ones through the pipe
            try:
                await store.areserve(f"call\x00{i}", [BUDGET])
            except StoreUnavailable as exc:
                errors.append(exc)
            await asyncio.sleep(0.05)
        return errors

    errors = event_loop_thread.run(main())
    assert len(errors) == 10
    assert all("NUL" in str(e) for e in errors)
    assert store.counters() == {}


def test_one_pipe_is_opened_at_a_time(
    pg_url: str,
    pg_schema: str,
    open_stores: StoreFactory,
    event_loop_thread: LoopThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Opening takes longer than the retry interval: calls meanwhile use the pool and start
    no second opening, and closing the store leaves no connection behind."""
    app = f"ag-slow-{pg_schema}"
    store: Any = open_stores(f"{pg_url}&application_name={app}&pool_min=1&pool_max=2")
    conns = store._aconns
    opened: list[int] = []
    connect = conns._connect

    async def slow_connect() -> Any:
        opened.append(1)
        await asyncio.sleep(2.5 * conns.PIPE_RETRY)
        return await connect()

    monkeypatch.setattr(conns, "_connect", slow_connect)

    async def main() -> None:
        for i in range(40):
            assert await _reserve_and_finish(store, f"s{i}", 1) == []
            await asyncio.sleep(0.1)
        await store.aclose()

    event_loop_thread.run(main())
    assert len(opened) >= 1
    assert len(opened) <= 2  # (4 s of calls: the first opening took 2.5 s, then one more)
    left = pg_execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
    assert left == [(0,)]


def test_a_statement_timeout_fails_the_statement_not_the_pipe(
    table: str, event_loop_thread: LoopThread
) -> None:
    async def main() -> tuple[BaseException | None, bool, Any]:
        conn = await psycopg.AsyncConnection.connect(
            pg_base(), autocommit=True, options="-c statement_timeout=100"
        )
        pipe = HotPipe(conn, _statements(table))
        failed: BaseException | None = None
        try:
            await pipe.run(b"slow", [b"1"])
        except StatementFailed as exc:
            failed = exc
        try:
            return failed, pipe.alive, await pipe.run(b"echo", [b"still"])
        finally:
            pipe.close()

    failed, alive, answer = event_loop_thread.run(main())
    assert "statement timeout" in str(failed)
    assert alive
    assert answer == (b"still!",)


# psycopg_pool's own worker tasks complain, unraisably, when their loop is closed under them.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_loop_closed_while_a_statement_waits_costs_the_next_loop_nothing(
    pg_url: str, pg_schema: str, open_stores: StoreFactory
) -> None:
    """A loop is closed (without ``asyncio.run``'s clean-up) while a reservation waits in its
    pipe for a row lock: the next loop's calls go through, and closing the store leaves no
    connection behind."""
    app = f"ag-closed-{pg_schema}"
    store: Any = open_stores(f"{pg_url}&application_name={app}&pool_min=1&pool_max=2")
    store.reserve("warm", [BUDGET])
    loop = asyncio.new_event_loop()
    waiting: list[Any] = []  # left pending when the loop closes

    async def stuck() -> None:
        for i in range(20):
            await store.areserve(f"w{i}", [BUDGET])
            await asyncio.sleep(0.1)
            if any(p.alive for p in store._aconns._pipes.values()):
                break
        locker = await psycopg.AsyncConnection.connect(pg_base())
        await locker.execute(
            f'SELECT 1 FROM "{pg_schema}".ag_counters WHERE key = %s FOR UPDATE', (BUDGET.key,)
        )
        waiting.append(asyncio.ensure_future(store.areserve("stuck", [BUDGET])))
        await asyncio.sleep(0.2)
        await locker.close()  # (its transaction ends: the stuck statement goes on, unheard)

    try:
        loop.run_until_complete(stuck())
    finally:
        loop.close()

    async def next_loop() -> bool:
        return bool((await store.areserve("next", [BUDGET])).ok)

    assert asyncio.run(next_loop())
    store.close()
    left = pg_execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
    assert left == [(0,)]
