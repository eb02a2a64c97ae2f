"""Promotion gates: from what a scope did, decide whether its autonomy may rise, must fall,
or waits for more evidence. Pure: counts in, a verdict out (no store, no clock).

A scope's evidence is a series of :class:`Window` s (what it did in each evaluation window,
counted by :mod:`agent_guardrails.ops.gates` from the audit log and the recorded outcomes).
:func:`evaluate` judges them against the pack's :class:`~agent_guardrails.policy.pack.GateRule`
s and returns a :class:`GateVerdict`:

- ``invalid``: the data cannot be trusted (a broken audit chain, calls that started and
  never recorded an end, pack versions mixed in one window, a sample-ratio mismatch between
  control and treatment). Nothing is promoted or demoted on such data.
- ``demote`` (one level down): a trip-wire at level 1 or above (a policy violation, a
  kill-switch trip), or evidence of harm (a rate's whole interval on the wrong side of its
  floor, escalations whose lower bound exceeds their cap).
- ``promote``: every metric the gate declares passes on its interval bound, with at least
  ``min_samples`` calls, in each of the last ``consecutive_windows`` windows, outside the
  cooldown after a demotion, and below the scope's ceiling. A promotion is applied by a
  person (``agent-guardrails gates promote``); a promotion to Orchestrate is always only
  proposed.
- ``hold``: anything else, with how much more evidence would decide it.

Missing data never passes and never demotes by itself: a metric with no observations is
``missing``, and the verdict is ``hold``.

>>> from agent_guardrails.policy.pack import GateRule
>>> rule = GateRule.model_validate({"from": 0, "to": 1, "min_samples": 50,
...                                 "min_success_rate": 0.9})
>>> good = Window(start=0.0, end=1.0, decided=120, executed=120, succeeded=119)
>>> evaluate("workflow=newsletter", 0, [good], up=rule).verdict
'promote'
>>> thin = Window(start=0.0, end=1.0, decided=20, executed=20, succeeded=19)
>>> v = evaluate("workflow=newsletter", 0, [thin], up=rule)
>>> v.verdict, v.more
('hold', 119)
>>> print(v.metrics[1].sentence)
Success 0.95 [0.76, 0.99] needs lower bound >= 0.90: about 119 more runs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import GateRule, PolicyPack
from agent_guardrails.policy.scope import Scope

__all__ = ["METHOD", "GateVerdict", "MetricResult", "Verdict", "Window", "evaluate", "gate_for"]

Verdict = Literal["promote", "hold", "demote", "invalid"]
Status = Literal["pass", "short", "fail", "harm", "missing"]

METHOD = (
    "rates: two-sided Wilson score intervals; policy pass 100%: a trip-wire plus the exact "
    "one-sided bound 0 failures in n proves; lift: relative lift of the KPI's mean, "
    "treatment over control, delta-method interval with Welch degrees of freedom; split: "
    "exact two-sided binomial test, alpha 0.001; runs still needed: the observed rate held "
    "constant"
)
"""How a verdict was reached, recorded with it."""


@dataclass(frozen=True, slots=True)
class Window:
    """What one scope did in one evaluation window ``[start, end)``.

    ``decided``: calls decided (replays not counted); ``policy_failed``: of them, calls a
    validator failed; ``escalated``: calls put to a human; ``executed``/``succeeded``: tool
    bodies run and how many ended well; ``answered``/``within_sla``: approvals answered and
    how many within the action's SLA; ``unattributed``: calls that started and recorded no
    end; ``pack_versions``: the pack versions decisions were made under; ``control``/
    ``treatment``: work items per cohort (with ``expected_treatment``, the pack's split);
    ``kpi_control``/``kpi_treatment``: the lift KPI per cohort; ``violations``/``kill_trips``:
    the audit record numbers of policy violations at level 1 or above and of kill-switch
    trips on the scope."""

    start: float
    end: float
    decided: int = 0
    policy_failed: int = 0
    escalated: int = 0
    executed: int = 0
    succeeded: int = 0
    answered: int = 0
    within_sla: int = 0
    unattributed: int = 0
    pack_versions: frozenset[str] = frozenset()
    control: int = 0
    treatment: int = 0
    expected_treatment: float | None = None
    kpi_control: stats.Moments | None = None
    kpi_treatment: stats.Moments | None = None
    violations: tuple[int, ...] = ()
    kill_trips: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        counts = {
            "decided": self.decided,
            "policy_failed": self.policy_failed,
            "escalated": self.escalated,
            "executed": self.executed,
            "succeeded": self.succeeded,
            "answered": self.answered,
            "within_sla": self.within_sla,
            "unattributed": self.unattributed,
            "control": self.control,
            "treatment": self.treatment,
        }
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"Window.{name} must be a count (an int >= 0), got {value!r}")
        for part, whole in (
            ("policy_failed", "decided"),
            ("escalated", "decided"),
            ("succeeded", "executed"),
            ("within_sla", "answered"),
        ):
            if counts[part] > counts[whole]:
                raise ValueError(
                    f"Window.{part} ({counts[part]}) cannot exceed Window.{whole} ({counts[whole]})"
                )
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(
                f"Window needs finite start <= end, got [{self.start!r}, {self.end!r})"
            )

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": self.start,
            "end": self.end,
            "decided": self.decided,
            "policy_failed": self.policy_failed,
            "escalated": self.escalated,
            "executed": self.executed,
            "succeeded": self.succeeded,
            "answered": self.answered,
            "within_sla": self.within_sla,
            "unattributed": self.unattributed,
            "pack_versions": sorted(self.pack_versions),
            "control": self.control,
            "treatment": self.treatment,
            "expected_treatment": self.expected_treatment,
            "violations": list(self.violations),
            "kill_trips": list(self.kill_trips),
        }
        for name in ("kpi_control", "kpi_treatment"):
            m: stats.Moments | None = getattr(self, name)
            out[name] = None if m is None else {"n": m.n, "mean": m.mean, "m2": m.m2}
        return out


@dataclass(frozen=True, slots=True)
class MetricResult:
    """One metric of one window, judged: ``pass``, ``short`` (not proven yet), ``fail``
    (cannot pass at the observed rate, or a trip-wire at Assist), ``harm`` (proven on the
    wrong side of a demotion floor) or ``missing`` (nothing observed)."""

    name: str
    status: Status
    estimate: float | None
    low: float | None
    high: float | None
    threshold: float | None
    direction: Literal["min", "max"]
    n: int
    more: int | None  # runs still needed at the observed rate, when that is a number
    sentence: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "threshold": self.threshold,
            "direction": self.direction,
            "n": self.n,
            "more": self.more,
            "sentence": self.sentence,
        }


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """A scope's verdict with the numbers behind it. ``metrics``: the latest window's, metric
    by metric; ``reasons``: codes (``policy_violation``, ``kill_switch_trip``, ``harm:<metric>``,
    ``audit_chain_broken``, ``unattributed_calls``, ``mixed_pack_versions``,
    ``sample_ratio_mismatch``, ``cooldown``, ``at_ceiling``, ``no_gate``, ``short:<metric>``,
    ``windows``); ``evidence``: audit record numbers behind a trip-wire; ``more``: the most
    runs any short metric still needs (``None`` when no number can be given)."""

    scope: str
    level: int
    verdict: Verdict
    to_level: int | None
    metrics: tuple[MetricResult, ...]
    reasons: tuple[str, ...]
    explanation: str
    more: int | None = None
    evidence: tuple[int, ...] = ()
    proposal_only: bool = False  # a promotion to Orchestrate: proposed, never applied alone
    windows: tuple[Window, ...] = field(default=(), repr=False)
    method: str = METHOD

    def as_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "level": self.level,
            "level_name": AutonomyLevel(self.level).name.lower(),
            "verdict": self.verdict,
            "to_level": self.to_level,
            "metrics": [m.as_dict() for m in self.metrics],
            "reasons": list(self.reasons),
            "explanation": self.explanation,
            "more": self.more,
            "evidence": list(self.evidence),
            "proposal_only": self.proposal_only,
            "windows": [w.as_dict() for w in self.windows],
            "method": self.method,
        }


def evaluate(
    scope: str,
    level: int,
    windows: Sequence[Window],
    *,
    up: GateRule | None = None,
    down: GateRule | None = None,
    ceiling: int = AutonomyLevel.ORCHESTRATE,
    chain_ok: bool = True,
    cooling: bool = False,
) -> GateVerdict:
    """The verdict for ``scope`` at ``level`` from its ``windows`` (oldest first, the last
    the current one). ``up``: the gate from ``level`` to the next (none: no promotion is
    declared); ``down``: the gate that led to ``level`` (its demotion floors and escalation
    cap apply); ``ceiling``: the highest level the pack allows the scope; ``chain_ok``: the
    audit chain verified; ``cooling``: a demotion's cooldown is still running."""
    if not windows:
        raise ValueError("evaluate needs at least one window (the current one)")
    current = windows[-1]
    hold_to = level + 1 if up is not None else None

    def verdict(kind: Verdict, reasons: Sequence[str], text: str, **kw: Any) -> GateVerdict:
        to = kw.pop("to_level", level - 1 if kind == "demote" else hold_to)
        return GateVerdict(
            scope,
            level,
            kind,
            to,
            kw.pop("metrics", ()),
            tuple(reasons),
            text,
            windows=tuple(windows),
            **kw,
        )

    if not chain_ok:
        return verdict(
            "invalid",
            ["audit_chain_broken"],
            "The audit log's hash chain does not verify, so none of its counts can be trusted; "
            "run 'agent-guardrails audit verify' to find the first bad record.",
        )
    if level >= AutonomyLevel.EXECUTE:
        trips = _trip_wires(current)
        if trips is not None:
            reasons, text, evidence = trips
            return verdict("demote", reasons, text, evidence=evidence)
    problems = _untrustworthy(current)
    if problems:
        return verdict("invalid", [code for code, _ in problems], " ".join(t for _, t in problems))
    if down is not None and level > AutonomyLevel.ASSIST:
        harms = [m for m in _floors(down, current) if m.status == "harm"]
        if harms:
            return verdict(
                "demote",
                [f"harm:{m.name}" for m in harms],
                " ".join(m.sentence for m in harms),
                metrics=tuple(harms),
            )
    if up is None:
        return verdict(
            "hold", ["no_gate"], f"The pack declares no gate from level {level}.", to_level=None
        )
    if level >= ceiling:
        return verdict(
            "hold",
            ["at_ceiling"],
            f"The scope is at its ceiling ({AutonomyLevel(ceiling).name.lower()}); the pack "
            "must raise the ceiling before a promotion.",
            to_level=None,
        )
    per_window = [_promotion_metrics(up, w) for w in windows[-up.consecutive_windows :]]
    latest = per_window[-1]
    blocking = [m for m in latest if m.status != "pass"]
    passed_windows = sum(all(m.status == "pass" for m in ms) for ms in per_window)
    needed_windows = up.consecutive_windows
    if blocking or passed_windows < needed_windows or len(windows) < needed_windows:
        reasons = [f"short:{m.name}" for m in blocking]
        parts = [m.sentence for m in blocking]
        if not blocking:
            reasons.append("windows")
            parts.append(
                f"The current window passes, but {passed_windows} of the last {needed_windows} "
                f"consecutive windows do; promotion needs all {needed_windows}."
            )
        mores = [m.more for m in blocking]
        more = None if not mores or any(m is None for m in mores) else max(m or 0 for m in mores)
        return verdict("hold", reasons, " ".join(parts), metrics=latest, more=more)
    if cooling:
        return verdict(
            "hold",
            ["cooldown"],
            "Every metric passes, but the scope was demoted recently and its cooldown has not "
            "run out; no promotion until it has.",
            metrics=latest,
        )
    to = level + 1
    return verdict(
        "promote",
        [],
        f"Every metric passes on its interval bound in {needed_windows} consecutive "
        f"window(s): {AutonomyLevel(level).name.lower()} -> {AutonomyLevel(to).name.lower()} "
        "may be applied by a person."
        + (" A promotion to Orchestrate is always a proposal." if to == 3 else ""),
        metrics=latest,
        proposal_only=to == AutonomyLevel.ORCHESTRATE,
    )


def gate_for(pack: PolicyPack, scope: Scope, level: int, *, up: bool) -> GateRule | None:
    """The most specific gate of ``pack`` matching ``scope`` that leads up from ``level``
    (``up=True``) or into it (``up=False``: its demotion floors apply at ``level``)."""
    best: GateRule | None = None
    best_specificity = -1
    for rule in pack.gates:
        if (rule.from_level if up else rule.to_level) != level:
            continue
        rule_scope = Scope.from_mapping(rule.scope.model_dump(exclude_none=True))
        if rule_scope.matches(scope) and rule_scope.specificity > best_specificity:
            best, best_specificity = rule, rule_scope.specificity
    return best


# ---------------------------------------------------------------------------- checks


def _trip_wires(w: Window) -> tuple[list[str], str, tuple[int, ...]] | None:
    reasons: list[str] = []
    parts: list[str] = []
    if w.violations:
        reasons.append("policy_violation")
        parts.append(
            f"{len(w.violations)} policy violation{'' if len(w.violations) == 1 else 's'}"
            f" at this level (audit #{', #'.join(map(str, w.violations[:5]))})"
        )
    if w.kill_trips:
        reasons.append("kill_switch_trip")
        parts.append(
            f"a kill-switch tripped on this scope (audit #{', #'.join(map(str, w.kill_trips[:5]))})"
        )
    if not reasons:
        return None
    text = "Trip-wire: " + " and ".join(parts) + "; the scope goes down one level at once."
    return reasons, text, (*w.violations, *w.kill_trips)


def _untrustworthy(w: Window) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if w.unattributed:
        out.append(
            (
                "unattributed_calls",
                f"{w.unattributed} call(s) started and recorded no end (in doubt or lost), so "
                "the success rate would be a guess; resolve them ('agent-guardrails status').",
            )
        )
    if len(w.pack_versions) > 1:
        out.append(
            (
                "mixed_pack_versions",
                f"Decisions in this window were made under {len(w.pack_versions)} pack versions "
                f"({', '.join(sorted(w.pack_versions))}); a pack change starts a new window.",
            )
        )
    if w.expected_treatment is not None and w.control + w.treatment > 0:
        srm = stats.srm_check(w.control, w.treatment, w.expected_treatment)
        if srm.mismatch:
            out.append(
                (
                    "sample_ratio_mismatch",
                    f"The control/treatment split is broken: {w.treatment} of "
                    f"{w.control + w.treatment} items in treatment ({srm.observed_treatment:.1%}) "
                    f"where the pack expects {w.expected_treatment:.1%} (exact binomial test, "
                    f"p = {srm.p_value:.2g} < 0.001).",
                )
            )
    return out


def _floors(rule: GateRule, w: Window) -> list[MetricResult]:
    """The demotion floors of the gate that led to the current level, and its escalation
    cap (proven exceeded: harm)."""
    out: list[MetricResult] = []
    z = rule.confidence
    if rule.demote_below_success_rate is not None and w.executed:
        out.append(
            _floor("success_rate", w.succeeded, w.executed, rule.demote_below_success_rate, z)
        )
    if rule.demote_below_policy_pass_rate is not None and w.decided:
        passed = w.decided - w.policy_failed
        out.append(
            _floor("policy_pass_rate", passed, w.decided, rule.demote_below_policy_pass_rate, z)
        )
    if rule.max_escalation_rate is not None and w.decided:
        ci = stats.wilson(w.escalated, w.decided, z)
        if ci.low > rule.max_escalation_rate:
            out.append(
                MetricResult(
                    "escalation_rate",
                    "harm",
                    ci.estimate,
                    ci.low,
                    ci.high,
                    rule.max_escalation_rate,
                    "max",
                    w.decided,
                    None,
                    f"Escalations {_ci(ci)} of {w.decided} calls are above their cap "
                    f"{rule.max_escalation_rate:.2f} even at the interval's lower bound.",
                )
            )
    return out


def _floor(name: str, k: int, n: int, floor: float, confidence: float) -> MetricResult:
    ci = stats.wilson(k, n, confidence)
    harm = ci.high < floor
    label = _LABELS[name]
    return MetricResult(
        name,
        "harm" if harm else "pass",
        ci.estimate,
        ci.low,
        ci.high,
        floor,
        "min",
        n,
        None,
        f"{label} {_ci(ci)} of {n} is below its floor {floor:.2f} even at the interval's upper "
        "bound."
        if harm
        else f"{label} {_ci(ci)} is not proven below its floor {floor:.2f}.",
    )


def _promotion_metrics(rule: GateRule, w: Window) -> list[MetricResult]:
    z = rule.confidence
    out: list[MetricResult] = []
    if rule.min_samples and w.executed < rule.min_samples:
        out.append(
            MetricResult(
                "samples",
                "short",
                float(w.executed),
                None,
                None,
                float(rule.min_samples),
                "min",
                w.executed,
                rule.min_samples - w.executed,
                f"{w.executed} calls ran in this window; the gate needs at least "
                f"{rule.min_samples}: {rule.min_samples - w.executed} more.",
            )
        )
    if rule.min_success_rate is not None:
        out.append(_rate_min("success_rate", w.succeeded, w.executed, rule.min_success_rate, z))
    if rule.min_policy_pass_rate is not None:
        out.append(_policy(rule, w))
    if rule.max_escalation_rate is not None:
        out.append(
            _rate_max("escalation_rate", w.escalated, w.decided, rule.max_escalation_rate, z)
        )
    if rule.min_sla_adherence is not None:
        out.append(_rate_min("sla_adherence", w.within_sla, w.answered, rule.min_sla_adherence, z))
    if rule.min_lift is not None:
        out.append(_lift(rule, w))
    if not out:
        out.append(
            MetricResult(
                "samples",
                "pass" if w.executed else "missing",
                float(w.executed),
                None,
                None,
                None,
                "min",
                w.executed,
                None,
                f"The gate declares no metric; {w.executed} calls ran."
                if w.executed
                else "Nothing ran in this window; a gate never passes on no data.",
            )
        )
    return out


_LABELS = {
    "success_rate": "Success",
    "policy_pass_rate": "Policy pass",
    "escalation_rate": "Escalation",
    "sla_adherence": "SLA adherence",
    "lift": "Lift",
}
_UNITS = {
    "success_rate": "runs",
    "policy_pass_rate": "decided calls",
    "escalation_rate": "decided calls",
    "sla_adherence": "answered approvals",
}


def _missing(name: str, threshold: float, direction: Literal["min", "max"]) -> MetricResult:
    unit = _UNITS.get(name, "observations")
    return MetricResult(
        name,
        "missing",
        None,
        None,
        None,
        threshold,
        direction,
        0,
        None,
        f"{_LABELS[name]}: no {unit} in this window, so it cannot pass (missing data never "
        "passes).",
    )


def _rate_min(name: str, k: int, n: int, threshold: float, confidence: float) -> MetricResult:
    if n == 0:
        return _missing(name, threshold, "min")
    ci = stats.wilson(k, n, confidence)
    label, unit = _LABELS[name], _UNITS[name]
    if ci.low >= threshold:
        return MetricResult(
            name,
            "pass",
            ci.estimate,
            ci.low,
            ci.high,
            threshold,
            "min",
            n,
            0,
            f"{label} {_ci(ci)} of {n} {unit}: the lower bound clears {threshold:.2f}.",
        )
    more = stats.runs_needed(k, n, threshold=threshold, confidence=confidence, bound="low")
    if more is None:
        return MetricResult(
            name,
            "fail",
            ci.estimate,
            ci.low,
            ci.high,
            threshold,
            "min",
            n,
            None,
            f"{label} {_ci(ci)} of {n} {unit} needs lower bound >= {threshold:.2f}; at the "
            "observed rate no number of runs gets there.",
        )
    return MetricResult(
        name,
        "short",
        ci.estimate,
        ci.low,
        ci.high,
        threshold,
        "min",
        n,
        more,
        f"{label} {_ci(ci)} needs lower bound >= {threshold:.2f}: about {more} more {unit}.",
    )


def _rate_max(name: str, k: int, n: int, threshold: float, confidence: float) -> MetricResult:
    if n == 0:
        return _missing(name, threshold, "max")
    ci = stats.wilson(k, n, confidence)
    label, unit = _LABELS[name], _UNITS[name]
    if ci.high <= threshold:
        return MetricResult(
            name,
            "pass",
            ci.estimate,
            ci.low,
            ci.high,
            threshold,
            "max",
            n,
            0,
            f"{label} {_ci(ci)} of {n} {unit}: the upper bound stays under {threshold:.2f}.",
        )
    more = stats.runs_needed(k, n, threshold=threshold, confidence=confidence, bound="high")
    if more is None:
        return MetricResult(
            name,
            "fail",
            ci.estimate,
            ci.low,
            ci.high,
            threshold,
            "max",
            n,
            None,
            f"{label} {_ci(ci)} of {n} {unit} needs upper bound <= {threshold:.2f}; at the "
            "observed rate no number of calls gets there.",
        )
    return MetricResult(
        name,
        "short",
        ci.estimate,
        ci.low,
        ci.high,
        threshold,
        "max",
        n,
        more,
        f"{label} {_ci(ci)} needs upper bound <= {threshold:.2f}: about {more} more {unit}.",
    )


def _policy(rule: GateRule, w: Window) -> MetricResult:
    """Policy pass. At 100% it is a trip-wire (one failure fails it) plus the bound that
    ``n`` clean calls prove; below 100% an ordinary minimum rate."""
    threshold = rule.min_policy_pass_rate
    assert threshold is not None
    if threshold < 1.0:
        return _rate_min(
            "policy_pass_rate", w.decided - w.policy_failed, w.decided, threshold, rule.confidence
        )
    n = w.decided
    if n == 0:
        return _missing("policy_pass_rate", 1.0, "min")
    if w.policy_failed:
        rate = (n - w.policy_failed) / n
        return MetricResult(
            "policy_pass_rate",
            "fail",
            rate,
            None,
            None,
            1.0,
            "min",
            n,
            None,
            f"Policy pass {rate:.2f}: {w.policy_failed} of {n} decided calls failed a "
            "validator; the gate needs 100% in the window.",
        )
    bound = stats.zero_failure_upper(n, rule.confidence)
    need = rule.min_samples
    text = (
        f"Policy pass 100% over {n} decided calls, which proves a failure rate <= {bound:.3f} "
        f"at {rule.confidence:.0%}."
    )
    return MetricResult(
        "policy_pass_rate",
        "pass",
        1.0,
        1.0 - bound,
        1.0,
        1.0,
        "min",
        n,
        0 if n >= need else need - n,
        text,
    )


def _lift(rule: GateRule, w: Window) -> MetricResult:
    """Relative lift of the KPI's mean, treatment over control (``0.02`` = +2%)."""
    threshold = rule.min_lift
    assert threshold is not None
    kpi = rule.lift_kpi
    c, t = w.kpi_control, w.kpi_treatment
    if c is None or t is None or c.n < 2 or t.n < 2 or c.mean <= 0:
        why = (
            "the control mean is not positive, so a relative lift is undefined"
            if c is not None and c.n >= 2 and c.mean <= 0
            else "fewer than 2 outcomes in control or treatment in this window"
        )
        return MetricResult(
            "lift",
            "missing",
            None,
            None,
            None,
            threshold,
            "min",
            0 if c is None or t is None else min(c.n, t.n),
            None,
            f"Lift of {kpi}: {why}, so it cannot pass (missing data never passes).",
        )
    ci = stats.relative_lift(t, c, rule.confidence)
    n = c.n + t.n
    shown = f"{ci.estimate:+.1%} [{ci.low:+.1%}, {ci.high:+.1%}]"
    counts = f"(treatment {t.n}, control {c.n})"
    if ci.low >= threshold:
        status: Status = "pass"
        text = f"Lift of {kpi} {shown} {counts}: the lower bound clears {threshold:+.1%}."
    elif ci.high < threshold:
        status = "fail"
        text = (
            f"Lift of {kpi} {shown} {counts}: even the upper bound is under {threshold:+.1%}; "
            "the candidate level does not beat control."
        )
    else:
        status = "short"
        text = (
            f"Lift of {kpi} {shown} {counts} needs lower bound >= {threshold:+.1%}: not proven yet."
        )
    return MetricResult(
        "lift", status, ci.estimate, ci.low, ci.high, threshold, "min", n, None, text
    )


def _ci(ci: stats.Interval, digits: int = 2) -> str:
    return f"{ci.estimate:.{digits}f} [{ci.low:.{digits}f}, {ci.high:.{digits}f}]"
