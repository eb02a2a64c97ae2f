"""The values that flow through one guarded call: the request, charges and the decision.

These are slotted dataclasses built on every call; they are not frozen because frozen
dataclasses cost about four times as much to build. Treat them as read-only values and use
:func:`dataclasses.replace` to derive a changed copy.

``Decision.message`` is a property over the field's slot: the engine may leave a decision's
text unformatted (most allowed calls are never explained to anyone) and it is formatted the
first time it is read, by any means (attribute, ``repr``, ``==``, ``replace``, pickling).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.scope import Scope

__all__ = [
    "CallRequest",
    "Charge",
    "Decision",
    "DecisionKind",
    "ValidatorOutcome",
]


class _NoExtra(Mapping[str, Any]):
    """The shared, immutable, empty ``Decision.extra`` (most decisions have none)."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return False

    def get(self, key: str, default: Any = None) -> Any:
        return default  # read on every call (``extra.get("over_cap")``): no KeyError round trip

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "{}"


_NO_EXTRA: Mapping[str, Any] = _NoExtra()


class DecisionKind(enum.StrEnum):
    """The verdict for one call."""

    ALLOW = "allow"
    SIMULATE = "simulate"
    REQUIRE_APPROVAL = "require_approval"
    DENY = "deny"
    HALT = "halt"


@dataclass(slots=True)
class CallRequest:
    """One tool call the model asked for, with the action it is bound to and its scope."""

    tool: str
    action: str
    args: Mapping[str, Any]
    scope: Scope = Scope()
    call_id: str = ""


class Charge(NamedTuple):
    """One counter a call would move: a budget (money) or an exposure (touches of an entity).

    ``key`` identifies the counter in the store, window bucket included; ``limit`` is the cap
    for that bucket; ``expires_at`` is the bucket's end (Unix seconds), after which the counter
    may be forgotten. (A named tuple: immutable, and cheap to keep in a store's records.)
    """

    key: str
    kind: str  # "budget" | "exposure"
    amount: float
    limit: float
    expires_at: int
    label: str  # what to call it in messages: the budget's name or the entity


class CheckError(str):
    """What a validator "said" when it could not answer: it raised, or did not answer within
    the pack's ``defaults.check_timeout``. The call fails closed on it as on a failure, but
    it is no policy violation."""

    __slots__ = ()


class ValidatorOutcome(NamedTuple):
    """The result of one validator for one call."""

    name: str
    passed: bool
    message: str = ""

    @property
    def error(self) -> bool:
        """It did not pass because it could not answer (its ``message`` is a
        :class:`CheckError`): the call is denied all the same, but that is not a policy
        violation (no trip-wire, not counted against the policy pass rate)."""
        return isinstance(self.message, CheckError)


@dataclass(slots=True)
class Decision:
    """The engine's verdict for one call, with everything needed to explain and enforce it.

    ``reasons`` are machine-readable codes (``budget_exceeded``, ``exposure_exceeded``,
    ``validator_failed:<name>``, ``validator_error:<name>`` (the check could not answer),
    ``level_too_low``, ``kill_switch:<scope>``,
    ``approval_required:<why>``, ``store_unavailable``, ...). ``charges`` are the counters to
    reserve when the call goes ahead. ``budget_left`` / ``exposure_left`` are the smallest
    headroom across the charges, after this call, where the call has any.
    """

    kind: DecisionKind
    reasons: tuple[str, ...]
    message: str
    action: str
    tool: str
    level: AutonomyLevel
    scope: Scope
    pack: str
    pack_version: str
    cost: float = 0.0
    currency: str = "USD"
    charges: tuple[Charge, ...] = ()
    budget_left: float | None = None
    exposure_left: float | None = None
    validators: tuple[ValidatorOutcome, ...] = ()
    approval_roles: tuple[str, ...] = ()
    approval_timeout: float | None = None
    fail_open: bool = False
    extra: Mapping[str, Any] = _NO_EXTRA
    cohort: str | None = None  # control or treatment, in a gate's experiment
    cohort_entity: str | None = None  # a short hash of the entity the split hashed

    @property
    def allowed(self) -> bool:
        return self.kind is DecisionKind.ALLOW

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view, used by the audit log and by results handed to the agent."""
        return {
            "decision": self.kind.value,
            "reasons": list(self.reasons),
            "message": self.message,
            "action": self.action,
            "tool": self.tool,
            "level": int(self.level),
            "level_name": self.level.name.lower(),
            "scope": self.scope.as_dict(),
            "pack": self.pack,
            "pack_version": self.pack_version,
            "cost": self.cost,
            "currency": self.currency,
            "budget_left": self.budget_left,
            "exposure_left": self.exposure_left,
            "validators": [
                {"name": v.name, "passed": v.passed, "message": v.message}
                | ({"error": True} if v.error else {})
                for v in self.validators
            ],
            "approval_roles": list(self.approval_roles),
        } | (
            {}
            if self.cohort is None
            else {"cohort": self.cohort, "cohort_entity": self.cohort_entity}
        )


# ``Decision.message`` as a property over its slot. The slot holds the text, or, for a
# decision the engine did not explain yet, a ``(prefix, budget_left, currency)`` tuple that
# is formatted (once) when the message is first read. The dataclass machinery (``__init__``,
# ``__eq__``, ``__repr__``, ``replace``, copying and pickling) reads and writes the field
# through the property, so a decision behaves exactly as if its text had been formatted
# when it was built.
_MESSAGE_SLOT: Any = Decision.__dict__["message"]
_read_slot = _MESSAGE_SLOT.__get__


def _message(self: Decision) -> str:
    text = _read_slot(self, Decision)
    if text.__class__ is tuple:
        prefix, left, currency = text
        text = f"{prefix} ({left:.2f} {currency} left in budget)"
        _MESSAGE_SLOT.__set__(self, text)
    return text  # type: ignore[no-any-return]


setattr(  # noqa: B010 - a property cannot be declared over a dataclass field's own slot
    Decision,
    "message",
    property(_message, _MESSAGE_SLOT.__set__, doc="What happened and why, in words."),
)


def allowed_message(prefix: str, budget_left: float | None, currency: str) -> str:
    """The message of an ``allow`` decision, to pass as ``Decision(message=...)``: ``prefix``,
    then the budget left when there is one, formatted only if the message is ever read."""
    if budget_left is None:
        return prefix
    return (prefix, budget_left, currency)  # type: ignore[return-value]
