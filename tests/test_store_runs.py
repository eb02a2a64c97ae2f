"""Runs of store operations in one hand-off (``pipeline.effects.StoreRun``).

A store whose async methods hand each operation to its own thread (SQLite) gets, from
``adrive``, the operation and every store operation the flow asks for right after it, in
one hand-off: the flow's pure steps run on the store's thread between them, in the caller's
context. These tests hold the driver to what a plain ``await`` per operation promised: the
same results, errors thrown in where they were asked for, the caller's context, and a
cancelled caller whose flow never runs on two threads at once and is ended where it stood.
Every test runs under blockbuster (``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope, register_validator
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline.effects import Effect, Invoke, StoreOp, StoreRun, adrive, drive
from agent_guardrails.store._offload import StoreThreads

T = TypeVar("T")
Flow = Generator[Effect, Any, T]

who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


class ThreadStore:
    """Sync operations, each async caller's runs handed to one thread (as SQLite does)."""

    def __init__(self) -> None:
        self.threads = StoreThreads(1, "test-store", "test://")
        self.hand_offs = 0
        self.done: list[tuple[str, Any, str]] = []  # (operation, argument, thread name)
        self.began = threading.Event()
        self.gate = threading.Event()

    async def ahand_off(self, work: Callable[[], T]) -> T:
        self.hand_offs += 1
        return await self.threads.run(work)

    def read(self, value: Any) -> Any:
        self.done.append(("read", value, threading.current_thread().name))
        return value

    def fail(self) -> None:
        self.done.append(("fail", None, threading.current_thread().name))
        raise StoreUnavailable("test://: down")

    def slow(self, value: Any) -> Any:
        """Waits (on the store's thread) until the test opens the gate."""
        self.began.set()
        self.gate.wait(10)
        self.done.append(("slow", value, threading.current_thread().name))
        return value


def thread_name() -> str:
    return threading.current_thread().name


def test_consecutive_store_operations_take_one_hand_off() -> None:
    """Two operations in a row are one hand-off; the effect between runs (the tool body)
    runs on the caller's loop; the flow's steps between operations run on the store's
    thread; the results are what a plain await per operation gives."""
    store = ThreadStore()
    where: dict[str, str] = {}

    def flow() -> Flow[tuple[Any, ...]]:
        a = yield StoreOp("read", 1)
        where["between"] = thread_name()
        b = yield StoreOp("read", a + 1)
        c = yield Invoke(lambda: (thread_name(), b * 10))
        d = yield StoreOp("read", c[1] + 1)
        return a, b, c[1], d, c[0]

    async def main() -> tuple[Any, ...]:
        return await adrive(flow(), store)

    a, b, c, d, body_thread = asyncio.run(main())
    assert (a, b, c, d) == (1, 2, 20, 21)
    assert store.hand_offs == 2
    assert body_thread == "MainThread"
    assert where["between"] == "test-store-0"
    assert {t for _op, _v, t in store.done} == {"test-store-0"}
    # The sync driver, on the same flow, gives the same results without hand-offs.
    assert drive(flow(), store)[:4] == (1, 2, 20, 21)
    assert store.hand_offs == 2


def test_flow_steps_on_the_store_thread_see_the_callers_context() -> None:
    store = ThreadStore()

    def flow() -> Flow[str]:
        yield StoreOp("read", None)
        return who.get()

    async def main() -> str:
        who.set("the caller")
        return await adrive(flow(), store)

    assert asyncio.run(main()) == "the caller"


def test_an_operations_error_is_thrown_in_where_it_was_asked() -> None:
    """The flow handles a store error at its ``yield`` and goes on, in the same run."""
    store = ThreadStore()

    def flow() -> Flow[str]:
        try:
            yield StoreOp("fail")
        except StoreUnavailable as exc:
            return str((yield StoreOp("read", f"handled: {exc}")))
        return "not reached"

    assert asyncio.run(adrive(flow(), store)) == "handled: test://: down"
    assert store.hand_offs == 1


def test_what_the_flow_raises_on_the_store_thread_reaches_the_caller() -> None:
    store = ThreadStore()

    def flow() -> Flow[None]:
        yield StoreOp("read", 1)
        raise ValueError("the flow's own error")

    with pytest.raises(ValueError, match="the flow's own error"):
        asyncio.run(adrive(flow(), store))


def test_a_closed_store_is_an_error_at_the_operation() -> None:
    store = ThreadStore()
    store.threads.shutdown()

    def flow() -> Flow[str]:
        try:
            yield StoreOp("read", 1)
        except StoreUnavailable:
            return "closed"
        return "not reached"

    assert asyncio.run(adrive(flow(), store)) == "closed"
    assert store.done == []


