"""SQLite's store thread runs the operations queued for it as one group: their writes in one
transaction, each a savepoint, and one wake-up of each waiting event loop (issue 18: many
runs on one loop).

Each test holds the store thread on a first hand-off until the operations under test are
queued behind it, so they form one group for certain; the event loop runs with
``blockbuster`` active. The store thread's own connection traces its statements, so a test
can count transactions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope
from agent_guardrails.engine.decision import Charge
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline.effects import Effect, Invoke, StoreOp, adrive
from agent_guardrails.pipeline.outbox import Outbox, write
from agent_guardrails.store.base import AuditEvent
from agent_guardrails.store.sqlite import SQLiteStore
from tests.store.async_helpers import LoopThread, watched_loop

T = TypeVar("T")
DAY_END = 1_704_326_400
KEY = "budget:hot|USD@1704240000"


def budget(amount: float = 1.0, limit: float = 100.0) -> Charge:
    return Charge(KEY, "budget", amount, limit, DAY_END, "hot")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
    yield opened
    opened.close()


async def hold_store_thread(store: SQLiteStore) -> Callable[[], Awaitable[None]]:
    """Hold the store thread on a hand-off, so that what is queued next forms one group;
    returns what lets it go (and waits for that hand-off to end)."""
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(10)

    held = asyncio.ensure_future(store.ahand_off(hold))
    await asyncio.to_thread(holding.wait, 10)

    async def let_go() -> None:
        await asyncio.to_thread(release.set)
        await held

    return let_go


async def grouped(
    store: SQLiteStore, statements: list[str], *operations: Callable[[], Awaitable[Any]]
) -> list[Any]:
    """Queue ``operations`` behind a hand-off that holds the store thread, then let it go:
    they run as one group. Returns each one's result or error, in order; ``statements``
    gets what the store thread's connection ran meanwhile."""
    await store.ahand_off(lambda: store._conns.db().set_trace_callback(statements.append))
    let_go = await hold_store_thread(store)
    tasks = [asyncio.ensure_future(operation()) for operation in operations]
    await asyncio.sleep(0)  # each task runs to its hand-off: all are queued now
    await let_go()
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def run(loop: LoopThread, coro: Awaitable[T]) -> T:
    async def awaited() -> T:
        return await coro

    return loop.run(awaited())


def test_queued_writes_commit_in_one_transaction(store: SQLiteStore) -> None:
    """Twenty reservations queued at once: one ``COMMIT``, each a savepoint in it; every
    one is kept. A guarded call's snapshot queued after them sees them (queue order), and
    its answer comes after the commit that keeps them."""
    statements: list[str] = []
    calls = [lambda i=i: store.areserve(f"k{i}", [budget()]) for i in range(20)]
    snapshot = lambda: store.asnapshot(dial_key="global", counter_keys=[KEY], call_key="k0")  # noqa: E731
    with watched_loop() as loop:
        results = run(loop, grouped(store, statements, *calls, snapshot))
    *reserved, seen = results
    assert all(not isinstance(r, BaseException) and r.ok for r in reserved), reserved
    assert statements.count("COMMIT") == 1, statements
    assert statements.count("SAVEPOINT ag_op") == 20
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert not isinstance(seen, BaseException)
    assert dict(seen.used) == {KEY: 20.0}
    assert seen.call is not None
    assert seen.call.state == "reserved"
    assert store.counters() == {KEY: 20.0}
    assert store.verify_audit().ok


