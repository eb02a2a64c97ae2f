"""What each gate metric says about one window: the interval, the threshold it is judged
against, its status and a sentence a non-statistician can read (used by
:func:`agent_guardrails.engine.gates.evaluate`). Pure.

A minimum (success rate, policy pass rate, SLA adherence) passes when its Wilson lower bound
reaches the threshold; a maximum (escalation rate) when the upper bound stays under it. A
metric that has not passed says how many more runs would get there at the observed rate, or
that none would.

The same rates are judged once more over the scope's whole time at its level
(:func:`standing_metrics`, named ``<metric>_overall``), on
:func:`~agent_guardrails.engine.gate_stats.anytime_interval`: a bound that holds however
often the gates look, so that looking every week (or every minute) does not add up to a
wrong promotion. Policy pass at 100% is a trip-wire plus the bound ``n`` clean calls prove.
Lift is the relative lift of a KPI's mean, treatment over control.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.policy.pack import GateRule

__all__ = [
    "MetricResult",
    "Status",
    "Window",
    "combined",
    "floors",
    "promotion_metrics",
    "standing_metrics",
]

Status = Literal["pass", "short", "fail", "harm", "missing"]


@dataclass(frozen=True, slots=True)
class Window:
    """What one scope did in one evaluation window ``[start, end)``.

    ``decided``: calls decided (replays not counted); ``policy_failed``: of them, calls a
    validator failed (not counting checks that could not answer); ``escalated``: calls put
    to a human; ``executed``/``succeeded``: tool bodies run and how many ended well;
    ``answered``/``within_sla``: approvals answered and how many within the action's SLA;
    ``unattributed``: calls that started and recorded no end; ``pack_versions``: the pack
    versions decisions were made under; ``control``/``treatment``: work items per cohort
    (with ``expected_treatment``, the pack's split);
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


_COUNTS = (
    "decided",
    "policy_failed",
    "escalated",
    "executed",
    "succeeded",
    "answered",
    "within_sla",
    "unattributed",
)


def combined(windows: Sequence[Window]) -> Window:
    """The ``windows``' counts added up: one window from the first start to the last end
    (the windows are consecutive and do not overlap). Cohorts and KPIs are not added."""
    if not windows:
        raise ValueError("combined needs at least one window")
    totals = {name: sum(getattr(w, name) for w in windows) for name in _COUNTS}
    versions = frozenset().union(*(w.pack_versions for w in windows))
    return Window(
        min(w.start for w in windows),
        max(w.end for w in windows),
        pack_versions=versions,
        **totals,
    )


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


def floors(rule: GateRule, w: Window) -> list[MetricResult]:
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


def promotion_metrics(rule: GateRule, w: Window) -> list[MetricResult]:
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
        out.append(_rate("success_rate", w.succeeded, w.executed, rule.min_success_rate, z, "min"))
    if rule.min_policy_pass_rate is not None:
        out.append(_policy(rule, w))
    if rule.max_escalation_rate is not None:
        out.append(
            _rate("escalation_rate", w.escalated, w.decided, rule.max_escalation_rate, z, "max")
        )
    if rule.min_sla_adherence is not None:
        out.append(
            _rate("sla_adherence", w.within_sla, w.answered, rule.min_sla_adherence, z, "min")
        )
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


def standing_metrics(rule: GateRule, w: Window) -> list[MetricResult]:
    """The rates ``rule`` declares, over ``w``: everything the scope did since its level or
    pack last changed, judged on the interval that holds however often it is looked at.
    Policy pass at 100% stays a trip-wire there: one failure since the level began holds
    the promotion back (at Assist nothing demotes on a failure, so without this a lucky
    clean window could pass a scope that fails now and then). Lift is judged per window."""
    z = rule.confidence
    out: list[MetricResult] = []
    rates: list[tuple[str, int, int, float | None, Literal["min", "max"]]] = [
        ("success_rate", w.succeeded, w.executed, rule.min_success_rate, "min"),
        ("escalation_rate", w.escalated, w.decided, rule.max_escalation_rate, "max"),
        ("sla_adherence", w.within_sla, w.answered, rule.min_sla_adherence, "min"),
    ]
    policy = rule.min_policy_pass_rate
    if policy is not None and policy < 1.0:
        rates.append(("policy_pass_rate", w.decided - w.policy_failed, w.decided, policy, "min"))
    for name, k, n, threshold, direction in rates:
        if threshold is not None and n:  # nothing observed: the window's metric is missing
            out.append(_rate(name, k, n, threshold, z, direction, overall=True))
    if policy == 1.0 and w.policy_failed:
        out.append(_unclean(w, overall=True))
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


_BOUND: dict[str, tuple[Literal["low", "high"], str, str, str]] = {
    # direction: (the bound judged, "passes" wording, "needs" wording, what more counts)
    "min": ("low", "the lower bound clears", "needs lower bound >=", "runs"),
    "max": ("high", "the upper bound stays under", "needs upper bound <=", "calls"),
}


def _rate(
    name: str,
    k: int,
    n: int,
    threshold: float,
    confidence: float,
    direction: Literal["min", "max"],
    *,
    overall: bool = False,
) -> MetricResult:
    """A rate judged on its Wilson bound (``overall``: its bound for repeated looks, over the
    scope's time at its level): the lower one against a minimum, the upper one against a
    maximum; short of it, how many more at the observed rate would get there."""
    if n == 0:
        return _missing(name, threshold, direction)
    method: Literal["wilson", "anytime"] = "anytime" if overall else "wilson"
    prior = stats.prior_at(threshold) if overall else stats.UNIFORM
    if overall:
        ci = stats.anytime_interval(k, n, confidence, prior)
    else:
        ci = stats.wilson(k, n, confidence)
    label, unit = _LABELS[name], _UNITS[name]
    if overall:
        name, label = f"{name}_overall", f"{label} at this level (a bound for repeated looks)"
    bound, passes, needs, counted = _BOUND[direction]
    met = ci.low >= threshold if bound == "low" else ci.high <= threshold
    if met:
        return MetricResult(
            name,
            "pass",
            ci.estimate,
            ci.low,
            ci.high,
            threshold,
            direction,
            n,
            0,
            f"{label} {_ci(ci)} of {n} {unit}: {passes} {threshold:.2f}.",
        )
    more = stats.runs_needed(
        k, n, threshold=threshold, confidence=confidence, bound=bound, method=method, prior=prior
    )
    if more is None:
        return MetricResult(
            name,
            "fail",
            ci.estimate,
            ci.low,
            ci.high,
            threshold,
            direction,
            n,
            None,
            f"{label} {_ci(ci)} of {n} {unit} {needs} {threshold:.2f}; at the observed rate "
            f"no number of {counted} gets there.",
        )
    return MetricResult(
        name,
        "short",
        ci.estimate,
        ci.low,
        ci.high,
        threshold,
        direction,
        n,
        more,
        f"{label} {_ci(ci)} {needs} {threshold:.2f}: about {more} more {unit}.",
    )


def _policy(rule: GateRule, w: Window) -> MetricResult:
    """Policy pass. At 100% it is a trip-wire (one failure fails it) plus the bound that
    ``n`` clean calls prove; below 100% an ordinary minimum rate."""
    threshold = rule.min_policy_pass_rate
    assert threshold is not None
    if threshold < 1.0:
        passed = w.decided - w.policy_failed
        return _rate("policy_pass_rate", passed, w.decided, threshold, rule.confidence, "min")
    n = w.decided
    if n == 0:
        return _missing("policy_pass_rate", 1.0, "min")
    if w.policy_failed:
        return _unclean(w, overall=False)
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


def _unclean(w: Window, *, overall: bool) -> MetricResult:
    """A 100% policy gate failed: a validator failed in the window (or, ``overall``, at
    any time since the level began)."""
    rate = (w.decided - w.policy_failed) / w.decided
    failed = f"{w.policy_failed} of {w.decided} decided calls"
    return MetricResult(
        "policy_pass_rate_overall" if overall else "policy_pass_rate",
        "fail",
        rate,
        None,
        None,
        1.0,
        "min",
        w.decided,
        None,
        f"Policy pass at this level {rate:.2f}: {failed} since the level began failed a "
        "validator; the gate needs 100%, so the record at this level must be clean (a "
        "change of level or pack starts a new one)."
        if overall
        else f"Policy pass {rate:.2f}: {failed} failed a validator; the gate needs 100% in "
        "the window.",
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
