"""Business KPIs for the gates: record one outcome, or import a file of them from a warehouse.

Tool outcomes (success, escalations, SLA, policy pass) are counted from the audit log with
no work from the application (:mod:`agent_guardrails.ops.gates`). A business KPI (revenue
per contact, a reply, a booked meeting) is the application's to report, attributed to
a call or to an entity:

- by ``call_key``: the outcome takes the call's scope, cohort, level and pack version from
  its decision record;
- by ``entity`` (and ``scope``): the cohort is the one the gate's split puts that entity in
  (the same stable hash the pipeline used), so outcomes line up with the calls; the level
  is the one that cohort's work runs at now (the candidate level in treatment) and the
  pack version the active one.

    agent-guardrails outcomes import revenue.csv        # or .jsonl

A file has one outcome per row/line with ``metric``, ``value`` and ``entity`` or
``call_key``; optional ``scope`` (``workflow=newsletter``), ``cohort`` and ``at`` (ISO 8601,
UTC unless it names a zone, or epoch seconds; default now). A file with any bad row records
nothing and names every bad row and field.

>>> from agent_guardrails.store import open_store
>>> from agent_guardrails.ops.operations import apply_pack
>>> store = open_store("memory://")
>>> pack = "name: p\\nversion: 1\\nlevels: [{scope: {workflow: news}, level: execute}]\\n"
>>> _ = apply_pack(store, pack, by="ana")
>>> record_outcome(store, "revenue", 12.5, entity="c1", scope="workflow=news").scope_key
'workflow=news'
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent_guardrails.engine.cohorts import split
from agent_guardrails.engine.gates import gate_for
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import Outcome, Store

__all__ = ["import_outcomes", "record_outcome"]

_FIELDS = ("metric", "value", "entity", "call_key", "scope", "cohort", "at")


def record_outcome(
    store: Store,
    metric: str,
    value: float,
    *,
    entity: str | None = None,
    call_key: str | None = None,
    scope: str | Scope | None = None,
    cohort: str | None = None,
    at: float | str | None = None,
    pack: PolicyPack | None = None,
) -> Outcome:
    """Record one KPI outcome (see the module docstring); returns what was recorded."""
    when = _when(at)  # a finite time: epoch seconds, or ISO 8601 text
    outcome = _resolve(
        store, _policy(store, pack), metric, value, entity, call_key, scope, cohort, when
    )
    store.record_outcome(outcome)
    return outcome


def import_outcomes(store: Store, path: str | Path, *, pack: PolicyPack | None = None) -> int:
    """Record every outcome in a CSV or JSON Lines file (by its suffix: ``.csv``, ``.jsonl``
    or ``.ndjson``); all or nothing. Returns how many were recorded."""
    path = Path(path)
    policy = _policy(store, pack)
    outcomes: list[Outcome] = []
    problems: list[str] = []
    for where, row in _rows(path):
        if isinstance(row, str):
            problems.append(f"{where}: {row}")
            continue
        unknown = sorted(set(row) - set(_FIELDS))
        if unknown:
            problems.append(
                f"{where}: unknown field(s) {', '.join(unknown)}; use {', '.join(_FIELDS)}"
            )
            continue
        try:
            outcomes.append(
                _resolve(
                    store,
                    policy,
                    row.get("metric"),
                    row.get("value"),
                    row.get("entity"),
                    row.get("call_key"),
                    row.get("scope"),
                    row.get("cohort"),
                    _when(row.get("at")),
                )
            )
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ValueError(
            f"{path}: {len(problems)} bad row(s), nothing recorded:\n  "
            + "\n  ".join(problems[:20])
        )
    if not outcomes:
        raise ValueError(
            f"{path}: no outcome rows, nothing recorded: give a header (metric, value, and "
            "entity or call_key) and one row per outcome"
        )
    for o in outcomes:
        store.record_outcome(o)
    return len(outcomes)


def _policy(store: Store, pack: PolicyPack | None) -> PolicyPack:
    if pack is not None:
        return pack
    from agent_guardrails.ops.operations import active_policy

    return active_policy(store)


def _resolve(
    store: Store,
    pack: PolicyPack,
    metric: Any,
    value: Any,
    entity: Any,
    call_key: Any,
    scope: Any,
    cohort: Any,
    at: float | None,
) -> Outcome:
    if not isinstance(metric, str) or not metric.strip():
        raise ValueError("metric: give the KPI's name, e.g. revenue")
    number = _number(value)
    if call_key is not None and call_key != "":
        record = store.find_audit(f"{call_key}:decision")
        if record is None:
            raise ValueError(f"call_key: no decision is recorded for call {call_key!r}")
        data = record.data
        call_scope = Scope.from_mapping(data.get("scope", {}))
        level = data.get("level")
        version = data.get("pack_version")
        return Outcome(
            str(entity) if entity else str(data.get("cohort_entity") or call_key),
            str(cohort or data.get("cohort") or "all"),
            metric,
            number,
            time.time() if at is None else at,
            pack.dial_scope(call_scope).key,
            level if isinstance(level, int) and not isinstance(level, bool) else None,
            None if version is None else str(version),
        )
    if entity is None or entity == "":
        raise ValueError("entity: give the entity (or call_key) the outcome belongs to")
    try:
        where = scope if isinstance(scope, Scope) else Scope.parse(str(scope or "global"))
    except ValueError as exc:
        raise ValueError(f"scope: {exc}") from None
    dial = pack.dial_scope(where)
    given = None if cohort is None or cohort == "" else cohort
    found, level = _cohort_of(store, pack, dial, str(entity))
    cohort = found if given is None else given
    if cohort not in ("control", "treatment", "all"):
        raise ValueError(f"cohort: use control, treatment or all, not {cohort!r}")
    if given is not None and given != found:
        level = None  # a cohort the split does not give this entity: its level is not known
    return Outcome(
        str(entity),
        str(cohort),
        metric,
        number,
        time.time() if at is None else at,
        dial.key,
        level,
        pack.version,
    )


def _cohort_of(store: Store, pack: PolicyPack, dial: Scope, entity: str) -> tuple[str, int]:
    """The entity's cohort in the scope's experiment (``all`` where none runs) and the level
    its work runs at now (the candidate level in the treatment cohort)."""
    live = store.get_level(dial.key)
    level = AutonomyLevel(live) if live is not None else pack.initial_level(dial)
    rule = gate_for(pack, dial, int(level), up=True)
    if rule is None or rule.holdout_entity is None:
        return "all", int(level)
    trial = split(pack, dial, level, {rule.holdout_entity: entity})
    return ("all", int(level)) if trial is None else (trial.cohort, int(trial.level))


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("value: a number, not true/false")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"value: a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"value: a finite number, got {value!r}")
    return number


def _when(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value)
        try:
            number = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
                if parsed.tzinfo is None:  # a warehouse export's zone-less time: UTC
                    parsed = parsed.replace(tzinfo=UTC)
                number = parsed.timestamp()
            except ValueError:
                raise ValueError(f"at: ISO 8601 or epoch seconds, got {text!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"at: a finite time, got {value!r}")
    return number


def _rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | str]]:
    """``(where, row)`` per row, or ``(where, problem)`` for a row that cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise ValueError(f"{path}: use a .csv or .jsonl file, not {suffix or 'no suffix'}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror})") from None
    if suffix == ".csv":
        for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            yield f"line {n}", {k: v for k, v in row.items() if k is not None and v != ""}
    else:
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield f"line {n}", f"not JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(item, dict):
                yield f"line {n}", "not a JSON object"
                continue
            yield f"line {n}", item