class Exploding(Mapping[str, Any]):
    """Audit data that cannot be read: the reservation fails after it has written."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("this audit data cannot be read")

    def __len__(self) -> int:
        return 1


def test_an_operation_that_fails_in_a_group_is_rolled_back_alone(store: SQLiteStore) -> None:
    """The middle reservation fails after it updated the counter (its audit record cannot be
    written): it gets its own error and its writes are undone; the others are kept."""
    statements: list[str] = []
    bad = AuditEvent("decision", Exploding(), "k1")
    results = []
    with watched_loop() as loop:
        results = run(
            loop,
            grouped(
                store,
                statements,
                lambda: store.areserve("k0", [budget()]),
                lambda: store.areserve("k1", [budget(5.0)], audit=bad),
                lambda: store.areserve("k2", [budget()]),
            ),
        )
    assert isinstance(results[1], RuntimeError), results
    assert "cannot be read" in str(results[1])
    assert all(not isinstance(r, BaseException) and r.ok for r in (results[0], results[2]))
    assert "ROLLBACK TO ag_op" in statements
    assert statements.count("COMMIT") == 1
    assert store.counters() == {KEY: 2.0}
    assert store.call_record("k1") is None
    assert store.call_record("k0") is not None
    assert store.call_record("k2") is not None


def test_a_group_whose_transaction_broke_keeps_nothing_and_says_so(store: SQLiteStore) -> None:
    """An operation ends the group's transaction under it (its savepoint cannot be let go):
    nothing of the group is kept, and every operation in it is told so (none reports a
    reservation that was not kept). The store then works as before."""
    statements: list[str] = []

    def breaks() -> None:
        with store._conns.write() as db:
            db.execute("ROLLBACK")

    with watched_loop() as loop:
        results = run(
            loop,
            grouped(
                store,
                statements,
                lambda: store.areserve("k0", [budget()]),
                lambda: store.ahand_off(breaks),
                lambda: store.areserve("k2", [budget()]),
            ),
        )
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert "nothing written by this batch" in str(results[0])
        assert "earlier write of this group failed" in str(results[2])
        assert store.counters() == {}
        assert store.call_record("k0") is None
        after = run(loop, store.areserve("k3", [budget()]))
    assert after.ok
    assert store.counters() == {KEY: 1.0}
    assert store.verify_audit().ok


def test_a_group_answers_each_event_loop(store: SQLiteStore) -> None:
    """Operations from two event loops in one group: each loop is woken with its own
    answers, at once."""
    statements: list[str] = []
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(10)

    async def queued(key: str, amount: float) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(store.areserve(key, [budget(amount)]))
        await asyncio.sleep(0)  # on the store thread's queue now
        return future

    async def answer(future: asyncio.Future[Any]) -> tuple[Any, float]:
        result = await future
        return result, time.monotonic()

    with watched_loop() as loop, watched_loop() as other:
        run(loop, store.ahand_off(lambda: store._conns.db().set_trace_callback(statements.append)))
        held = run(loop, queued_hold(store, hold))
        run(loop, asyncio.to_thread(holding.wait, 10))
        mine = run(loop, queued("mine", 1.0))
        theirs = run(other, queued("theirs", 2.0))
        mine_too = run(loop, queued("mine-2", 1.0))
        waiting = [
            asyncio.run_coroutine_threadsafe(answer(future), where.loop)
            for future, where in ((mine, loop), (theirs, other), (mine_too, loop))
        ]
        run(loop, asyncio.sleep(0.05))  # (the answers wait now; nothing else wakes a loop)
        released = time.monotonic()
        release.set()
        got = [pending.result(timeout=5) for pending in waiting]
        run(loop, held)
    assert all(result.ok for result, _ in got), got
    assert max(at for _, at in got) - released < 1.0, got  # each loop was woken
    assert statements.count("COMMIT") == 1, statements  # the three were one group
    assert store.counters() == {KEY: 4.0}


async def queued_hold(store: SQLiteStore, hold: Callable[[], None]) -> asyncio.Future[None]:
    future = asyncio.ensure_future(store.ahand_off(hold))
    await asyncio.sleep(0)
    return future


def test_closing_the_store_lets_a_queued_group_finish(store: SQLiteStore) -> None:
    """``close()`` while operations wait behind a busy store thread: those queued before it
    complete (in one group), then the thread ends and ``close()`` returns."""

    async def scenario() -> list[Any]:
        let_go = await hold_store_thread(store)
        tasks = [asyncio.ensure_future(store.areserve(f"k{i}", [budget()])) for i in range(5)]
        await asyncio.sleep(0)
        closing = threading.Thread(target=store.close)
        closing.start()
        await asyncio.sleep(0.1)  # close() has queued the end and waits for the thread
        await let_go()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(closing.join, 10)
        assert not closing.is_alive()
        return done

    with watched_loop() as loop:
        done = run(loop, scenario())
    assert all(not isinstance(r, BaseException) and r.ok for r in done), done
    with pytest.raises(StoreUnavailable, match="closed"):
        store.counters()
    reopened = SQLiteStore(store.url)
    try:
        assert reopened.counters() == {KEY: 5.0}
    finally:
        reopened.close()


GUARD_PACK = """
name: groups
version: 1
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1.0}
budgets:
  - {name: daily, limit: 100, window: day}
