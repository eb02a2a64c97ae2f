"""A tool body that does not end normally: a crash-like exit leaves the call in doubt (a
human is asked before it runs again), a tool's own interrupt is not an outcome, and a
ToolNode that hands a tool's error back as a message records a failure."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from agent_guardrails import ApprovalAnswer, CallRequest, Guardrails, PolicyPack, ScriptedApprover
from tests.conftest import pack_text

PACK = pack_text("""
defaults: {level: execute}
actions:
  crm.tag: {risk: low, cost: 1}
budgets:
  - {limit: 100, window: day}
""")
KEY = "thread|ns|call-1"


@pytest.mark.parametrize(
    "escape", [KeyboardInterrupt, SystemExit, asyncio.CancelledError], ids=lambda e: e.__name__
)
def test_a_body_that_escapes_with_a_base_exception_is_in_doubt_not_failed(
    escape: type[BaseException],
) -> None:
    approver = ScriptedApprover({"crm.tag": ApprovalAnswer("approve", by="ana")})
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://", approver=approver)
    runs: list[str] = []

    def body(args: Mapping[str, Any]) -> str:
        runs.append("ran")
        if len(runs) == 1:
            raise escape()  # the side effect may have happened
        return "ok"

    request = CallRequest("tag", "crm.tag", {"id": "c1"})
    with pytest.raises(escape):
        guard.run(request, body, call_key=KEY)
    record = guard.store.call_record(KEY)
    assert record is not None
    assert record.state == "started"  # in doubt: nothing says it did not happen
    assert approver.seen == []
    assert guard.run(request, body, call_key=KEY) == "ok"  # only after a human said so
    assert [r.reasons for r in approver.seen] == [("in_doubt",)]
    assert runs == ["ran", "ran"]


def test_a_tool_error_handed_back_as_a_message_is_recorded_as_a_failure() -> None:
    guard = Guardrails(PolicyPack.from_yaml(PACK), store="memory://")
    failed = ToolMessage(content="Error: CRM down", tool_call_id="x", status="error")
    assert guard.run(CallRequest("tag", "crm.tag", {}), lambda a: failed, call_key=KEY) is failed
    kinds = [r.kind for r in guard.store.audit_records() if r.call_key == KEY]
    assert kinds[-1] == "execution.failed"
    assert sum(guard.store.counters("budget:").values()) == 0  # released, not charged
