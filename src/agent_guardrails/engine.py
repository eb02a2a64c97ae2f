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
from typing import Any

from agent_guardrails.decision import CallRequest, Charge, Decision, DecisionKind, ValidatorOutcome
from agent_guardrails.levels import AutonomyLevel
from agent_guardrails.policy import ActionPolicy, BudgetRule, PolicyPack
from agent_guardrails.scope import Scope
from agent_guardrails.validators import CompiledValidator
from agent_guardrails.windows import window_bucket

__all__ = [
    "CostError",
    "budget_charges",
    "budget_counter",
    "call_cost",
    "charges_for",
    "decide",
]

_EPS = 1e-9
_KIND_MIN_LEVEL = {
    "read": AutonomyLevel.EXECUTE,
    "execute": AutonomyLevel.EXECUTE,
    "optimize": AutonomyLevel.OPTIMIZE,
    "orchestrate": AutonomyLevel.ORCHESTRATE,
}


class CostError(ValueError):
    """The call's arguments do not say what it costs (the pack prices it from an argument)."""


def call_cost(action: ActionPolicy, args: Mapping[str, Any]) -> float:
    """The cost of one call: ``amount + per_unit * args[arg]`` (a list counts its items)."""
    rule = action.cost
    if rule is None:
        return 0.0
    total = rule.amount
    if rule.arg is not None:
        value = args.get(rule.arg)
        if isinstance(value, list | tuple | set | frozenset):
            units = float(len(value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            units = float(value)
        else:
            raise CostError(
                f"argument {rule.arg!r} must be a number or a list to price this call, "
                f"got {value!r}"
            )
        if units < 0:
            raise CostError(f"argument {rule.arg!r} must not be negative, got {value!r}")
        total += rule.per_unit * units
    return total


def _entities(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return sorted({str(v) for v in value})
    return [str(value)]


def budget_counter(budget: BudgetRule, now: float) -> tuple[str, int]:
    """The store key of ``budget``'s counter for the window holding ``now``, and its end.

    The key does not depend on the pack version, so a new version keeps counting."""
    cached = _COUNTER_CACHE.get(id(budget))
    if cached is not None and cached[0] is budget and cached[1] <= now < cached[2]:
        return cached[3], cached[2]
    start, end = window_bucket(budget.window, now)
    ident = budget.name or (
        f"{budget.scope.to_scope().key}|{budget.window}|{','.join(sorted(budget.actions))}"
    )
    key = f"budget:{ident}|{budget.currency}@{start}"
    if len(_COUNTER_CACHE) > 4096:
        _COUNTER_CACHE.clear()
    _COUNTER_CACHE[id(budget)] = (budget, start, end, key)
    return key, end


# The current window's counter key per budget rule: (rule, start, end, key), by id(rule).
# Rules are immutable and the entry keeps its rule alive, so an id is never reused while
# its entry exists; entries for other windows are recomputed.
_COUNTER_CACHE: dict[int, tuple[BudgetRule, int, int, str]] = {}


def budget_charges(
    action: str, scope: Scope, pack: PolicyPack, cost: float, currency: str, now: float
) -> list[Charge]:
    """One charge of ``cost`` on every budget in ``currency`` that covers ``action`` in
    ``scope`` (model spend uses the action name ``model.call``)."""
    charges = []
    for budget in pack.budgets_for(action, scope):
        if budget.currency != currency:
            continue
        key, end = budget_counter(budget, now)
        charges.append(Charge(key, "budget", cost, budget.limit, end, budget.label))
    return charges


def charges_for(
    call: CallRequest, action: ActionPolicy, pack: PolicyPack, *, cost: float, now: float
) -> tuple[Charge, ...]:
    """The counters this call would move: each matching budget, each touched entity."""
    charges: list[Charge] = []
    # A priced action is charged even when this call's estimate is 0, so that the actual
    # cost it reports (``report_cost``) is committed to its budgets.
    if action.cost is not None:
        charges.extend(
            budget_charges(call.action, call.scope, pack, cost, action.cost.currency, now)
        )
    exposure = action.exposure
    if exposure is not None:
        start, end = window_bucket(exposure.window, now)
        group = exposure.group or call.action
        for entity in _entities(call.args.get(exposure.entity)):
            charges.append(
                Charge(
                    key=f"exposure:{group}:{entity}@{start}",
                    kind="exposure",
                    amount=1.0,
                    limit=float(exposure.limit),
                    expires_at=end,
                    label=f"{exposure.entity}={entity}",
                )
            )
    return tuple(charges)


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
) -> Decision:
    """Decide one call. ``used`` maps counter keys to what is already spent or reserved;
    ``kill_switches`` are the engaged switches' scopes. Pure: same inputs, same decision."""
    base: dict[str, Any] = {
        "action": call.action,
        "tool": call.tool,
        "level": level,
        "scope": call.scope,
        "pack": pack.name,
        "pack_version": pack.version,
    }

    # 1. kill-switch
    for switch in kill_switches:
        if switch.matches(call.scope):
            return Decision(
                DecisionKind.HALT,
                (f"kill_switch:{switch.key}",),
                f"halted: the kill-switch for {switch.key} is engaged",
                **base,
            )

    action = pack.action(call.action)
    if action is None:
        return Decision(
            DecisionKind.DENY,
            (f"unknown_action:{call.action}",),
            f"denied: action {call.action!r} is not in pack {pack.name} v{pack.version}; "
            "add it under 'actions' to govern this tool",
            **base,
        )
    base["fail_open"] = action.fail_open
    base["approval_roles"] = action.approval.roles
    base["approval_timeout"] = action.approval.timeout

    # An unpriceable call is a cap problem: it is denied at the caps step, after the level
    # (a draft spends nothing) and the validators, like any other cap problem.
    cost_error: CostError | None = None
    try:
        cost = call_cost(action, call.args)
    except CostError as exc:
        cost, cost_error = 0.0, exc
    base["cost"] = cost
    if action.cost is not None:
        base["currency"] = action.cost.currency
    else:
        base["currency"] = pack.defaults.currency

    # 2. level
    mode, level_reason = _level_mode(action, level, in_doubt)

    # 3. validators (at every level)
    outcomes = tuple(_run_validator(v, call) for v in pack.validators_for(call.action))
    failed = [o for o in outcomes if not o.passed]
    # All passed (the usual case): share one tuple per action rather than keep a new one.
    base["validators"] = outcomes if failed else pack.lookup.passed(call.action, outcomes)
    if failed:
        return Decision(
            DecisionKind.DENY,
            tuple(f"validator_failed:{o.name}" for o in failed),
            "denied: " + "; ".join(f"{o.name}: {o.message}" for o in failed),
            **base,
        )

    if mode is DecisionKind.SIMULATE:
        return Decision(
            DecisionKind.SIMULATE,
            (level_reason,),
            f"simulated: {call.action} ({action.kind}) does not run at {level.label}; "
            "returning a draft",
            **base,
        )

    # 4. caps
    if cost_error is not None:
        return Decision(DecisionKind.DENY, ("cost_unknown",), f"denied: {cost_error}", **base)
    exposure = action.exposure
    if exposure is not None and call.args.get(exposure.entity) in (None, "", [], ()):
        return Decision(
            DecisionKind.DENY,
            ("exposure_unknown",),
            f"denied: argument {exposure.entity!r} is missing, so the exposure cap of "
            f"{call.action} cannot be checked; pass the contact or account id(s)",
            **base,
        )
    if charges is None:
        charges = charges_for(call, action, pack, cost=cost, now=now)
    base["charges"] = charges
    breaches: list[tuple[Charge, float]] = []
    budget_left: float | None = None
    exposure_left: float | None = None
    for charge in charges:
        spent = used.get(charge.key, 0.0)
        left = charge.limit - spent - charge.amount
        if left < -_EPS:
            breaches.append((charge, spent))
        if charge.kind == "budget":
            budget_left = left if budget_left is None else min(budget_left, left)
        else:
            exposure_left = left if exposure_left is None else min(exposure_left, left)
    base["budget_left"] = budget_left
    base["exposure_left"] = exposure_left
    if breaches:
        reasons = tuple(dict.fromkeys(f"{c.kind}_exceeded" for c, _ in breaches))
        detail = "; ".join(_breach_text(c, spent, base["currency"]) for c, spent in breaches)
        first, first_spent = breaches[0]
        extra = {
            "cap": first.label,
            "cap_kind": first.kind,
            "limit": first.limit,
            "spent": first_spent,
            "requested": first.amount,
        }
        if level >= AutonomyLevel.OPTIMIZE and action.on_cap_exceeded == "approve":
            return Decision(
                DecisionKind.REQUIRE_APPROVAL,
                (*reasons, "approval_required:cap_exceeded"),
                f"needs approval: {detail}",
                extra={**extra, "over_cap": True},
                **base,
            )
        return Decision(DecisionKind.DENY, reasons, f"denied: {detail}", extra=extra, **base)

    # 5. approval
    if mode is DecisionKind.REQUIRE_APPROVAL:
        who = ", ".join(action.approval.roles) or "any approver"
        return Decision(
            DecisionKind.REQUIRE_APPROVAL,
            (level_reason,),
            f"needs approval ({who}): {call.action} is {_why(level_reason)} at {level.label}",
            **base,
        )
    return Decision(
        DecisionKind.ALLOW,
        ("allowed",),
        f"allowed: {call.action} at {level.label}" + _left_text(budget_left, base["currency"]),
        **base,
    )


def _run_validator(validator: CompiledValidator, call: CallRequest) -> ValidatorOutcome:
    """Run one validator; one that raises fails closed (the call is denied, never run)."""
    try:
        msg = validator(call)
    except Exception as exc:
        msg = f"the validator raised {type(exc).__name__}: {exc}"
    return ValidatorOutcome(validator.name, msg is None, msg or "")


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


def _left_text(budget_left: float | None, currency: str) -> str:
    return "" if budget_left is None else f" ({budget_left:.2f} {currency} left in budget)"
