"""Approvals people hear about: notifiers off the call's path, a signed webhook with
retries, the pending-approval inbox and the sweep that records expired questions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import threading
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