"""


def test_a_guarded_call_whose_group_did_not_commit_is_denied_not_run(tmp_path: Path) -> None:
    """A guarded call's reservation shares a group with an operation that breaks the
    group's transaction: the call's flow must not go on as if it held its budget (the
    reservation was never kept). It ends as when the store fails at the reservation: a
    fail-closed ``store_unavailable`` denial, the tool not run, nothing left held."""
    guard = Guardrails(PolicyPack.from_yaml(GUARD_PACK), store=f"sqlite:///{tmp_path / 'g.db'}")
    store: Any = guard.store
    ran: list[str] = []

    async def body(args: Mapping[str, Any]) -> str:
        ran.append("ran")
        return "done"

    def breaks() -> None:
        with store._conns.write() as db:
            db.execute("ROLLBACK")

    async def scenario() -> list[Any]:
        await guard.arun(CallRequest("warm", "crm.tag", {}), body)  # the pack is in place
        ran.clear()
        statements: list[str] = []
        return await grouped(
            store,
            statements,
            lambda: guard.arun(CallRequest("tag", "crm.tag", {}), body),
            lambda: store.ahand_off(breaks),
        )

    try:
        with watched_loop() as loop:
            result, broke = run(loop, scenario())
            run(loop, guard.aflush())
    finally:
        guard.close()
    assert isinstance(broke, StoreUnavailable)
    assert ran == []
    assert isinstance(result, dict), result
    assert result["reasons"] == ["store_unavailable"], result
    reopened = SQLiteStore(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        assert sum(reopened.counters("budget:").values()) == 1.0  # the warm-up call's only
        assert reopened.in_doubt() == []
        assert reopened.verify_audit().ok
    finally:
        reopened.close()


def _cancel_test_guard(tmp_path: Path) -> tuple[Guardrails, Any]:
    guard = Guardrails(PolicyPack.from_yaml(GUARD_PACK), store=f"sqlite:///{tmp_path / 'g.db'}")
    return guard, guard.store


def _settled(path: Path) -> tuple[float, list[Any], bool]:
    """What a fresh store reads back: budget held, calls in doubt, the chain intact."""
    reopened = SQLiteStore(f"sqlite:///{path}")
    try:
        held = sum(reopened.counters("budget:").values())
        return held, reopened.in_doubt(), reopened.verify_audit().ok
    finally:
        reopened.close()


@pytest.mark.parametrize("when", ["before its group commits", "inside its run"])
def test_a_caller_cancelled_while_its_group_is_under_way(tmp_path: Path, when: str) -> None:
    """A guarded call is cancelled while the store thread is still inside its run (before
    its reservation): the flow ends there, nothing is held. Or it is cancelled once its
    reservation is done but waits for its group's commit (another operation of the group
    holds the store thread): the reservation is kept, and the call is in doubt, as a call
    cancelled right after its reservation always is (the tool never runs silently; a
    re-run asks a human). In neither case does the tool run or the chain break."""
    guard, store = _cancel_test_guard(tmp_path)
    ran: list[str] = []
    inside, gate = threading.Event(), threading.Event()
    snapshot = store.snapshot

    def slow_snapshot(**kwargs: Any) -> Any:
        if when == "inside its run" and kwargs.get("call_key", "").endswith("tag-1"):
            inside.set()
            gate.wait(10)
        return snapshot(**kwargs)

    async def body(args: Mapping[str, Any]) -> str:
        ran.append("ran")
        return "done"

    def hold_group() -> None:  # the operation after the call's in its group
        inside.set()
        gate.wait(10)

    async def scenario() -> None:
        await guard.arun(CallRequest("warm", "crm.tag", {}), body)
        ran.clear()
        store.snapshot = slow_snapshot
        let_go = await hold_store_thread(store)
        call = asyncio.ensure_future(
            guard.arun(CallRequest("tag", "crm.tag", {}), body, call_key="tag-1")
        )
        await asyncio.sleep(0)
        then = asyncio.ensure_future(
            store.ahand_off(hold_group if when == "before its group commits" else lambda: None)
        )
        await asyncio.sleep(0)
        await let_go()
        await asyncio.to_thread(inside.wait, 10)  # the group is under way, the call in it
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.to_thread(gate.set)
        await then
        await guard.aflush()

    try:
        with watched_loop() as loop:
            run(loop, scenario())
    finally:
        guard.close()
    assert ran == []
    budget_held, in_doubt, chain_ok = _settled(tmp_path / "g.db")
    assert chain_ok
    if when == "inside its run":
        assert budget_held == 1.0  # the warm-up call's only
        assert in_doubt == []
    else:
        assert budget_held == 2.0
        assert [record.key for record in in_doubt] == ["tag-1"]


# --------------------------------------------------------------- a commit that fails for real


def arm_failing_commit(store: SQLiteStore) -> None:
    """On the store thread's connection: tables where a write is fine in itself but makes
    its transaction's ``COMMIT`` fail (a deferred foreign-key violation, checked at the
    commit, as a disk that fills up fails it there). See :func:`poison`."""
    db = store._conns.db()
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS parent (id INTEGER PRIMARY KEY)")
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS child (parent INTEGER REFERENCES parent (id)"
        " DEFERRABLE INITIALLY DEFERRED)"
    )


def poison(store: SQLiteStore, then: Callable[[], None] | None = None) -> Callable[[], None]:
    """A write that makes its group's ``COMMIT`` fail; then ``then()`` (on the thread)."""

    def work() -> None:
        with store._conns.write() as db:
            db.execute("INSERT INTO child VALUES (42)")
        if then is not None:
            then()

    return work


