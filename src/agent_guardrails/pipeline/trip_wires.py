"""Trip-wires: a policy violation at level 1 or above lowers the scope one level, at once.

Autonomy is earned through gates (:mod:`agent_guardrails.engine.gates`) and lost on a
trip-wire. When a call decided at Execute or above fails a validator, and the pack declares
a gate into that level for the call's scope (so the scope takes part in earned autonomy),
the scope's dial goes one level down in the same call, recorded as :data:`ACTOR` with the
call and the failed validators as evidence. The call's own decision (a denial) is
unchanged; the next call is decided at the lower level. A scope without such a gate keeps
its level (its dial is moved by people only).

The demotion is idempotent per call: a graph node that re-runs the same call after an
interrupt finds its ``trip_wire`` record and does not demote again. With the store down the
demotion waits for the next ``agent-guardrails gates`` run, which finds the violation in the
audit log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent_guardrails.engine.decision import Decision
from agent_guardrails.engine.gates import gate_for
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline import events
from agent_guardrails.pipeline.effects import Flow, StoreOp
from agent_guardrails.policy.levels import AutonomyLevel

if TYPE_CHECKING:
    from agent_guardrails.pipeline.flow import GuardedCall
    from agent_guardrails.pipeline.guardrails import Guardrails

__all__ = ["ACTOR", "trip"]

ACTOR = "agent-guardrails trip-wire"
"""Who a trip-wire demotion is recorded as."""


def trip(g: Guardrails, call: GuardedCall, decision: Decision) -> Flow[None]:
    """Demote the call's scope one level if ``decision`` is a policy violation at level 1
    or above in a scope whose pack declares a gate into that level. A check that could not
    answer (it raised, or timed out) is no violation: the call is denied, the level kept."""
    failed = [v.name for v in decision.validators if not v.passed and not v.error]
    # A treatment call was decided a level above its scope's dial: the dial is one lower.
    level = int(decision.level) - (decision.cohort == "treatment")
    if not failed or level < AutonomyLevel.EXECUTE:
        return
    pack = g.policy
    dial = pack.dial_scope(call.request.scope)
    if gate_for(pack, dial, level, up=False) is None:
        return
    evidence = {
        "call_key": call.key,
        "scope": dial.key,
        "validators": failed,
        "reason": "policy_violation",
    }
    tag = events.dedupe(call.key, "trip-wire")
    try:
        if tag is not None and (yield StoreOp("find_audit", tag)) is not None:
            return  # this call already tripped it (a re-run after an interrupt)
        yield StoreOp("append_audit", events.event("trip_wire", evidence, call.key, "trip-wire"))
        yield StoreOp(
            "set_level",
            dial.key,
            level - 1,
            by=ACTOR,
            reason=f"policy violation ({', '.join(failed)}) at {AutonomyLevel(level).name.lower()}",
            evidence=evidence,
        )
    except StoreUnavailable:
        return  # the next gates run demotes it from the audit log
