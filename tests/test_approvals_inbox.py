"""Approvals people hear about: notifiers off the call's path, a signed webhook with
retries, the pending-approval inbox and the sweep that records expired questions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from agent_guardrails import ApprovalAnswer, CallRequest, Guardrails, PolicyPack, ScriptedApprover
from agent_guardrails.middleware import GuardrailsMiddleware
from agent_guardrails.ops.approvals import pending, sweep
from agent_guardrails.ops.cli import main
from agent_guardrails.pipeline.notify import ApprovalEvent, Notifications, Webhook, signature
from agent_guardrails.store import open_store

PACK = """
name: inbox
version: "1"
defaults: {level: execute}
actions:
  email.send: {sensitive: true, cost: 0.5, approval: {roles: [marketing_ops], timeout: 2h}}
"""
ANA = ApprovalAnswer("approve", by="ana", roles=("marketing_ops",))


def send(guard: Guardrails) -> Any:
    return guard.run(CallRequest("send_email", "email.send", {"to": "c1"}), lambda a: "sent")


def test_notifiers_hear_raised_and_answered_off_the_calls_thread() -> None:
    seen: list[tuple[ApprovalEvent, int]] = []
    guard = Guardrails(
        PolicyPack.from_yaml(PACK),
        store="memory://",
        approver=ScriptedApprover({"email.send": ANA}),
        notifiers=[lambda e: seen.append((e, threading.get_ident()))],
    )
    assert send(guard) == "sent"
    guard.close()
    kinds = [(e.kind, e.answer, e.by) for e, _ in seen]
    assert kinds == [("raised", None, None), ("answered", "approve", "ana")]
    raised = seen[0][0]
    assert (raised.action, raised.roles, raised.cost, raised.level) == (
        "email.send",
        ("marketing_ops",),
        0.5,
        1,
    )
    assert raised.expires_at - raised.asked_at == pytest.approx(7200)
    assert {tid for _, tid in seen} != {threading.get_ident()}


def test_a_slow_receiver_never_delays_a_call() -> None:
    release = threading.Event()
    got: list[str] = []

    def slow(event: ApprovalEvent) -> None:
        release.wait(10)
        got.append(event.kind)

    guard = Guardrails(
        PolicyPack.from_yaml(PACK),
        store="memory://",
        approver=ScriptedApprover({"email.send": ANA}),
        notifiers=[slow],
    )
    assert send(guard) == "sent"  # returns while the receiver is still blocked
    assert got == []
    release.set()
    guard.close()
    assert got == ["raised", "answered"]


def test_a_failing_notifier_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(event: ApprovalEvent) -> None:
        raise RuntimeError("chat is down")

    hub = Notifications([broken, lambda e: seen.append(e.kind)])
    hub.send(ApprovalEvent("raised", "k", "t", "a", (), 1, 0.0, "USD", 0.0, 1.0))
    hub.close()
    assert seen == ["raised"]
    assert hub.failed == 1
    assert "chat is down" in caplog.text


class _Receiver(BaseHTTPRequestHandler):
    script: ClassVar[list[int]] = []
    bodies: ClassVar[list[tuple[bytes, dict[str, str]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((body, dict(self.headers)))
        code = type(self).script.pop(0) if type(self).script else 200
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Handler", (_Receiver,), {"script": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


EVENT = ApprovalEvent(
    "raised", "t1|ns|c1", "send_email", "email.send", ("ops",), 1, 0.5, "USD", 10.0, 7210.0
)


def test_the_webhook_signs_its_body_and_retries_server_errors(
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    handler.script[:] = [500, 503, 200]
    Webhook(url, "s3cret", retries=3, backoff=0.01)(EVENT)
    assert len(handler.bodies) == 3
    body, headers = handler.bodies[-1]
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Agent-Guardrails-Signature"] == expected == signature(b"s3cret", body)
    data = json.loads(body)
    assert (data["kind"], data["thread_id"], data["roles"]) == ("raised", "t1", ["ops"])


def test_the_webhook_gives_up_on_a_refusal_and_after_its_retries(
    receiver: tuple[str, type[_Receiver]],
) -> None:
    url, handler = receiver
    handler.script[:] = [400]
    with pytest.raises(Exception, match="400"):
        Webhook(url, "s", retries=3, backoff=0.01)(EVENT)
    assert len(handler.bodies) == 1  # a 4xx is not retried
    handler.script[:] = [500, 500, 500]
    with pytest.raises(Exception, match="500"):
        Webhook(url, "s", retries=2, backoff=0.01)(EVENT)
    assert len(handler.bodies) == 4
    with pytest.raises(ValueError, match="secret"):
        Webhook(url, "")
    with pytest.raises(ValueError, match="http"):
        Webhook("ftp://x", "s")


def test_the_webhook_times_out_an_unreachable_receiver() -> None:
    with pytest.raises(OSError, match=r"refused|timed out|Connection"):
        Webhook("http://127.0.0.1:9/none", "s", retries=1, backoff=0.0, timeout=0.5)(EVENT)


class _Model(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> _Model:
        return self


def _agent(guard: Guardrails) -> Any:
    @tool
    def send_email(to: str) -> str:
        """Send an email."""
        return "sent"

    call = {"name": "send_email", "id": "c1", "args": {"to": "c-9"}}
    model = _Model(messages=iter([AIMessage(content="", tool_calls=[call]), AIMessage("ok")]))
    return create_agent(
        model,
        [send_email],
        middleware=[GuardrailsMiddleware(guard, actions={"send_email": "email.send"})],
        checkpointer=InMemorySaver(),
    )


def test_the_inbox_lists_what_waits_and_the_sweep_expires_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    seen: list[ApprovalEvent] = []
    guard = Guardrails(PolicyPack.from_yaml(PACK), store=url, notifiers=[seen.append])
    result = _agent(guard).invoke(
        {"messages": [("user", "go")]}, {"configurable": {"thread_id": "th-1"}}, version="v2"
    )
    assert result.interrupts
    guard.close()
    assert [e.kind for e in seen] == ["raised"]
    store = open_store(url)
    (p,) = pending(store)
    assert (p.tool, p.action, p.roles, p.level, p.cost) == (
        "send_email",
        "email.send",
        ("marketing_ops",),
        1,
        0.5,
    )
    assert p.thread_id == "th-1"
    assert p.state == "waiting"
    out = io.StringIO()
    assert main(["approvals", "--store", url], out) == 0
    assert "send_email" in out.getvalue()
    assert "th-1" in out.getvalue()
    assert "marketing_ops" in out.getvalue()
    notices: list[ApprovalEvent] = []
    expired, expiring = sweep(store, [notices.append], now=p.asked_at + 3600, warn_before=4000)
    assert (expired, [x.call_key for x in expiring]) == ([], [p.call_key])
    expired, expiring = sweep(store, [notices.append], now=p.asked_at + 3601, warn_before=4000)
    assert (expired, expiring) == ([], [])  # warned once
    expired, _ = sweep(store, [notices.append], now=p.asked_at + 7201)
    assert [x.call_key for x in expired] == [p.call_key]
    assert [n.kind for n in notices] == ["expiring", "expired"]
    assert pending(store, now=p.asked_at + 7300) == []
    kinds = [r.kind for r in store.audit_records()]
    assert kinds.count("approval.expired") == 1
    assert kinds.count("approval.expiring") == 1
    out = io.StringIO()
    assert main(["approvals", "--store", url, "--json"], out) == 0
    assert json.loads(out.getvalue()) == []


def test_notifications_from_an_async_run_do_not_block_the_loop(tmp_path: Path) -> None:
    seen: list[str] = []
    guard = Guardrails(
        PolicyPack.from_yaml(PACK),
        store=f"sqlite:///{tmp_path / 'a.db'}",
        notifiers=[lambda e: seen.append(e.kind)],
    )

    async def go() -> Any:
        result = await _agent(guard).ainvoke(
            {"messages": [("user", "go")]}, {"configurable": {"thread_id": "a1"}}, version="v2"
        )
        await guard.aclose()
        return result

    result = asyncio.run(go())  # under blockbuster (tests/conftest.py)
    assert result.interrupts
    assert seen == ["raised"]


BUDGET_PACK = PACK + "budgets:\n  - {name: daily, limit: 10, window: day}\n"


def test_the_sweep_releases_what_an_expired_question_held(every_store_url: str) -> None:
    # Nobody answered (or a chat client dropped the question): past its expiry an answer
    # is refused anyway, so the budget it held is released, once, and recorded.
    store = open_store(every_store_url)
    guard = Guardrails(PolicyPack.from_yaml(BUDGET_PACK), store=store)
    result = _agent(guard).invoke(
        {"messages": [("user", "go")]}, {"configurable": {"thread_id": "th-2"}}, version="v2"
    )
    assert result.interrupts
    guard.flush()
    (p,) = pending(store)
    assert sum(store.counters("budget:").values()) == 0.5
    assert sweep(store, now=p.asked_at + 3600, warn_before=0.0) == ([], [])
    assert sum(store.counters("budget:").values()) == 0.5  # not expired yet: still held
    expired, _ = sweep(store, now=p.asked_at + 7201)
    assert [x.call_key for x in expired] == [p.call_key]
    assert sum(store.counters("budget:").values()) == 0.0
    record = store.call_record(p.call_key)
    assert record is not None
    assert record.state == "released"
    released = [r for r in store.audit_records() if r.kind == "reservation.released"]
    assert [(r.call_key, r.data["reason"]) for r in released] == [(p.call_key, "approval_expired")]
    assert sweep(store, now=p.asked_at + 9000) == ([], [])
    assert len([r for r in store.audit_records() if r.kind == "reservation.released"]) == 1
    guard.close()
    store.close()


# ---------------------------------------------------------------- the inbox reads open calls

TWO_TIMEOUTS = (
    PACK
    + "  page.publish: {sensitive: true, cost: 0.25, approval: {roles: [brand], timeout: 1h}}\n"
)


class _Paused(Exception):
    """What a graph's interrupt does to the call: the question is put, the run stops."""


