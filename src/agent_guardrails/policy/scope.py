"""Scopes: where a call happens (agent, workflow, segment, channel, region).

A *call scope* has a value for each dimension it knows. A *rule scope* (in a policy pack, a
kill-switch or a level dial) names only the dimensions it constrains; it matches a call scope
when every dimension it names has the same value there. The more dimensions a rule names, the
more specific it is.

>>> rule = Scope(workflow="newsletter")
>>> rule.matches(Scope(workflow="newsletter", region="eu"))
True
>>> Scope.parse("workflow=newsletter,region=eu").key
'region=eu,workflow=newsletter'
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DIMENSIONS", "Scope", "check_scope_value"]

DIMENSIONS: tuple[str, ...] = ("agent", "workflow", "segment", "channel", "region")


# Control characters (Cc), invisible formatting ones such as zero-width spaces and bidi
# overrides (Cf), and line/paragraph separators: a scope value that looks like another.
_INVISIBLE = frozenset(("Cc", "Cf", "Zl", "Zp"))


def check_scope_value(dim: str, value: str) -> str:
    """Return ``value`` unless it holds a control or invisible character (``\\x00``, a
    newline, a zero-width space, a right-to-left override), which would make two scopes
    look alike in logs, the CLI and the store; raise ``ValueError`` naming the character."""
    for position, ch in enumerate(value):
        if unicodedata.category(ch) in _INVISIBLE:
            name = unicodedata.name(ch, "control character")
            raise ValueError(
                f"scope {dim} {value!r} contains U+{ord(ch):04X} ({name}) at position "
                f"{position}; scope values must be visible text without control characters"
            )
    return value


@dataclass(frozen=True, slots=True)
class Scope:
    """A partial assignment of the five scope dimensions. ``Scope()`` is the global scope."""

    agent: str | None = None
    workflow: str | None = None
    segment: str | None = None
    channel: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        # Built directly (``Scope(region=...)``) as well as through from_mapping/parse: a
        # value must be non-empty visible text however the scope was made. (Scopes are
        # built when rules load and scopes resolve, not per call: resolution reuses them.)
        for dim, value in self.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"scope {dim} must be a non-empty string, got {value!r}")
            if not value.isprintable():  # the usual case skips the per-character check
                check_scope_value(dim, value)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Scope:
        """Build a scope from a mapping; unknown keys are an error naming the allowed ones."""
        unknown = sorted(set(data) - set(DIMENSIONS))
        if unknown:
            raise ValueError(
                f"unknown scope dimension(s) {', '.join(unknown)}: use {', '.join(DIMENSIONS)}"
            )
        values: dict[str, str] = {}
        for dim, value in data.items():
            if value is None:
                continue
            if not isinstance(value, str | int) or isinstance(value, bool) or value == "":
                raise ValueError(f"scope {dim} must be a non-empty string, got {value!r}")
            values[dim] = check_scope_value(dim, str(value))
        return cls(**values)

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse ``"global"`` or ``"workflow=newsletter,region=eu"`` (the CLI form)."""
        text = text.strip()
        if text in ("", "global", "*"):
            return cls()
        pairs: dict[str, str] = {}
        for part in text.split(","):
            dim, sep, value = part.partition("=")
            if not sep or not dim.strip() or not value.strip():
                raise ValueError(
                    f"bad scope {text!r}: write 'global' or dim=value pairs separated by "
                    f"commas, e.g. workflow=newsletter,region=eu (dims: {', '.join(DIMENSIONS)})"
                )
            if dim.strip() in pairs:
                raise ValueError(f"bad scope {text!r}: {dim.strip()} is given more than once")
            pairs[dim.strip()] = value.strip()
        return cls.from_mapping(pairs)

    def items(self) -> tuple[tuple[str, str], ...]:
        """The dimensions this scope sets, in the canonical order."""
        values = (self.agent, self.workflow, self.segment, self.channel, self.region)
        return tuple((d, v) for d, v in zip(DIMENSIONS, values, strict=True) if v is not None)

    @property
    def specificity(self) -> int:
        """How many dimensions the scope sets; the most specific matching rule wins."""
        return len(self.items())

    @property
    def key(self) -> str:
        """A canonical string (dimensions sorted by name), used as a store key."""
        items = sorted(self.items())
        return ",".join(f"{k}={v}" for k, v in items) if items else "global"

    def matches(self, call_scope: Scope) -> bool:
        """True when every dimension this rule sets has the same value in ``call_scope``."""
        return all(getattr(call_scope, dim) == value for dim, value in self.items())

    def compatible(self, other: Scope) -> bool:
        """True when some call scope could match both (no dimension set to two values)."""
        for dim, value in self.items():
            theirs = getattr(other, dim)
            if theirs is not None and theirs != value:
                return False
        return True

    def merge(self, other: Scope) -> Scope:
        """The union of two compatible scopes; ``other`` fills what this one leaves open."""
        return replace(other, **dict(self.items()))

    def as_dict(self) -> dict[str, str]:
        return dict(self.items())

    def __str__(self) -> str:
        return self.key
