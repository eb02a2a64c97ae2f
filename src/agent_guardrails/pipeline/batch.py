"""A model turn's tool calls decided as one batch (the guard node), then run one by one.

The same steps as :func:`~agent_guardrails.pipeline.flow.guarded_call`, split where the
graph splits them:

1. :func:`decide_batch` (the guard node): each call is decided (:func:`~.flow.decide`);
   what the calls going ahead need is reserved **together** (all fit or none does,
   ``Store.reserve_many``; a cap breach that asks a human is held on its own); each
   decision is recorded once per key. A ``fail_open`` call decided without the store goes
   ahead with nothing to reserve; its records wait in the outbox. When a kill-switch halts
   any call, none of the batch runs: what the others hold is released (``batch_halted``).
2. :func:`resolve` (the guard node, after its one interrupt): a human's answer applied to a
   call waiting for approval, by :func:`~.approvals.approval` (an edit re-scoped and
   decided again in full). :func:`turn` is steps 1 and 2 together, with the adapter's
   ``ask`` putting every question of the turn to a human at once.
3. :func:`run_decided` (the tools node): the kill-switch looked at again, then
   :func:`~.flow.run`. A call found in doubt (its key started before and never finished)
   is decided again, so asked about, never run silently.

Spans: a call that stops in the guard node is traced there (:func:`trace_stops`); a call
that runs is traced in the tools node, linked to the span that asked for approval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent_guardrails.engine.decision import Decision, DecisionKind
from agent_guardrails.errors import KillSwitchEngaged, StoreUnavailable
from agent_guardrails.pipeline import events
from agent_guardrails.pipeline.approvals import (
    ApprovalAnswer,
    ApprovalRequest,
    answer_tag,
    approval,
    first_ask,
    record_ask,
    request_for,
)
from agent_guardrails.pipeline.effects import Flow, StoreOp
from agent_guardrails.pipeline.flow import (
    GOES_AHEAD,
    Decided,
    GuardedCall,
    decide,
    denied,
    halted_meanwhile,
    hold,
    offline,
    refuse,
    release,
    run,
)
from agent_guardrails.pipeline.outbox import write
from agent_guardrails.pipeline.trip_wires import trip
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.store.base import AuditRecord, PackVersion, ReserveResult, Snapshot

if TYPE_CHECKING:
    from agent_guardrails.pipeline.guardrails import Guardrails

__all__ = [
    "AskAll",
    "approval_request",
    "carried",
    "carry",
    "decide_batch",
    "resolve",
    "run_decided",
    "trace_stops",
    "turn",
    "withdraw",
]

AskAll = Callable[[list[ApprovalRequest]], list[ApprovalAnswer]]
"""Asks a human about every call of a turn that waits for approval, at once (a LangGraph
interrupt in the adapters); returns one answer per request, in order."""


def turn(
    g: Guardrails, calls: Sequence[GuardedCall], ask: AskAll
) -> Flow[list[tuple[GuardedCall, Decision]]]:
    """A model turn's calls decided together (:func:`decide_batch`); the ones that wait for
    a human asked at once, and each answer applied (:func:`resolve`). When a kill-switch
    halted the turn nobody is asked: the outcomes carry the halt."""
    decided = yield from _decide_each(g, calls)
    # The calls a human was shown in an earlier run of this turn (their questions are
    # recorded before the interrupt, which a call holding from then survives): the answers
    # are theirs, in order, whatever the calls' decisions are now (a level moved, a switch
    # engaged while the question waited).
    shown = []
    for i, (call, d) in enumerate(zip(calls, decided, strict=True)):
        if d.prior is not None and (yield from first_ask(call.key)) is not None:
            shown.append(i)
    decisions = yield from _settle(g, calls, decided)
    outcomes = list(zip(calls, decisions, strict=True))
    if any(d.kind is DecisionKind.HALT for d in decisions):
        return outcomes
    waiting = [i for i, d in enumerate(decisions) if d.kind is DecisionKind.REQUIRE_APPROVAL]
    asked = shown or waiting
    if not asked:
        return outcomes
    requests = []
    for i in asked:
        requests.append((yield from approval_request(g, *outcomes[i])))
    answers = ask(requests)  # raises the interrupt until a human answered
    if len(answers) != len(asked):
        raise ValueError(
            f"{len(answers)} answers for {len(asked)} calls waiting for approval: "
            "answer each call of the turn once, in order"
        )
    for i, answer in zip(asked, answers, strict=True):
        call, decision = outcomes[i]
        if decision.kind is DecisionKind.ALLOW:
            # No longer needs a human, but one answered: a no (or an edit) stands, and a
            # yes is recorded as the answer it is.
            decision = replace(decision, kind=DecisionKind.REQUIRE_APPROVAL)
        if decision.kind is DecisionKind.REQUIRE_APPROVAL:
            outcomes[i] = yield from resolve(g, call, decision, answer)
    for i in set(waiting) - set(asked):
        # Needs a human since the question was put: not answered by it. The model may
        # call it again, which asks.
        call, decision = outcomes[i]
        yield from withdraw(g, call.key, "approval_not_asked")
        outcomes[i] = (call, _not_asked(decision))
    return outcomes


def _not_asked(decision: Decision) -> Decision:
    return denied(
        decision,
        "approval_not_asked",
        f"not run: {decision.tool} came to need approval after this turn's question was "
        "put, so its answers are not for it; call it again to ask",
    )


def decide_batch(g: Guardrails, calls: Sequence[GuardedCall]) -> Flow[list[Decision]]:
    """Decide ``calls`` together; see the module docstring."""
    decided = yield from _decide_each(g, calls)
    return (yield from _settle(g, calls, decided))


def _decide_each(g: Guardrails, calls: Sequence[GuardedCall]) -> Flow[list[Decided]]:
    decided: list[Decided] = []
    for call in calls:
        decided.append((yield from decide(g, call)))
    return decided


def _settle(
    g: Guardrails, calls: Sequence[GuardedCall], decided: Sequence[Decided]
) -> Flow[list[Decision]]:
    """Hold what the decided calls going ahead need, at once, and record the rest."""
    single: set[int] = set()
    ahead = [
        i
        for i, d in enumerate(decided)
        if d.decision.kind in GOES_AHEAD and "fail_open" not in d.decision.reasons
    ]
    out = [d.decision for d in decided]
    # A breach that asks a human (on_cap_exceeded: approve) is held on its own, over the cap.
    for i in [i for i in ahead if out[i].extra.get("over_cap")]:
        ahead.remove(i)
        out[i] = yield from hold(g, calls[i], decided[i])
        single.add(i)
    if ahead:
        audits = [
            events.decision_event(out[i], calls[i].key, args=calls[i].request.args) for i in ahead
        ]
        down: StoreUnavailable | None = None
        try:
            res: ReserveResult = yield StoreOp(
                "reserve_many",
                [(calls[i].key, out[i].charges) for i in ahead],
                audit=audits,
                now=g.clock(),
            )
        except StoreUnavailable as exc:
            down, res = exc, ReserveResult(ok=False)
        if not res.ok:
            for i in ahead:
                out[i] = (
                    offline(out[i], calls[i].request, down)
                    if down is not None
                    else _batch_denied(out[i], res)
                )
        held = set(ahead) if res.ok else set()
    else:
        held = set()
    for i, (call, decision) in enumerate(zip(calls, out, strict=True)):
        if i in held or i in single:
            continue
        audit = StoreOp("append_audit", events.decision_event(decision, call.key))
        if "fail_open" in decision.reasons and decision.kind is DecisionKind.ALLOW:
            g.outbox.keep(audit)  # fail_open without the store: recorded when it is back
        else:
            yield from write(audit, g.outbox)
        if decision.validators:
            yield from trip(g, call, decision)  # a policy violation lowers the level
    halted = next((d for d in out if d.kind is DecisionKind.HALT), None)
    if halted is not None:  # a kill-switch stops the whole turn: none of the batch runs
        for i, (call, decision) in enumerate(zip(calls, out, strict=True)):
            if decision.kind in GOES_AHEAD:
                yield from withdraw(g, call.key, "halt")
                out[i] = _stopped_by(decision, halted)
        if calls[0].in_graph and g.policy.kill_switch.on_halt == "raise":
            yield from trace_stops(g, calls, out)
            raise KillSwitchEngaged(halted)
    yield from trace_stops(g, calls, out)
    return out


def trace_stops(g: Guardrails, calls: Sequence[GuardedCall], out: Sequence[Decision]) -> Flow[None]:
    """Spans for the calls of a batch that stop in the guard node: refusals, drafts, and
    approval requests (once per call: a resumed batch's calls are traced where they are
    resolved and run, linked to the span that asked). Allowed calls are traced where they
    run."""
    for call, decision in zip(calls, out, strict=True):
        if decision.kind is DecisionKind.ALLOW:
            continue
        asking = decision.kind is DecisionKind.REQUIRE_APPROVAL
        if asking and (yield from first_ask(call.key)) is not None:
            continue
        with g.telemetry.call(call.request, call.key, current=False) as span:
            span.decided(decision, call.key, resumed=False)
            if asking:  # reserved just now: its expiry counts from now
                traced = replace(call, span=span)
                yield from record_ask(g, request_for(g, call, decision, None), traced, g.clock())
            else:
                span.ended(decision)


def approval_request(g: Guardrails, call: GuardedCall, decision: Decision) -> Flow[ApprovalRequest]:
    """What a human is asked about one call of a batch; its expiry counts from when the
    question was first put (the ``approval.requested`` record)."""
    first = yield from first_ask(call.key)
    asked_at = first.data.get("asked_at") if first is not None else None
    return request_for(g, call, decision, asked_at)


def resolve(
    g: Guardrails, call: GuardedCall, decision: Decision, answer: ApprovalAnswer
) -> Flow[tuple[GuardedCall, Decision]]:
    """Apply a human's answer to a call of the batch waiting for approval."""
    call, resolved = yield from approval(g, call, decision, answer)
    if resolved.kind is not DecisionKind.ALLOW:
        first = yield from first_ask(call.key.removesuffix(":edit"))
        with g.telemetry.call(call.request, call.key, current=False) as span:
            span.decided(resolved, call.key, resumed=True)
            refused = None if _answered(resolved) else resolved.reasons[0]
            span.approved_earlier(
                answer.type,
                answer.by,
                first.data if first is not None else None,
                g.clock() - first.ts if first is not None else None,
                refused=refused,
            )
            span.ended(resolved)
    return call, resolved


