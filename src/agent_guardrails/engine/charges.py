"""What a call costs and which counters it moves: budgets (money) and exposures (touches).

Pure functions of the call, its action's rules and the clock. A call's cost is the action's
``amount`` plus ``per_unit`` times the number in argument ``arg`` (a list counts its items);
only finite, non-negative numbers are accepted (``CostError`` otherwise: the engine denies
the call with reason ``cost_unknown`` and nothing is charged). Counter keys name their
window bucket (see :mod:`agent_guardrails.policy.windows`), so a new bucket is a new counter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agent_guardrails.engine.decision import CallRequest, Charge
from agent_guardrails.policy.pack import ActionPolicy, BudgetRule, PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.policy.windows import window_bucket

__all__ = [
    "CostError",
    "budget_charges",
    "budget_counter",
    "call_cost",
    "charges_for",
]


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
            try:
                units = float(value)
            except OverflowError:  # an int past a float's range: no finite price
                units = math.inf
        else:
            raise CostError(
                f"argument {rule.arg!r} must be a number or a list to price this call, "
                f"got {value!r}"
            )
        if not math.isfinite(units) or units < 0:
            raise CostError(
                f"argument {rule.arg!r} must be a finite number >= 0 to price this call, "
                f"got {value!r}"
            )
        total += rule.per_unit * units
        if not math.isfinite(total):
            raise CostError(
                f"the price of this call overflows: {rule.per_unit} per unit of "
                f"{rule.arg!r} times {value!r} is not a finite amount"
            )
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
    charges: tuple[Charge, ...] = ()
    # A priced action is charged even when this call's estimate is 0, so that the actual
    # cost it reports (``report_cost``) is committed to its budgets.
    if action.cost is not None:
        charges = _budget_charge_tuple(
            call.action, call.scope, pack, cost, action.cost.currency, now
        )
    exposure = action.exposure
    if exposure is not None:
        start, end = window_bucket(exposure.window, now)
        group = exposure.group or call.action
        touched = tuple(
            Charge(
                key=f"exposure:{group}:{entity}@{start}",
                kind="exposure",
                amount=1.0,
                limit=float(exposure.limit),
                expires_at=end,
                label=f"{exposure.entity}={entity}",
            )
            for entity in _entities(call.args.get(exposure.entity))
        )
        charges = (*charges, *touched)
    return charges


def _budget_charge_tuple(
    action: str, scope: Scope, pack: PolicyPack, cost: float, currency: str, now: float
) -> tuple[Charge, ...]:
    """:func:`budget_charges` as a tuple, shared by the calls of one action and scope with
    the same cost within the same windows (the usual case: fixed-price actions). Sharing
    one tuple of charges keeps the records a store holds per call small."""
    if cost.__class__ is not float:
        return tuple(budget_charges(action, scope, pack, cost, currency, now))
    memo = pack.lookup.memo
    # By the scope's identity (scopes are interned per Guardrails; hashing one costs more
    # than this whole lookup); the entry keeps its scope alive, so its id is not reused.
    memo_key = (action, id(scope), cost, currency)
    hit = memo.get(memo_key)
    if hit is not None and hit[0] is scope and hit[1] <= now < hit[2]:
        return hit[3]  # type: ignore[no-any-return]
    charges = tuple(budget_charges(action, scope, pack, cost, currency, now))
    since, until = -math.inf, math.inf
    for budget in pack.budgets_for(action, scope):
        if budget.currency == currency:
            start, end = window_bucket(budget.window, now)
            since, until = max(since, start), min(until, end)
    if len(memo) > 4096:
        memo.clear()
    memo[memo_key] = (scope, since, until, charges)
    return charges
