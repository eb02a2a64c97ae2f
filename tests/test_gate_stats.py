"""The statistics of promotion gates (agent_guardrails.engine.gate_stats) against scipy, exact
rational arithmetic, published values and their own invariants. scipy is a test dependency
only: the module itself is pure Python."""

from __future__ import annotations

import doctest
import itertools
import math
import random
import statistics
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from agent_guardrails.engine import gate_stats as gs
from agent_guardrails.engine.gate_stats import (
    Interval,
    Moments,
    anytime_interval,
    binom_cdf,
    binom_pmf,
    binom_sf,
    binom_test,
    clopper_pearson,
    newcombe_difference,
    normal_cdf,
    normal_ppf,
    regularized_beta,
    runs_needed,
    runs_needed_zero_failures,
    srm_check,
    student_t_cdf,
    student_t_ppf,
    welch_difference,
    wilson,
    zero_failure_upper,
)

CONFIDENCES = [0.5, 0.8, 0.9, 0.95, 0.99, 0.999]
SIZES = [1, 2, 3, 5, 10, 20, 50, 100, 1000, 12_345, 10**6, 10**7]
DFS = [1.0, 1.5, 2.0, 5.0, 30.0, 1000.0, 1e6]
slow_settings = settings(deadline=None, max_examples=150)


def close(ours: float, reference: Any, rel: float, tiny: float = 0.0) -> bool:
    """``ours`` within ``rel`` of ``reference`` (relative), or within ``tiny`` (absolute)."""
    return math.isclose(ours, float(reference), rel_tol=rel, abs_tol=tiny)


