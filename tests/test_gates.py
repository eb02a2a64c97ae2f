"""Gate verdicts (agent_guardrails.engine.gates): every verdict, from counts."""

from __future__ import annotations

import doctest
import random
from dataclasses import replace
from typing import Any

import pytest

from agent_guardrails.engine import gate_stats as stats
from agent_guardrails.engine import gates
from agent_guardrails.engine.gate_metrics import combined
from agent_guardrails.engine.gates import Window, evaluate
from agent_guardrails.policy.pack import GateRule
from tests.test_gate_stats import anytime_real

SCOPE = "workflow=newsletter"


def rule(**kw: Any) -> GateRule:
    kw.setdefault("from", 1)
    kw.setdefault("to", int(kw["from"]) + 1)
    return GateRule.model_validate(kw)


def window(**kw: Any) -> Window:
    kw.setdefault("start", 0.0)
    kw.setdefault("end", 7 * 86_400.0)
    return Window(**kw)


CLEAN = window(decided=500, executed=500, succeeded=496, answered=100, within_sla=100, escalated=20)


def test_the_module_examples_run() -> None:
    assert doctest.testmod(gates).failed == 0


def test_promote_when_every_metric_passes_on_its_bound() -> None:
    up = rule(
        min_samples=200,
        min_success_rate=0.95,
        max_escalation_rate=0.1,
        min_sla_adherence=0.9,
        min_policy_pass_rate=1.0,
    )
    v = evaluate(SCOPE, 1, [CLEAN], up=up)
    assert v.verdict == "promote"
    assert v.to_level == 2
    assert {m.name: m.status for m in v.metrics} == {
        "success_rate": "pass",
        "policy_pass_rate": "pass",
        "escalation_rate": "pass",
        "sla_adherence": "pass",
        # the same rates over the scope's time at the level, on the bound for repeated looks
        "success_rate_overall": "pass",
        "escalation_rate_overall": "pass",
        "sla_adherence_overall": "pass",
    }
    # The point value is not enough: 0.96 observed over 100 runs has a lower bound < 0.95.
    thin = window(decided=100, executed=100, succeeded=96)
    assert evaluate(SCOPE, 1, [thin], up=rule(min_success_rate=0.95)).verdict == "hold"


def test_hold_says_how_many_more_runs_and_the_figure_is_right() -> None:
    up = rule(min_success_rate=0.95)
    w = window(decided=200, executed=200, succeeded=193)  # 0.965 observed
    v = evaluate(SCOPE, 1, [w], up=up)
    assert v.verdict == "hold"
    m, overall = v.metrics
    assert (m.name, overall.name) == ("success_rate", "success_rate_overall")
    assert m.status == overall.status == "short"
    assert m.more is not None
    assert overall.more is not None
    assert 0 < m.more < overall.more  # the bound for repeated looks is wider
    assert v.more == overall.more  # the most any short metric needs
    assert f"about {m.more} more runs" in m.sentence
    assert f"about {overall.more} more runs" in overall.sentence
    assert "needs lower bound >= 0.95" in m.sentence
    # At the observed rate, that many more runs proves it, and one fewer does not.
    rate = 193 / 200
    n = 200 + m.more
    assert stats.wilson(round(rate * n), n).low >= 0.95 - 0.002
    k_before = rate * (n - 1)
    assert _wilson_low_real(k_before, n - 1) < 0.95
    n = 200 + overall.more
    prior = stats.prior_at(0.95)
    assert stats.anytime_interval(round(rate * n), n, prior=prior).low >= 0.95 - 0.002
    assert anytime_real(rate * (n - 1), n - 1, 0.95, prior)[0] < 0.95


def _wilson_low_real(k: float, n: int, z: float = 1.959963984540054) -> float:
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return float((centre - spread) / (1 + z * z / n))


def test_a_rate_that_can_never_pass_says_so() -> None:
    v = evaluate(
        SCOPE, 1, [window(decided=100, executed=100, succeeded=80)], up=rule(min_success_rate=0.95)
    )
    assert v.verdict == "hold"
    assert v.metrics[0].status == "fail"
    assert v.more is None
    assert "no number of runs" in v.metrics[0].sentence


def test_samples_below_min_hold_with_the_shortfall() -> None:
    v = evaluate(
        SCOPE,
        1,
        [window(decided=40, executed=40, succeeded=40)],
        up=rule(min_samples=50, min_success_rate=0.5),
    )
    assert v.verdict == "hold"
    assert "short:samples" in v.reasons
    samples = next(m for m in v.metrics if m.name == "samples")
    assert samples.more == 10


