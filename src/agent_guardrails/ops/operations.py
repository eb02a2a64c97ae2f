"""Operator actions on a store: apply, roll back and diff packs; read status; move dials.

The CLI is a thin layer over these functions; they are usable from Python too:

>>> from agent_guardrails.store import open_store
>>> store = open_store("memory://")
>>> pv = apply_pack(store, "name: p\\nversion: 1\\n", by="ana")
>>> (pv.version, pv.active)
('1', True)
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent_guardrails.engine.charges import budget_counter
from agent_guardrails.errors import ConfigurationError
from agent_guardrails.pipeline.live_policy import stored_as
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.policy.validators import ValidatorRegistry
from agent_guardrails.store.base import LevelChange, PackVersion, Store

__all__ = [
    "Status",
    "active_policy",
    "apply_pack",
    "diff_packs",
    "rollback_pack",
    "set_level",
    "status",
]


def apply_pack(
    store: Store,
    source: str | Path,
    *,
    by: str,
    reason: str = "",
    registry: ValidatorRegistry | None = None,
) -> PackVersion:
    """Validate ``source`` (YAML text or a path), store it as a new version and activate it.

    A pack that fails validation raises :class:`~agent_guardrails.errors.PolicyError` and
    leaves the active version active. A version already stored with the same content is
    activated as it is (also when an earlier release of the library stored it); with other
    content it is refused (``ConfigurationError``: give it a new version).
    """
    pack = PolicyPack.from_yaml(source, registry=registry)
    if stored_as(pack, store.pack_versions(pack.name)) is None:
        store.save_pack(pack.name, pack.version, pack.digest, pack.to_yaml(), by=by)
    return store.activate_pack(pack.name, pack.version, by=by, reason=reason or "applied")


def active_policy(store: Store, *, registry: ValidatorRegistry | None = None) -> PolicyPack:
    """The store's active pack, loaded and validated."""
    pv = store.active_pack()
    if pv is None:
        raise ConfigurationError(
            f"no active policy pack in {store.url}: run 'agent-guardrails policy apply FILE'"
        )
    return PolicyPack.from_yaml(pv.source, registry=registry)


def rollback_pack(
    store: Store, version: str | None = None, *, by: str, reason: str = ""
) -> PackVersion:
    """Activate ``version`` of the active pack, or the version stored before the active one."""
    current = store.active_pack()
    if current is None:
        raise ConfigurationError("no active pack to roll back")
    versions = store.pack_versions(current.name)
    if version is None:
        index = next(i for i, v in enumerate(versions) if v.version == current.version)
        if index == 0:
            raise ConfigurationError(
                f"{current.name} v{current.version} is the oldest stored version; "
                "there is nothing to roll back to"
            )
        version = versions[index - 1].version
    return store.activate_pack(current.name, version, by=by, reason=reason or "rollback")


def diff_packs(store: Store, old: str, new: str, *, name: str | None = None) -> str:
    """A unified diff between two stored versions of a pack."""
    name = name or _active_name(store)
    by_version = {v.version: v for v in store.pack_versions(name)}
    for v in (old, new):
        if v not in by_version:
            raise ConfigurationError(
                f"no stored version {v!r} of pack {name}; stored: {', '.join(by_version) or 'none'}"
            )
    return "".join(
        difflib.unified_diff(
            by_version[old].source.splitlines(keepends=True),
            by_version[new].source.splitlines(keepends=True),
            fromfile=f"{name} v{old}",
            tofile=f"{name} v{new}",
        )
    )


def _active_name(store: Store) -> str:
    pv = store.active_pack()
    if pv is None:
        raise ConfigurationError("no active pack: name the pack with --name")
    return pv.name