def cancellable(store: ThreadStore, seen: list[tuple[str, str]]) -> Callable[[], Flow[Any]]:
    """A flow whose first operation waits at the store's gate, and which records (with the
    thread) what it met and what it does after a cancellation."""

    def flow() -> Flow[Any]:
        try:
            value = yield StoreOp("slow", "first")
            seen.append(("went on", thread_name()))
            return (yield StoreOp("read", value))
        except asyncio.CancelledError:
            seen.append(("cancelled", thread_name()))
            yield StoreOp("read", "cleanup")  # recorded, as a flow cancelled at an await
            raise

    return flow


async def wait_for(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


def test_a_caller_cancelled_while_its_run_waits_in_the_queue() -> None:
    """The run never begins: the caller throws the cancellation in at the operation's
    ``yield``, on its own thread, and the operation is never done."""
    store = ThreadStore()
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(adrive(cancellable(store, [])(), store))
        await wait_for(store.began)  # the store's one thread is busy with the blocker
        task = asyncio.ensure_future(adrive(cancellable(store, seen)(), store))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.sleep(0.01)
        assert seen == [("cancelled", "MainThread")]  # thrown in at once, by the caller
        store.gate.set()  # its cleanup operation waits behind the blocker
        with pytest.raises(asyncio.CancelledError):
            await task
        await blocker

    asyncio.run(main())
    assert [v for op, v, _t in store.done if op == "slow"] == ["first"]  # the blocker's only
    assert ("read", "cleanup", "MainThread") not in store.done
    assert ("read", "cleanup", "test-store-0") in store.done  # the cleanup, as a store op


def test_a_caller_cancelled_while_its_run_is_on_the_store_thread() -> None:
    """The operation under way completes and the flow gets its result (what was written
    is known written); the store's thread throws the cancellation in at the next
    ``yield``, whose operation is not done, and ends the flow there (its cleanup operation
    done too); the caller raises ``CancelledError`` without touching the flow, so it never
    runs on two threads."""
    store = ThreadStore()
    seen: list[tuple[str, str]] = []

    async def main() -> None:
        task = asyncio.ensure_future(adrive(cancellable(store, seen)(), store))
        await wait_for(store.began)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == []  # the flow is still suspended at the slow operation
        store.gate.set()
        deadline = time.monotonic() + 5
        while ("read", "cleanup", "test-store-0") not in store.done:
            assert time.monotonic() < deadline, store.done
            await asyncio.sleep(0.001)

    asyncio.run(main())
    assert seen == [("went on", "test-store-0"), ("cancelled", "test-store-0")]
    assert ("slow", "first", "test-store-0") in store.done
    assert ("read", "first", "test-store-0") not in store.done  # the next one: not done


def test_a_caller_closed_while_its_run_waits_closes_the_flow_on_its_side() -> None:
    """``coroutine.close()`` during the hand-off: the flow is closed (``GeneratorExit`` at
    its ``yield``, as on the plain path, not a cancellation it would answer with more
    store operations, as ``approval()`` does) and the close completes."""
    store = ThreadStore()
    ended: list[str] = []

    def flow() -> Flow[Any]:
        try:
            yield StoreOp("read", 1)
        except GeneratorExit:
            ended.append(thread_name())
            raise
        except BaseException:
            ended.append("asked for more")
            yield StoreOp("read", "on the way out")
            raise

    async def main() -> None:
        blocker = asyncio.ensure_future(adrive(cancellable(store, [])(), store))
        await wait_for(store.began)
        coro = adrive(flow(), store)
        coro.send(None)  # it now waits for its run, queued behind the blocker
        coro.close()
        store.gate.set()
        await blocker

    asyncio.run(main())
    assert ended == ["MainThread"]
    assert ("read", 1, "test-store-0") not in store.done


def test_a_cancelled_flush_does_not_write_a_record_twice(tmp_path: Any) -> None:
    """A flush of the outbox cancelled while its write waits for SQLite's lock on the store
    thread: the write completes and the flush learns it did, so the record is not written
    again by the next flush."""
    import sqlite3

    from agent_guardrails.store.base import AuditEvent

    path = tmp_path / "o.db"
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=f"sqlite:///{path}?timeout=5")
    guard.outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": 1}, "~42", None)))
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(5)
        db.execute("COMMIT")
        db.close()

    async def main() -> None:
        holder = threading.Thread(target=hold_lock)
        holder.start()
        await wait_for(locked)
        task = asyncio.ensure_future(guard.aflush())
        await asyncio.sleep(0.05)  # its write waits for the lock on the store thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        while holder.is_alive():
            await asyncio.sleep(0.01)
        deadline = time.monotonic() + 5
        while guard.outbox.pending:
            assert time.monotonic() < deadline, "the written record is still kept"
            await asyncio.sleep(0.01)
        assert await guard.aflush() == 0

    asyncio.run(main())
    copies = [r for r in guard.store.audit_records() if r.data.get("n") == 1]
    assert len(copies) == 1
    guard.close()


