"""The gates' statistics (agent_guardrails.engine.gate_stats), cross-checked against scipy
(a test dependency only) on grids of inputs, with properties and bad input."""

from __future__ import annotations

import doctest
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special
from scipy import stats as ss

from agent_guardrails.engine import gate_stats as G

GRID_N = [1, 2, 3, 5, 10, 30, 59, 100, 1000, 100_000]
CONFIDENCES = [0.8, 0.9, 0.95, 0.99]


def ks(n: int) -> list[int]:
    return sorted({0, 1, n // 3, n // 2, max(0, n - 1), n, int(n * 0.95)} & set(range(n + 1)))


def test_the_module_examples_run() -> None:
    assert doctest.testmod(G).failed == 0


@pytest.mark.parametrize("n", GRID_N)
def test_wilson_and_clopper_pearson_match_scipy(n: int) -> None:
    for k in ks(n):
        for c in CONFIDENCES:
            test = ss.binomtest(k, n)
            w, ref = G.wilson(k, n, c), test.proportion_ci(confidence_level=c, method="wilson")
            assert w.estimate == pytest.approx(k / n)
            assert w.low == pytest.approx(ref.low, abs=1e-12)
            assert w.high == pytest.approx(ref.high, abs=1e-12)
            cp, ref = G.clopper_pearson(k, n, c), test.proportion_ci(c, method="exact")
            assert cp.low == pytest.approx(ref.low, abs=1e-10)
            assert cp.high == pytest.approx(ref.high, abs=1e-10)


@pytest.mark.parametrize("n", [*GRID_N, 10**6, 10**7])
def test_the_exact_binomial_test_matches_scipy(n: int) -> None:
    for k in ks(n):
        for p in (0.001, 0.1, 0.5, 0.7, 0.9, 0.999):
            ref = ss.binomtest(k, n, p).pvalue
            got = G.binom_test(k, n, p)
            if ref > 1e-12:
                assert got == pytest.approx(ref, rel=1e-9)
            else:
                assert got == pytest.approx(ref, abs=1e-12)


def test_binomial_cdf_and_sf_match_scipy() -> None:
    for n in (1, 7, 50, 1000, 10**6):
        for k in ks(n):
            for p in (0.0, 0.01, 0.3, 0.5, 0.99, 1.0):
                assert G.binom_cdf(k, n, p) == pytest.approx(ss.binom.cdf(k, n, p), abs=1e-12)
                assert G.binom_sf(k, n, p) == pytest.approx(ss.binom.sf(k, n, p), abs=1e-12)
                assert G.binom_pmf(k, n, p) == pytest.approx(ss.binom.pmf(k, n, p), abs=1e-12)


def test_normal_and_student_t_match_scipy() -> None:
    for q in (1e-12, 1e-6, 0.01, 0.3, 0.5, 0.8, 0.975, 0.999999, 1 - 1e-12):
        assert G.normal_ppf(q) == pytest.approx(ss.norm.ppf(q), abs=1e-9)
    for x in (-8.0, -1.5, 0.0, 0.3, 2.0, 7.5):
        assert G.normal_cdf(x) == pytest.approx(ss.norm.cdf(x), abs=1e-14)
    for df in (1, 1.5, 2, 5, 30, 1000, 1e6):
        for q in (0.5, 0.9, 0.975, 0.995, 0.9999):
            assert G.student_t_ppf(q, df) == pytest.approx(ss.t.ppf(q, df), rel=1e-9, abs=1e-12)
        for x in (-4.0, -0.5, 0.0, 1.0, 3.0):
            assert G.student_t_cdf(x, df) == pytest.approx(ss.t.cdf(x, df), abs=1e-12)


def test_regularized_beta_matches_scipy() -> None:
    rng = random.Random(7)
    for _ in range(400):
        a, b = math.exp(rng.uniform(-2, 9)), math.exp(rng.uniform(-2, 9))
        x = rng.random()
        assert G.regularized_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), abs=1e-12)


def test_welch_difference_matches_scipy() -> None:
    rng = random.Random(11)
    for _ in range(60):
        xs = [rng.gauss(3, 2) for _ in range(rng.randint(2, 80))]
        ys = [rng.gauss(2, 1) for _ in range(rng.randint(2, 80))]
        got = G.welch_difference(G.Moments.of(xs), G.Moments.of(ys), 0.95)
        ref = ss.ttest_ind(xs, ys, equal_var=False).confidence_interval(0.95)
        assert got.low == pytest.approx(ref.low, abs=1e-10)
        assert got.high == pytest.approx(ref.high, abs=1e-10)


