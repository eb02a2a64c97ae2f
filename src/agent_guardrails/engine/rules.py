"""The decision engine: a pure function from one call and its context to a :class:`Decision`.

No I/O happens here. The guard reads what the engine needs from the store (the live level,
engaged kill-switches, the counters the call would move) and passes it in; the engine
applies the fixed order **kill-switch -> level -> validators -> caps -> approval** and says
what should happen and why.

Level semantics (``ActionPolicy.kind`` is read, execute, optimize or orchestrate):

=========== ==================================================================
level       effect
=========== ==================================================================
0 Assist    nothing runs: every call is simulated (a draft), reason ``level_too_low``
1 Execute   read/execute run; sensitive or high-risk ask for approval;
            optimize and orchestrate are simulated as recommendations
2 Optimize  as 1, and optimize runs within caps (``on_cap_exceeded: approve`` turns
            a breach into an approval request); orchestrate is simulated
3 Orchestr. everything runs; approval only where the action says ``when: always``
=========== ==================================================================

Validators run at every level, simulations included: a draft that breaks policy is denied
with the validator's message, so the agent can fix it. Simulations spend nothing, so caps
are checked only for calls that would run (or wait for approval). A call whose earlier run
started and never finished (*in doubt*) is never re-run silently: it needs approval.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from agent_guardrails.engine.charges import CostError, call_cost, charges_for
from agent_guardrails.engine.decision import (
    CallRequest,
    Charge,
    CheckError,
    Decision,
    DecisionKind,
    ValidatorOutcome,
    allowed_message,
)
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import ActionPolicy, PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.policy.validators import CompiledValidator

__all__ = ["CheckError", "check", "decide", "may_ask", "user_validators"]

_EPS = 1e-9
_KIND_MIN_LEVEL = {
    "read": AutonomyLevel.EXECUTE,
    "execute": AutonomyLevel.EXECUTE,
    "optimize": AutonomyLevel.OPTIMIZE,
    "orchestrate": AutonomyLevel.ORCHESTRATE,
}


def decide(
    call: CallRequest,
    pack: PolicyPack,
    *,
    level: AutonomyLevel,
    used: Mapping[str, float],
    kill_switches: Collection[Scope] = (),
    now: float,
    charges: tuple[Charge, ...] | None = None,
    in_doubt: bool = False,
    checked: Mapping[int, str | None] | None = None,
) -> Decision:
    """Decide one call. ``used`` maps counter keys to what is already spent or reserved;
    ``kill_switches`` are the engaged switches' scopes. ``checked`` holds what validators
    already said about this call, by their index in the action's list (see
    :func:`user_validators`: the pipeline runs the application's own checks off the event
    loop first); the others run here. Pure: same inputs, same decision."""
    name = call.action

    # 1. kill-switch
    for switch in kill_switches:
        if switch.matches(call.scope):
            return Decision(
                DecisionKind.HALT,
                (f"kill_switch:{switch.key}",),
                f"halted: the kill-switch for {switch.key} is engaged",
                name,
                call.tool,
                level,
                call.scope,
                pack.name,
                pack.version,
            )

    plan = _plan(pack, name)
    if plan is None:
        return Decision(
            DecisionKind.DENY,
            (f"unknown_action:{name}",),
            f"denied: action {name!r} is not in pack {pack.name} v{pack.version}; "
            "add it under 'actions' to govern this tool",
            name,
            call.tool,
            level,
            call.scope,
            pack.name,
            pack.version,
        )
    action = plan.action

    # An unpriceable call is a cap problem: it is denied at the caps step, after the level
    # (a draft spends nothing) and the validators, like any other cap problem.
    cost_error: CostError | None = None
    cost = 0.0
    if plan.priced:
        try:
            cost = call_cost(action, call.args)
        except CostError as exc:
            cost_error = exc

    # 2. level
    mode, level_reason, mode_text = (plan.doubt_modes if in_doubt else plan.modes)[level]

    # 3. validators (at every level)
    outcomes = plan.passed  # all passed (the usual case): one shared tuple per action
    validators = plan.validators
    for i, validator in enumerate(validators):
        msg = _said(validator, i, call, checked)
        if msg is not None:  # the first failure: run the rest as before, once each
            outcomes = (
                *outcomes[:i],
                _outcome(validator, msg),
                *(
                    _outcome(v, _said(v, j, call, checked))
                    for j, v in enumerate(validators[i + 1 :], start=i + 1)
                ),
            )
            failed = [o for o in outcomes if not o.passed]
            return _verdict(
                DecisionKind.DENY,
                tuple(f"validator_{'error' if o.error else 'failed'}:{o.name}" for o in failed),
                "denied: " + "; ".join(f"{o.name}: {o.message}" for o in failed),
                call,
                level,
                pack,
                plan,
                cost,
                outcomes,
            )

    if mode is DecisionKind.SIMULATE:
        return _verdict(mode, (level_reason,), mode_text, call, level, pack, plan, cost, outcomes)

    # 4. caps
    if cost_error is not None:
        return _verdict(
            DecisionKind.DENY,
            ("cost_unknown",),
            f"denied: {cost_error}",
            call,
            level,
            pack,
            plan,
            cost,
            outcomes,
        )
    exposure = action.exposure
    if exposure is not None and call.args.get(exposure.entity) in (None, "", [], ()):
        return _verdict(
            DecisionKind.DENY,
            ("exposure_unknown",),
            f"denied: argument {exposure.entity!r} is missing, so the exposure cap of "
            f"{name} cannot be checked; pass the contact or account id(s)",
            call,
            level,
            pack,
            plan,
            cost,
            outcomes,
        )
    if charges is None:
        charges = charges_for(call, action, pack, cost=cost, now=now)
    breaches: list[tuple[Charge, float]] | None = None
    budget_left: float | None = None
    exposure_left: float | None = None
    for charge in charges:
        spent = used.get(charge.key, 0.0)
        left = charge.limit - spent - charge.amount
        if not left >= -_EPS:  # a NaN counter (a corrupt store) is a breach, never a pass
            breaches = [] if breaches is None else breaches
            breaches.append((charge, spent))
        if charge.kind == "budget":
            budget_left = left if budget_left is None else min(budget_left, left)
        else:
            exposure_left = left if exposure_left is None else min(exposure_left, left)
    if breaches:
        reasons = tuple(dict.fromkeys(f"{c.kind}_exceeded" for c, _ in breaches))
        detail = "; ".join(_breach_text(c, spent, plan.currency) for c, spent in breaches)
        first, first_spent = breaches[0]
        extra = {
            "cap": first.label,
            "cap_kind": first.kind,
            "limit": first.limit,
            "spent": first_spent,
            "requested": first.amount,
        }
        if level >= AutonomyLevel.OPTIMIZE and action.on_cap_exceeded == "approve":
            kind = DecisionKind.REQUIRE_APPROVAL
            reasons = (*reasons, "approval_required:cap_exceeded")
            message = f"needs approval: {detail}"
            extra["over_cap"] = True
        else:
            kind, message = DecisionKind.DENY, f"denied: {detail}"
        decision = _verdict(
            kind, reasons, message, call, level, pack, plan, cost, outcomes, charges
        )
        decision.budget_left, decision.exposure_left, decision.extra = (
            budget_left,
            exposure_left,
            extra,
        )
        return decision

    # 5. approval, else allowed. The allowed decision is built in full here: it is the one
    # decision made on every call that runs.
    if mode is DecisionKind.REQUIRE_APPROVAL:
        decision = _verdict(
            mode, (level_reason,), mode_text, call, level, pack, plan, cost, outcomes, charges
        )
        decision.budget_left, decision.exposure_left = budget_left, exposure_left
        return decision
    return Decision(
        DecisionKind.ALLOW,
        _ALLOWED,
        allowed_message(mode_text, budget_left, plan.currency),  # formatted only if read
        name,
        call.tool,
        level,
        call.scope,
        pack.name,
        pack.version,
        cost,
        plan.currency,
        charges,
        budget_left,
        exposure_left,
        outcomes,
        plan.roles,
        plan.timeout,
        plan.fail_open,
    )


_ALLOWED = ("allowed",)


def may_ask(pack: PolicyPack, action: str) -> bool:
    """Whether a call of ``action`` can need a human at some level under ``pack``: its
    approval rule or risk asks at a level, or a cap breach asks (``on_cap_exceeded:
    approve``). A call found in doubt after a crash asks whatever this says. Pure: the
    middleware uses it to ask about a turn at once only where a question can arise."""
    plan = _plan(pack, action)
    if plan is None:
        return False
    if plan.action.on_cap_exceeded == "approve":
        return True
    return any(kind is DecisionKind.REQUIRE_APPROVAL for kind, _, _ in plan.modes)


def _verdict(
    kind: DecisionKind,
    reasons: tuple[str, ...],
    message: str,
    call: CallRequest,
    level: AutonomyLevel,
    pack: PolicyPack,
    plan: _Plan,
    cost: float,
    outcomes: tuple[ValidatorOutcome, ...],
    charges: tuple[Charge, ...] = (),
) -> Decision:
    """A decision on an action of the pack, with the fields every such decision carries."""
    return Decision(
        kind,
        reasons,
        message,
        call.action,
        call.tool,
        level,
        call.scope,
        pack.name,
        pack.version,
        cost,
        plan.currency,
        charges,
        None,
        None,
        outcomes,
        plan.roles,
        plan.timeout,
        plan.fail_open,
    )


class _Plan:
    """What :func:`decide` needs of one action of one pack, derived once per pack.

    ``modes`` / ``doubt_modes`` are indexed by level (not in doubt / in doubt) and hold the
    level step's verdict: ``(kind, reason, text)``, where ``text`` is the message of a
    simulation or an approval request, and the start of an allowed call's message."""

    __slots__ = (
        "action",
        "currency",
        "doubt_modes",
        "fail_open",
        "modes",
        "passed",
        "priced",
        "roles",
        "timeout",
        "user",
        "validators",
    )

    def __init__(self, pack: PolicyPack, name: str, action: ActionPolicy) -> None:
        self.action = action
        self.priced = action.cost is not None
        self.currency = action.cost.currency if action.cost is not None else pack.defaults.currency
        self.fail_open = action.fail_open
        self.roles = action.approval.roles
        self.timeout = action.approval.timeout
        self.validators = pack.validators_for(name)
        self.passed = tuple(ValidatorOutcome(v.name, True, "") for v in self.validators)
        self.user = tuple((i, v) for i, v in enumerate(self.validators) if v.user)
        levels = sorted(AutonomyLevel)
        self.modes = tuple(_mode(name, action, level, False) for level in levels)
        self.doubt_modes = tuple(_mode(name, action, level, True) for level in levels)


