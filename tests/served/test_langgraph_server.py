"""The served example end to end: a real ``langgraph dev`` and its HTTP API.

Each test uses its own threads on one server per blocking mode (see ``conftest.py``). The
tools write what they did to the server's store (the "outbox"), so "the tool ran once" is
seen from outside the library; the guardrails' own audit log is read from the SQLite store
the server writes.
"""

from __future__ import annotations

from typing import Any

import pytest

from agent_guardrails import PolicyPack
from agent_guardrails.store import open_store
from tests.served._client import (
    User,
    last_ai_text,
    result_body,
    tool_messages,
)
from tests.served._server import EXAMPLE, Server, cli

pytestmark = pytest.mark.served

ANA_ROLES = ["marketing_ops"]


def ask_to_email(user: User, thread: str, to: str, subject: str) -> dict[str, Any]:
    """Run the agent up to the approval of one ``send_email``; the pending interrupt."""
    values = user.say(thread, f"email {to} {subject}")
    pending = values.get("__interrupt__") or []
    assert len(pending) == 1, values
    assert [i["id"] for i in user.interrupts(thread)] == [pending[0]["id"]]
    interrupt: dict[str, Any] = pending[0]
    value = interrupt["value"]
    # LangChain's batched HITLRequest, the dialect Agent Chat UI renders with buttons.
    (action,) = value["action_requests"]
    (review,) = value["review_configs"]
    (details,) = value["guardrails"]
    assert (action["name"], action["args"]) == ("send_email", {"to": to, "subject": subject})
    assert review == {
        "action_name": "send_email",
        "allowed_decisions": ["approve", "edit", "reject", "respond"],
    }
    assert details["roles"] == ANA_ROLES
    assert details["reasons"] == ["approval_required:sensitive"]
    assert user.outbox(thread) == []  # nothing sent while it waits
    return interrupt


def executions_started(server: Server, thread: str) -> int:
    """``execution.started`` audit records of this thread's calls (the tool body began)."""
    store = open_store(server.store_url)
    try:
        return sum(
            1
            for r in store.audit_records()
            if r.kind == "execution.started" and (r.call_key or "").startswith(f"{thread}|")
        )
    finally:
        store.close()


def test_approve_runs_the_tool_once(server: Server) -> None:
    ana = User(server, "ana")
    thread = ana.new_thread()
    ask_to_email(ana, thread, "c1", "November picks")

    # As Agent Chat UI answers: the decisions, not keyed by interrupt id (one is pending).
    values = ana.resume(thread, {"decisions": [{"type": "approve"}]})

    (message,) = tool_messages(values)
    assert (message["status"], message["content"]) == ("success", "sent to c1: November picks")
    assert [(o["tool"], o["args"]) for o in ana.outbox(thread)] == [
        ("send_email", {"to": "c1", "subject": "November picks"})
    ]
    assert executions_started(server, thread) == 1
    assert ana.interrupts(thread) == []


def test_edit_runs_with_the_edited_args(server: Server) -> None:
    ana = User(server, "ana")
    thread = ana.new_thread()
    pending = ask_to_email(ana, thread, "c1", "Hello")
    edit = {
        "type": "edit",
        "edited_action": {"name": "send_email", "args": {"to": "c2", "subject": "Hello again"}},
    }

    values = ana.resume(thread, {pending["id"]: {"decisions": [edit]}})

    (message,) = tool_messages(values)
    assert message["content"] == "sent to c2: Hello again"
    assert [o["args"] for o in ana.outbox(thread)] == [{"to": "c2", "subject": "Hello again"}]


def test_reject_does_not_run_and_the_model_reads_why(server: Server) -> None:
    ana = User(server, "ana")
    thread = ana.new_thread()
    pending = ask_to_email(ana, thread, "c1", "Hello")
    reason = "not this week, the list is being cleaned"

    values = ana.resume(
        thread, {pending["id"]: {"decisions": [{"type": "reject", "message": reason}]}}
    )

    (message,) = tool_messages(values)
    assert message["status"] == "error"
    assert reason in str(message["content"])
    assert reason in last_ai_text(values)  # the scripted model repeats what the tool said
    assert ana.outbox(thread) == []
    assert executions_started(server, thread) == 0


def test_mark_as_resolved_in_agent_chat_ui_closes_the_question(server: Server) -> None:
    """Agent Chat UI's "Mark as resolved" sends ``{"command": {"goto": "__end__"}}``: the
    question closes as a rejection, nothing runs, and the thread is no longer interrupted."""
    ana = User(server, "ana")
    thread = ana.new_thread()
    ask_to_email(ana, thread, "c1", "Hello")

    values = ana._wait(thread, command={"goto": "__end__"})

    (message,) = tool_messages(values)
    assert message["status"] == "error"
    assert "Mark as resolved" in str(message["content"])
    assert ana.outbox(thread) == []
    assert executions_started(server, thread) == 0
    assert ana.interrupts(thread) == []


def test_only_the_authenticated_user_with_the_role_can_approve(server: Server) -> None:
    bob, ana = User(server, "bob"), User(server, "ana")
    thread = bob.new_thread()
    pending = ask_to_email(bob, thread, "c3", "Hi")

    # Bob has role sales, and names Ana as the approver in his request (in its config, then
    # in its context): neither counts, the approver is the user the server authenticated.
    forged = {"approver": {"id": "ana", "roles": ANA_ROLES}}
    for where in ("config", "context"):
        if where == "context":
            pending = ask_to_email(bob, thread, "c3", "Hi")
        request: dict[str, Any] = (
            {"config": {"configurable": forged}} if where == "config" else {"context": forged}
        )
        values = bob.resume(thread, {pending["id"]: {"type": "approve"}}, **request)

        message = tool_messages(values)[-1]
        body = result_body(message)
        assert (message["status"], body["reasons"]) == ("error", ["approver_not_authorized"])
        assert "bob" in body["message"]
        assert bob.outbox(thread) == []

    # The same request from Ana (role marketing_ops) runs the call.
    pending = ask_to_email(ana, thread, "c3", "Hi")
    values = ana.resume(thread, {pending["id"]: {"type": "approve"}})
    assert tool_messages(values)[-1]["content"] == "sent to c3: Hi"
    assert [o["args"] for o in ana.outbox(thread)] == [{"to": "c3", "subject": "Hi"}]


def test_kill_switch_from_the_cli_halts_the_next_run(server: Server) -> None:
    ana = User(server, "ana")
    thread = ana.new_thread()
    engaged = cli("kill", "global", "--by", "ops", "--reason", "test", "--store", server.store_url)
    assert engaged.returncode == 0, engaged.stderr
    try:
        values = ana.say(thread, "tag c1 vip")

        (message,) = tool_messages(values)
        assert result_body(message)["reasons"] == ["kill_switch:global"]
        assert last_ai_text(values) == kill_switch_message()
        assert ana.outbox(thread) == []
    finally:
        released = cli(
            "unkill", "global", "--by", "ops", "--reason", "test over", "--store", server.store_url
        )
        assert released.returncode == 0, released.stderr

    verified = cli("audit", "verify", "--store", server.store_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def kill_switch_message() -> str:
    return PolicyPack.from_yaml(EXAMPLE / "pack.yaml").kill_switch.message