def _pause(request: Any) -> Any:
    raise _Paused


def _answer(answer: ApprovalAnswer) -> Any:
    return lambda request: answer


class _NoLogReads:
    """The store, minus reading the audit log page by page: the inbox must not need it."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.finds = 0

    def audit_records(self, **kwargs: Any) -> Any:
        raise AssertionError("the inbox read the whole audit log")

    def find_audit(self, dedupe: str) -> Any:
        self.finds += 1
        return self._store.find_audit(dedupe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _inbox(store: Any, now: float) -> list[tuple[str, str, bool, str]]:
    """The inbox read through the open calls, checked against a fold of the whole log."""
    from agent_guardrails.ops.approvals import _pending
    from agent_guardrails.store.base import read_audit

    indexed = pending(_NoLogReads(store), now=now)
    assert indexed == _pending(read_audit(store), now)
    return [(p.call_key, p.action, p.warned, p.state) for p in indexed]


def test_the_inbox_reads_the_open_calls_not_the_log(every_store_url: str) -> None:
    # Every way a question ends, on every store: the inbox found through the calls that
    # hold or run (an index) lists exactly what a fold of the whole log lists.
    store = open_store(every_store_url)
    guard = Guardrails(PolicyPack.from_yaml(TWO_TIMEOUTS), store=store)
    email = CallRequest("send_email", "email.send", {"to": "c1"})
    page = CallRequest("publish_page", "page.publish", {"title": "t"})
    ran: list[str] = []

    def body(args: Any) -> str:
        ran.append(str(args))
        return "done"

    def put(request: CallRequest, key: str) -> None:
        with pytest.raises(_Paused):
            guard.run(request, body, call_key=key, ask=_pause)

    for key in ("k-wait", "k-approve", "k-reject", "k-edit", "k-respond", "k-wrong-role"):
        put(email, key)
    put(page, "k-expire")
    # A call that started and never ended (its worker died): its re-run asks a human.
    store.reserve("k-doubt", ())
    assert store.start("k-doubt")
    put(email, "k-doubt")
    guard.flush()
    asked = {p.call_key: p for p in pending(store)}
    assert set(asked) == {
        "k-wait", "k-approve", "k-reject", "k-edit", "k-respond", "k-wrong-role", "k-expire",
        "k-doubt",
    }  # fmt: skip
    t0 = asked["k-wait"].asked_at
    assert [k for k, *_ in _inbox(store, t0)] == list(asked)

    answers = {
        "k-approve": ApprovalAnswer("approve", by="ana", roles=("marketing_ops",)),
        "k-reject": ApprovalAnswer("reject", by="ana", roles=("marketing_ops",), message="no"),
        "k-edit": ApprovalAnswer(
            "edit", by="ana", roles=("marketing_ops",), edited_args={"to": "c2"}
        ),
        "k-respond": ApprovalAnswer("respond", by="ana", roles=("marketing_ops",), message="x"),
        "k-wrong-role": ApprovalAnswer("approve", by="bob", roles=("sales",)),
        "k-doubt": ApprovalAnswer("approve", by="ana", roles=("marketing_ops",)),
    }
    for key, answer in answers.items():
        guard.run(email, body, call_key=key, ask=_answer(answer))
    # Not asked at all: no approver and no asker (recorded as unavailable).
    guard.run(email, body, call_key="k-unavailable")
    guard.flush()
    assert ran == ["{'to': 'c1'}", "{'to': 'c2'}", "{'to': 'c1'}"]  # approved, edited, re-run
    assert _inbox(store, t0) == [
        ("k-wait", "email.send", False, "waiting"),
        ("k-expire", "page.publish", False, "waiting"),
    ]
    # An hour on: the page's question expires, the email's is warned about once.
    expired, expiring = sweep(store, now=t0 + 3601, warn_before=7000)
    assert ([p.call_key for p in expired], [p.call_key for p in expiring]) == (
        ["k-expire"],
        ["k-wait"],
    )
    assert _inbox(store, t0 + 3601) == [("k-wait", "email.send", True, "waiting")]
    assert _inbox(store, t0 + 7201) == [("k-wait", "email.send", True, "expired")]
    guard.close()
    store.close()


def test_an_approver_that_fails_denies_and_lets_go(tmp_path: Path) -> None:
    # The application's approver (a chat service) raised: no human was asked and none will
    # answer, so the call is denied, lets go of its budget and leaves nothing waiting.
    store = open_store(f"sqlite:///{tmp_path / 'in.db'}")

    def approver(request: Any) -> ApprovalAnswer:
        raise ConnectionError("approval service down")

    guard = Guardrails(PolicyPack.from_yaml(BUDGET_PACK), store=store, approver=approver)
    result = send(guard)
    assert (result["status"], result["reasons"]) == ("denied", ["approver_error"])
    assert "ConnectionError: approval service down" in result["message"]
    guard.flush()
    assert sum(store.counters("budget:").values()) == 0.0
    assert _inbox(store, time.time()) == []
    kinds = [r.kind for r in store.audit_records()]
    assert kinds[-2:] == ["approval.requested", "approval.unavailable"]
    guard.close()
    store.close()
