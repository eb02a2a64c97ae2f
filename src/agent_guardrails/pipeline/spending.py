"""Money: the actual cost a tool reports, finite numbers only, and model spend.

**report_cost.** Inside a guarded tool body, ``report_cost(amount)`` replaces the call's
estimated cost with the actual one, committed to its budgets when the call finishes. The
pipeline hands the body a :class:`CostCell` through a context variable; LangChain and
LangGraph run tools in *copies* of the context (threads, tasks), so the cell is a mutable
object that every copy shares, not a value a copy would keep to itself.

**Finite numbers only.** NaN, infinity and negative amounts are refused with a
``ValueError`` naming the field, before anything is charged or run (a NaN would otherwise
compare false against every limit and pass forever).

**Model spend** (the middleware's model hooks): before a model call, a budget covering
``model.call`` that is spent stops the call; after it, its tokens are priced from the pack's
``model_prices`` and charged (the spend happened: it is recorded even past the limit). If
the store cannot be reached before the call and a budget covers model calls, the call is not
made (fail closed).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent_guardrails.engine.charges import budget_charges
from agent_guardrails.errors import StoreUnavailable
from agent_guardrails.pipeline import events
from agent_guardrails.pipeline.effects import Flow, StoreOp
from agent_guardrails.pipeline.outbox import write
from agent_guardrails.policy.pack import MODEL_ACTION
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import Snapshot

if TYPE_CHECKING:
    from agent_guardrails.pipeline.guardrails import Guardrails

__all__ = ["CostCell", "finite", "model_check", "model_spend", "report_cost"]


class CostCell:
    """Where one running call's ``report_cost`` goes."""

    __slots__ = ("amount",)

    def __init__(self) -> None:
        self.amount: float | None = None


_cell: contextvars.ContextVar[CostCell | None] = contextvars.ContextVar(
    "agent_guardrails_cost", default=None
)
current_cell = _cell


def finite(value: object, field: str) -> float:
    """``value`` as a float, or a ``ValueError`` naming ``field`` when it is not a finite
    number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int past a float's range
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{field} must be a finite number >= 0, got {value!r}")
    return number


def report_cost(amount: float) -> None:
    """Inside a guarded tool body: the call's actual cost, committed instead of the estimate.

    Raises ``ValueError`` for NaN, infinite or negative amounts (nothing is charged then:
    the call fails and releases what it held).

    >>> report_cost(0.0)  # outside a guarded call it is ignored
    """
    checked = finite(amount, "report_cost amount")
    cell = _cell.get()
    if cell is not None:
        cell.amount = checked


def _model_charges(g: Guardrails, scope: Scope, cost: float, currency: str) -> list[Any]:
    return budget_charges(MODEL_ACTION, scope, g.policy, cost, currency, g.clock())


def model_check(g: Guardrails, scope: Scope) -> Flow[str | None]:
    """Before a model call: ``None`` to go ahead, else why not (a spent budget covering
    ``model.call``, or the store being unreachable while such a budget applies)."""
    if not g.policy.model_prices:  # model spend is not priced: nothing to check
        return None
    charges = _model_charges(g, scope, 0.0, g.policy.defaults.currency)
    if not charges:
        return None
    try:
        snap: Snapshot = yield StoreOp(
            "snapshot", dial_key="", counter_keys=[c.key for c in charges], call_key=""
        )
    except StoreUnavailable as exc:
        return (
            f"Stopped: the guardrails store is unavailable ({exc}), so model spend cannot be "
            "checked against its budget and no model call was made (store_unavailable)."
        )
    for charge in charges:
        if snap.used.get(charge.key, 0.0) >= charge.limit:
            return (
                f"Stopped: budget {charge.label} is spent for this window, so no more model "
                "or tool spend is allowed. An operator can raise the budget in a new pack "
                "version."
            )
    return None


def model_spend(
    g: Guardrails,
    *,
    model: str,
    input_tokens: int,
    output_tokens: int,
    scope: Scope,
    key: str,
) -> Flow[tuple[float, str]]:
    """Charge one model call to every budget covering ``model.call`` in ``scope``; returns
    its cost and currency (0 for a model the pack does not price)."""
    price = g.policy.model_prices.get(model)
    if price is None:
        return 0.0, g.policy.defaults.currency
    tokens_in = finite(input_tokens, "input_tokens")
    tokens_out = finite(output_tokens, "output_tokens")
    cost = tokens_in / 1000 * price.input_per_1k + tokens_out / 1000 * price.output_per_1k
    data: Mapping[str, Any] = {
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost": cost,
        "currency": price.currency,
        "scope": scope.as_dict(),
    }
    audit = events.event("model.spend", data, key)
    charges = _model_charges(g, scope, cost, price.currency)
    yield from write(StoreOp("reserve", key, charges, audit=audit, force=True), g.outbox)
    yield from write(StoreOp("finish", key, ok=True), g.outbox)
    return cost, price.currency