def _mode(
    name: str, action: ActionPolicy, level: AutonomyLevel, in_doubt: bool
) -> tuple[DecisionKind, str, str]:
    mode, reason = _level_mode(action, level, in_doubt)
    if mode is DecisionKind.SIMULATE:
        text = f"simulated: {name} ({action.kind}) does not run at {level.label}; returning a draft"
    elif mode is DecisionKind.REQUIRE_APPROVAL:
        who = ", ".join(action.approval.roles) or "any approver"
        text = f"needs approval ({who}): {name} is {_why(reason)} at {level.label}"
    else:
        text = f"allowed: {name} at {level.label}"
    return mode, reason, text


def _plan(pack: PolicyPack, name: str) -> _Plan | None:
    """The derived plan of action ``name`` in ``pack`` (``None``: not in the pack)."""
    memo = pack.lookup.memo
    plan: _Plan | None = memo.get(name)
    if plan is None:
        action = pack.action(name)
        if action is None:
            return None
        plan = memo[name] = _Plan(pack, name, action)
    return plan


def check(validator: CompiledValidator, call: CallRequest) -> str | None:
    """Run one validator: ``None`` if ``call`` passes, else why not. One that raises fails
    closed (a :class:`CheckError` says so, and the call is denied, never run)."""
    try:
        return validator.fn(call, validator.params)
    except Exception as exc:
        return CheckError(f"the validator raised {type(exc).__name__}: {exc}")