def test_a_commit_that_fails_fails_exactly_the_operations_that_wrote(store: SQLiteStore) -> None:
    """The group's ``COMMIT`` itself fails: each operation that wrote in it is told so,
    the refused one too (it was refused inside the transaction: for all it knows, on
    another's write that was not kept); the read, which answered from committed data,
    keeps its answer. What the store holds afterwards matches what each was told."""
    statements: list[str] = []
    with watched_loop() as loop:
        run(loop, store.ahand_off(lambda: arm_failing_commit(store)))
        results = run(
            loop,
            grouped(
                store,
                statements,
                lambda: store.areserve("k0", [budget()]),
                lambda: store.acounters("budget:"),
                lambda: store.areserve("k1", [budget(500.0)]),  # over the limit: refused
                lambda: store.ahand_off(poison(store)),
                lambda: store.areserve("k2", [budget()]),
            ),
        )
    k0, read, k1, poisoned, k2 = results
    assert isinstance(k0, StoreUnavailable)
    assert "nothing written by this batch" in str(k0)
    assert read == {}  # committed data only, which the failed commit did not change
    assert isinstance(k1, StoreUnavailable)
    assert isinstance(poisoned, StoreUnavailable)
    assert isinstance(k2, StoreUnavailable)
    assert statements.count("COMMIT") == 1
    assert store.counters() == {}
    assert store.call_record("k0") is None
    assert store.call_record("k2") is None


def test_a_transaction_lost_under_the_group_commits_nothing_behind_its_back(
    store: SQLiteStore,
) -> None:
    """SQLite rolls a transaction back by itself after some errors (I/O, full disk); here
    an operation's statement on the group's connection ends it. The writes after it must
    not run outside the group (each savepoint its own transaction, committed at once)
    while their callers are told that nothing was kept: every answer matches the file."""

    def read_that_loses_the_transaction() -> None:
        store._conns.db().execute("ROLLBACK")  # the group's connection: its transaction

    statements: list[str] = []
    with watched_loop() as loop:
        k0, _lost, k2 = run(
            loop,
            grouped(
                store,
                statements,
                lambda: store.areserve("k0", [budget()]),
                lambda: store.ahand_off(read_that_loses_the_transaction),
                lambda: store.areserve("k2", [budget()]),
            ),
        )
    assert isinstance(k0, StoreUnavailable)
    assert isinstance(k2, StoreUnavailable)
    assert store.counters() == {}
    assert store.call_record("k2") is None


