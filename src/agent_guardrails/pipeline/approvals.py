"""Approval requests and answers, in the dialect of LangChain's human-in-the-loop middleware.

An :class:`ApprovalRequest` describes one call waiting for a human; an :class:`ApprovalAnswer`
is what the human decided: ``approve``, ``edit`` (with new arguments), ``reject`` (with a
message for the agent) or ``respond`` (answer the agent instead of running the tool).

Outside a LangGraph run, a :class:`Guardrails` object asks its ``approver`` callable; a
scripted approver is handy in demos and tests:

>>> ana = ApprovalAnswer("approve", by="ana", roles=("marketing_ops",))
>>> approver = ScriptedApprover({"email.send": ana})
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

__all__ = [
    "ApprovalAnswer",
    "ApprovalRequest",
    "Approver",
    "ScriptedApprover",
]

AnswerType = Literal["approve", "edit", "reject", "respond"]
ANSWER_TYPES: tuple[AnswerType, ...] = ("approve", "edit", "reject", "respond")


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """One call waiting for a human, with what they need to decide."""

    call_key: str
    tool: str
    action: str
    args: Mapping[str, Any]
    description: str
    level: int
    reasons: tuple[str, ...]
    roles: tuple[str, ...]
    allowed_decisions: tuple[AnswerType, ...]
    cost: float
    currency: str
    budget_left: float | None
    pack: str
    pack_version: str
    args_digest: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ApprovalAnswer:
    """A human's decision. ``by`` and ``roles`` identify the approver; they must come from
    the caller's authenticated context, never from the model."""

    type: AnswerType
    by: str = ""
    roles: tuple[str, ...] = ()
    edited_args: Mapping[str, Any] | None = None
    edited_tool: str | None = None
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in ANSWER_TYPES:
            raise ValueError(
                f"unknown approval decision {self.type!r}: use one of {', '.join(ANSWER_TYPES)}"
            )
        if self.type == "edit" and self.edited_args is None:
            raise ValueError("an 'edit' answer needs edited_args (the arguments to run with)")


Approver: TypeAlias = Callable[[ApprovalRequest], ApprovalAnswer]
"""Called synchronously with a request; returns the human's answer."""


class ScriptedApprover:
    """Answers by action name from a fixed script (for demos and tests).

    Actions not in the script get ``default`` (a rejection unless set)."""

    def __init__(
        self,
        answers: Mapping[str, ApprovalAnswer],
        *,
        default: ApprovalAnswer | None = None,
    ) -> None:
        self.answers = dict(answers)
        self.default = default or ApprovalAnswer(
            "reject", by="scripted-approver", message="no scripted answer for this action"
        )
        self.seen: list[ApprovalRequest] = []

    def __call__(self, request: ApprovalRequest) -> ApprovalAnswer:
        self.seen.append(request)
        return self.answers.get(request.action, self.default)