def counts(n: int) -> list[int]:
    """Success counts worth checking for ``n`` trials: the edges, the middle and a typical
    high rate."""
    return sorted(
        {k for k in (0, 1, 2, n // 3, n // 2, (93 * n) // 100, n - 2, n - 1, n) if 0 <= k <= n}
    )


def test_the_module_doctests_run() -> None:
    result = doctest.testmod(gs)
    assert result.attempted >= 4
    assert result.failed == 0


# --- rates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_wilson_matches_scipy(n: int) -> None:
    for k in counts(n):
        for confidence in CONFIDENCES:
            ours = wilson(k, n, confidence)
            theirs = stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
            assert ours.estimate == k / n
            assert ours.confidence == confidence
            assert close(ours.low, theirs.low, 1e-10, 1e-16), (k, n, confidence)
            assert close(ours.high, theirs.high, 1e-10, 1e-16), (k, n, confidence)


def test_wilson_with_no_trials_spans_everything() -> None:
    assert wilson(0, 0) == Interval(0.0, 0.0, 1.0, 0.95)
    assert clopper_pearson(0, 0, 0.9) == Interval(0.0, 0.0, 1.0, 0.9)


def test_an_interval_prints_two_decimals_or_as_many_as_asked() -> None:
    interval = wilson(93, 100)
    assert str(interval) == "0.93 [0.86, 0.97]"
    assert interval.format(4) == "0.9300 [0.8625, 0.9657]"


@pytest.mark.parametrize("n", [1, 2, 5, 10, 50, 100, 1000])
def test_clopper_pearson_matches_scipy(n: int) -> None:
    # scipy's beta quantile itself drifts by ~1e-9 at the edges; the defining equations
    # below hold far tighter.
    for k in counts(n):
        for confidence in [0.8, 0.9, 0.95, 0.99]:
            ours = clopper_pearson(k, n, confidence)
            theirs = stats.binomtest(k, n).proportion_ci(confidence, method="exact")
            assert ours.estimate == k / n
            assert close(ours.low, theirs.low, 1e-8, 1e-300), (k, n, confidence)
            assert close(ours.high, theirs.high, 1e-8, 1e-300), (k, n, confidence)


@pytest.mark.parametrize("n", [1, 2, 7, 100, 10**5, 10**7, 10**9])
@pytest.mark.parametrize("confidence", [0.5, 0.95, 0.999999, 1 - 1e-9])
def test_clopper_pearson_solves_its_defining_equations(n: int, confidence: float) -> None:
    """P[X >= k | low] = P[X <= k | high] = (1 - confidence) / 2, checked with scipy's
    incomplete beta where the bound is below 1/2 (above, a double cannot resolve it better
    than 1e-16 absolute, and the mirrored count checks it)."""
    tail = (1 - confidence) / 2
    for k in counts(n):
        ours = clopper_pearson(k, n, confidence)
        mirror = clopper_pearson(n - k, n, confidence)
        assert ours.low == pytest.approx(1 - mirror.high, rel=1e-15, abs=1e-16)
        assert ours.high == pytest.approx(1 - mirror.low, rel=1e-15, abs=1e-16)
        if k > 0 and ours.low <= 0.5:
            assert close(special.betainc(k, n - k + 1, ours.low), tail, 1e-9), (k, n)
        if k < n and ours.high <= 0.5:
            assert close(special.betaincc(k + 1, n - k, ours.high), tail, 1e-9), (k, n)


@pytest.mark.parametrize("n", [1, 3, 30, 1000, 10**7])
def test_clopper_pearson_closed_forms_at_the_edges(n: int) -> None:
    tail = 0.025
    assert clopper_pearson(0, n).high == pytest.approx(-math.expm1(math.log(tail) / n), rel=1e-12)
    assert clopper_pearson(1, n).low == pytest.approx(-math.expm1(math.log1p(-tail) / n), rel=1e-12)
    assert clopper_pearson(n, n).low == pytest.approx(math.exp(math.log(tail) / n), rel=1e-12)


@pytest.mark.parametrize("n", [1, 2, 10, 100, 299, 10**4, 10**7])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_zero_failures_prove_about_three_over_n(n: int, confidence: float) -> None:
    bound = zero_failure_upper(n, confidence)
    assert math.exp(n * math.log1p(-bound)) == pytest.approx(1 - confidence, rel=1e-12)
    if n <= 10**4:  # scipy's beta quantile drifts beyond that
        assert bound == pytest.approx(float(stats.beta.ppf(confidence, 1, n)), rel=1e-9)
    if confidence == 0.95 and n >= 100:
        assert bound == pytest.approx(3 / n, rel=0.02)


def test_zero_failure_upper_with_no_trials_is_one() -> None:
    assert zero_failure_upper(0) == 1.0


@pytest.mark.parametrize("max_rate", [0.5, 0.1, 0.05, 0.01, 0.003, 1e-4, 1e-7])
@pytest.mark.parametrize("n", [0, 10, 250, 10**6])
def test_runs_needed_zero_failures_is_minimal(max_rate: float, n: int) -> None:
    more = runs_needed_zero_failures(n, max_rate=max_rate)
    assert zero_failure_upper(n + more) <= max_rate
    if more > 0:
        assert zero_failure_upper(n + more - 1) > max_rate


def test_runs_needed_zero_failures_examples() -> None:
    assert runs_needed_zero_failures(0, max_rate=0.01) == 299  # the rule of three
    assert runs_needed_zero_failures(100, max_rate=0.01) == 199
    assert runs_needed_zero_failures(500, max_rate=0.01) == 0
    assert runs_needed_zero_failures(5, max_rate=1.0) == 0


# --- the exact binomial test ----------------------------------------------------------------


def binom_test_cases() -> list[tuple[int, int, float]]:
    cases = []
    for n in [1, 2, 3, 7, 10, 33, 100, 1000, 12_345, 10**5, 10**6, 10**7]:
        for p in [1e-9, 1e-6, 1e-3, 0.01, 0.1, 0.25, 1 / 3, 0.5, 0.7, 0.99, 1 - 1e-6]:
            mean, sd = n * p, math.sqrt(n * p * (1 - p))
            mode = math.floor((n + 1) * p)
            ks = {0, 1, n - 1, n, mode, math.ceil(mean), round(mean + 0.5 * sd)}
            ks |= {round(mean + z * sd) for z in (-40, -5, -2, 2, 5, 40)}
            cases += [(k, n, p) for k in sorted(ks) if 0 <= k <= n]
    return cases


def test_binom_test_matches_scipy() -> None:
    cases = binom_test_cases()
    assert len(cases) > 800
    for k, n, p in cases:
        theirs = float(stats.binomtest(k, n, p).pvalue)
        # at n = 10**7, p = 1e-6 scipy's own binom.cdf is ~1e-10 off (ours matches mpmath)
        tiny = 1e-12 if theirs < 1e-3 else 0.0
        assert close(binom_test(k, n, p), theirs, 1e-9, tiny), (k, n, p)


def test_binom_test_at_the_edges_of_p() -> None:
    assert binom_test(0, 10, 0.0) == 1.0
    assert binom_test(3, 10, 0.0) == 0.0
    assert binom_test(10, 10, 1.0) == 1.0
    assert binom_test(9, 10, 1.0) == 0.0
    assert binom_test(0, 0, 0.3) == 1.0
    assert binom_test(5, 10, 0.5) == 1.0


def test_binom_test_over_ten_million_trials_sums_no_terms() -> None:
    """O(log n) by construction: a bisection on the pmf and two incomplete betas."""
    n = 10**7
    for k in (0, 4_990_000, 5_000_000, 5_003_000, n):
        assert 0.0 <= binom_test(k, n, 0.5) <= 1.0
    assert binom_test(5_003_000, n, 0.5) == pytest.approx(
        float(stats.binomtest(5_003_000, n, 0.5).pvalue), rel=1e-9
    )


@pytest.mark.parametrize("n", [2, 17, 60])
@pytest.mark.parametrize("p", [0.001, 0.3, 0.5, 0.85])
def test_binomial_distribution_against_exact_fractions(n: int, p: float) -> None:
    exact_p = Fraction(p)
    pmf = [math.comb(n, k) * exact_p**k * (1 - exact_p) ** (n - k) for k in range(n + 1)]
    for k in range(n + 1):
        below = sum(pmf[: k + 1], Fraction(0))
        assert close(binom_pmf(k, n, p), pmf[k], 1e-12, 1e-300), k
        assert close(binom_cdf(k, n, p), below, 1e-12, 1e-300), k
        assert close(binom_sf(k, n, p), 1 - below, 1e-12, 1e-300), k


@pytest.mark.parametrize("n", [1, 10, 1000, 10**5, 10**7])
@pytest.mark.parametrize("p", [1e-9, 1e-4, 0.01, 0.3, 0.5, 0.77, 0.999, 1 - 1e-9])
def test_binomial_distribution_matches_scipy(n: int, p: float) -> None:
    mean = n * p
    for k in sorted(
        {0, 1, n // 2, int(mean), min(n, int(mean) + 3), max(0, int(mean) - 3), n - 1, n}
    ):
        for ours, theirs in [
            (binom_pmf(k, n, p), stats.binom.pmf(k, n, p)),
            (binom_cdf(k, n, p), stats.binom.cdf(k, n, p)),
            (binom_sf(k, n, p), stats.binom.sf(k, n, p)),
        ]:
            assert close(ours, theirs, 1e-9, 1e-290), (k, n, p)


def test_binomial_distribution_at_the_edges_of_p() -> None:
    assert (binom_pmf(0, 5, 0.0), binom_pmf(1, 5, 0.0), binom_pmf(5, 5, 1.0)) == (1.0, 0.0, 1.0)
    assert (binom_cdf(0, 5, 0.0), binom_sf(0, 5, 0.0)) == (1.0, 0.0)
    assert (binom_cdf(4, 5, 1.0), binom_sf(4, 5, 1.0)) == (0.0, 1.0)
    assert (binom_cdf(5, 5, 0.3), binom_sf(5, 5, 0.3)) == (1.0, 0.0)


# --- special functions ----------------------------------------------------------------------


def test_normal_ppf_matches_scipy() -> None:
    lower = [10.0**-e for e in range(1, 13)] + [10.0**-e for e in (50, 100, 300)]
    qs = lower + [1 - q for q in lower[:12]] + [i / 100 for i in range(1, 100)]
    for q in qs:
        assert close(normal_ppf(q), stats.norm.ppf(q), 1e-13, 1e-15), q
    assert normal_ppf(0.5) == 0.0


def test_normal_cdf_matches_scipy() -> None:
    for x in [-38.0, -20.0, -8.5, -3.0, -1.0, -1e-8, 0.0, 0.3, 1.96, 5.0, 9.0]:
        assert close(normal_cdf(x), stats.norm.cdf(x), 1e-12, 1e-300), x


@pytest.mark.parametrize("df", DFS)
def test_student_t_matches_scipy(df: float) -> None:
    for q in [1e-12, 1e-8, 1e-4, 0.001, 0.025, 0.1, 0.3, 0.49, 0.5, 0.7, 0.975, 0.999, 1 - 1e-8]:
        assert close(student_t_ppf(q, df), stats.t.ppf(q, df), 1e-10, 1e-15), q
    for x in [-1e6, -30.0, -3.0, -1.0, -0.1, 0.0, 0.1, 1.0, 2.0, 5.0, 40.0, 1e8]:
        assert close(student_t_cdf(x, df), stats.t.cdf(x, df), 1e-10, 1e-300), x


def test_student_t_ppf_inverts_student_t_cdf() -> None:
    for df in [0.5, *DFS]:
        for q in [1e-6, 0.05, 0.5, 0.8, 0.975]:
            assert student_t_cdf(student_t_ppf(q, df), df) == pytest.approx(q, rel=1e-10)


@pytest.mark.parametrize("q", [1e-300, 1e-200, 1e-100, 1e-20, 1e-5, 0.2])
def test_student_t_far_in_the_tail_against_closed_forms(q: float) -> None:
    """df = 1 (Cauchy) and df = 2 have closed forms; past t ~ 1e145 the quantile comes from
    the tail's power law, since df / (df + t^2) no longer fits in a double."""
    assert student_t_ppf(q, 1.0) == pytest.approx(-1 / math.tan(math.pi * q), rel=1e-12)
    assert student_t_ppf(q, 2.0) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)))
    for df in (0.5, 3.0, 30.0):
        t = student_t_ppf(q, df)
        if df == 0.5 and q < 1e-150:
            assert t == -math.inf  # about -q**-2: beyond the largest double
        else:
            assert student_t_cdf(t, df) == pytest.approx(q, rel=1e-12)