def test_an_operation_raising_stop_iteration_does_not_hold_back_the_others(
    store: SQLiteStore,
) -> None:
    """A future cannot hold ``StopIteration``: the operation that raised it gets a
    ``RuntimeError`` naming it, and the other answers of its group still arrive."""

    def stops() -> None:
        raise StopIteration("a bug in some step")

    statements: list[str] = []

    async def bounded() -> list[Any]:
        return await asyncio.wait_for(
            grouped(
                store,
                statements,
                lambda: store.ahand_off(stops),
                lambda: store.areserve("k0", [budget()]),
            ),
            5,
        )

    with watched_loop() as loop:
        stopped, reserved = run(loop, bounded())
    assert isinstance(stopped, RuntimeError)
    assert "StopIteration" in str(stopped)
    assert reserved.ok


def test_a_guarded_call_after_a_broken_write_in_its_group_is_denied_not_raised(
    tmp_path: Path,
) -> None:
    """The group breaks before a guarded call's turn: its reservation is refused (an
    earlier write failed) and the call ends as a fail-closed denial, which it keeps when
    the group then fails to commit: no ``StoreUnavailable`` reaches the caller."""
    guard = Guardrails(PolicyPack.from_yaml(GUARD_PACK), store=f"sqlite:///{tmp_path / 'g.db'}")
    store: Any = guard.store
    ran: list[str] = []

    async def body(args: Mapping[str, Any]) -> str:
        ran.append("ran")
        return "done"

    def breaks() -> None:
        with store._conns.write() as db:
            db.execute("ROLLBACK")

    async def scenario() -> list[Any]:
        await guard.arun(CallRequest("warm", "crm.tag", {}), body)
        ran.clear()
        return await grouped(
            store,
            [],
            lambda: store.ahand_off(breaks),
            lambda: guard.arun(CallRequest("tag", "crm.tag", {}), body),
        )

    try:
        with watched_loop() as loop:
            broke, result = run(loop, scenario())
            run(loop, guard.aflush())
    finally:
        guard.close()
    assert isinstance(broke, StoreUnavailable)
    assert ran == []
    assert isinstance(result, dict), result
    assert result["reasons"] == ["store_unavailable"]


@pytest.mark.parametrize("stopped", ["waiting for the commit", "inside its run"])
def test_a_cancelled_flush_keeps_what_its_failed_commit_did_not_write(
    store: SQLiteStore, stopped: str
) -> None:
    """An outbox flush is cancelled after its write ran in a group, before the group's
    ``COMMIT``, which then fails. The flush must learn that its write was not kept: both
    records stay in the outbox, to be written later (none is lost). Cancelled either while
    its answer waits for the commit, or while the store thread is still inside its run."""
    outbox = Outbox()
    outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": 1}, "k1")))
    outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": 2}, "k2")))
    inside, gate = threading.Event(), threading.Event()

    def pause() -> None:
        inside.set()
        gate.wait(10)

    append = store.append_audit
    if stopped == "inside its run":

        def slow_append(event: AuditEvent) -> Any:
            record = append(event)  # written, in a savepoint of the group
            pause()
            return record

        store.append_audit = slow_append  # type: ignore[method-assign]

    async def scenario() -> None:
        await store.ahand_off(lambda: arm_failing_commit(store))
        let_go = await hold_store_thread(store)
        flush = asyncio.ensure_future(adrive(outbox.flush(), store))
        await asyncio.sleep(0)
        after = pause if stopped == "waiting for the commit" else None
        poisoned = asyncio.ensure_future(store.ahand_off(poison(store, after)))
        await asyncio.sleep(0)
        await let_go()
        await asyncio.to_thread(inside.wait, 10)
        flush.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flush
        await asyncio.to_thread(gate.set)
        with pytest.raises(StoreUnavailable):
            await poisoned
        await store.ahand_off(lambda: None)  # (the store thread has ended the flush)

    with watched_loop() as loop:
        run(loop, scenario())
    store.append_audit = append  # type: ignore[method-assign]
    assert outbox.pending == 2
    assert store.audit_records() == []