def set_level(
    store: Store,
    scope: Scope | str,
    level: str | int,
    *,
    by: str,
    reason: str,
    evidence: dict[str, Any] | None = None,
    pack: PolicyPack | None = None,
    override: bool = False,
) -> LevelChange:
    """Move the level dial of the rule governing ``scope`` in ``pack`` (default: the store's
    active pack), within that rule's ceiling.

    Down is always allowed. Up is allowed one level at a time through a passing gate (the
    evaluation is recorded and named as evidence; see :class:`~agent_guardrails.ops.gates.Gates`),
    or with ``override=True``, which records ``reason`` as the override's justification.
    ``scope``: a :class:`~agent_guardrails.policy.scope.Scope` or its ``dim=value,...``
    form."""
    if isinstance(scope, str):
        scope = Scope.parse(scope)
    pack = pack if pack is not None else active_policy(store)
    new = AutonomyLevel.parse(level)
    ceiling = pack.ceiling_for(scope)
    dial = pack.named_dial(scope)
    if new > ceiling:
        raise ConfigurationError(
            f"{new.label} is above the ceiling {ceiling.label} for {dial.key}; "
            "raise the ceiling in a new pack version first"
        )
    live = store.get_level(dial.key)
    current = AutonomyLevel(live) if live is not None else pack.initial_level(dial)
    evidence = dict(evidence or {})
    if new > current and override:
        if not reason.strip():
            raise ValueError("an override needs a reason: why the gate is bypassed")
        evidence["override"] = True
    elif new > current:
        from agent_guardrails.ops.gates import Gates

        (e,) = Gates(store, pack).evaluations(dial.key)
        if e.verdict.verdict != "promote" or new != current + 1:
            why = (
                "a promotion goes one level at a time"
                if e.verdict.verdict == "promote"
                else f"its gate does not pass ({e.verdict.verdict}): {e.verdict.explanation}"
            )
            raise ConfigurationError(
                f"cannot raise {dial.key} from {current.label} to {new.label}: {why} "
                "To raise it anyway, use --override (override=True) with a reason."
            )
        evidence.update(evaluation_id=e.id, audit_seq=e.audit_seq, verdict="promote")
    return store.set_level(dial.key, int(new), by=by, reason=reason, evidence=evidence)


@dataclass(frozen=True, slots=True)
class Status:
    pack: PackVersion | None
    levels: list[dict[str, Any]]
    switches: list[dict[str, Any]]
    budgets: list[dict[str, Any]]
    in_doubt: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pack": None
            if self.pack is None
            else {"name": self.pack.name, "version": self.pack.version, "digest": self.pack.digest},
            "levels": self.levels,
            "kill_switches": self.switches,
            "budgets": self.budgets,
            "in_doubt": self.in_doubt,
        }


def status(store: Store, *, now: float | None = None) -> Status:
    """Levels, kill-switches, budgets used and left in the current windows, calls in doubt."""
    now = time.time() if now is None else now
    pv = store.active_pack()
    levels: list[dict[str, Any]] = []
    budgets: list[dict[str, Any]] = []
    if pv is not None:
        pack = PolicyPack.from_yaml(pv.source)
        rules = [(r.scope.to_scope(), r.level, r.max_level) for r in pack.levels]
        rules.insert(0, (Scope(), pack.defaults.level, pack.defaults.ceiling))
        for scope, initial, ceiling in rules:
            live = store.get_level(scope.key)
            current = AutonomyLevel(live) if live is not None else initial
            levels.append(
                {
                    "scope": scope.key,
                    "level": current.name.lower(),
                    "initial": initial.name.lower(),
                    "ceiling": ceiling.name.lower(),
                }
            )
        counters = store.counters("budget:")
        for b in pack.budgets:
            key, end = budget_counter(b, now)
            used = counters.get(key, 0.0)
            budgets.append(
                {
                    "budget": b.label,
                    "scope": b.scope.to_scope().key,
                    "window": b.window,
                    "currency": b.currency,
                    "limit": b.limit,
                    "used": round(used, 6),
                    "left": round(b.limit - used, 6),
                    "resets_at": end if b.window != "total" else None,
                }
            )
    switches = [
        {"scope": s.scope.key, "engaged": s.engaged, "by": s.by, "reason": s.reason, "at": s.at}
        for s in store.kill_switches()
    ]
    doubt = [{"call_key": r.key, "since": r.updated_at, **dict(r.info)} for r in store.in_doubt()]
    return Status(pv, levels, switches, budgets, doubt)
