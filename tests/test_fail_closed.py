"""Fail closed: with the store unreachable, capped and sensitive actions are denied with a
reason naming the store error; fail_open actions run and say so; nothing raises to the agent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from agent_guardrails import CallRequest, Guardrails, PolicyPack, Scope, StoreUnavailable, guarded
from agent_guardrails.pipeline.effects import StoreOp, drive
from agent_guardrails.pipeline.outbox import Outbox
from agent_guardrails.store import MemoryStore
from agent_guardrails.store.base import AuditEvent

PACK = """
name: fc
version: 1
defaults: {level: execute}
actions:
  crm.lookup: {risk: low, kind: read, fail_open: true}
  crm.tag: {risk: low, cost: 1}
  email.send: {sensitive: true}
  risky.read: {risk: low, kind: read, fail_open: true, cost: 1}
budgets:
  - {limit: 10, window: day}
"""


class FlakyStore(MemoryStore):
    """A memory store that can be switched to fail every operation like a dead server."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name.startswith("_") or name in ("down", "url") or not callable(attr):
            return attr
        if super().__getattribute__("down"):

            def unavailable(*args: Any, **kwargs: Any) -> Any:
                raise StoreUnavailable("postgresql://db.internal/guard: connection refused")

            return unavailable
        return attr


@pytest.fixture
def store() -> FlakyStore:
    return FlakyStore()


@pytest.fixture
def guard(store: FlakyStore) -> Guardrails:
    return Guardrails(PolicyPack.from_yaml(PACK), store=store)


def body(calls: list[str]) -> Callable[[Mapping[str, Any]], str]:
    def run(args: Mapping[str, Any]) -> str:
        calls.append("ran")
        return "ok"

    return run


@pytest.mark.parametrize("action", ["crm.tag", "email.send", "risky.read"])
def test_capped_and_sensitive_actions_are_denied_naming_the_store_error(
    guard: Guardrails, store: FlakyStore, action: str
) -> None:
    store.down = True
    calls: list[str] = []
    result = guard.run(CallRequest("t", action, {}, Scope()), body(calls))
    assert calls == []
    assert isinstance(result, dict)
    assert result["status"] == "denied"
    assert result["reasons"] == ["store_unavailable"]
    assert "connection refused" in result["message"]


def test_fail_open_actions_run_and_say_so(guard: Guardrails, store: FlakyStore) -> None:
    store.down = True
    calls: list[str] = []
    decision = guard.check(CallRequest("t", "crm.lookup", {}, Scope()))
    assert decision.reasons == ("store_unavailable", "fail_open")
    assert "fail_open" in decision.message
    assert guard.run(CallRequest("t", "crm.lookup", {}, Scope()), body(calls)) == "ok"
    assert calls == ["ran"]


def test_no_traceback_reaches_a_tool_and_records_are_kept_for_later(
    guard: Guardrails, store: FlakyStore
) -> None:
    @guarded(action="crm.tag", guardrails=guard)
    def tag(contact: str) -> str:
        return f"tagged {contact}"

    assert tag("c1") == "tagged c1"
    store.down = True
    refused = tag("c2")
    assert isinstance(refused, dict)
    assert refused["reasons"] == ["store_unavailable"]
    store.down = False
    assert tag("c3") == "tagged c3"
    kinds = [r.kind for r in store.audit_records()]
    assert kinds.count("execution.finished") == 2
    assert store.verify_audit().ok


def test_a_store_that_fails_after_the_body_ran_keeps_the_record_for_later(
    guard: Guardrails, store: FlakyStore
) -> None:
    calls: list[str] = []

    def flaky_body(args: Mapping[str, Any]) -> str:
        calls.append("ran")
        store.down = True  # the store dies while the tool runs
        return "ok"

    assert guard.run(CallRequest("t", "crm.tag", {}, Scope()), flaky_body) == "ok"
    store.down = False
    guard.run(CallRequest("t", "crm.tag", {}, Scope()), body(calls))  # flushes the backlog
    kinds = [r.kind for r in store.audit_records()]
    assert kinds.count("execution.finished") == 2
    assert store.in_doubt() == []
    assert sum(store.counters("budget:").values()) == 2


def test_constructing_guardrails_against_a_dead_store_does_not_raise() -> None:
    dead = FlakyStore()
    dead.down = True
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=dead)
    result = guard.run(CallRequest("t", "crm.tag", {}, Scope()), body([]))
    assert isinstance(result, dict)
    assert result["reasons"] == ["store_unavailable"]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/test?connect_timeout=2",
        pytest.param("sqlite:////nonexistent-dir-for-agent-guardrails/x.db", id="sqlite"),
    ],
    ids=["postgres-unreachable", "sqlite-missing-dir"],
)
def test_an_unreachable_store_at_construction_still_lets_fail_open_calls_run(url: str) -> None:
    """Building the guard never fails on an unreachable PostgreSQL (it connects on first
    use): fail_open reads run and say so, the rest is denied naming the store error."""
    if url.startswith("sqlite"):
        from agent_guardrails.errors import ConfigurationError

        with pytest.raises(ConfigurationError, match="does not exist"):  # a config error
            Guardrails(PolicyPack.from_yaml(PACK), store=url)
        return
    pytest.importorskip("psycopg_pool")
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=url)
    runs: list[str] = []
    assert guard.run(CallRequest("lookup", "crm.lookup", {}), body(runs)) == "ok"
    denied = guard.run(CallRequest("tag", "crm.tag", {}), body(runs))
    assert runs == ["ran"]
    assert isinstance(denied, dict)
    assert denied["reasons"] == ["store_unavailable"]
    assert "127.0.0.1" in denied["message"]
    assert guard.outbox.pending > 0  # the records wait for the store
    guard.close()  # its pool's threads end here, not in a later test's event loop


