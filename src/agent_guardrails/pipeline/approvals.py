"""Approvals: what a human is asked, what they answer, and the pipeline's approval step.

An :class:`ApprovalRequest` describes one call waiting for a human, in the terms of
LangChain's human-in-the-loop middleware; an :class:`ApprovalAnswer` is what the human
decided: ``approve``, ``edit`` (with new arguments), ``reject`` (with a message for the
agent) or ``respond`` (answer the agent instead of running the tool).

Outside a LangGraph run, a :class:`~agent_guardrails.Guardrails` asks its ``approver``
callable; a scripted approver is handy in demos and tests:

>>> ana = ApprovalAnswer("approve", by="ana", roles=("marketing_ops",))
>>> approver = ScriptedApprover({"email.send": ana})

The step (:func:`approval`) binds an answer to what was asked: the tool, a digest of its
arguments and the pack version the question was put under (an answer to a question asked
under another version is refused as ``approval_stale``); it checks expiry, the allowed
decisions and the approver's roles; a kill-switch engaged meanwhile still wins; an edit is
a new call: re-scoped from its new arguments and decided again in full (kill-switch, level,
validators, caps), only the approval being waived, and a cap breach the edit causes is not.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from agent_guardrails.engine.decision import Decision, DecisionKind
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline import events
from agent_guardrails.pipeline.edits import parse_edit
from agent_guardrails.pipeline.effects import Await, Flow, Invoke, StoreOp, user_code
from agent_guardrails.pipeline.flow import (
    GOES_AHEAD,
    decide,
    denied,
    halted_meanwhile,
    hold,
    offline,
    release,
    rescoped,
)
from agent_guardrails.pipeline.notify import ApprovalEvent, EventKind
from agent_guardrails.pipeline.outbox import write
from agent_guardrails.store.base import AuditRecord

if TYPE_CHECKING:
    from agent_guardrails.pipeline.flow import GuardedCall
    from agent_guardrails.pipeline.guardrails import Guardrails

__all__ = [
    "ApprovalAnswer",
    "ApprovalRequest",
    "Approver",
    "ScriptedApprover",
    "approval",
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


Approver: TypeAlias = Callable[[ApprovalRequest], "ApprovalAnswer | Awaitable[ApprovalAnswer]"]
"""Called with a request; returns the human's answer (an ``async`` approver works with the
async API: ``guard.arun``, ``ainvoke``)."""


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


# ---------------------------------------------------------------------------- the step


def approval(
    g: Guardrails, call: GuardedCall, decision: Decision, answer: ApprovalAnswer | None = None
) -> Flow[tuple[GuardedCall, Decision]]:
    """Put a call waiting for approval to a human (or take ``answer``, given by a guard
    node's batched interrupt) and apply the answer. Returns the call to run (the edited
    one after an ``edit``) with an ``allow`` decision, or the call with the refusal."""
    key, span = call.key, call.span
    first = yield from first_ask(key)
    asked_at = first.data.get("asked_at") if first is not None else None
    ask = request_for(g, call, decision, asked_at)
    if first is not None:
        span.approval_reasked(first.data)
    asked = g.clock()
    asking: Invoke | None = None
    if answer is not None:
        asking = Invoke(lambda _ask: answer, ask)
    elif call.ask is not None:  # a graph's asker: it runs where the call runs
        asking = Invoke(call.ask, ask)
    elif g.approver is not None:  # the application's: it may block for the human's time
        asking = user_code(g.approver, ask)
    try:
        given = (yield from _answer_of(asking)) if asking is not None else None
    except StoreUnavailable as exc:  # asking needs the store (a graph's slot log): fail closed
        yield from let_go(g, key, decision, "approval.unavailable", {"reason": str(exc)})
        return call, offline(decision, call.request, exc)
    except GeneratorExit:  # the flow is being closed: it may not ask for anything more
        raise
    except Exception as exc:
        if answer is not None or call.ask is not None or g.approver is None:
            yield from _put(g, ask, call, asked, first, exc)
            raise
        # The application's approver failed (its chat service is down): no human was asked
        # and none will answer, so the call is denied and lets go of what it held.
        if first is None:
            yield from record_ask(g, ask, call, asked)
        failure = f"the approver raised {type(exc).__name__}: {exc}"
        yield from let_go(g, key, decision, "approval.unavailable", {"reason": failure})
        return call, denied(decision, "approver_error", f"denied: {failure}; nothing ran")
    except BaseException as exc:
        yield from _put(g, ask, call, asked, first, exc)
        raise
    if first is None:
        yield from record_ask(g, ask, call, asked)
    if given is None:
        yield from let_go(
            g, key, decision, "approval.unavailable", {"reason": "no approver configured"}
        )
        return call, decision
    problem = (unbound(first.data, ask) if first is not None else None) or check_answer(
        g, ask, given
    )
    span.approval_resolved(given, problem, g.clock() - (asked_at or asked))
    resolved_event = events.question_event(
        "approval.resolved",
        {
            "answer": given.type,
            "by": given.by,
            "roles": list(given.roles),
            "refused": problem,
            "message": given.message or None,
            "args_digest": ask.args_digest,
            "pack_version": ask.pack_version,
        },
        key,
        answer_tag(given.type) if "in_doubt" in decision.reasons else "approval",
    )
    recorded = yield from write(StoreOp("append_audit", resolved_event), g.outbox)
    if recorded is None and "in_doubt" not in decision.reasons:
        # (A call in doubt is asked again under its first question's tags: the answer on
        # record may be the one given before the crash, not a rival.)
        first_answer = yield from _answered_first(key, given)
        if first_answer is not None:
            if first_answer.data.get("answer") not in ("approve", "edit"):
                # The first answer runs nothing: what this run may have held again goes.
                reason = {"reason": "answered_first"}
                yield from let_go(g, key, decision, "reservation.released", reason)
            return call, first_answer_wins(decision, first_answer)
    g.notifications.send(
        _event("answered", ask, asked_at or asked, given.type, given.by or None, problem)
    )
    if problem is not None:
        yield from let_go(g, key, decision, "approval.refused", {"reason": problem})
        code = problem.split(":", 1)[0]
        return call, denied(decision, code, f"denied: {problem}")
    halted = yield from halted_meanwhile(g, call, decision)
    if halted is not None:
        return call, halted
    if given.type == "approve":
        call.rerun = "in_doubt" in decision.reasons
        return call, resolved(decision, "approved", given)
    if given.type == "edit":
        return (yield from edited(g, call, decision, given))
    yield from let_go(g, key, decision, f"approval.{given.type}", {"message": given.message})
    how = "rejected" if given.type == "reject" else "responded"
    return call, resolved(decision, how, given)


def edited(
    g: Guardrails, call: GuardedCall, decision: Decision, answer: ApprovalAnswer
) -> Flow[tuple[GuardedCall, Decision]]:
    """An approved edit is a new call: re-scoped from its arguments and decided again in
    full under its own key (``<key>:edit``); only the approval step is waived."""
    yield from release(g, call.key, "approval.edited", {"by": answer.by})
    if answer.edited_tool is not None and answer.edited_tool != call.request.tool:
        refused = replace(
            decision,
            kind=DecisionKind.DENY,
            reasons=("edit_renames_tool",),
            message=(
                f"denied: the edit renames {call.request.tool!r} to {answer.edited_tool!r}; "
                "approve or reject the original call, or call the other tool so it meets "
                "its own rules"
            ),
        )
        audit = events.decision_event(refused, call.key, tag="edit-decision")
        yield from write(StoreOp("append_audit", audit), g.outbox)
        return call, refused
    edited, problem = parse_edit(call.schema, answer.edited_args or {})
    if problem is not None:
        refused = replace(
            decision,
            kind=DecisionKind.DENY,
            reasons=("edit_invalid",),
            message=f"denied: edit_invalid: the edited {problem}; nothing ran",
        )
        audit = events.decision_event(refused, call.key, tag="edit-decision")
        yield from write(StoreOp("append_audit", audit), g.outbox)
        return call, refused
    new = rescoped(g, call, edited, f"{call.key}:edit")
    decided = yield from decide(g, new)
    checked = decided.decision
    if "in_doubt" in checked.reasons:  # the edited call itself crashed mid-run: ask again
        checked = yield from hold(g, new, decided)
        return (yield from approval(g, new, checked))
    if "approval_required:cap_exceeded" in checked.reasons:
        # The human approved the edit, not the breach the edit causes: ask again.
        checked = replace(
            checked,
            kind=DecisionKind.DENY,
            reasons=tuple(r for r in checked.reasons if r.endswith("_exceeded")),
            message=checked.message.replace("needs approval", "denied: the edited call")
            + "; the edit was approved, not this breach: submit it for approval",
        )
    checked = yield from hold(g, new, decided._replace(decision=checked))
    if checked.kind in GOES_AHEAD:  # allowed, or waiting for the approval just given
        return new, resolved(checked, "edited", answer)
    return new, checked


# ---------------------------------------------------------------------------- pieces


def answer_tag(answer: str) -> str:
    """The tag of an answer to a call in doubt: its own (the first question's ``approval``
    tag is taken by the answer given before the crash), one per kind of answer, so that an
    approve after a reject is recorded too."""
    return f"approval.rerun.{answer}"


def _answered_first(key: str, given: ApprovalAnswer) -> Flow[AuditRecord | None]:
    """Another answer to the question under ``key``, recorded before ``given`` was (two
    approvers resuming at once): it is the one that counts. ``None`` when the answer on
    record is ``given`` itself (this run after an earlier run of it) or none is readable."""
    found = yield from recorded(f"{key}:approval")
    if found is None:
        return None
    data = found.data
    if (data.get("answer"), data.get("by") or "") == (given.type, given.by or ""):
        return None
    return found


def first_answer_wins(decision: Decision, first: AuditRecord) -> Decision:
    """The refusal of an answer that came second: nothing of it is done (what the call
    holds is the first answer's to keep or release)."""
    data = first.data
    return denied(
        decision,
        "approval_answered",
        f"not done: this question was answered first ({data.get('answer')} by "
        f"{data.get('by') or 'an approver'}); that answer is the one acted on",
    )


def _put(
    g: Guardrails,
    ask: ApprovalRequest,
    call: GuardedCall,
    asked: float,
    first: AuditRecord | None,
    exc: BaseException,
) -> Flow[None]:
    """A graph interrupt puts the question to a human: record it, unless the call only
    waits behind another call's question (it is put in a later run). The caller raises."""
    if first is None and not getattr(exc, "question_pending", False):
        yield from record_ask(g, ask, call, asked)


def let_go(
    g: Guardrails, key: str, decision: Decision, kind: str, data: Mapping[str, Any]
) -> Flow[None]:
    """A question that ends without the call running: release what the call holds, unless
    it is in doubt (an earlier run started it and died): what that run spent is unknown,
    so it keeps its hold and stays in doubt, and a later run asks again, never runs it
    silently. Either way the ending is recorded."""
    if "in_doubt" in decision.reasons:
        yield from write(StoreOp("append_audit", events.event(kind, dict(data), key)), g.outbox)
    else:
        yield from release(g, key, kind, data)


def _answer_of(asking: Invoke) -> Flow[Any]:
    """Ask: an approver returns its answer, a graph's asker is a flow (its store I/O goes
    through the driver), an async approver an awaitable (awaited by the async driver). The
    asker is called as an effect, so never on a store's thread that ran the steps before
    it (the human's time never holds a store): a graph's asker on the caller's own thread,
    the application's plain-function approver off the event loop
    (:func:`~agent_guardrails.pipeline.effects.user_code`)."""
    produced = yield asking
    if isinstance(produced, Generator):
        return (yield from produced)
    if inspect.isawaitable(produced):
        return (yield Await(produced))
    return produced


def request_for(
    g: Guardrails, call: GuardedCall, decision: Decision, asked_at: float | None
) -> ApprovalRequest:
    """What the human sees. Expiry counts from when the question was first put."""
    request = call.request
    action = g.policy.action(request.action)
    allowed = action.approval.allowed_decisions if action is not None else ("approve", "reject")
    timeout = decision.approval_timeout or 86_400.0
    return ApprovalRequest(
        call_key=call.key,
        tool=request.tool,
        action=request.action,
        args=request.args,
        description=decision.message,
        level=int(decision.level),
        reasons=decision.reasons,
        roles=decision.approval_roles,
        allowed_decisions=allowed,
        cost=decision.cost,
        currency=decision.currency,
        budget_left=decision.budget_left,
        pack=decision.pack,
        pack_version=decision.pack_version,
        args_digest=events.args_digest(request.tool, request.args),
        expires_at=(asked_at if asked_at is not None else g.clock()) + timeout,
    )


def first_ask(key: str) -> Flow[AuditRecord | None]:
    """The ``approval.requested`` record of the call under ``key``, if it was asked."""
    tag = events.dedupe(key, "approval.requested")
    if tag is None:
        return None
    return (yield from recorded(tag))  # (unreadable: asking again records nothing twice)


def recorded(tag: str) -> Flow[AuditRecord | None]:
    """The audit record tagged ``tag``; ``None`` when there is none or it cannot be read."""
    try:
        found: AuditRecord | None = yield StoreOp("find_audit", tag)
    except StoreUnavailable:
        return None
    return found


def record_ask(
    g: Guardrails, ask: ApprovalRequest, call: GuardedCall, asked_at: float
) -> Flow[None]:
    """The ``approval.requested`` audit record (with the span's ids) and span event."""
    data: dict[str, Any] = {
        "asked_at": asked_at,
        "tool": ask.tool,
        "action": ask.action,
        "level": ask.level,
        "cost": ask.cost,
        "currency": ask.currency,
        "roles": list(ask.roles),
        "reasons": list(ask.reasons),
        "expires_at": ask.expires_at,
        "args_digest": ask.args_digest,
        "pack_version": ask.pack_version,
    }
    ids = call.span.trace_ids()
    if ids is not None:
        data["trace_id"] = f"{ids.trace_id:032x}"
        data["span_id"] = f"{ids.span_id:016x}"
    audit = events.question_event("approval.requested", data, ask.call_key, "approval.requested")
    yield from write(StoreOp("append_audit", audit), g.outbox)
    call.span.approval_requested(ask)
    g.notifications.send(_event("raised", ask, asked_at))


def _event(
    kind: EventKind,
    ask: ApprovalRequest,
    asked_at: float,
    answer: str | None = None,
    by: str | None = None,
    refused: str | None = None,
) -> ApprovalEvent:
    return ApprovalEvent(
        kind,
        ask.call_key,
        ask.tool,
        ask.action,
        ask.roles,
        ask.level,
        ask.cost,
        ask.currency,
        asked_at,
        ask.expires_at,
        answer,
        by,
        refused,
    )


def check_answer(g: Guardrails, request: ApprovalRequest, answer: ApprovalAnswer) -> str | None:
    """Why ``answer`` cannot be accepted (expired, not allowed, approver lacks the role)."""
    if g.clock() > request.expires_at:
        return "approval_expired: the approval request expired; the call must be asked again"
    if answer.type not in request.allowed_decisions:
        return (
            f"decision_not_allowed: {answer.type!r} is not allowed for {request.action}; "
            f"allowed: {', '.join(request.allowed_decisions)}"
        )
    if request.roles and not answer.by and not answer.roles:
        return (
            f"approver_unknown: the answer carries no approver; {request.action} needs one "
            f"of {list(request.roles)}: resume as an authenticated user of the LangGraph "
            "server (custom auth), or put {'approver': {'id': ..., 'roles': [...]}} in the "
            "resuming run's context or configurable"
        )
    if request.roles and not set(answer.roles) & set(request.roles):
        return (
            f"approver_not_authorized: {answer.by or 'the approver'} has roles "
            f"{list(answer.roles)}; {request.action} needs one of {list(request.roles)}"
        )
    return None


def unbound(first: Mapping[str, Any], ask: ApprovalRequest) -> str | None:
    """Why an answer given to the first ask of a call does not bind to ``ask``: the pack
    version or the arguments changed in between (``None``: they did not)."""
    version = first.get("pack_version")
    if version is not None and version != ask.pack_version:
        return (
            f"approval_stale: the call was put to a human under pack {ask.pack} version "
            f"{version}, and the pack is now version {ask.pack_version}; make the call "
            "again to ask under the new version"
        )
    digest = first.get("args_digest")
    if digest is not None and digest != ask.args_digest:
        return (
            "approval_stale: the call's arguments changed after it was put to a human; "
            "make the call again to ask about these arguments"
        )
    return None


def resolved(decision: Decision, how: str, answer: ApprovalAnswer) -> Decision:
    """The decision after a human answered: ``approved``/``edited`` let it run; a reject's
    or a respond's message is kept for the model (``extra["response"]``)."""
    kind = DecisionKind.ALLOW if how in ("approved", "edited") else decision.kind
    extra: dict[str, Any] = {**decision.extra, "approved_by": answer.by}
    if how in ("rejected", "responded") and answer.message:
        extra["response"] = answer.message
    return replace(
        decision,
        kind=kind,
        reasons=(*decision.reasons, how),
        message=f"{how} by {answer.by or 'an approver'}: {decision.message}",
        extra=extra,
    )