def withdraw(g: Guardrails, key: str, reason: str) -> Flow[None]:
    """Release what a call decided in a batch holds, without running it (its batch ended:
    a kill-switch halted another call of it)."""
    yield from release(g, key, "reservation.released", {"reason": reason})


def carry(g: Guardrails, call: GuardedCall, decision: Decision) -> dict[str, Any]:
    """What a call the guard node lets through carries to the tools node (JSON, in the
    ``Send``): its key, scope and decision, and the pack it was decided under."""
    return {
        "key": call.key,
        "action": call.request.action,
        "cost": decision.cost,
        "currency": decision.currency,
        "level": int(decision.level),
        "reasons": list(decision.reasons),
        "scope": call.request.scope.as_dict(),
        "approved_by": decision.extra.get("approved_by"),
        "budget_left": decision.budget_left,
        "pack": decision.pack,
        "pack_version": decision.pack_version,
        "pack_digest": g.live.digest,
        # A human approved running again a call found in doubt (its key started and never
        # finished) when the turn was decided: the tools node runs it without asking again.
        "rerun": call.rerun,
    }


def carried(g: Guardrails, data: Mapping[str, Any], call: GuardedCall) -> Decision:
    """The guard node's decision, back from what :func:`carry` sent."""
    pack = g.policy
    level = data.get("level")
    approved_by = data.get("approved_by")
    return Decision(
        DecisionKind.ALLOW,
        tuple(data.get("reasons") or ("allowed",)),
        "allowed by the guard node",
        call.request.action,
        call.request.tool,
        AutonomyLevel(level) if isinstance(level, int) else pack.initial_level(call.request.scope),
        call.request.scope,
        str(data.get("pack") or pack.name),
        str(data.get("pack_version") or pack.version),
        cost=float(data.get("cost") or 0.0),
        currency=str(data.get("currency") or pack.defaults.currency),
        budget_left=data.get("budget_left"),
        # ``carried``: it came through the graph's state, so the store must vouch for it.
        extra={"approved_by": approved_by, "pack_digest": data.get("pack_digest"), "carried": 1}
        if approved_by
        else {"pack_digest": data.get("pack_digest"), "carried": 1},
    )


