"""The engine layer (pure, no I/O): the values of one call and :func:`decide`, which turns a
call and what the store knows into a :class:`Decision`."""

from agent_guardrails.engine.charges import (
    CostError,
    budget_charges,
    budget_counter,
    call_cost,
    charges_for,
)
from agent_guardrails.engine.decision import (
    CallRequest,
    Charge,
    Decision,
    DecisionKind,
    ValidatorOutcome,
)
from agent_guardrails.engine.rules import decide

__all__ = [
    "CallRequest",
    "Charge",
    "CostError",
    "Decision",
    "DecisionKind",
    "ValidatorOutcome",
    "budget_charges",
    "budget_counter",
    "call_cost",
    "charges_for",
    "decide",
]