@pytest.mark.parametrize("level", [1, 2, 3])
def test_a_policy_violation_at_level_1_or_more_demotes_at_once(level: int) -> None:
    w = replace(CLEAN, policy_failed=1, violations=(4242,))
    up = rule(**{"from": level}) if level < 3 else None
    v = evaluate(SCOPE, level, [w], up=up, down=rule(**{"from": level - 1}))
    assert v.verdict == "demote"
    assert v.to_level == level - 1
    assert v.reasons == ("policy_violation",)
    assert v.evidence == (4242,)
    assert "audit #4242" in v.explanation


def test_a_policy_failure_at_assist_blocks_promotion_but_cannot_demote() -> None:
    w = window(decided=100, executed=100, succeeded=100, policy_failed=1)
    v = evaluate(SCOPE, 0, [w], up=rule(**{"from": 0}, min_policy_pass_rate=1.0))
    assert v.verdict == "hold"
    assert v.metrics[0].status == "fail"
    assert "1 of 100 decided calls failed a validator" in v.metrics[0].sentence


def test_policy_pass_at_100_percent_reports_the_bound_it_proves() -> None:
    v = evaluate(
        SCOPE,
        0,
        [window(decided=59, executed=59, succeeded=59)],
        up=rule(**{"from": 0}, min_policy_pass_rate=1.0),
    )
    (m,) = v.metrics
    assert m.status == "pass"
    assert m.low == pytest.approx(1 - stats.zero_failure_upper(59, 0.95))
    assert m.low is not None
    assert 1 - m.low < 0.05
    assert "proves a failure rate <= 0.050 at 95%" in m.sentence


def test_a_kill_switch_trip_demotes() -> None:
    w = replace(CLEAN, kill_trips=(7,))
    v = evaluate(SCOPE, 2, [w], up=rule(**{"from": 2}), down=rule(**{"from": 1}))
    assert (v.verdict, v.to_level, v.reasons) == ("demote", 1, ("kill_switch_trip",))


def test_trip_wires_keep_a_level_no_gate_led_to() -> None:
    # As at call time: people move a dial no gate leads into; a violation there is counted
    # against its gate out, not demoted.
    w = replace(CLEAN, policy_failed=1, violations=(4242,), kill_trips=(7,))
    v = evaluate(SCOPE, 1, [w], up=rule(**{"from": 1}))
    assert v.verdict != "demote"
    assert evaluate(SCOPE, 1, [w]).verdict == "hold"


def test_harm_demotes_only_when_the_whole_interval_is_below_the_floor() -> None:
    down = rule(**{"from": 1}, demote_below_success_rate=0.9)
    bad = window(decided=200, executed=200, succeeded=160)  # 0.80 [0.74, 0.85]
    v = evaluate(SCOPE, 2, [bad], down=down)
    assert (v.verdict, v.reasons) == ("demote", ("harm:success_rate",))
    assert "below its floor 0.90 even at the interval's upper bound" in v.explanation
    unclear = window(decided=20, executed=20, succeeded=17)  # 0.85, interval spans 0.9
    assert evaluate(SCOPE, 2, [unclear], down=down).verdict == "hold"


def test_escalations_proven_over_their_cap_demote() -> None:
    down = rule(**{"from": 1}, max_escalation_rate=0.1)
    w = window(decided=300, escalated=90, executed=300, succeeded=300)
    v = evaluate(SCOPE, 2, [w], down=down)
    assert (v.verdict, v.reasons) == ("demote", ("harm:escalation_rate",))


def test_missing_data_never_passes_and_never_demotes() -> None:
    up = rule(**{"from": 2}, min_success_rate=0.5, min_sla_adherence=0.5)
    down = rule(**{"from": 1}, demote_below_success_rate=0.99)
    v = evaluate(SCOPE, 2, [window()], up=up, down=down)
    assert v.verdict == "hold"
    assert all(m.status == "missing" for m in v.metrics)
    assert v.more is None
    # approvals answered: none, though calls ran: SLA cannot pass
    v = evaluate(SCOPE, 2, [window(decided=50, executed=50, succeeded=50)], up=up)
    assert {m.name: m.status for m in v.metrics}["sla_adherence"] == "missing"
    assert v.verdict == "hold"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"unattributed": 1}, "unattributed_calls"),
        ({"pack_versions": frozenset({"3", "4"})}, "mixed_pack_versions"),
        ({"control": 500, "treatment": 500, "expected_treatment": 0.9}, "sample_ratio_mismatch"),
    ],
)
def test_untrustworthy_data_is_invalid_never_promoted(change: dict[str, Any], code: str) -> None:
    up = rule(min_success_rate=0.5)
    assert evaluate(SCOPE, 1, [CLEAN], up=up).verdict == "promote"
    v = evaluate(SCOPE, 1, [replace(CLEAN, **change)], up=up)
    assert v.verdict == "invalid"
    assert v.reasons == (code,)