def run_decided(g: Guardrails, call: GuardedCall, decision: Decision) -> Flow[Any]:
    """The tools node: run a call the guard node let through (once), unless a kill-switch
    was engaged since or the pack changed version (then what was decided, and maybe
    approved, no longer binds: ``approval_stale``); a call in doubt is decided again and
    asked about."""
    reasons = decision.reasons
    approved = "approved" in reasons or "edited" in reasons
    call.span.decided(decision, call.key, resumed=approved)
    if approved:
        first = yield from first_ask(call.key.removesuffix(":edit"))
        call.span.approved_earlier(
            "edit" if "edited" in reasons else "approve",
            str(decision.extra.get("approved_by") or ""),
            first.data if first is not None else None,
            g.clock() - first.ts if first is not None else None,
        )
    if decision.extra.get("carried"):  # (not one this process made and handed over itself)
        unvouched = yield from vouched(g, call, decision)
        if unvouched is not None:
            return (yield from refuse(g, call, unvouched))
    digest = decision.extra.get("pack_digest")
    halted = yield from halted_meanwhile(
        g, call, decision, held_only=True, pack_digest=str(digest) if digest else None
    )
    if halted is not None:
        return (yield from refuse(g, call, halted))
    return (yield from run(g, call, decision))


def vouched(g: Guardrails, call: GuardedCall, decision: Decision) -> Flow[Decision | None]:
    """``None`` when the store's records vouch for a decision carried to where the call
    runs; else the refusal (``not_decided``). A turn's decisions travel in the graph's state
    (a ``Send``, the agent's ``guardrails_turn``), which a client of a LangGraph server can
    write: the node that runs tools believes the store, not the ticket. The call must have
    the decision record its key was reserved with (same tool, action, scope, and arguments
    where the record keeps their digest), and that decision let it go ahead, or a human's
    recorded answer did (approve; edit, for the edited call ``<key>:edit``; a re-run of a
    call in doubt needs an approval too). A call without a thread (``~`` key: no question
    is possible) needs only its reservation. With the store down, only a ``fail_open``
    action goes ahead, as it would anyway."""
    key, request = call.key, call.request
    action = g.policy.action(request.action)
    fail_open = "fail_open" in decision.reasons and action is not None and action.fail_open
    try:
        if key.startswith("~"):  # (a fail_open call decided with the store down holds nothing)
            snap: Snapshot = yield StoreOp("snapshot", dial_key="", counter_keys=(), call_key=key)
            ok = (snap.call is not None or fail_open) and not call.rerun
        else:
            ok = yield from _recorded(call, decision, fail_open)
    except StoreUnavailable:
        ok = fail_open
    if ok:
        return None
    return denied(
        decision,
        "not_decided",
        f"denied: not_decided: no recorded decision of the guard lets {request.tool} run "
        "as handed to this node (its carried decision does not match the store)",
    )