def test_an_approver_runs_off_the_store_thread_and_a_plain_one_off_the_loop(
    every_store_url: str,
) -> None:
    """The human's time never holds a store's thread that ran the call's snapshot and
    reservation just before (SQLite): an ``async def`` approver of an async call is awaited
    on the event loop's thread; a plain function (which may block for the human's whole
    time, as ``input()`` or a polling client does) runs on a worker thread, off the loop.
    On every store."""
    from agent_guardrails import ApprovalAnswer

    where: list[tuple[str, bool]] = []

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def approver(ask: Any) -> ApprovalAnswer:
        where.append((thread_name(), on_loop()))
        time.sleep(0.001)  # blocking: blockbuster refuses it on the loop
        return ApprovalAnswer("approve", by="ana", roles=("ops",))

    async def aapprover(ask: Any) -> ApprovalAnswer:
        where.append((thread_name(), on_loop()))
        await asyncio.sleep(0)
        return ApprovalAnswer("approve", by="ana", roles=("ops",))

    async def body(args: Any) -> str:
        return "tagged"

    approvers: list[Callable[[Any], Any]] = [aapprover, approver]
    for fn in approvers:
        guard = Guardrails(PolicyPack.from_yaml(ASKING), store=every_store_url, approver=fn)
        request = CallRequest("tag", "crm.tag", {"contact": "c1"}, Scope())

        async def main(guard: Guardrails = guard, request: CallRequest = request) -> Any:
            return await guard.arun(request, body)

        assert asyncio.run(main()) == "tagged"
        guard.close()
    assert where[0] == ("MainThread", True)
    assert where[1][1] is False
    assert where[1][0].startswith("agent-guardrails-user"), where  # not a store's thread


def test_a_caller_stopped_as_its_run_ended_throws_in_where_the_flow_stands() -> None:
    """The claim protocol itself, step by step: a run that ended before its caller was
    stopped hands back the effect the flow stands at, for the caller to throw into."""
    store = ThreadStore()

    def flow() -> Flow[Any]:
        value = yield StoreOp("read", 1)
        try:
            yield Invoke(lambda: value)
        except asyncio.CancelledError:
            return "cancelled at the body"
        return "ran"

    f = flow()
    first = next(f)
    assert isinstance(first, StoreOp)
    run = StoreRun(f, first, store)
    outcome = run()  # as the store's thread does
    assert outcome is not None
    assert isinstance(outcome.effect, Invoke)
    cancelled = asyncio.CancelledError()
    where = run.stopped(cancelled)
    assert where is not None
    assert where.effect is outcome.effect
    assert where.raised is cancelled
    with pytest.raises(StopIteration) as stop:
        f.throw(cancelled)
    assert stop.value.value == "cancelled at the body"

    # Stopped before it began: the run is skipped, the caller throws in at the operation.
    g = flow()
    run = StoreRun(g, next(g), store)  # type: ignore[arg-type]
    assert run.stopped(cancelled) is None
    assert run() is None
    assert store.done == [("read", 1, "MainThread")]  # the first run's only


PACK = """
name: runs
version: 1
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1.0}
budgets:
  - {name: daily, limit: 1000, window: day}
"""
ASKING = PACK.replace(
    "crm.tag: {risk: low, cost: 1.0}",
    "crm.tag: {risk: low, cost: 1.0, sensitive: true, approval: {roles: [ops]}}",
)  # every call asks a human with the role ops


def test_an_async_call_on_sqlite_is_two_hand_offs(tmp_path: Any) -> None:
    """Snapshot, decision and reservation in one round trip to the store thread, the
    finish in another: two hand-offs per allowed call (three before), and the call's
    records, charge and result as ever."""
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=f"sqlite:///{tmp_path / 'r.db'}")
    store: Any = guard.store
    counted = 0
    run = store._thread.run

    async def counting(work: Callable[[], Any]) -> Any:
        nonlocal counted
        counted += 1
        return await run(work)

    store._thread.run = counting
    request = CallRequest("tag", "crm.tag", {"contact": "c1"}, Scope())

    async def body(args: Any) -> str:
        return f"tagged {args['contact']}"

    async def main() -> Any:
        await guard.arun(request, body)  # the first call bootstraps the live pack
        before = counted
        result = await guard.arun(request, body)
        return result, counted - before

    result, hand_offs = asyncio.run(main())
    assert result == "tagged c1"
    assert hand_offs == 2
    kinds = [r.kind for r in store.audit_records()]
    assert kinds.count("execution.finished") == 2, kinds
    assert store.verify_audit().ok
    guard.close()


