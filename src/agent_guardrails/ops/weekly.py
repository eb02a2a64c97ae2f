"""The weekly scorecard, built from a store: one row per scope with its level, its gate's
verdict and why, KPIs per week, lift over control, wins, anomalies, incidents and a
recommendation. :mod:`agent_guardrails.ops.scorecard` renders it as HTML, Markdown or JSON.

    agent-guardrails scorecard --week 2026-11-30 --format html --out scorecard.html

A week runs Monday 00:00 UTC to the next Monday; ``--week`` names any day in it (default:
the last full week). Verdicts are the gates' as of the end of the week (or now, for the
current week), not recorded. A gate rate (success, policy pass, escalation, SLA adherence)
or the lift KPI's mean outside the 99% interval of the weeks before it is an *anomaly*;
the incidents are the week's kill-switch trips, trip-wires, demotions and pack changes,
each with its audit record number.

>>> from agent_guardrails.store import open_store
>>> from agent_guardrails.ops.operations import apply_pack
>>> store = open_store("memory://")
>>> _ = apply_pack(store, "name: p\\nversion: 1\\n", by="ana")
>>> card = weekly_scorecard(store, week=date(2026, 11, 30))
>>> (card.week_start, card.week_end, card.rows)
('2026-11-30', '2026-12-06', ())
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.engine.gates import GateVerdict, MetricResult, Window, gate_for
from agent_guardrails.ops.gates import Gates
from agent_guardrails.ops.scorecard import (
    Anomaly,
    Incident,
    LiftLine,
    MetricLine,
    Recommendation,
    ScopeRow,
    Scorecard,
    WeekPoint,
)
from agent_guardrails.pipeline.trip_wires import ACTOR as TRIP_WIRE
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import PolicyPack
from agent_guardrails.policy.scope import Scope
from agent_guardrails.store.base import AuditRecord, Store, read_audit
from agent_guardrails.telemetry.spans import iso

__all__ = ["weekly_scorecard"]

WEEKS = 8
"""How many weeks the KPI sparklines show."""

_WEEK = 7 * 86_400.0
_INCIDENTS = ("kill_switch.engaged", "trip_wire", "level.changed", "pack.activated")
_WINDOW_LABELS = {
    "success_rate": "Success rate",
    "policy_pass_rate": "Policy pass rate",
    "escalation_rate": "Escalation rate",
    "sla_adherence": "SLA adherence",
}
_LABELS = {
    **_WINDOW_LABELS,
    # the same rates over the scope's whole time at its level, on the bound for repeated looks
    **{f"{k}_overall": f"{v} at this level (repeated looks)" for k, v in _WINDOW_LABELS.items()},
}
_RATES = frozenset(_LABELS)


def weekly_scorecard(
    store: Store,
    *,
    week: date | None = None,
    pack: PolicyPack | None = None,
    now: float | None = None,
) -> Scorecard:
    """The scorecard of the week containing ``week`` (default: the last full week)."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, UTC).date()
    day = week if week is not None else today - timedelta(days=7)
    start_day = day - timedelta(days=day.weekday())
    start = datetime(start_day.year, start_day.month, start_day.day, tzinfo=UTC).timestamp()
    end = min(start + _WEEK, now) if start < now else start + _WEEK
    gates = Gates(store, pack)
    # One pass over the log, a page at a time: the gates fold it as it goes by, and only
    # the week's incidents and the count of pack activations are kept (a log of millions
    # of records is never held in memory).
    week_records: list[AuditRecord] = []
    activations = 0

    def watched(records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        nonlocal activations
        for r in records:
            if r.ts < end and r.kind in _INCIDENTS:
                activations += r.kind == "pack.activated"
                if start <= r.ts:
                    week_records.append(r)
            yield r

    evidence = gates.read(end, watched(read_audit(store)))
    rows = []
    for v in gates.judge(evidence):
        weeks = gates.weekly(evidence, v.scope, weeks=WEEKS)
        incidents = _incidents(week_records, v.scope)
        if weeks[-1].decided or incidents or v.verdict != "hold":
            rows.append(_row(gates, v, weeks, incidents, week_records, activations > 1))
    active = store.active_pack()
    notes = (
        ()
        if evidence.chain_ok
        else ("The audit chain does not verify: every verdict this week is invalid.",)
    )
    return Scorecard(
        title="Weekly autonomy scorecard",
        week_start=start_day.isoformat(),
        week_end=(start_day + timedelta(days=6)).isoformat(),
        generated_at=iso(now),
        pack=f"{active.name} v{active.version}" if active else f"{gates.pack.name} (not stored)",
        rows=tuple(rows),
        notes=notes,
    )


def _row(
    gates: Gates,
    v: GateVerdict,
    weeks: list[Window],
    incidents: tuple[Incident, ...],
    week_records: list[AuditRecord],
    rollback_possible: bool,
) -> ScopeRow:
    labels = [_day(w.end - 1) for w in weeks]

    def series(value: Callable[[Window], float | None]) -> tuple[WeekPoint, ...]:
        return tuple(WeekPoint(d, value(w)) for d, w in zip(labels, weeks, strict=True))

    kpis = {
        "Runs": series(lambda w: float(w.executed)),
        "Success rate": series(lambda w: w.succeeded / w.executed if w.executed else None),
        "Escalation rate": series(lambda w: w.escalated / w.decided if w.decided else None),
    }
    rule = gate_for(gates.pack, Scope.parse(v.scope), v.level, up=True)
    if rule is not None and rule.lift_kpi is not None:
        kpis[f"{rule.lift_kpi} (mean)"] = series(_kpi_mean)
    lift = [line for d, w in zip(labels, weeks, strict=True) if (line := _lift(gates, v, w, d))]
    recommendation, why = _recommend(v, week_records, rollback_possible)
    return ScopeRow(
        scope=v.scope,
        dimensions=Scope.parse(v.scope).as_dict(),
        level=v.level,
        level_name=AutonomyLevel(v.level).name.lower(),
        verdict=v.verdict,
        explanation=v.explanation,
        transition=None if v.to_level is None else f"{v.level} → {v.to_level}",
        metrics=tuple(_line(m) for m in v.metrics if m.name in _RATES),
        kpis=kpis,
        lift=tuple(lift),
        wins=tuple(m.sentence for m in v.metrics if m.status == "pass"),
        anomalies=_anomalies(labels, weeks),
        incidents=incidents,
        recommendation=recommendation,
        recommendation_reason=why,
        evaluation_id=None,
    )


def _kpi_mean(w: Window) -> float | None:
    parts = [m for m in (w.kpi_control, w.kpi_treatment) if m is not None and m.n]
    if not parts:
        return None
    return sum(m.mean * m.n for m in parts) / sum(m.n for m in parts)


def _line(m: MetricResult) -> MetricLine:
    status = "fail" if m.status == "harm" else m.status
    threshold = m.threshold
    if m.name == "policy_pass_rate" and threshold == 1.0:
        threshold = None  # a trip-wire: its proven bound is shown, there is no bar to clear
    return MetricLine(
        m.name,
        _LABELS[m.name],
        m.estimate,
        m.low,
        m.high,
        threshold,
        m.direction,
        status,
        m.n,
        m.sentence,
    )


def _lift(gates: Gates, v: GateVerdict, w: Window, label: str) -> LiftLine | None:
    rule = gate_for(gates.pack, Scope.parse(v.scope), v.level, up=True)
    c, t = w.kpi_control, w.kpi_treatment
    if rule is None or rule.lift_kpi is None or c is None or t is None:
        return None
    if c.n < 2 or t.n < 2 or c.mean <= 0:
        return None
    ci = stats.relative_lift(t, c, rule.confidence)
    return LiftLine(rule.lift_kpi, f"week of {label}", ci.estimate, ci.low, ci.high, c.n, t.n)


_WEEK_RATES: tuple[tuple[str, str, Callable[[Window], tuple[int, int]]], ...] = (
    ("Success rate", "Success", lambda w: (w.succeeded, w.executed)),
    ("Policy pass rate", "Policy pass", lambda w: (w.decided - w.policy_failed, w.decided)),
    ("Escalation rate", "Escalation", lambda w: (w.escalated, w.decided)),
    ("SLA adherence", "SLA adherence", lambda w: (w.within_sla, w.answered)),
)


def _anomalies(labels: list[str], weeks: list[Window]) -> tuple[Anomaly, ...]:
    """This week's gate rates (success, policy pass, escalation, SLA adherence) and the lift
    KPI's mean, each outside the 99% interval of the weeks before it (Wilson for a rate, the
    normal interval of the mean for the KPI)."""
    if len(weeks) < 2:
        return ()
    out: list[Anomaly] = []
    for metric, name, count in _WEEK_RATES:
        k, n = count(weeks[-1])
        before = [count(w) for w in weeks[:-1]]
        before_n = sum(b for _, b in before)
        if n == 0 or before_n == 0:
            continue
        ci = stats.wilson(sum(a for a, _ in before), before_n, 0.99)
        rate = k / n
        if ci.low <= rate <= ci.high:
            continue
        side = "below" if rate < ci.low else "above"
        out.append(
            Anomaly(
                metric,
                labels[-1],
                rate,
                ci.low,
                ci.high,
                f"{name} {rate:.0%} this week is {side} the 99% interval of the weeks before "
                f"({ci.low:.0%} to {ci.high:.0%}).",
            )
        )
    kpi = _kpi_anomaly(labels[-1], weeks)
    return (*out, *(() if kpi is None else (kpi,)))


def _kpi_anomaly(label: str, weeks: list[Window]) -> Anomaly | None:
    def pooled(w: Window) -> stats.Moments | None:
        parts = [m for m in (w.kpi_control, w.kpi_treatment) if m is not None and m.n]
        if not parts:
            return None
        total = parts[0]
        for m in parts[1:]:
            total = total.merge(m)
        return total

    now = pooled(weeks[-1])
    before_parts = [m for m in (pooled(w) for w in weeks[:-1]) if m is not None]
    if now is None or not before_parts:
        return None
    before = before_parts[0]
    for m in before_parts[1:]:
        before = before.merge(m)
    if before.n < 2:
        return None
    half = 2.5758293035489 * math.sqrt(before.m2 / (before.n - 1) / before.n)
    low, high = before.mean - half, before.mean + half
    if low <= now.mean <= high:
        return None
    side = "below" if now.mean < low else "above"
    return Anomaly(
        "KPI mean",
        label,
        now.mean,
        low,
        high,
        f"The KPI averaged {now.mean:.4g} this week, {side} the 99% interval of the weeks "
        f"before ({low:.4g} to {high:.4g}).",
    )


def _incidents(records: list[AuditRecord], dial: str) -> tuple[Incident, ...]:
    """The week's kill-switch trips, trip-wires, lowered levels and pack changes that
    concern ``dial``, with their audit record numbers."""
    scope = Scope.parse(dial)
    out = []
    for r in records:
        data: Any = r.data
        if r.kind == "kill_switch.engaged":
            if not Scope.parse(str(data.get("scope", ""))).matches(scope):
                continue
            summary = (
                f"kill-switch on {data.get('scope')} by {data.get('by')}: {data.get('reason')}"
            )
        elif r.kind == "level.changed":
            if data.get("scope") != dial or not _lowered(data):
                continue
            summary = (
                f"level lowered to L{data.get('new')} by {data.get('by')}: {data.get('reason')}"
            )
        elif r.kind == "trip_wire":
            if data.get("scope") != dial:
                continue
            summary = f"trip-wire: {', '.join(data.get('validators', ()))} failed"
        elif r.kind == "pack.activated":
            summary = (
                f"pack {data.get('name')} v{data.get('version')} activated by {data.get('by')}"
            )
        else:
            continue
        out.append(Incident(r.seq, r.kind, iso(r.ts), summary))
    return tuple(out)


def _lowered(data: Any) -> bool:
    old, new = data.get("old"), data.get("new")
    if data.get("by") == TRIP_WIRE:
        return True
    return isinstance(old, int) and isinstance(new, int) and new < old


def _recommend(
    v: GateVerdict, records: list[AuditRecord], rollback_possible: bool
) -> tuple[Recommendation, str]:
    if v.verdict == "promote":
        return "promote", "Every metric passes on its interval bound; a person may apply it."
    if v.verdict == "demote":
        return "demote", v.explanation
    changed = [r for r in records if r.kind == "pack.activated"]
    if changed and rollback_possible and any(m.status == "fail" for m in v.metrics):
        version = changed[-1].data.get("version")
        return "rollback", (
            f"Pack v{version} was activated this week and a metric now fails: consider "
            "'agent-guardrails policy rollback'."
        )
    if v.verdict == "invalid":
        return "hold", "The data cannot be trusted this week: " + v.explanation
    return "hold", v.explanation


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()