def test_no_tool_runs_on_reservations_of_a_group_that_did_not_commit(tmp_path: Path) -> None:
    """Two guarded calls in one group whose commit fails, the budget with room for one
    more: neither tool runs and nothing stays held. The first is denied
    ``store_unavailable``; the second, whose snapshot saw the first's reservation in
    queue order, is denied too (``budget_exceeded``: it rested on a reservation that was
    then not kept; fail-closed, and noted in the module docstring)."""
    pack = GUARD_PACK.replace("limit: 100", "limit: 2")
    guard = Guardrails(PolicyPack.from_yaml(pack), store=f"sqlite:///{tmp_path / 'g.db'}")
    store: Any = guard.store
    ran: list[str] = []

    async def body(args: Mapping[str, Any]) -> str:
        ran.append("ran")
        return "done"

    async def scenario() -> list[Any]:
        await guard.arun(CallRequest("warm", "crm.tag", {}), body)  # 1 of 2 used
        ran.clear()
        await store.ahand_off(lambda: arm_failing_commit(store))
        return await grouped(
            store,
            [],
            lambda: guard.arun(CallRequest("a", "crm.tag", {}), body),
            lambda: guard.arun(CallRequest("b", "crm.tag", {}), body),
            lambda: store.ahand_off(poison(store)),
        )

    try:
        with watched_loop() as loop:
            a, b, _poisoned = run(loop, scenario())
            run(loop, guard.aflush())
    finally:
        guard.close()
    assert ran == []
    assert a["reasons"] == ["store_unavailable"], a
    assert b["decision"] == "deny", b
    budget_held, in_doubt, chain_ok = _settled(tmp_path / "g.db")
    assert budget_held == 1.0
    assert in_doubt == []
    assert chain_ok


def asking(outbox: Outbox) -> Generator[Effect, Any, str]:
    """A flow that reads, then steps off the store thread (as one asking a human does);
    stopped there, it records the question through ``outbox`` on its way out."""
    yield StoreOp("counters")  # a read: the run goes on past it
    try:
        yield Invoke(lambda: "asked")  # the flow's next step off the store thread
    except BaseException:
        yield from write(StoreOp("append_audit", AuditEvent("approval.requested", {}, "k")), outbox)
        raise
    return "ok"


def held_read(
    read: Callable[..., dict[str, float]], inside: threading.Event, gate: threading.Event
) -> Callable[..., dict[str, float]]:
    """``read`` that says it began (``inside``), then waits for ``gate``."""

    def held(prefix: str = "") -> dict[str, float]:
        inside.set()
        gate.wait(10)
        return read(prefix)

    return held


def test_a_flow_ended_for_a_cancelled_caller_writes_after_the_commit(store: SQLiteStore) -> None:
    """A caller is cancelled while the store thread is inside its run (a read); its flow's
    closing write (a record kept through the outbox, as a cancelled question's is) must
    not ride in the group, whose commit then fails: it is written on its own once the
    group is done, and so it is in the file."""
    outbox = Outbox()
    inside, gate = threading.Event(), threading.Event()
    counters = store.counters

    async def scenario() -> list[Any]:
        await store.ahand_off(lambda: arm_failing_commit(store))
        store.counters = held_read(counters, inside, gate)  # type: ignore[method-assign]
        let_go = await hold_store_thread(store)
        task = asyncio.ensure_future(adrive(asking(outbox), store))
        await asyncio.sleep(0)
        poisoned = asyncio.ensure_future(store.ahand_off(poison(store)))
        await asyncio.sleep(0)
        await let_go()
        await asyncio.to_thread(inside.wait, 10)
        task.cancel()
        await asyncio.to_thread(gate.set)
        done = await asyncio.gather(task, poisoned, return_exceptions=True)
        await store.ahand_off(lambda: None)  # (what the thread does after the group is done)
        return list(done)

    with watched_loop() as loop:
        cancelled, poisoned = run(loop, scenario())
    store.counters = counters  # type: ignore[method-assign]
    assert isinstance(cancelled, asyncio.CancelledError)
    assert isinstance(poisoned, StoreUnavailable)
    assert [record.kind for record in store.audit_records()] == ["approval.requested"]
    assert outbox.pending == 0