def test_records_decided_while_the_store_is_down_are_written_in_order_when_it_is_back(
    guard: Guardrails, store: FlakyStore
) -> None:
    store.down = True
    for i in range(3):
        guard.run(CallRequest(f"lookup{i}", "crm.lookup", {}), body([]), call_key=f"t|n|k{i}")
    assert guard.outbox.pending == 9
    store.down = False
    guard.run(CallRequest("lookup3", "crm.lookup", {}), body([]), call_key="t|n|k3")
    assert guard.outbox.pending == 0
    written = [(r.call_key, r.kind) for r in store.audit_records() if r.call_key]
    expected = [
        (f"t|n|k{i}", kind)
        for i in range(4)
        for kind in ("decision", "execution.started", "execution.finished")
    ]
    assert written == expected
    assert store.verify_audit().ok


def test_a_guard_dropped_with_records_waiting_writes_them(store: FlakyStore) -> None:
    import gc

    guard = Guardrails(PolicyPack.from_yaml(PACK), store=store)
    store.down = True
    guard.run(CallRequest("lookup", "crm.lookup", {}), body([]), call_key="t|n|gone")
    store.down = False
    del guard
    gc.collect()
    kinds = [r.kind for r in store.audit_records() if r.call_key == "t|n|gone"]
    assert kinds == ["decision", "execution.started", "execution.finished"]


def test_the_outbox_keeps_order_and_never_makes_a_keeper_wait() -> None:
    """Records kept from many threads while a flush writes (and while the store fails half
    way) are all written, each once, in the order each thread kept them; a flush begun
    while another writes returns at once, leaving the writing to that one."""
    written: list[tuple[int, int]] = []
    failures = iter([False] * 50 + [True] + [False] * 10_000)

    class Slow:
        def append_audit(self, item: tuple[int, int]) -> None:
            if next(failures):
                raise StoreUnavailable("test://: down for a moment")
            time.sleep(0.0001)
            written.append(item)

    box = Outbox()
    for i in range(20):
        box.keep(StoreOp("append_audit", (-1, i)))
    start = threading.Barrier(5)

    def keeper(n: int) -> None:
        start.wait()
        for i in range(200):
            box.keep(StoreOp("append_audit", (n, i)))

    threads = [threading.Thread(target=keeper, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    start.wait()
    flow = box.flush()
    first = next(flow)  # the flush is under way, holding its place
    assert drive(box.flush(), Slow()) == box.pending  # another flush: returns at once
    assert written == []
    left = drive(_resumed(flow, first), Slow())  # stops at the failure, keeps the rest
    assert left == box.pending > 0
    for t in threads:
        t.join()
    while box.pending:
        drive(box.flush(), Slow())
    assert len(written) == len(set(written)) == 20 + 4 * 200
    for n in range(-1, 4):
        mine = [i for who, i in written if who == n]
        assert mine == sorted(mine), f"thread {n}'s records out of order"


def _resumed(flow: Any, first: Any) -> Any:
    """``flow`` from its first effect on, as a flow a driver can take."""
    effect = first
    while True:
        try:
            result = yield effect
        except StoreUnavailable as exc:
            try:
                effect = flow.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            effect = flow.send(result)
        except StopIteration as stop:
            return stop.value


def test_closing_while_another_thread_flushes_waits_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``close()`` while another thread writes the outbox waits for that flush (a few
    seconds at most) instead of warning that records it is writing are lost."""
    store = FlakyStore()
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=store)
    writing, go_on = threading.Event(), threading.Event()
    original = store.append_audit

    def slow_append(event: Any) -> Any:
        writing.set()
        go_on.wait(5)
        return original(event)

    for n in range(3):
        guard.outbox.keep(StoreOp("append_audit", AuditEvent("decision", {"n": n}, f"~{n}", None)))
    store.append_audit = slow_append  # type: ignore[method-assign]
    flusher = threading.Thread(target=guard.flush)
    flusher.start()
    assert writing.wait(5)
    threading.Timer(0.2, go_on.set).start()
    with caplog.at_level("WARNING", logger="agent_guardrails"):
        guard.close()
    flusher.join()
    assert "lost" not in caplog.text
    assert guard.outbox.pending == 0
    written = [r.data.get("n") for r in store.audit_records() if r.kind == "decision"]
    assert written == [0, 1, 2]


def test_a_store_that_reads_but_cannot_write_lets_fail_open_actions_run(tmp_path: Any) -> None:
    # Another process holds SQLite's write lock: the call's read works, its reservation
    # does not. A fail_open action runs (its records written when the lock is gone), as
    # when the store cannot be read at all; the others are denied.
    import sqlite3

    url = f"sqlite:///{tmp_path / 'locked.db'}?timeout=0.2"
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=url)
    assert guard.run(CallRequest("lookup", "crm.lookup", {"id": "0"}), lambda a: "ok") == "ok"
    blocker = sqlite3.connect(str(tmp_path / "locked.db"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        looked = guard.run(CallRequest("lookup", "crm.lookup", {"id": "1"}), lambda a: "found")
        tagged = guard.run(CallRequest("tag", "crm.tag", {"id": "1"}), lambda a: "tagged")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert looked == "found"
    assert isinstance(tagged, dict)
    assert tagged["reasons"] == ["store_unavailable"]
    guard.flush()
    kinds = [r.kind for r in guard.store.audit_records() if r.data.get("action") == "crm.lookup"]
    assert kinds.count("execution.finished") == 2  # the one run while locked is recorded
    guard.close()