def test_newcombe_difference_is_built_from_scipys_wilson_intervals() -> None:
    for x1, n1, x2, n2 in [(56, 70, 48, 80), (9, 10, 3, 10), (0, 20, 0, 30), (30, 30, 1, 40)]:
        got = G.newcombe_difference(x1, n1, x2, n2, 0.95)
        a = ss.binomtest(x1, n1).proportion_ci(0.95, method="wilson")
        b = ss.binomtest(x2, n2).proportion_ci(0.95, method="wilson")
        p1, p2 = x1 / n1, x2 / n2
        low = p1 - p2 - math.sqrt((p1 - a.low) ** 2 + (b.high - p2) ** 2)
        high = p1 - p2 + math.sqrt((a.high - p1) ** 2 + (p2 - b.low) ** 2)
        assert got.low == pytest.approx(low, abs=1e-12)
        assert got.high == pytest.approx(high, abs=1e-12)
    published = G.newcombe_difference(56, 70, 48, 80, 0.95)  # Newcombe 1998, table II
    assert (round(published.low, 4), round(published.high, 4)) == (0.0524, 0.3339)


def test_zero_failures_prove_about_three_over_n() -> None:
    assert G.zero_failure_upper(59, 0.95) < 0.05 < G.zero_failure_upper(58, 0.95)
    assert G.zero_failure_upper(0) == 1.0
    ref = ss.binomtest(0, 300).proportion_ci(0.90, method="exact").high  # one-sided 95%
    assert G.zero_failure_upper(300, 0.95) == pytest.approx(ref, rel=1e-9)
    more = G.runs_needed_zero_failures(20, max_rate=0.05)
    assert more == 39
    assert G.zero_failure_upper(20 + more) <= 0.05


def _wilson_low_real(k: float, n: float, confidence: float = 0.95) -> float:
    z = ss.norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=5000),
    rate=st.floats(min_value=0.5, max_value=1.0),
    threshold=st.floats(min_value=0.5, max_value=0.99),
)
def test_runs_needed_is_the_least_that_gets_there(n: int, rate: float, threshold: float) -> None:
    k = round(rate * n)
    more = G.runs_needed(k, n, threshold=threshold)
    if more is None:
        assert k / n < threshold or k / n == threshold or _wilson_low_real(k, n) < threshold
        return
    if more == 0:
        assert G.wilson(k, n).low >= threshold - 1e-12
        return
    p = k / n
    assert _wilson_low_real(p * (n + more), n + more) >= threshold - 1e-9
    assert _wilson_low_real(p * (n + more - 1), n + more - 1) < threshold + 1e-9


@settings(max_examples=200, deadline=None)
@given(k=st.integers(min_value=0, max_value=2000), extra=st.integers(min_value=0, max_value=2000))
def test_intervals_contain_the_estimate_and_stay_in_range(k: int, extra: int) -> None:
    n = k + extra
    if n == 0:
        assert G.wilson(0, 0) == G.Interval(0.0, 0.0, 1.0, 0.95)
        return
    for interval in (G.wilson(k, n), G.clopper_pearson(k, n)):
        assert 0.0 <= interval.low <= interval.estimate <= interval.high <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    a=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
    b=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
)
def test_merged_moments_equal_the_moments_of_both(a: list[float], b: list[float]) -> None:
    merged = G.Moments.of(a).merge(G.Moments.of(b))
    whole = G.Moments.of(a + b)
    assert merged.n == whole.n
    assert merged.mean == pytest.approx(whole.mean, rel=1e-9, abs=1e-6)
    assert merged.m2 == pytest.approx(whole.m2, rel=1e-9, abs=1e-3)


def test_relative_lift_covers_the_true_lift_about_as_often_as_it_says() -> None:
    rng = random.Random(5)
    covered, trials = 0, 400
    for _ in range(trials):
        control = G.Moments.of([rng.expovariate(1 / 10.0) for _ in range(400)])
        treatment = G.Moments.of([rng.expovariate(1 / 11.0) for _ in range(400)])
        ci = G.relative_lift(treatment, control, 0.95)
        covered += ci.low <= 0.1 <= ci.high
    assert 0.92 <= covered / trials <= 0.98  # the true lift is +10%


def test_the_split_check_flags_only_real_mismatches() -> None:
    assert not G.srm_check(203, 797, 0.8).mismatch
    flagged = G.srm_check(500, 500, 0.9)
    assert flagged.mismatch
    assert flagged.p_value < 1e-100
    assert (
        G.srm_check(0, 0, 0.5) == G.SrmResult(1.0, False, 0.0, 0.5)
        or not G.srm_check(0, 0, 0.5).mismatch
    )


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: G.wilson(5, 3), "successes"),
        (lambda: G.wilson(-1, 3), "successes"),
        (lambda: G.wilson(True, 3), "successes"),
        (lambda: G.wilson(1, 3, 1.0), "confidence"),
        (lambda: G.wilson(1, 3, float("nan")), "confidence"),
        (lambda: G.binom_test(1, 3, float("inf")), "p"),
        (lambda: G.runs_needed(1, 3, threshold=1.5), "threshold"),
        (lambda: G.srm_check(1, 3, 1.0), "expected_treatment"),
        (lambda: G.welch_difference(G.Moments.of([1.0]), G.Moments.of([1.0, 2.0])), "must be >= 2"),
        (lambda: G.relative_lift(G.Moments.of([1.0, 2.0]), G.Moments.of([-1.0, -2.0])), "positive"),
        (lambda: G.Moments.of([1.0, float("nan")]), "finite"),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(call: object, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        call()  # type: ignore[operator]