def test_a_cancelled_callers_closing_writes_do_not_hold_back_the_groups_answers(
    store: SQLiteStore,
) -> None:
    """The group's answers go out as soon as its commit is known; the flow of a caller
    cancelled meanwhile ends after them, so its closing write (here: held up on purpose)
    never delays another caller's answer."""
    outbox = Outbox()
    inside, gate, writing, late = (threading.Event() for _ in range(4))
    counters, append = store.counters, store.append_audit

    def slow_append(event: AuditEvent) -> Any:
        writing.set()
        late.wait(10)
        return append(event)

    async def scenario() -> tuple[Any, bool, list[Any]]:
        store.counters = held_read(counters, inside, gate)  # type: ignore[method-assign]
        let_go = await hold_store_thread(store)
        task = asyncio.ensure_future(adrive(asking(outbox), store))
        await asyncio.sleep(0)
        other = asyncio.ensure_future(store.areserve("other", [budget()]))
        await asyncio.sleep(0)
        await let_go()
        await asyncio.to_thread(inside.wait, 10)
        task.cancel()
        store.append_audit = slow_append  # type: ignore[method-assign]
        await asyncio.to_thread(gate.set)
        try:
            reserved = await asyncio.wait_for(asyncio.shield(other), 5)
            held_up = not late.is_set()  # answered while the closing write may not end
        finally:
            await asyncio.to_thread(late.set)
        cancelled = list(await asyncio.gather(task, other, return_exceptions=True))
        await store.ahand_off(lambda: None)  # (what the thread does after the group is done)
        return reserved, held_up, cancelled

    with watched_loop() as loop:
        reserved, held_up, (cancelled, _other) = run(loop, scenario())
    store.counters, store.append_audit = counters, append  # type: ignore[method-assign]
    assert reserved.ok
    assert held_up, "the answer came only after the cancelled caller's closing write"
    assert writing.is_set()  # that write was done, after the answers
    assert isinstance(cancelled, asyncio.CancelledError)
    assert [record.kind for record in store.audit_records()] == ["approval.requested"]
    assert outbox.pending == 0


def test_a_failing_hint_after_the_commit_fails_no_answer(store: SQLiteStore) -> None:
    """What the store thread does after a group's commit succeeded (the hint to its
    checkpoint thread) cannot fail the group: every write was kept, every caller is told so."""
    statements: list[str] = []

    def broken_hint() -> None:
        raise RuntimeError("the checkpoint thread is gone")

    store._conns._checkpoints.wrote = broken_hint  # type: ignore[method-assign]
    calls = [lambda i=i: store.areserve(f"k{i}", [budget()]) for i in range(5)]
    with watched_loop() as loop:
        results = run(loop, grouped(store, statements, *calls))
    assert statements.count("COMMIT") == 1, statements
    assert all(not isinstance(r, BaseException) and r.ok for r in results), results
    assert store.counters() == {KEY: 5.0}


@pytest.mark.parametrize("how", ["closed", "cancelled"])
def test_a_caller_stopped_as_its_answer_arrives_learns_its_write_was_kept(
    store: SQLiteStore, how: str
) -> None:
    """The group commits the write of an outbox flush, and the flush's caller is closed
    (``GeneratorExit``) or cancelled just as the answer arrives: the flush first learns
    that its record was written, so it is not kept to be written a second time."""
    outbox = Outbox()
    outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": 1}, "k1")))
    coro = adrive(outbox.flush(), store)
    waiting: list[Any] = []

    async def start() -> None:
        waiting.append(coro.send(None))  # runs to the hand-off: the future it awaits

    async def other() -> Any:
        return await store.aappend_audit(AuditEvent("decision", {"n": 9}, "other"))

    async def scenario() -> None:
        await grouped(store, [], start, other)
        while not waiting[0].done():
            await asyncio.sleep(0.01)
        if how == "closed":
            coro.close()
        else:
            with pytest.raises(asyncio.CancelledError):
                coro.throw(asyncio.CancelledError())

    with watched_loop() as loop:
        run(loop, scenario())
    assert outbox.pending == 0
    assert sorted(record.data["n"] for record in store.audit_records()) == [1, 9]