def _recorded(call: GuardedCall, decision: Decision, fail_open: bool) -> Flow[bool]:
    """The store's records of ``call``'s key let it go ahead (see :func:`vouched`)."""
    key, request = call.key, call.request
    record: AuditRecord | None = yield StoreOp("find_audit", f"{key}:decision")
    if record is None:  # a fail_open call decided with the store down: its record waits
        return fail_open and not call.rerun
    data = record.data
    # The pack the call was decided under is the one the carried digest names: a ticket
    # cannot name the active pack's digest for a decision made under another version.
    digest = decision.extra.get("pack_digest")
    versions: list[PackVersion] = yield StoreOp("pack_versions", data.get("pack"))
    named = [v.version for v in versions if v.digest == digest]
    if named != [str(data.get("pack_version"))]:
        return False
    digest = data.get("args_digest")
    if (
        data.get("tool") != request.tool
        or data.get("action") != request.action
        or data.get("scope") != request.scope.as_dict()
        or (digest is not None and digest != events.args_digest(request.tool, request.args))
    ):
        return False
    base = key.removesuffix(":edit")
    wanted = "edit" if base != key else "approve"
    if call.rerun:  # a call in doubt: a human said yes to running it again, after it started
        yes: AuditRecord | None = yield StoreOp("find_audit", f"{key}:{answer_tag('approve')}")
        began: AuditRecord | None = yield StoreOp("find_audit", f"{key}:started")
        return yes is not None and (began is None or yes.seq > began.seq)
    if wanted == "approve" and data.get("decision") == "allow":
        return True
    answer: AuditRecord | None = yield StoreOp("find_audit", f"{base}:approval")
    return (
        answer is not None
        and answer.data.get("answer") == wanted
        and answer.data.get("refused") is None
    )


def _stopped_by(decision: Decision, halted: Decision) -> Decision:
    """A call of a batch that another call's kill-switch halt stopped."""
    return denied(
        decision,
        "batch_halted",
        f"not run: the kill-switch halted {halted.tool} in the same turn, so the run ended",
    )


def _answered(decision: Decision) -> bool:
    return "rejected" in decision.reasons or "responded" in decision.reasons


def _batch_denied(decision: Decision, res: ReserveResult) -> Decision:
    """A call of a batch that did not fit as a whole."""
    breach = res.breach
    what = f"{breach.kind} {breach.label}" if breach is not None else "a cap"
    return denied(
        decision,
        f"{breach.kind}_exceeded" if breach is not None else "batch_exceeded",
        f"denied: the batch of parallel calls does not fit in {what}; "
        "none of them ran (ask for fewer or smaller actions)",
    )