@pytest.mark.parametrize("t", [1e3, 1e50, 1e160, 1e250])
def test_student_t_cdf_far_in_the_tail_against_closed_forms(t: float) -> None:
    assert student_t_cdf(-t, 1.0) == pytest.approx(math.atan(1 / t) / math.pi, rel=1e-12)
    root = math.sqrt(2 + t * t) if t < 1e150 else t
    assert student_t_cdf(-t, 2.0) == pytest.approx(1 / (root * (root + t)), rel=1e-12)


def test_regularized_beta_matches_scipy() -> None:
    rng = random.Random(20240103)
    for _ in range(2000):
        a, b = math.exp(rng.uniform(-1, 14)), math.exp(rng.uniform(-1, 14))
        if rng.random() < 0.5:  # near the mean, where the two tails meet
            x = min(1.0, a / (a + b) * math.exp(rng.gauss(0, 0.01)))
        else:
            x = rng.random()
        ours, reference = regularized_beta(a, b, x), float(special.betainc(a, b, x))
        if reference < 1e-250:  # scipy underflows (to 0, or a few % off) this deep
            assert ours < 1e-240
        else:
            assert close(ours, reference, 1e-10), (a, b, x)
        assert regularized_beta(a, b, x) + regularized_beta(b, a, 1 - x) == pytest.approx(1.0)
    assert regularized_beta(2.0, 3.0, 0.0) == 0.0
    assert regularized_beta(2.0, 3.0, 1.0) == 1.0
    assert regularized_beta(1.0, 1.0, 0.25) == pytest.approx(0.25, rel=1e-15)


