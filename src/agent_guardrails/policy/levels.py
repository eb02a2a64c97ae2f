"""Autonomy levels and the decision matrix that recommends one.

>>> AutonomyLevel.parse("L2")
<AutonomyLevel.OPTIMIZE: 2>
>>> recommend_level("high", "mature").level
<AutonomyLevel.ORCHESTRATE: 3>
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

__all__ = ["AutonomyLevel", "LevelRecommendation", "recommend_level"]


class AutonomyLevel(enum.IntEnum):
    """How much an agent may do on its own in one scope.

    ``ASSIST`` drafts and simulates only; ``EXECUTE`` runs low-risk steps and asks for
    approval on sensitive ones; ``OPTIMIZE`` may also reallocate budgets and effort within
    caps; ``ORCHESTRATE`` plans and runs multi-step campaigns end to end.
    """

    ASSIST = 0
    EXECUTE = 1
    OPTIMIZE = 2
    ORCHESTRATE = 3

    @classmethod
    def parse(cls, value: object) -> AutonomyLevel:
        """Read a level from ``2``, ``"2"``, ``"L2"``, ``"optimize"`` or ``"OPTIMIZE"``.

        Raises ``ValueError`` naming the accepted spellings for anything else.
        """
        if isinstance(value, AutonomyLevel):
            return value
        if isinstance(value, bool):  # bool is an int subclass; True is not a level
            raise ValueError(_bad_level(value))
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(_bad_level(value)) from None
        if isinstance(value, str):
            text = value.strip().lower()
            if text.startswith("l") and text[1:].isdigit():
                text = text[1:]
            if text.isdigit():
                try:  # the error names what was written ("L4"), not the number in it
                    return cls(int(text))
                except ValueError:
                    raise ValueError(_bad_level(value)) from None
            member = _BY_NAME.get(text)
            if member is not None:
                return member
        raise ValueError(_bad_level(value))

    @property
    def label(self) -> str:
        """``"L2 Optimize"``: the short form used in messages and tables."""
        return _LABELS[self]


_BY_NAME = {member.name.lower(): member for member in AutonomyLevel}
_LABELS = {member: f"L{int(member)} {member.name.title()}" for member in AutonomyLevel}


def _bad_level(value: object) -> str:
    return (
        f"unknown autonomy level {value!r}: use 0-3, L0-L3 or one of "
        "assist, execute, optimize, orchestrate"
    )


Risk = Literal["low", "medium", "high"]
DataQuality = Literal["weak", "varies", "good", "strong", "reliable", "mature"]

_RISKS: tuple[Risk, ...] = ("low", "medium", "high")
_QUALITIES: tuple[DataQuality, ...] = ("weak", "varies", "good", "strong", "reliable", "mature")


@dataclass(frozen=True, slots=True)
class LevelRecommendation:
    """The level the decision matrix recommends, with the guardrails to pair it with."""

    level: AutonomyLevel
    ceiling: AutonomyLevel
    guardrails: tuple[str, ...]
    rationale: str


def recommend_level(risk: str, data_quality: str) -> LevelRecommendation:
    """Recommend a starting level from a use case's risk and the quality of its data.

    The matrix (rows from the product design):

    ========================  ===========  ===================  ======================
    use case                  risk         data quality         level
    ========================  ===========  ===================  ======================
    subject lines             low-medium   good engagement      Execute
    audience lists            medium       strong dictionary    Execute (ceiling Opt.)
    offer/channel allocation  medium       reliable attribution Optimize
    publishing and booking    high         varies               Assist (ceiling Exec.)
    end-to-end orchestration  high         mature telemetry     Orchestrate
    ========================  ===========  ===================  ======================

    Anything weaker than the row it resembles drops to Assist: a level is earned with data.
    Lower risk never gets a lower level or ceiling than higher risk with the same data.
    ``ValueError`` names the argument and its allowed values for anything else.

    >>> r = recommend_level("medium", "strong")
    >>> (r.level.name, r.ceiling.name)
    ('EXECUTE', 'OPTIMIZE')
    """
    r = _choice("risk", risk, _RISKS)
    q = _choice("data_quality", data_quality, _QUALITIES)
    rank = _QUALITIES.index(q)
    base = ("validators", "audit log", "kill-switch")
    # Lower risk never earns less than higher risk with the same evidence: mature telemetry
    # earns Orchestrate at every risk, reliable attribution earns Optimize at low and medium.
    if q == "mature":
        return LevelRecommendation(
            AutonomyLevel.ORCHESTRATE,
            AutonomyLevel.ORCHESTRATE,
            (*base, "run budget", "run SLA", "approval on 'always' actions", "traces"),
            f"{r} risk with mature telemetry: orchestrate end to end under a run budget",
        )
    if r == "high":
        if rank >= _QUALITIES.index("good"):
            return LevelRecommendation(
                AutonomyLevel.EXECUTE,
                AutonomyLevel.EXECUTE,
                (*base, "approval on every sensitive step", "exposure caps"),
                "high risk with good data: execute, with a human approving each publish/booking",
            )
        return LevelRecommendation(
            AutonomyLevel.ASSIST,
            AutonomyLevel.EXECUTE,
            (*base, "human approves or edits every output"),
            "high risk with varying data: draft only until the success gate passes",
        )
    if q == "reliable":
        return LevelRecommendation(
            AutonomyLevel.OPTIMIZE,
            AutonomyLevel.OPTIMIZE,
            (*base, "budget caps", "exposure caps", "control group", "weekly oversight"),
            f"{r} risk with reliable attribution: reallocate within caps",
        )
    if r == "medium":
        if q == "strong":
            return LevelRecommendation(
                AutonomyLevel.EXECUTE,
                AutonomyLevel.OPTIMIZE,
                (*base, "field-dictionary validators", "exposure caps", "approval on sensitive"),
                "medium risk with a strong field dictionary: execute list ops, earn optimize",
            )
        if q == "good":
            return LevelRecommendation(
                AutonomyLevel.EXECUTE,
                AutonomyLevel.EXECUTE,
                (*base, "approval on sensitive steps"),
                "medium risk with good data: execute low-risk steps",
            )
        return LevelRecommendation(
            AutonomyLevel.ASSIST,
            AutonomyLevel.EXECUTE,
            (*base, "human approves or edits every output"),
            "medium risk with weak data: draft only",
        )
    if rank >= _QUALITIES.index("good"):
        return LevelRecommendation(
            AutonomyLevel.EXECUTE,
            AutonomyLevel.OPTIMIZE,
            (*base, "engagement tracking"),
            "low risk with good engagement data: execute",
        )
    return LevelRecommendation(
        AutonomyLevel.ASSIST,
        AutonomyLevel.EXECUTE,
        (*base,),
        "low risk but weak data: draft until outcomes are measured",
    )


def _choice(argument: str, value: object, allowed: tuple[str, ...]) -> str:
    """``value`` normalised (case and spaces ignored), or a ``ValueError`` naming the
    argument and the allowed values."""
    what = argument.replace("_", " ")
    if not isinstance(value, str):
        raise ValueError(
            f"{argument} must be a string, one of {', '.join(allowed)}; "
            f"got {type(value).__name__} {value!r}"
        )
    text = value.strip().lower()
    if text not in allowed:
        raise ValueError(
            f"unknown {what} {value!r} for {argument}: use one of {', '.join(allowed)}"
        )
    return text
