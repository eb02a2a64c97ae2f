"""What a guarded tool hands back when it does not run the tool body.

Denials, halts, drafts and approval outcomes come back to the agent as a
:class:`GuardrailResult` dictionary it can read (and a LangChain tool serialises to JSON), or
as a typed :class:`~agent_guardrails.errors.GuardrailError` when the caller asked for
exceptions.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict, TypeGuard

from langchain_core.messages import ToolMessage

from agent_guardrails.engine.decision import Decision, DecisionKind
from agent_guardrails.errors import (
    ActionDenied,
    ApprovalRejected,
    ApprovalRequired,
    BudgetExceeded,
    ExposureExceeded,
    GuardrailError,
    KillSwitchEngaged,
    ValidatorFailed,
)

__all__ = [
    "GuardrailResult",
    "error_for",
    "is_result",
    "refusal_message",
    "result_for",
    "tool_message",
]

Status = Literal["simulated", "denied", "halted", "pending_approval", "rejected", "responded"]


class GuardrailResult(TypedDict):
    """A guarded call's answer when the tool body did not run."""

    status: Status
    """``simulated`` (a draft at Assist), ``denied``, ``halted`` (kill-switch),
    ``pending_approval`` (no approver could be asked), ``rejected`` / ``responded`` (a human
    said no, or answered instead of running the tool)."""
    action: str
    decision: str
    reasons: list[str]
    message: str
    level: int
    pack_version: str
    draft: NotRequired[Any]
    """At Assist: the tool's ``simulate`` result, or a description of the intended action."""


_STATUS: dict[DecisionKind, Status] = {
    DecisionKind.SIMULATE: "simulated",
    DecisionKind.DENY: "denied",
    DecisionKind.HALT: "halted",
    DecisionKind.REQUIRE_APPROVAL: "pending_approval",
}


def result_for(decision: Decision) -> GuardrailResult:
    """What the agent gets for a call whose body did not run. A human's ``reject`` or
    ``respond`` sets the status, and their message (``decision.extra["response"]``) is the
    result's message, so the model reads the reviewer's words."""
    reasons = decision.reasons
    status: Status = _STATUS.get(decision.kind, "denied")
    message = decision.message
    if "rejected" in reasons or "responded" in reasons:
        status = "rejected" if "rejected" in reasons else "responded"
        message = str(decision.extra.get("response") or message)
    return {
        "status": status,
        "action": decision.action,
        "decision": decision.kind.value,
        "reasons": list(reasons),
        "message": message,
        "level": int(decision.level),
        "pack_version": decision.pack_version,
    }


def error_for(decision: Decision) -> GuardrailError:
    """The typed exception for a decision that stops a call."""
    if decision.kind is DecisionKind.HALT:
        return KillSwitchEngaged(decision)
    if "rejected" in decision.reasons:
        return ApprovalRejected(decision)
    if decision.kind is DecisionKind.REQUIRE_APPROVAL:
        return ApprovalRequired(decision)
    extra = decision.extra
    if "cap" in extra:
        if extra["cap_kind"] == "budget":
            return BudgetExceeded(
                decision,
                budget=str(extra["cap"]),
                limit=float(extra["limit"]),
                spent=float(extra["spent"]),
                requested=float(extra["requested"]),
            )
        return ExposureExceeded(
            decision,
            entity=str(extra["cap"]),
            limit=float(extra["limit"]),
            used=float(extra["spent"]),
        )
    failed = [v for v in decision.validators if not v.passed]
    if failed:
        return ValidatorFailed(decision, validator=failed[0].name, detail=failed[0].message)
    return ActionDenied(decision)


def refusal_message(result: GuardrailResult, tool_call_id: str, name: str) -> ToolMessage:
    """The ``ToolMessage`` a model gets for a call whose body did not run: the JSON result
    (status ``error`` unless it is a draft), or a human's ``respond`` answer as is."""
    responded = result["status"] == "responded"
    return ToolMessage(
        content=result["message"] if responded else json.dumps(result, default=str),
        tool_call_id=tool_call_id,
        name=name,
        status="success" if result["status"] in ("simulated", "responded") else "error",
    )


def is_result(value: object) -> TypeGuard[GuardrailResult]:
    """True for a :class:`GuardrailResult` (a call whose body did not run).

    >>> is_result({"status": "denied", "decision": "deny"}), is_result("sent")
    (True, False)
    """
    return isinstance(value, dict) and "status" in value and "decision" in value


def tool_message(result: object, tool_call_id: str, name: str) -> ToolMessage:
    """The ``ToolMessage`` for what a guarded call returned when its tool gave no message
    itself: a result replayed from the store, a refusal, or a plain value (as JSON)."""
    if isinstance(result, dict) and "tool_message" in result:  # replayed from the store
        return ToolMessage(
            content=result["tool_message"],
            tool_call_id=tool_call_id,
            name=name,
            status=result.get("status", "success"),
        )
    if is_result(result):
        return refusal_message(result, tool_call_id, name)
    return ToolMessage(
        content=json.dumps(result, default=str), tool_call_id=tool_call_id, name=name
    )