def test_a_cancellation_is_not_lost_when_the_flow_fails_on_learning_its_outcome(
    store: SQLiteStore,
) -> None:
    """A caller cancelled as its failed-commit answer arrives: handing its flow that error
    ends the flow with it, and the caller still ends cancelled, not with the error."""

    def flow() -> Generator[Effect, Any, str]:
        yield StoreOp("append_audit", AuditEvent("decision", {}, "k"))  # no handler
        return "ok"

    coro = adrive(flow(), store)
    waiting: list[Any] = []

    async def start() -> None:
        waiting.append(coro.send(None))

    async def scenario() -> None:
        await store.ahand_off(lambda: arm_failing_commit(store))
        await grouped(store, [], start, lambda: store.ahand_off(poison(store)))
        while not waiting[0].done():
            await asyncio.sleep(0.01)
        waiting[0].exception()  # (retrieved: the test looks at the caller instead)
        with pytest.raises(asyncio.CancelledError):
            coro.throw(asyncio.CancelledError())

    with watched_loop() as loop:
        run(loop, scenario())
    assert store.audit_records() == []


def test_a_call_queued_behind_a_kill_switch_in_its_group_is_halted(tmp_path: Path) -> None:
    """An operator engages the kill-switch and a guarded call is queued right behind it,
    both in one group: the call sees the switch (queue order, as when each committed on
    its own) and is halted; its tool does not run."""
    guard = Guardrails(PolicyPack.from_yaml(GUARD_PACK), store=f"sqlite:///{tmp_path / 'g.db'}")
    store: Any = guard.store
    ran: list[str] = []

    async def body(args: Mapping[str, Any]) -> str:
        ran.append("ran")
        return "done"

    async def scenario() -> list[Any]:
        await guard.arun(CallRequest("warm", "crm.tag", {}), body)
        ran.clear()
        return await grouped(
            store,
            [],
            lambda: store.aset_kill_switch(Scope(), True, by="ops", reason="stop"),
            lambda: guard.arun(CallRequest("tag", "crm.tag", {}), body),
        )

    try:
        with watched_loop() as loop:
            switch, result = run(loop, scenario())
    finally:
        guard.close()
    assert switch.engaged
    assert ran == []
    assert isinstance(result, dict), result
    assert any(reason.startswith("kill_switch") for reason in result["reasons"]), result


def test_a_flush_cancelled_before_its_group_commits_learns_its_record_was_written(
    store: SQLiteStore,
) -> None:
    """An outbox flush is cancelled while its write waits for its group's (successful)
    commit: once the commit is known, its flow learns the record was written, so the
    outbox does not keep it to write it again."""
    outbox = Outbox()
    outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": 1}, "k1")))
    inside, gate = threading.Event(), threading.Event()

    def pause() -> None:
        inside.set()
        gate.wait(10)

    async def scenario() -> None:
        let_go = await hold_store_thread(store)
        flush = asyncio.ensure_future(adrive(outbox.flush(), store))
        await asyncio.sleep(0)
        paused = asyncio.ensure_future(store.ahand_off(pause))
        await asyncio.sleep(0)
        await let_go()
        await asyncio.to_thread(inside.wait, 10)
        flush.cancel()
        await asyncio.to_thread(gate.set)
        await paused
        await asyncio.gather(flush, return_exceptions=True)
        await store.ahand_off(lambda: None)  # (the thread has ended the flush)

    with watched_loop() as loop:
        run(loop, scenario())
    assert outbox.pending == 0
    assert [record.data["n"] for record in store.audit_records()] == [1]


def test_a_flush_cancelled_as_its_failed_commit_answer_arrives_keeps_its_record(
    store: SQLiteStore,
) -> None:
    """The flush's caller is cancelled just as the answer of a failed commit arrives: the
    flow is handed that failure (not the write's result from before the commit), so the
    record stays in the outbox."""
    outbox = Outbox()
    outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": 1}, "k1")))
    coro = adrive(outbox.flush(), store)
    waiting: list[Any] = []

    async def start() -> None:
        waiting.append(coro.send(None))

    async def scenario() -> None:
        await store.ahand_off(lambda: arm_failing_commit(store))
        await grouped(store, [], start, lambda: store.ahand_off(poison(store)))
        while not waiting[0].done():
            await asyncio.sleep(0.01)
        waiting[0].exception()
        with pytest.raises(asyncio.CancelledError):
            coro.throw(asyncio.CancelledError())

    with watched_loop() as loop:
        run(loop, scenario())
    assert outbox.pending == 1
    assert store.audit_records() == []
