"""One exception family: :class:`GuardrailError` and subclasses that carry the numbers.

Guarded tools hand the agent a readable result by default; they raise these only when the
caller asks for exceptions (``@guarded(..., raise_on_deny=True)`` or
``Guardrails(raise_on_deny=True)``). Errors about configuration (bad packs, bad store URLs)
always raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent_guardrails.engine.decision import Decision

__all__ = [
    "ActionDenied",
    "ApprovalRejected",
    "ApprovalRequired",
    "BudgetExceeded",
    "CallInDoubt",
    "ConfigurationError",
    "ExposureExceeded",
    "GuardrailError",
    "KillSwitchEngaged",
    "PolicyError",
    "PackUnloadable",
    "PolicyProblem",
    "StoreUnavailable",
    "ValidatorFailed",
]


class GuardrailError(Exception):
    """Base class of every error agent-guardrails raises on purpose."""


class ConfigurationError(GuardrailError, ValueError):
    """Bad configuration (a store URL, a decorator argument): the message says what to fix."""


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One problem in a policy pack: where it is and what is allowed instead."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        text = (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
        # One problem, one line: a newline inside a key or value must not split it.
        return text.replace("\r", "\\r").replace("\n", "\\n")


class PolicyError(GuardrailError, ValueError):
    """A pack failed validation. ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[PolicyProblem]) -> None:
        self.problems = tuple(problems)
        n = len(self.problems)
        head = f"policy pack has {n} problem{'s' if n != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


class StoreUnavailable(GuardrailError):
    """The store could not be reached or failed; guarded calls fail closed. ``reason`` is
    the code their decisions carry."""

    reason = "store_unavailable"


class PackUnloadable(StoreUnavailable):
    """The store's active pack cannot be loaded in this process (a validator it has not
    registered): calls fail closed with reason ``pack_unloadable``."""

    reason = "pack_unloadable"


class CallInDoubt(GuardrailError):
    """A call with this key started earlier and never finished; it is not run again."""


class _DecisionError(GuardrailError):
    def __init__(self, decision: Decision) -> None:
        self.decision = decision
        self.reasons = decision.reasons
        self.scope = decision.scope
        self.action = decision.action
        super().__init__(decision.message)


class ActionDenied(_DecisionError):
    """The call was refused; ``reasons`` says why."""


class BudgetExceeded(ActionDenied):
    """A budget has no room: ``limit``, ``spent`` and ``requested`` are in ``currency``."""

    def __init__(
        self, decision: Decision, *, budget: str, limit: float, spent: float, requested: float
    ) -> None:
        super().__init__(decision)
        self.budget = budget
        self.limit = limit
        self.spent = spent
        self.requested = requested
        self.currency = decision.currency


class ExposureExceeded(ActionDenied):
    """An entity was touched as often as its cap allows in this window."""

    def __init__(self, decision: Decision, *, entity: str, limit: float, used: float) -> None:
        super().__init__(decision)
        self.entity = entity
        self.limit = limit
        self.used = used


class ValidatorFailed(ActionDenied):
    """A policy validator failed: ``validator`` names it, ``detail`` says what is wrong."""

    def __init__(self, decision: Decision, *, validator: str, detail: str) -> None:
        super().__init__(decision)
        self.validator = validator
        self.detail = detail


class KillSwitchEngaged(_DecisionError):
    """A kill-switch covering the call's scope is engaged."""


class ApprovalRejected(ActionDenied):
    """A human rejected the call; ``message`` carries their reason."""


class ApprovalRequired(_DecisionError):
    """The call needs a human's approval and no approver was available to ask."""