# --- differences ----------------------------------------------------------------------------

# Newcombe (1998), Table II, method 10 (hybrid score), to four decimals.
NEWCOMBE_TABLE_II = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts_", "published"), NEWCOMBE_TABLE_II)
def test_newcombe_reproduces_his_table(
    counts_: tuple[int, int, int, int], published: tuple[float, float]
) -> None:
    interval = newcombe_difference(*counts_)
    assert (round(interval.low, 4), round(interval.high, 4)) == published


def test_newcombe_is_the_two_scipy_wilson_intervals_combined() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n1, n2 = rng.choice([1, 5, 30, 400, 10**6]), rng.choice([1, 7, 50, 900, 10**5])
        x1, x2 = rng.randint(0, n1), rng.randint(0, n2)
        confidence = rng.choice(CONFIDENCES)
        w1 = stats.binomtest(x1, n1).proportion_ci(confidence, method="wilson")
        w2 = stats.binomtest(x2, n2).proportion_ci(confidence, method="wilson")
        p1, p2 = x1 / n1, x2 / n2
        low = p1 - p2 - math.sqrt((p1 - w1.low) ** 2 + (w2.high - p2) ** 2)
        high = p1 - p2 + math.sqrt((w1.high - p1) ** 2 + (p2 - w2.low) ** 2)
        ours = newcombe_difference(x1, n1, x2, n2, confidence)
        assert ours.estimate == p1 - p2
        assert close(ours.low, low, 1e-9, 1e-12), (x1, n1, x2, n2)
        assert close(ours.high, high, 1e-9, 1e-12), (x1, n1, x2, n2)


def test_newcombe_with_an_empty_side_could_be_anything() -> None:
    assert newcombe_difference(3, 10, 0, 0) == Interval(0.0, -1.0, 1.0, 0.95)


