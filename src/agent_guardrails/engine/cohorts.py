"""Control cohorts: which work items stay at a scope's level and which try the next one.

A gate with ``holdout`` (see :class:`~agent_guardrails.policy.pack.GateRule`) runs an
experiment in its scope: a stable hash of the work item's entity (the call argument named
by ``holdout_entity``: a contact, an account, a campaign) with the gate's ``salt`` puts the
item, once and for good, in the **control** cohort (the ``holdout`` fraction, decided at
the scope's current level) or in the **treatment** cohort (decided at the gate's ``to``
level, the candidate). The lift the gate asks for compares the two. The salt is part of
the pack, so each split is recorded with the pack version that made it, and each decision
record names its cohort. A call without the entity argument is not in the experiment and
is decided at the current level.

The treatment never goes above the scope's ceiling: a gate leading past it runs no
experiment.

>>> cohort_of("contact-17", salt="s1", holdout=0.2)
'treatment'
>>> sum(cohort_of(f"c{i}", salt="s1", holdout=0.2) == "control" for i in range(10_000))
2016
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from agent_guardrails.engine.gates import gate_for
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope

__all__ = ["Cohort", "Split", "cohort_of", "split"]

Cohort = Literal["control", "treatment"]


def cohort_of(entity: str, *, salt: str, holdout: float) -> Cohort:
    """The cohort of ``entity``: SHA-256 of ``salt`` and ``entity`` read as a number in
    [0, 1); below ``holdout`` is control. The same inputs always give the same cohort."""
    digest = hashlib.sha256(f"{salt}\x00{entity}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2.0**64
    return "control" if u < holdout else "treatment"


class Split(NamedTuple):
    cohort: Cohort
    level: AutonomyLevel  # the level to decide the call at
    entity: str  # a short hash of the entity (never the entity itself: it may be personal)


def split(
    pack: PolicyPack, scope: Scope, level: AutonomyLevel, args: Mapping[str, Any]
) -> Split | None:
    """The cohort of a call in ``scope`` at ``level`` with ``args``, and the level to decide
    it at; ``None`` when no experiment runs there (no gate with a holdout up from ``level``,
    the entity argument missing, or the candidate level above the ceiling)."""
    if not pack.gates:
        return None
    dial = pack.dial_scope(scope)
    memo = pack.lookup.memo
    key = ("cohorts", dial.key, int(level))
    hit = memo.get(key)
    if hit is None:
        rule = gate_for(pack, dial, int(level), up=True)
        if rule is not None and (rule.holdout is None or rule.to_level > pack.ceiling_for(dial)):
            rule = None
        hit = memo[key] = (rule,)
    (rule,) = hit
    if rule is None or rule.holdout is None or rule.holdout_entity is None:
        return None
    entity = args.get(rule.holdout_entity)
    if entity is None or entity == "":
        return None
    text = entity if isinstance(entity, str) else json.dumps(entity, sort_keys=True, default=str)
    salt = rule.salt or f"{pack.name}:{dial.key}:{int(rule.from_level)}->{int(rule.to_level)}"
    cohort = cohort_of(text, salt=salt, holdout=rule.holdout)
    at = AutonomyLevel(rule.to_level) if cohort == "treatment" else level
    return Split(cohort, at, hashlib.sha256(text.encode()).hexdigest()[:16])