def _said(
    validator: CompiledValidator,
    index: int,
    call: CallRequest,
    checked: Mapping[int, str | None] | None,
) -> str | None:
    """What validator ``index`` says of ``call``: as already ``checked``, else run now."""
    if checked is not None and index in checked:
        return checked[index]
    return check(validator, call)


def _outcome(validator: CompiledValidator, msg: str | None) -> ValidatorOutcome:
    if msg is None:
        return ValidatorOutcome(validator.name, True, "")
    return ValidatorOutcome(validator.name, False, msg)


def user_validators(pack: PolicyPack, name: str) -> tuple[tuple[int, CompiledValidator], ...]:
    """The validators of action ``name`` that run the application's own code (custom
    validators, ``consent``'s check), with their index in the action's list: what the
    pipeline runs off the event loop and passes to :func:`decide` as ``checked``."""
    plan = _plan(pack, name)
    return () if plan is None else plan.user


def _level_mode(
    action: ActionPolicy, level: AutonomyLevel, in_doubt: bool
) -> tuple[DecisionKind, str]:
    if level < _KIND_MIN_LEVEL[action.kind]:
        return DecisionKind.SIMULATE, "level_too_low"
    if in_doubt:
        return DecisionKind.REQUIRE_APPROVAL, "in_doubt"
    when = action.approval.when
    if when == "always":
        return DecisionKind.REQUIRE_APPROVAL, "approval_required:always"
    if when == "auto" and level < AutonomyLevel.ORCHESTRATE:
        if action.sensitive:
            return DecisionKind.REQUIRE_APPROVAL, "approval_required:sensitive"
        if action.risk == "high":
            return DecisionKind.REQUIRE_APPROVAL, "approval_required:high_risk"
    return DecisionKind.ALLOW, "allowed"


def _why(reason: str) -> str:
    return {
        "in_doubt": "in doubt (an earlier run started and never finished)",
        "approval_required:always": "always approved by a human",
        "approval_required:sensitive": "sensitive",
        "approval_required:high_risk": "high-risk",
    }.get(reason, reason)


def _breach_text(charge: Charge, spent: float, currency: str) -> str:
    if charge.kind == "budget":
        left = max(charge.limit - spent, 0.0)
        return (
            f"budget {charge.label} has {left:.2f} {currency} left of {charge.limit:.2f}; "
            f"this call needs {charge.amount:.2f}"
        )
    return (
        f"exposure cap for {charge.label} reached ({spent:g} of {charge.limit:g} touches "
        "in this window)"
    )