@pytest.mark.parametrize("seed", range(12))
def test_welch_matches_scipy(seed: int) -> None:
    rng = random.Random(seed)
    n_a, n_b = rng.choice([2, 3, 10, 200]), rng.choice([2, 5, 40, 1000])
    a = [rng.gauss(10.0, rng.choice([0.1, 1.0, 30.0])) for _ in range(n_a)]
    b = [rng.gauss(9.5, rng.choice([0.1, 2.0, 5.0])) for _ in range(n_b)]
    confidence = rng.choice([0.8, 0.9, 0.95, 0.99])
    ours = welch_difference(Moments.of(a), Moments.of(b), confidence)

    va, vb = statistics.variance(a) / n_a, statistics.variance(b) / n_b
    df = (va + vb) ** 2 / (va**2 / (n_a - 1) + vb**2 / (n_b - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * math.sqrt(va + vb)
    difference = statistics.fmean(a) - statistics.fmean(b)
    assert ours.estimate == pytest.approx(difference, rel=1e-12)
    assert ours.low == pytest.approx(difference - half, rel=1e-9)
    assert ours.high == pytest.approx(difference + half, rel=1e-9)

    theirs = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
    assert ours.low == pytest.approx(float(theirs.low), rel=1e-9)
    assert ours.high == pytest.approx(float(theirs.high), rel=1e-9)


def test_welch_of_two_constant_samples_is_a_point() -> None:
    interval = welch_difference(Moments.of([3.0, 3.0, 3.0]), Moments.of([1.0, 1.0]))
    assert (interval.estimate, interval.low, interval.high) == (2.0, 2.0, 2.0)


def test_welch_with_one_constant_sample_uses_the_other() -> None:
    a, b = [1.0, 2.0, 4.0, 7.0], [0.0, 0.0, 0.0]
    interval = welch_difference(Moments.of(a), Moments.of(b), 0.9)
    half = float(stats.t.ppf(0.95, len(a) - 1)) * math.sqrt(statistics.variance(a) / len(a))
    assert interval.low == pytest.approx(3.5 - half, rel=1e-9)
    assert interval.high == pytest.approx(3.5 + half, rel=1e-9)


# --- moments --------------------------------------------------------------------------------


def test_moments_of_values() -> None:
    values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]
    moments = Moments.of(values)
    assert moments.n == 8
    assert moments.mean == 5.0
    assert moments.variance == pytest.approx(statistics.variance(values), rel=1e-15)
    assert moments.std_error == pytest.approx(math.sqrt(statistics.variance(values) / 8))
    assert Moments.from_sums(8, sum(values), sum(v * v for v in values)) == moments
    assert Moments.of([]) == Moments(0, 0.0, 0.0) == Moments.from_sums(0, 0.0, 0.0)
    assert Moments.of([3.0]).variance == 0.0 == Moments.of([3.0]).std_error


def test_moments_add_returns_new_moments() -> None:
    before = Moments.of([1.0, 2.0])
    after = before.add(3.0)
    assert before == Moments.of([1.0, 2.0])
    assert after == Moments.of([1.0, 2.0, 3.0])


def test_moments_from_sums_keeps_a_large_mean_when_the_sums_allow() -> None:
    values = [1e6 + 0.1 * i for i in range(11)]
    moments = Moments.from_sums(11, math.fsum(values), math.fsum(v * v for v in values))
    assert moments.mean == pytest.approx(statistics.fmean(values), rel=1e-15)
    assert moments.variance == pytest.approx(statistics.variance(values), rel=1e-3)
    assert Moments.from_sums(1, 5.0, 25.0) == Moments(1, 5.0, 0.0)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@slow_settings
@given(st.lists(finite, max_size=40), st.lists(finite, max_size=40))
def test_merged_moments_are_the_moments_of_both(left: list[float], right: list[float]) -> None:
    merged = Moments.of(left).merge(Moments.of(right))
    whole = Moments.of(left + right)
    scale = max((abs(v) for v in left + right), default=0.0) + 1.0
    assert merged.n == whole.n
    assert math.isclose(merged.mean, whole.mean, rel_tol=1e-9, abs_tol=1e-12 * scale)
    assert math.isclose(merged.m2, whole.m2, rel_tol=1e-9, abs_tol=1e-12 * whole.n * scale**2)


# --- invariants -----------------------------------------------------------------------------

confidences = st.floats(0.5, 0.999999)


@st.composite
def successes_and_trials(draw: st.DrawFn, max_n: int = 10**9) -> tuple[int, int]:
    n = draw(st.integers(0, max_n))
    return draw(st.integers(0, n)), n


@slow_settings
@given(successes_and_trials(), confidences)
def test_rate_intervals_hold_the_estimate_inside_zero_one(
    counted: tuple[int, int], confidence: float
) -> None:
    k, n = counted
    intervals = (
        wilson(k, n, confidence),
        clopper_pearson(k, n, confidence),
        anytime_interval(k, n, confidence),
    )
    for interval in intervals:
        assert 0.0 <= interval.low <= interval.estimate <= interval.high <= 1.0
        if n > 0:
            assert interval.estimate == k / n


@slow_settings
@given(successes_and_trials(), successes_and_trials(), confidences)
def test_newcombe_holds_the_difference(
    first: tuple[int, int], second: tuple[int, int], confidence: float
) -> None:
    interval = newcombe_difference(*first, *second, confidence)
    assert -1.0 <= interval.low <= interval.estimate <= interval.high <= 1.0


@settings(deadline=None)
@given(st.integers(1, 1000), st.integers(1, 1000), confidences)
def test_wilson_low_rises_with_n_at_a_fixed_rate(k: int, n: int, confidence: float) -> None:
    k, n = min(k, n), max(k, n)
    lows = [wilson(k * j, n * j, confidence).low for j in range(1, 40)]
    assert all(later >= earlier - 1e-15 for earlier, later in itertools.pairwise(lows))


def wilson_real(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """The Wilson bounds written out from the formula, for real-valued counts."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(max(0.0, p * (1 - p)) / n + z * z / (4 * n * n))
    return center - half, center + half


Bounds = Callable[[float, float, float], tuple[float, float]]


def meets(
    k: int,
    n: int,
    more: int,
    threshold: float,
    confidence: float,
    bound: str,
    slack: float,
    bounds: Bounds = wilson_real,
) -> bool:
    """Whether the bound after ``more`` runs at the observed rate clears the threshold, give
    or take ``slack`` (so that the test does not hinge on the last bit)."""
    low, high = bounds(k * (n + more) / n, n + more, confidence)
    return low >= threshold - slack if bound == "low" else high <= threshold + slack


def check_least(
    more: int | None,
    counted: tuple[int, int],
    threshold: float,
    confidence: float,
    bound: str,
    slack: float,
    bounds: Bounds = wilson_real,
) -> None:
    """``more`` (what runs_needed said) is the least number of runs that clears the
    threshold, or None where none does (or nothing was observed)."""
    k, n = counted
    args = (threshold, confidence, bound)
    if n == 0:
        assert more is None
    elif more is None:
        impossible = k / n <= threshold if bound == "low" else k / n >= threshold
        assert impossible or not meets(k, n, 10**9, *args, -slack, bounds)
    else:
        assert meets(k, n, more, *args, slack, bounds)
        if more > 0:
            assert not meets(k, n, more - 1, *args, -slack, bounds)


@slow_settings
@given(
    successes_and_trials(max_n=10**6),
    st.floats(0.0, 1.0),
    confidences,
    st.sampled_from(["low", "high"]),
)
def test_runs_needed_is_the_least_that_clears_the_threshold(
    counted: tuple[int, int], threshold: float, confidence: float, bound: str
) -> None:
    k, n = counted
    side: Any = bound
    more = runs_needed(k, n, threshold=threshold, confidence=confidence, bound=side)
    check_least(more, counted, threshold, confidence, bound, 1e-12)


def test_runs_needed_examples() -> None:
    assert runs_needed(94, 100, threshold=0.95) is None  # the bound only approaches 0.94
    assert runs_needed(96, 100, threshold=0.95) == 1725
    assert runs_needed(99, 100, threshold=0.95) == 15
    assert runs_needed(99, 100, threshold=0.9) == 0
    assert runs_needed(2, 100, threshold=0.05, bound="high") == 103
    assert runs_needed(50, 100, threshold=0.49) == 9500
    assert runs_needed(5, 100, threshold=0.05, bound="high") is None
    assert runs_needed(0, 0, threshold=0.5) is None
    assert runs_needed(0, 10, threshold=0.0) == 0
    assert runs_needed(10, 10, threshold=1.0) is None
    assert runs_needed(50, 100, threshold=0.4999999) is None  # beyond 10**9 more runs


# --- the bound for repeated looks (a confidence sequence) -----------------------------------


def anytime_real(
    successes: float, n: float, confidence: float, prior: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float]:
    """The confidence sequence's bounds from scipy: where the beta-binomial mixture's
    likelihood ratio ``B(a + s, b + f) / B(a, b) / (p^s (1 - p)^f)`` reaches
    ``2 / (1 - confidence)``."""
    from scipy.optimize import brentq

    a, b = prior
    failures = n - successes
    level = math.log(2.0 / (1.0 - confidence))
    log_mixture = float(special.betaln(a + successes, b + failures) - special.betaln(a, b))

    def excess(p: float) -> float:
        held = successes * math.log(p) if successes else 0.0
        lost = failures * math.log1p(-p) if failures else 0.0
        return log_mixture - held - lost - level

    estimate = successes / n
    tiny = 1e-300
    low = 0.0 if successes == 0 else brentq(excess, tiny, estimate, xtol=1e-15, rtol=1e-13)
    edge = math.nextafter(1.0, 0.0)
    if failures == 0 or excess(edge) < 0:  # beyond the last float below 1
        high = 1.0
    else:
        high = brentq(excess, estimate, edge, xtol=1e-15, rtol=1e-13)
    return float(low), float(high)


PRIORS = [(1.0, 1.0), (0.5, 0.5), gs.prior_at(0.95), gs.prior_at(0.3), gs.prior_at(0.999)]


@pytest.mark.parametrize("n", SIZES)
def test_anytime_interval_matches_scipy(n: int) -> None:
    for k, confidence, prior in itertools.product(counts(n), CONFIDENCES, PRIORS):
        ours = anytime_interval(k, n, confidence, prior)
        low, high = anytime_real(k, n, confidence, prior)
        assert close(ours.low, low, 1e-9, 1e-11), (k, n, confidence, ours.low, low)
        assert close(ours.high, high, 1e-9, 1e-11), (k, n, confidence, ours.high, high)
        assert ours.estimate == k / n


def test_anytime_interval_is_wider_than_wilson_where_gates_judge() -> None:
    # The price of looking again and again: at agent-scale counts and the gates' confidence
    # the bound for repeated looks is wider than the one-look Wilson bound.
    for n in (20, 100, 400, 5000):
        for k in counts(n):
            once, always = wilson(k, n), anytime_interval(k, n)
            assert always.low <= once.low + 1e-12
            assert always.high >= once.high - 1e-12
    assert anytime_interval(0, 0) == Interval(0.0, 0.0, 1.0, 0.95)
    assert round(anytime_interval(396, 400).low, 3) == 0.956  # Wilson: 0.975


def test_anytime_interval_rarely_ever_excludes_the_true_rate() -> None:
    # Ville's inequality, checked by simulation: over 1,000 runs of one scope looked at after
    # every tenth, the lower bound rises above the true rate at some look at most
    # (1 - confidence) / 2 of the time.
    rng = random.Random(7)
    rate, confidence, scopes, runs = 0.9, 0.8, 200, 1000
    ever = 0
    for _ in range(scopes):
        k = 0
        for n in range(1, runs + 1):
            k += rng.random() < rate
            if n % 10 == 0 and anytime_interval(k, n, confidence).low > rate:
                ever += 1
                break
    # (The Wilson bound at the same confidence, looked at as often, does in about half.)
    assert ever / scopes <= (1 - confidence) / 2 + 0.03  # 0.10 allowed, with sampling slack


@settings(deadline=None, max_examples=60)
@given(
    successes_and_trials(max_n=10**5),
    st.floats(0.01, 0.99),
    st.sampled_from([0.8, 0.9, 0.95, 0.99]),
    st.sampled_from(["low", "high"]),
)
def test_runs_needed_on_the_anytime_bound_is_the_least_that_clears_it(
    counted: tuple[int, int], threshold: float, confidence: float, bound: str
) -> None:
    k, n = counted
    side: Any = bound
    more = runs_needed(
        k, n, threshold=threshold, confidence=confidence, bound=side, method="anytime"
    )
    check_least(more, counted, threshold, confidence, bound, 1e-9, anytime_real)


def test_the_gates_prior_centers_on_the_threshold() -> None:
    assert gs.prior_at(0.95) == pytest.approx((9.5, 0.5))
    assert gs.prior_at(0.3, weight=20) == pytest.approx((6.0, 14.0))
    assert gs.prior_at(0.999) == pytest.approx((9.99, 0.5))  # each side at least half a run
    # centered where gates judge, it proves a rate near the threshold with fewer runs
    uniform = runs_needed(97, 100, threshold=0.95, method="anytime")
    centered = runs_needed(97, 100, threshold=0.95, method="anytime", prior=gs.prior_at(0.95))
    assert uniform is not None
    assert centered is not None
    assert centered < 0.8 * uniform
    for bad in [(0.0, 1.0), (1.0, -2.0), (1.0,), (float("nan"), 1.0), "flat"]:
        with pytest.raises(ValueError, match="prior"):
            anytime_interval(5, 10, 0.95, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight must be > 0"):
        gs.prior_at(0.5, weight=0.0)


def test_runs_needed_names_its_methods() -> None:
    assert runs_needed(99, 100, threshold=0.95, method="anytime") == 222
    assert runs_needed(99, 100, threshold=0.95) == 15
    with pytest.raises(ValueError, match="method must be 'wilson' or 'anytime'"):
        runs_needed(99, 100, threshold=0.95, method="bayes")  # type: ignore[arg-type]


# --- sample-ratio mismatch ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("control", "treatment", "expected"),
    [
        (500, 500, 0.5),
        (5_000, 5_300, 0.5),
        (821_588, 815_482, 0.5),
        (9_000, 1_100, 0.1),
        (10, 0, 0.2),
        (0, 3, 0.5),
        (4_000_000, 1_002_000, 0.2),
    ],
)
def test_srm_check_is_scipy_binomtest(control: int, treatment: int, expected: float) -> None:
    result = srm_check(control, treatment, expected)
    total = control + treatment
    theirs = float(stats.binomtest(treatment, total, expected).pvalue)
    assert close(result.p_value, theirs, 1e-9, 1e-12)
    assert result.mismatch == (theirs < 0.001)
    assert result.observed_treatment == treatment / total
    assert result.expected_treatment == expected


def test_srm_check_flags_a_skewed_split() -> None:
    assert srm_check(821_588, 815_482, 0.5).mismatch
    assert not srm_check(5_000, 5_050, 0.5).mismatch
    assert srm_check(5_000, 5_050, 0.5, alpha=0.7).mismatch
    assert srm_check(0, 0, 0.5) == gs.SrmResult(1.0, False, 0.0, 0.5)


# --- bad input ------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
BAD_CALLS: list[tuple[str, Callable[[], object], str]] = [
    ("float count", lambda: wilson(1.0, 10), "successes must be an int"),  # type: ignore[arg-type]
    ("bool count", lambda: wilson(True, 10), "successes must be an int"),
    ("negative n", lambda: wilson(0, -1), "n must be >= 0"),
    ("negative successes", lambda: clopper_pearson(-1, 10), "successes must be >= 0"),
    ("successes > n", lambda: wilson(11, 10), "successes must be <= n"),
    ("confidence 1", lambda: wilson(5, 10, 1.0), "confidence must be strictly between"),
    ("confidence 0", lambda: clopper_pearson(5, 10, 0.0), "confidence must be strictly"),
    ("confidence nan", lambda: wilson(5, 10, NAN), "confidence must be finite"),
    ("confidence bool", lambda: wilson(5, 10, True), "confidence must be a real number"),
    ("p nan", lambda: binom_test(3, 10, NAN), "p must be finite"),
    ("p inf", lambda: binom_test(3, 10, INF), "p must be finite"),
    ("p above 1", lambda: binom_test(3, 10, 1.5), "p must be between 0 and 1"),
    ("k > n", lambda: binom_pmf(11, 10, 0.5), "k must be <= n"),
    ("k bool", lambda: binom_cdf(False, 10, 0.5), "k must be an int"),
    ("n negative", lambda: binom_sf(0, -3, 0.5), "n must be >= 0"),
    ("q zero", lambda: normal_ppf(0.0), "q must be strictly between 0 and 1"),
    ("q one", lambda: student_t_ppf(1.0, 3.0), "q must be strictly between 0 and 1"),
    ("x nan", lambda: normal_cdf(NAN), "x must be finite"),
    ("x inf", lambda: student_t_cdf(INF, 3.0), "x must be finite"),
    ("df zero", lambda: student_t_ppf(0.5, 0.0), "df must be > 0"),
    ("df inf", lambda: student_t_cdf(1.0, INF), "df must be finite"),
    ("beta a", lambda: regularized_beta(0.0, 1.0, 0.5), "a must be > 0"),
    ("beta b nan", lambda: regularized_beta(1.0, NAN, 0.5), "b must be finite"),
    ("beta x", lambda: regularized_beta(1.0, 1.0, 1.5), "x must be between 0 and 1"),
    ("zero-failure n", lambda: zero_failure_upper(-1), "n must be >= 0"),
    ("zero-failure confidence", lambda: zero_failure_upper(10, 1.0), "confidence"),
    ("newcombe x1 > n1", lambda: newcombe_difference(5, 4, 1, 2), "x1 must be <= n1"),
    ("newcombe n2", lambda: newcombe_difference(1, 4, 1, -2), "n2 must be >= 0"),
    ("moments n", lambda: Moments(-1, 0.0, 0.0), "n must be >= 0"),
    ("moments mean", lambda: Moments(2, NAN, 0.0), "mean must be finite"),
    ("moments m2", lambda: Moments(2, 0.0, -1.0), "m2 must be >= 0"),
    ("moments m2 of one", lambda: Moments(1, 0.0, 1.0), "m2 must be 0.0 when n <= 1"),
    ("moments of nan", lambda: Moments.of([1.0, NAN]), "value must be finite"),
    ("moments add inf", lambda: Moments.of([1.0]).add(INF), "value must be finite"),
    (
        "inconsistent sums",
        lambda: Moments.from_sums(2, 10.0, 1.0),
        "total_of_squares .* must be >= total",
    ),
    ("sums of nothing", lambda: Moments.from_sums(0, 1.0, 1.0), "must be 0.0 when n == 0"),
    ("welch n", lambda: welch_difference(Moments.of([1.0]), Moments.of([1.0, 2.0])), "a.n"),
    ("runs threshold", lambda: runs_needed(5, 10, threshold=1.5), "threshold must be between"),
    ("runs threshold nan", lambda: runs_needed(5, 10, threshold=NAN), "threshold must be"),
    ("runs bound", lambda: runs_needed(5, 10, threshold=0.5, bound="mid"), "bound must be"),  # type: ignore[arg-type]
    ("runs max_rate", lambda: runs_needed_zero_failures(10, max_rate=0.0), "max_rate must be"),
    ("runs max_rate < 0", lambda: runs_needed_zero_failures(10, max_rate=-0.1), "max_rate"),
    ("srm expected", lambda: srm_check(10, 10, 1.0), "expected_treatment must be strictly"),
    ("srm alpha", lambda: srm_check(10, 10, 0.5, alpha=0.0), "alpha must be strictly"),
    ("srm control", lambda: srm_check(-1, 10, 0.5), "control must be >= 0"),
    ("interval order", lambda: Interval(0.5, 0.6, 0.4, 0.95), "low must be <= high"),
    ("interval nan", lambda: Interval(NAN, 0.0, 1.0, 0.95), "estimate must be finite"),
]


@pytest.mark.parametrize(
    ("call", "message"), [(c, m) for _, c, m in BAD_CALLS], ids=[name for name, _, _ in BAD_CALLS]
)
def test_bad_input_is_refused_with_a_reason(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_relative_lift_covers_the_true_lift_about_as_often_as_it_says() -> None:
    rng = random.Random(5)
    covered, trials = 0, 400
    for _ in range(trials):
        control = gs.Moments.of([rng.expovariate(1 / 10.0) for _ in range(400)])
        treatment = gs.Moments.of([rng.expovariate(1 / 11.0) for _ in range(400)])
        ci = gs.relative_lift(treatment, control, 0.95)
        covered += ci.low <= 0.1 <= ci.high
    assert 0.92 <= covered / trials <= 0.98  # the true lift is +10%


def test_relative_lift_refuses_what_it_cannot_judge() -> None:
    two = gs.Moments.of([1.0, 2.0])
    with pytest.raises(ValueError, match="control mean must be positive"):
        gs.relative_lift(two, gs.Moments.of([-1.0, -2.0]))
    with pytest.raises(ValueError, match="n >= 2"):
        gs.relative_lift(gs.Moments.of([1.0]), two)
    flat = gs.relative_lift(gs.Moments.of([2.0, 2.0]), gs.Moments.of([1.0, 1.0]))
    assert (flat.low, flat.estimate, flat.high) == (1.0, 1.0, 1.0)