@pytest.mark.parametrize("url", ["memory://", "sqlite"])
def test_closing_a_call_that_waits_for_an_async_approver(url: str, tmp_path: Any) -> None:
    """``coroutine.close()`` (what a closed loop or the garbage collector does to a pending
    coroutine) on a call awaiting its approver: the close completes (the approval step does
    not answer ``GeneratorExit`` with store writes, which Python refuses), nothing ran."""
    asked: list[str] = []

    async def approver(ask: Any) -> Any:
        asked.append(ask.call_key)
        await asyncio.Event().wait()  # a human who never answers

    if url == "sqlite":
        url = f"sqlite:///{tmp_path / 'c.db'}"
    guard = Guardrails(PolicyPack.from_yaml(ASKING), store=url, approver=approver)
    ran: list[str] = []

    async def body(args: Any) -> str:
        ran.append("ran")
        return "tagged"

    async def main() -> None:
        coro = guard.arun(CallRequest("tag", "crm.tag", {"contact": "c1"}, Scope()), body)
        while True:  # step it as its task would, until it waits for the approver
            waits_for = coro.send(None)
            if asked:
                break
            if waits_for is not None:
                await asyncio.wait([waits_for])
        coro.close()

    asyncio.run(main())
    assert ran == []
    guard.close()


_HELD = threading.Event()  # set while the slow check below waits
_RELEASE = threading.Event()


def _slow_check(call: CallRequest, params: Any) -> str | None:
    """A validator waiting on an API (a threading.Event here), up to 10 s."""
    _HELD.set()
    _RELEASE.wait(10)
    return None


register_validator("test_store_runs_slow_check", _slow_check)

SLOW_CHECKED = """
name: slow-checks
version: 1
defaults: {level: execute}
actions:
  crm.tag:
    risk: low
    validators:
      - test_store_runs_slow_check: {}
  crm.note: {risk: low}
"""


def test_a_slow_validator_holds_neither_the_store_thread_nor_the_loop(tmp_path: Any) -> None:
    """A custom validator that waits (on an API) runs on a worker thread: while it waits,
    another run's call on the same SQLite store goes through (its store operations are not
    queued behind the validator on the store's one thread), and the loop runs meanwhile
    (the test's own polling and timeout tick on it)."""
    _HELD.clear()
    _RELEASE.clear()
    guard = Guardrails(PolicyPack.from_yaml(SLOW_CHECKED), store=f"sqlite:///{tmp_path / 'c.db'}")

    async def body(args: Any) -> str:
        return "done"

    async def main() -> tuple[object, object]:
        slow = asyncio.create_task(
            guard.arun(CallRequest("tag", "crm.tag", {"contact": "c1"}, Scope()), body)
        )
        while not _HELD.is_set():
            await asyncio.sleep(0.005)
        try:
            other = await asyncio.wait_for(
                guard.arun(CallRequest("note", "crm.note", {"contact": "c2"}, Scope()), body),
                timeout=3,
            )
        finally:
            _RELEASE.set()
        return other, await slow

    other, slow = asyncio.run(main())
    assert other == "done"
    assert slow == "done"
    assert guard.store.verify_audit().ok
    guard.close()


_SEEN: list[object] = []
_WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def _quick_check(call: CallRequest, params: Any) -> str | None:
    """A sync validator that answers at once; notes the caller's context it runs in."""
    _SEEN.append(_WHO.get())
    return None


register_validator("test_store_runs_quick_check", _quick_check)

QUICK_CHECKED = """
name: quick-checks
version: 1
defaults: {level: execute}
actions:
  crm.tag:
    risk: low
    validators:
      - test_store_runs_quick_check: {}
"""


def test_a_validator_runs_while_the_loops_default_executor_is_full() -> None:
    """The application's sync code runs on the library's own worker threads, not on the
    loop's default executor, which LangGraph also runs sync tools on: a check does not
    wait behind them (here the default executor's one thread is held), and it runs in the
    caller's context."""
    _SEEN.clear()
    guard = Guardrails(PolicyPack.from_yaml(QUICK_CHECKED), store="memory://")
    release = threading.Event()

    async def body(args: Any) -> str:
        return "done"

    async def main() -> object:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(1))
        held = loop.run_in_executor(None, release.wait, 10)  # a long sync tool, say
        _WHO.set("ana")
        try:
            return await asyncio.wait_for(
                guard.arun(CallRequest("tag", "crm.tag", {"contact": "c1"}, Scope()), body),
                timeout=3,
            )
        finally:
            release.set()
            await held

    assert asyncio.run(main()) == "done"
    assert _SEEN == ["ana"]
    guard.close()