def test_a_split_matching_the_pack_is_not_a_mismatch() -> None:
    w = replace(CLEAN, control=96, treatment=904, expected_treatment=0.9)
    assert evaluate(SCOPE, 1, [w], up=rule(min_success_rate=0.5)).verdict == "promote"


def test_a_broken_audit_chain_is_invalid_even_over_a_trip_wire() -> None:
    w = replace(CLEAN, violations=(1,), policy_failed=1)
    v = evaluate(SCOPE, 2, [w], up=rule(**{"from": 2}), chain_ok=False)
    assert (v.verdict, v.reasons) == ("invalid", ("audit_chain_broken",))


def test_cooldown_holds_a_passing_gate() -> None:
    up = rule(min_success_rate=0.5)
    v = evaluate(SCOPE, 1, [CLEAN], up=up, cooling=True)
    assert (v.verdict, v.reasons) == ("hold", ("cooldown",))


def test_consecutive_windows_must_all_pass() -> None:
    up = rule(min_success_rate=0.95, consecutive_windows=2)
    bad = window(decided=300, executed=300, succeeded=270)
    assert evaluate(SCOPE, 1, [bad, CLEAN], up=up).verdict == "hold"
    assert evaluate(SCOPE, 1, [CLEAN], up=up).verdict == "hold"  # one window only so far
    assert evaluate(SCOPE, 1, [CLEAN, CLEAN], up=up).verdict == "promote"


def test_at_the_ceiling_or_without_a_gate_it_holds() -> None:
    assert evaluate(SCOPE, 1, [CLEAN], up=rule(), ceiling=1).reasons == ("at_ceiling",)
    assert evaluate(SCOPE, 1, [CLEAN]).reasons == ("no_gate",)


def test_a_promotion_to_orchestrate_is_only_proposed() -> None:
    v = evaluate(SCOPE, 2, [CLEAN], up=rule(**{"from": 2}, min_success_rate=0.5))
    assert v.verdict == "promote"
    assert v.proposal_only
    assert "always a proposal" in v.explanation


def _kpi(rng: random.Random, mean: float, n: int) -> stats.Moments:
    return stats.Moments.of([rng.gauss(mean, 1.0) for _ in range(n)])


@pytest.mark.parametrize(
    ("treatment_mean", "n", "status"),
    [(1.5, 400, "pass"), (1.05, 30, "short"), (0.5, 400, "fail")],  # control mean 1.0
)
def test_lift_over_control_is_judged_on_its_interval(
    treatment_mean: float, n: int, status: str
) -> None:
    rng = random.Random(7)
    up = rule(**{"from": 2}, min_lift=0.2, lift_kpi="revenue")
    w = replace(CLEAN, kpi_control=_kpi(rng, 1.0, n), kpi_treatment=_kpi(rng, treatment_mean, n))
    v = evaluate(SCOPE, 2, [w], up=up)
    (m,) = v.metrics
    assert m.status == status
    assert v.verdict == ("promote" if status == "pass" else "hold")
    assert "Lift of revenue" in m.sentence


def test_lift_without_outcomes_is_missing() -> None:
    up = rule(**{"from": 2}, min_lift=0.0, lift_kpi="revenue")
    v = evaluate(SCOPE, 2, [CLEAN], up=up)
    assert v.metrics[0].status == "missing"
    assert v.verdict == "hold"


@pytest.mark.parametrize(
    ("kw", "text"),
    [
        ({"succeeded": 5, "executed": 4}, "succeeded (5) cannot exceed Window.executed"),
        ({"decided": -1}, "Window.decided must be a count"),
        ({"decided": True}, "Window.decided must be a count"),
        ({"start": float("nan")}, "finite start <= end"),
        ({"start": 5.0, "end": 1.0}, "finite start <= end"),
    ],
)
def test_bad_windows_are_refused(kw: dict[str, Any], text: str) -> None:
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
        window(**kw)


def test_evaluate_needs_a_window() -> None:
    with pytest.raises(ValueError, match="at least one window"):
        evaluate(SCOPE, 1, [])


def test_the_verdict_is_deterministic_and_serialisable() -> None:
    import json

    up = rule(min_success_rate=0.95)
    a = evaluate(SCOPE, 1, [CLEAN], up=up).as_dict()
    b = evaluate(SCOPE, 1, [CLEAN], up=up).as_dict()
    assert a == b
    assert json.loads(json.dumps(a)) == a
    assert a["method"].startswith("rates: two-sided Wilson")


