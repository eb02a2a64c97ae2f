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
  ``min_samples`` calls, in each of the last ``consecutive_windows`` windows; its rates
  pass as well over the scope's whole time at this level (its ``tenure``) on a bound that
  holds however often the gates look (so weekly looks do not add up to a wrong promotion);
  outside the cooldown after a demotion, and below the scope's ceiling. A promotion is applied by a
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
('hold', 305)
>>> print(v.metrics[1].sentence)
Success 0.95 [0.76, 0.99] needs lower bound >= 0.90: about 119 more runs.
>>> print(v.metrics[2].sentence)  # doctest: +NORMALIZE_WHITESPACE
Success at this level (a bound for repeated looks) 0.95 [0.69, 1.00] needs lower bound
>= 0.90: about 305 more runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.engine.gate_metrics import (
    MetricResult,
    Window,
    combined,
    floors,
    promotion_metrics,
    standing_metrics,
)
from agent_guardrails.policy.levels import AutonomyLevel
from agent_guardrails.policy.pack import GateRule, PolicyPack
from agent_guardrails.policy.scope import Scope

__all__ = ["METHOD", "GateVerdict", "MetricResult", "Verdict", "Window", "evaluate", "gate_for"]

Verdict = Literal["promote", "hold", "demote", "invalid"]

METHOD = (
    "rates: two-sided Wilson score intervals per window, and over the time at the level a "
    "confidence sequence valid at every look (beta-binomial mixture, a beta prior centered "
    "on the threshold worth 10 runs); policy pass 100%: a trip-wire plus the exact one-sided "
    "bound 0 failures in n proves; lift: relative lift of the KPI's mean, "
    "treatment over control, delta-method interval with Welch degrees of freedom; split: "
    "exact two-sided binomial test, alpha 0.001; runs still needed: the observed rate held "
    "constant"
)
"""How a verdict was reached, recorded with it."""


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
    tenure: Window | Callable[[], Window] | None = None,
) -> GateVerdict:
    """The verdict for ``scope`` at ``level`` from its ``windows`` (oldest first, the last
    the current one). ``up``: the gate from ``level`` to the next (none: no promotion is
    declared); ``down``: the gate that led to ``level`` (its demotion floors and escalation
    cap apply); ``ceiling``: the highest level the pack allows the scope; ``chain_ok``: the
    audit chain verified; ``cooling``: a demotion's cooldown is still running; ``tenure``:
    everything the scope did since its level or pack last changed (default: the
    ``windows`` together), whose rates a promotion needs on the bound for repeated looks,
    or a function that counts it: called only when a promotion is in question."""
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
    if level >= AutonomyLevel.EXECUTE and down is not None:
        # Trip-wires lower only a level a gate led to: a scope with no gate into its level
        # keeps its dial (people move it), as the call-time trip-wire does.
        trips = _trip_wires(current)
        if trips is not None:
            reasons, text, evidence = trips
            return verdict("demote", reasons, text, evidence=evidence)
    problems = _untrustworthy(current)
    if problems:
        return verdict("invalid", [code for code, _ in problems], " ".join(t for _, t in problems))
    if down is not None and level > AutonomyLevel.ASSIST:
        harms = [m for m in floors(down, current) if m.status == "harm"]
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
    per_window = [promotion_metrics(up, w) for w in windows[-up.consecutive_windows :]]
    latest = [
        *per_window[-1],
        *standing_metrics(up, _tenure(tenure, windows)),
    ]
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
        return verdict("hold", reasons, " ".join(parts), metrics=tuple(latest), more=more)
    if cooling:
        return verdict(
            "hold",
            ["cooldown"],
            "Every metric passes, but the scope was demoted recently and its cooldown has not "
            "run out; no promotion until it has.",
            metrics=tuple(latest),
        )
    to = level + 1
    return verdict(
        "promote",
        [],
        f"Every metric passes on its interval bound in {needed_windows} consecutive "
        f"window(s): {AutonomyLevel(level).name.lower()} -> {AutonomyLevel(to).name.lower()} "
        "may be applied by a person."
        + (" A promotion to Orchestrate is always a proposal." if to == 3 else ""),
        metrics=tuple(latest),
        proposal_only=to == AutonomyLevel.ORCHESTRATE,
    )


def _tenure(tenure: Window | Callable[[], Window] | None, windows: Sequence[Window]) -> Window:
    if tenure is None:
        return combined(windows)
    return tenure if isinstance(tenure, Window) else tenure()


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