def test_a_window_that_passes_once_is_not_enough_for_repeated_looks() -> None:
    # 294 of 300 passes the one-look Wilson bound (0.957 >= 0.95) but not the bound that holds
    # however often the gates look (0.943): a scope that just began its level holds ...
    up = rule(min_success_rate=0.95)
    w = window(decided=300, executed=300, succeeded=294)
    v = evaluate(SCOPE, 1, [w], up=up)
    assert v.verdict == "hold"
    assert v.reasons == ("short:success_rate_overall",)
    assert "a bound for repeated looks" in v.explanation
    # ... one whose longer record at the level proves the rate is promoted on the same window
    steady = window(start=-30 * 86_400.0, decided=1500, executed=1500, succeeded=1480)
    assert evaluate(SCOPE, 1, [w], up=up, tenure=steady).verdict == "promote"
    # ... and one whose record at the level is worse than this week is not.
    shaky = window(start=-30 * 86_400.0, decided=1500, executed=1500, succeeded=1400)
    v = evaluate(SCOPE, 1, [w], up=up, tenure=shaky)
    assert v.verdict == "hold"
    overall = next(m for m in v.metrics if m.name == "success_rate_overall")
    assert (overall.status, overall.n, overall.more) == ("fail", 1500, None)


def test_the_tenure_defaults_to_the_windows_together() -> None:
    up = rule(min_success_rate=0.95, consecutive_windows=2)
    v = evaluate(SCOPE, 1, [CLEAN, CLEAN], up=up)
    assert v.verdict == "promote"
    overall = next(m for m in v.metrics if m.name == "success_rate_overall")
    assert overall.n == 2 * CLEAN.executed
    assert overall.low == stats.anytime_interval(2 * 496, 1000, prior=(9.5, 0.5)).low


def test_every_declared_rate_is_judged_over_the_tenure() -> None:
    up = rule(
        min_success_rate=0.5,
        max_escalation_rate=0.1,
        min_sla_adherence=0.5,
        min_policy_pass_rate=0.9,
    )
    # a week that passes each rate on its Wilson bound, in a tenure that fails each one
    tenure = window(
        start=-60 * 86_400.0,
        decided=2000,
        policy_failed=400,
        escalated=600,
        executed=2000,
        succeeded=900,
        answered=700,
        within_sla=300,
    )
    v = evaluate(SCOPE, 1, [CLEAN], up=up, tenure=tenure)
    assert v.verdict == "hold"
    assert set(v.reasons) == {
        "short:success_rate_overall",
        "short:escalation_rate_overall",
        "short:sla_adherence_overall",
        "short:policy_pass_rate_overall",
    }


def test_combined_adds_counts_and_spans_the_windows() -> None:
    a = window(
        start=0.0, end=10.0, decided=5, executed=4, succeeded=3, pack_versions=frozenset({"1"})
    )
    b = window(start=10.0, end=25.0, decided=7, executed=7, succeeded=7, unattributed=1)
    both = combined([a, b])
    assert (both.start, both.end) == (0.0, 25.0)
    assert (both.decided, both.executed, both.succeeded, both.unattributed) == (12, 11, 10, 1)
    assert both.pack_versions == frozenset({"1"})
    with pytest.raises(ValueError, match="at least one window"):
        combined([])


def test_a_policy_failure_at_this_level_holds_a_100_percent_gate_back() -> None:
    # At Assist a failure demotes nothing; a clean window after a failing record must not
    # promote through a 100% policy gate (a lucky clean week).
    up = rule(**{"from": 0}, min_policy_pass_rate=1.0)
    clean = window(decided=60, executed=60, succeeded=60)
    failing = window(
        start=-90 * 86_400.0, decided=3000, policy_failed=60, executed=3000, succeeded=3000
    )
    assert evaluate(SCOPE, 0, [clean], up=up).verdict == "promote"
    v = evaluate(SCOPE, 0, [clean], up=up, tenure=failing)
    assert (v.verdict, v.reasons) == ("hold", ("short:policy_pass_rate_overall",))
    assert "60 of 3000 decided calls since the level began failed a validator" in v.explanation


def test_the_tenure_is_counted_only_when_a_promotion_is_in_question() -> None:
    counted: list[int] = []

    def tenure() -> Window:
        counted.append(1)
        return CLEAN

    bad = window(decided=100, executed=100, succeeded=50)
    assert (
        evaluate(
            SCOPE,
            2,
            [bad],
            up=rule(**{"from": 2}),
            down=rule(demote_below_success_rate=0.9),
            tenure=tenure,
        ).verdict
        == "demote"
    )
    assert evaluate(SCOPE, 1, [CLEAN], up=None, tenure=tenure).verdict == "hold"  # no gate
    assert counted == []
    assert (
        evaluate(SCOPE, 1, [CLEAN], up=rule(min_success_rate=0.5), tenure=tenure).verdict
        == "promote"
    )
    assert counted == [1]
