"""The statistics of promotion gates: intervals, exact tests and how much evidence is missing.

A gate raises an agent's autonomy only on the *bound* of an interval, never on a point
value, so that a lucky week of few runs cannot promote anything. Everything here is pure
Python (``math`` only) and works from counts, never from a sum over the outcomes: closed
forms, or a few dozen evaluations of a continued fraction (a few hundred terms at ten
million trials), so a gate over a million outcomes costs about a millisecond.

- **Rates** (success, escalation): the Wilson (1927) score interval, the set of rates a
  two-sided score test at the given confidence would not reject. It behaves near 0 and 1,
  where the textbook ``p +- z sqrt(p(1-p)/n)`` collapses to a point. With no trials it is
  ``[0, 1]``: no evidence spans everything.
- **Exact intervals**: Clopper-Pearson (1934) inverts two one-sided binomial tests through
  beta quantiles; conservative, used where a guarantee matters more than width.
- **Policy pass = 100%** is a trip-wire: one failure fails the gate. What a clean record
  *proves* is the one-sided exact bound ``1 - (1 - confidence) ** (1 / n)`` on the failure
  rate, about 3/n at 95% (the "rule of three").
- **Lift of a rate over a control cohort**: Newcombe's (1998) hybrid score interval for a
  difference of proportions (his method 10), built from the two Wilson intervals.
- **Lift of a continuous KPI** (revenue per run, minutes saved): Welch's interval for a
  difference of means, with the Welch-Satterthwaite degrees of freedom and a Student t
  quantile. Means and variances are kept as :class:`Moments` (Welford's update, Chan et
  al.'s merge), so cohorts can be summed shard by shard.
- **Sample-ratio mismatch**: if the split between control and treatment is not the split
  that was configured, the comparison is biased whatever it shows. :func:`srm_check` runs
  the exact two-sided binomial test, with the p-value defined as in
  ``scipy.stats.binomtest``: the probability of every count no more likely than the one
  observed. The far boundary is found by bisection on the pmf and the two tails come from
  the incomplete beta, so it costs O(log n).
- **Looking again and again**: a Wilson bound holds at one look. A gate is looked at every
  week (every minute by the gate watch), and a scope whose true rate sits just under the
  threshold gets a fresh chance at each look: over 26 weekly looks a borderline scope passed
  a 97.5% one-sided bound at least once about 30% of the time (``benchmarks/gates.py``).
  :func:`anytime_interval` is a *confidence sequence* (Robbins' beta-binomial mixture;
  Howard et al. 2021): by Ville's inequality, the chance that its lower bound *ever* rises
  above the true rate, however often and whenever it is looked at, is at most
  ``(1 - confidence) / 2``, and the same for the upper bound. Its bounds are where the
  mixture's likelihood ratio ``B(a + s, b + f) / B(a, b) / (p^s (1 - p)^f)`` reaches
  ``2 / (1 - confidence)``, found by bisection. Any beta prior ``(a, b)`` keeps the
  guarantee; it decides where the sequence is tightest. The gates center it on the
  threshold, worth 10 runs (:func:`prior_at`): near the threshold that needs about 10-35%
  fewer runs than the uniform prior, the more the higher the threshold (20-35% from 0.95).
  The price of the guarantee is width: at 400 runs of 99% the uniform prior proves about
  0.956 where Wilson proves 0.975.
- **Missing evidence**: :func:`runs_needed` answers "how many more runs, at the rate seen so
  far, until the bound clears the threshold", by doubling then bisection.

>>> print(wilson(93, 100))
0.93 [0.86, 0.97]
>>> runs_needed(93, 100, threshold=0.9)
285
>>> print(anytime_interval(93, 100))
0.93 [0.80, 0.99]
>>> runs_needed(93, 100, threshold=0.9, method="anytime")
1304
>>> round(zero_failure_upper(100), 4)
0.0295
>>> print(newcombe_difference(56, 70, 48, 80).format(4))
0.2000 [0.0524, 0.3339]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from agent_guardrails.engine._gate_special import (
    _beta_ppf,
    _binom_pmf,
    _binom_tails,
    _normal_ppf,
    _t_ppf,
    binom_cdf,
    binom_pmf,
    binom_sf,
    check_count,
    check_real,
    check_successes,
    check_unit,
    normal_cdf,
    normal_ppf,
    regularized_beta,
    student_t_cdf,
    student_t_ppf,
)

__all__ = [
    "Interval",
    "UNIFORM",
    "Moments",
    "Prior",
    "SrmResult",
    "anytime_interval",
    "prior_at",
    "binom_cdf",
    "binom_pmf",
    "binom_sf",
    "binom_test",
    "clopper_pearson",
    "newcombe_difference",
    "normal_cdf",
    "normal_ppf",
    "regularized_beta",
    "relative_lift",
    "runs_needed",
    "runs_needed_zero_failures",
    "srm_check",
    "student_t_cdf",
    "student_t_ppf",
    "welch_difference",
    "wilson",
    "zero_failure_upper",
]

_MAX_RUNS = 10**9


def _check_confidence(confidence: object) -> float:
    return check_unit("confidence", confidence, open_=True)


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate and the two-sided interval around it at ``confidence``."""

    estimate: float
    low: float
    high: float
    confidence: float

    def __post_init__(self) -> None:
        for name in ("estimate", "low", "high"):
            check_real(name, getattr(self, name))
        _check_confidence(self.confidence)
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low!r} > high={self.high!r}")

    def format(self, digits: int = 2) -> str:
        """``"estimate [low, high]"`` with ``digits`` decimals."""
        return f"{self.estimate:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def __str__(self) -> str:
        return self.format(2)


def _z(confidence: float) -> float:
    """The two-sided normal critical value: ``P[|Z| <= z] = confidence``."""
    return -_normal_ppf(0.5 * (1.0 - confidence))


def _wilson_bounds(successes: float, n: float, z: float) -> tuple[float, float]:
    """The Wilson bounds for real-valued counts ``0 <= successes <= n``, ``n > 0``."""
    z2 = z * z
    denominator = 2.0 * (n + z2)
    center = (2.0 * successes + z2) / denominator
    half = z * math.sqrt(max(0.0, 4.0 * successes * (n - successes) / n) + z2) / denominator
    low = 0.0 if successes <= 0.0 else max(0.0, center - half)
    high = 1.0 if successes >= n else min(1.0, center + half)
    return low, high


def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval for a rate; ``n == 0`` gives ``0.0 [0.0, 1.0]`` (no evidence
    spans everything)."""
    k, n = check_successes(successes, n, ("successes", "n"))
    confidence = _check_confidence(confidence)
    if n == 0:
        return Interval(0.0, 0.0, 1.0, confidence)
    low, high = _wilson_bounds(k, n, _z(confidence))
    return Interval(k / n, low, high, confidence)


Prior = tuple[float, float]
"""A beta prior's ``(a, b)``, both > 0: the mixture a confidence sequence is made of."""

UNIFORM: Prior = (1.0, 1.0)


def prior_at(threshold: float, weight: float = 10.0) -> Prior:
    """A beta prior centered on ``threshold`` and worth ``weight`` runs (each side at least
    0.5): where a gate's confidence sequence should be tightest."""
    threshold = check_unit("threshold", threshold)
    weight = check_real("weight", weight)
    if weight <= 0.0:
        raise ValueError(f"weight must be > 0, got {weight!r}")
    return max(0.5, threshold * weight), max(0.5, (1.0 - threshold) * weight)


def _check_prior(prior: object) -> Prior:
    if not (isinstance(prior, tuple) and len(prior) == 2):
        raise ValueError(f"prior must be a pair (a, b) of numbers > 0, got {prior!r}")
    a, b = check_real("prior a", prior[0]), check_real("prior b", prior[1])
    if a <= 0.0 or b <= 0.0:
        raise ValueError(f"prior must be a pair (a, b) of numbers > 0, got {prior!r}")
    return a, b


def _anytime_bounds(
    successes: float, n: float, log_level: float, prior: Prior = UNIFORM
) -> tuple[float, float]:
    """The confidence sequence's bounds for real-valued counts ``0 <= successes <= n``,
    ``n > 0``: the rates where the log mixture likelihood ratio reaches ``log_level``.
    The ratio is convex in the rate with its minimum (at most 1) at ``successes / n``, so
    each side has one crossing; bisection, never evaluated at 0 or 1."""
    a, b = prior
    failures = n - successes
    log_mixture = (
        math.lgamma(a + successes)
        + math.lgamma(b + failures)
        - math.lgamma(a + b + n)
        - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    )

    def outside(rate: float) -> bool:
        log_ratio = log_mixture - successes * math.log(rate) - failures * math.log1p(-rate)
        return log_ratio >= log_level

    estimate = successes / n
    low = 0.0
    if successes > 0.0:
        out, inside = 0.0, estimate  # outside(out) holds in the limit, inside(estimate) never
        while inside - out > 1e-12:
            middle = 0.5 * (out + inside)
            out, inside = (middle, inside) if outside(middle) else (out, middle)
        low = out
    high = 1.0
    if failures > 0.0:
        inside, out = estimate, 1.0
        while out - inside > 1e-12:
            middle = 0.5 * (inside + out)
            inside, out = (inside, middle) if outside(middle) else (middle, out)
        high = out
    return low, high


def _log_level(confidence: float) -> float:
    return math.log(2.0 / (1.0 - confidence))


def anytime_interval(
    successes: int, n: int, confidence: float = 0.95, prior: Prior = UNIFORM
) -> Interval:
    """A rate's interval that stays valid however often it is looked at: the chance that
    its lower bound is ever above the true rate, at any ``n`` at all, is at most
    ``(1 - confidence) / 2`` (the same for the upper bound), where a Wilson bound promises
    that only at one ``n`` chosen in advance. Wider than :func:`wilson` for the same counts;
    ``n == 0`` gives ``0.0 [0.0, 1.0]``. ``prior``: the mixture's beta prior ``(a, b)``
    (fixed before the data; :func:`prior_at`)."""
    k, n = check_successes(successes, n, ("successes", "n"))
    confidence = _check_confidence(confidence)
    prior = _check_prior(prior)
    if n == 0:
        return Interval(0.0, 0.0, 1.0, confidence)
    low, high = _anytime_bounds(k, n, _log_level(confidence), prior)
    return Interval(k / n, low, high, confidence)


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The exact (Clopper-Pearson) interval for a rate, from beta quantiles; ``n == 0`` gives
    ``0.0 [0.0, 1.0]``."""
    k, n = check_successes(successes, n, ("successes", "n"))
    confidence = _check_confidence(confidence)
    if n == 0:
        return Interval(0.0, 0.0, 1.0, confidence)
    tail = 0.5 * (1.0 - confidence)
    guess_low, guess_high = _wilson_bounds(k, n, _z(confidence))
    low = 0.0 if k == 0 else _beta_ppf(k, n - k + 1, tail, upper=False, guess=guess_low)[0]
    high = 1.0 if k == n else _beta_ppf(k + 1, n - k, tail, upper=True, guess=guess_high)[0]
    return Interval(k / n, low, high, confidence)


def _zero_failure_upper(n: int, confidence: float) -> float:
    return 1.0 if n == 0 else -math.expm1(math.log1p(-confidence) / n)


def zero_failure_upper(n: int, confidence: float = 0.95) -> float:
    """The one-sided exact upper bound on a failure rate after 0 failures in ``n`` trials:
    ``1 - (1 - confidence) ** (1 / n)``, about ``3 / n`` at 95%; ``1.0`` when ``n == 0``."""
    return _zero_failure_upper(check_count("n", n), _check_confidence(confidence))


def _last_true(holds: Callable[[int], bool], low: int, high: int) -> int:
    """The largest i in [low, high] where ``holds(i)`` (true, then false, along the range);
    ``low - 1`` when it holds nowhere."""
    while low <= high:
        middle = (low + high) // 2
        if holds(middle):
            low = middle + 1
        else:
            high = middle - 1
    return high


def _binom_test(k: int, n: int, p: float) -> float:
    if p == 0.0 or p == 1.0:
        return 1.0 if k == (0 if p == 0.0 else n) else 0.0
    mean = p * n
    if k == mean:
        return 1.0
    bar = _binom_pmf(k, n, p) * (1.0 + 1e-7)
    if k < mean:
        # the pmf falls above the mean: the last i there with pmf(i) >= bar
        last = _last_true(lambda i: _binom_pmf(i, n, p) >= bar, math.ceil(mean), n)
        first = last if _binom_pmf(last, n, p) == bar else last + 1  # as scipy: ties count
        p_value = _binom_tails(k, n, p)[0] + _binom_tails(first - 1, n, p)[1]
    else:
        # the pmf rises below the mean: the last i there with pmf(i) <= bar
        last = _last_true(lambda i: _binom_pmf(i, n, p) <= bar, 0, math.floor(mean))
        p_value = _binom_tails(last, n, p)[0] + _binom_tails(k - 1, n, p)[1]
    return min(1.0, p_value)


def binom_test(k: int, n: int, p: float) -> float:
    """The exact two-sided binomial p-value of ``k`` successes in ``n`` trials under rate
    ``p``: the probability of every count whose pmf is at most ``pmf(k) * (1 + 1e-7)``, as
    ``scipy.stats.binomtest(k, n, p).pvalue`` defines it."""
    k, n = check_successes(k, n, ("k", "n"))
    return _binom_test(k, n, check_unit("p", p))


def newcombe_difference(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> Interval:
    """The interval for ``x1/n1 - x2/n2`` by Newcombe's hybrid score method (method 10):
    each side's distance to its Wilson bound, combined in quadrature. With no trials on
    either side it is ``0.0 [-1.0, 1.0]``: the difference could be anything."""
    x1, n1 = check_successes(x1, n1, ("x1", "n1"))
    x2, n2 = check_successes(x2, n2, ("x2", "n2"))
    confidence = _check_confidence(confidence)
    if n1 == 0 or n2 == 0:
        return Interval(0.0, -1.0, 1.0, confidence)
    z = _z(confidence)
    p1, p2 = x1 / n1, x2 / n2
    low1, high1 = _wilson_bounds(x1, n1, z)
    low2, high2 = _wilson_bounds(x2, n2, z)
    difference = p1 - p2
    low = difference - math.hypot(p1 - low1, high2 - p2)
    high = difference + math.hypot(high1 - p1, p2 - low2)
    return Interval(difference, max(-1.0, low), min(1.0, high), confidence)


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, mean and ``m2`` (the sum of squared deviations from the mean) of a sample."""

    n: int
    mean: float
    m2: float

    def __post_init__(self) -> None:
        check_count("n", self.n)
        check_real("mean", self.mean)
        if check_real("m2", self.m2) < 0.0:
            raise ValueError(f"m2 must be >= 0 (a sum of squares), got {self.m2!r}")
        if self.n <= 1 and self.m2 != 0.0:
            raise ValueError(f"m2 must be 0.0 when n <= 1, got n={self.n}, m2={self.m2!r}")
        if self.n == 0 and self.mean != 0.0:
            raise ValueError(f"mean must be 0.0 when n == 0, got {self.mean!r}")

    @classmethod
    def of(cls, values: Iterable[float]) -> Moments:
        """The moments of ``values``: two passes, each summed by ``math.fsum``."""
        sample = list(values)
        if not all(type(value) is float and math.isfinite(value) for value in sample):
            sample = [check_real("value", value) for value in sample]
        n = len(sample)
        if n == 0:
            return cls(0, 0.0, 0.0)
        mean = math.fsum(sample) / n
        m2 = math.fsum((value - mean) ** 2 for value in sample) if n > 1 else 0.0
        return cls(n, mean, m2)

    @classmethod
    def from_sums(cls, n: int, total: float, total_of_squares: float) -> Moments:
        """The moments from ``n``, the sum and the sum of squares (as a SQL ``SUM`` gives them).
        Precision is lost when the mean is large against the spread: prefer :meth:`add` and
        :meth:`merge` where the values are at hand."""
        n = check_count("n", n)
        total = check_real("total", total)
        squares = check_real("total_of_squares", total_of_squares)
        if squares < 0.0:
            raise ValueError(f"total_of_squares must be >= 0, got {squares!r}")
        if n == 0:
            if total != 0.0 or squares != 0.0:
                raise ValueError("total and total_of_squares must be 0.0 when n == 0")
            return cls(0, 0.0, 0.0)
        mean = total / n
        m2 = squares - mean * total  # sum (x - mean)^2 = sum x^2 - n mean^2
        if m2 < -1e-9 * squares:
            raise ValueError(
                f"total_of_squares ({squares!r}) must be >= total**2 / n "
                f"({mean * total!r}): these sums cannot come from one sample"
            )
        return cls(n, mean, 0.0 if n == 1 else max(0.0, m2))

    def add(self, value: float) -> Moments:
        """These moments with one more value."""
        value = check_real("value", value)
        n = self.n + 1
        delta = value - self.mean
        mean = self.mean + delta / n
        return Moments(n, mean, 0.0 if n == 1 else self.m2 + delta * (value - mean))

    def merge(self, other: Moments) -> Moments:
        """The moments of both samples together (Chan, Golub and LeVeque's pairwise update)."""
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + delta * delta * (self.n * other.n / n)
        return Moments(n, mean, m2)

    @property
    def variance(self) -> float:
        """The sample variance (divisor ``n - 1``); 0.0 when ``n < 2``."""
        return self.m2 / (self.n - 1) if self.n >= 2 else 0.0

    @property
    def std_error(self) -> float:
        """The standard error of the mean, ``sqrt(variance / n)``; 0.0 when ``n < 2``."""
        return math.sqrt(self.variance / self.n) if self.n >= 2 else 0.0


def welch_difference(a: Moments, b: Moments, confidence: float = 0.95) -> Interval:
    """The interval for ``a.mean - b.mean`` by Welch's t method, with the Welch-Satterthwaite
    degrees of freedom; both samples need ``n >= 2``. Two constant samples give a zero-width
    interval at the difference."""
    confidence = _check_confidence(confidence)
    for name, sample in (("a", a), ("b", b)):
        if not isinstance(sample, Moments):
            raise ValueError(f"{name} must be Moments, got {type(sample).__name__}")
        if sample.n < 2:
            raise ValueError(f"{name}.n must be >= 2 to estimate a variance, got {sample.n}")
    difference = a.mean - b.mean
    var_a, var_b = a.variance / a.n, b.variance / b.n
    total = var_a + var_b
    if total == 0.0:
        return Interval(difference, difference, difference, confidence)
    share_a, share_b = var_a / total, var_b / total
    df = 1.0 / (share_a * share_a / (a.n - 1) + share_b * share_b / (b.n - 1))
    half = -_t_ppf(0.5 * (1.0 - confidence), df) * math.sqrt(total)
    return Interval(difference, difference - half, difference + half, confidence)


def runs_needed(
    successes: int,
    n: int,
    *,
    threshold: float,
    confidence: float = 0.95,
    bound: Literal["low", "high"] = "low",
    method: Literal["wilson", "anytime"] = "wilson",
    prior: Prior = UNIFORM,
) -> int | None:
    """How many more runs, at the rate observed so far, until the ``low`` bound of the
    interval (``method``: :func:`wilson` or :func:`anytime_interval`, with ``prior``) is
    ``>= threshold`` (``bound="low"``, for a minimum rate) or the ``high`` bound is
    ``<= threshold`` (``bound="high"``, for a maximum rate). 0 if it already is; None if it
    never will at this rate (or only beyond 10**9 more runs), and when ``n == 0``: no rate
    observed yet.
    The counts are scaled as real numbers, ``successes * (n + m) / n``."""
    k, n = check_successes(successes, n, ("successes", "n"))
    threshold = check_unit("threshold", threshold)
    confidence = _check_confidence(confidence)
    if bound not in ("low", "high"):
        raise ValueError(f"bound must be 'low' or 'high', got {bound!r}")
    if method == "wilson":
        z = _z(confidence)

        def bounds(successes: float, n: float) -> tuple[float, float]:
            return _wilson_bounds(successes, n, z)

    elif method == "anytime":
        level = _log_level(confidence)
        prior = _check_prior(prior)

        def bounds(successes: float, n: float) -> tuple[float, float]:
            return _anytime_bounds(successes, n, level, prior)

    else:
        raise ValueError(f"method must be 'wilson' or 'anytime', got {method!r}")
    if n == 0:
        return None

    def met(more: int) -> bool:
        total = n + more
        low, high = bounds(k * total / n, total)
        return low >= threshold if bound == "low" else high <= threshold

    if met(0):
        return 0
    rate = k / n
    if (rate <= threshold) if bound == "low" else (rate >= threshold):
        return None  # the bound only approaches the rate itself
    missing, enough = 0, 1
    while not met(enough):
        if enough >= _MAX_RUNS:
            return None
        missing, enough = enough, min(2 * enough, _MAX_RUNS)
    while enough - missing > 1:  # missing never meets, enough does
        middle = (missing + enough) // 2
        missing, enough = (missing, middle) if met(middle) else (middle, enough)
    return enough


def runs_needed_zero_failures(n: int, *, max_rate: float, confidence: float = 0.95) -> int:
    """How many more runs without a failure, after ``n`` without one, until
    :func:`zero_failure_upper` is ``<= max_rate`` (``0 < max_rate <= 1``)."""
    n = check_count("n", n)
    max_rate = check_unit("max_rate", max_rate)
    confidence = _check_confidence(confidence)
    if max_rate == 0.0:
        raise ValueError("max_rate must be > 0: no finite record proves a failure rate of 0")
    if max_rate == 1.0:
        return 0
    ratio = math.log1p(-confidence) / math.log1p(-max_rate)
    if not math.isfinite(ratio):
        raise ValueError(f"max_rate must be larger: {max_rate!r} needs too many runs to count")
    total = max(0, math.ceil(ratio))
    while total > 0 and _zero_failure_upper(total - 1, confidence) <= max_rate:
        total -= 1
    while _zero_failure_upper(total, confidence) > max_rate:
        total += 1
    return max(0, total - n)


@dataclass(frozen=True, slots=True)
class SrmResult:
    """A sample-ratio check: the exact test's p-value, whether it is below ``alpha``, and the
    treatment share observed (0.0 with no units) against the one configured."""

    p_value: float
    mismatch: bool
    observed_treatment: float
    expected_treatment: float


def srm_check(
    control: int, treatment: int, expected_treatment: float, alpha: float = 0.001
) -> SrmResult:
    """The sample-ratio-mismatch check: is ``treatment`` out of ``control + treatment`` units
    consistent with the configured share ``expected_treatment`` (exact binomial test)?
    A mismatch (p-value < ``alpha``) means the cohorts are not comparable."""
    control, treatment = check_count("control", control), check_count("treatment", treatment)
    expected = check_unit("expected_treatment", expected_treatment, open_=True)
    alpha = check_unit("alpha", alpha, open_=True)
    total = control + treatment
    if total == 0:
        return SrmResult(1.0, False, 0.0, expected)
    p_value = _binom_test(treatment, total, expected)
    return SrmResult(p_value, p_value < alpha, treatment / total, expected)


def relative_lift(treatment: Moments, control: Moments, confidence: float = 0.95) -> Interval:
    """Relative lift of the treatment's mean over the control's, ``mean_t / mean_c - 1``,
    with a delta-method interval: the variance of the ratio of two independent means,
    ``(v_t / n_t) / m_c**2 + m_t**2 (v_c / n_c) / m_c**4``, and a Student t quantile with
    Welch-Satterthwaite degrees of freedom over those two terms. Needs ``n >= 2`` on both
    sides and a positive control mean (a lift relative to zero is undefined)."""
    if not isinstance(treatment, Moments) or not isinstance(control, Moments):
        raise ValueError("relative_lift: pass two Moments (treatment, control)")
    if treatment.n < 2 or control.n < 2:
        raise ValueError(
            f"relative_lift: needs n >= 2 in both cohorts, got treatment {treatment.n}, "
            f"control {control.n}"
        )
    if not control.mean > 0:
        raise ValueError(
            f"relative_lift: the control mean must be positive, got {control.mean!r}; "
            "use welch_difference for an absolute difference"
        )
    mt, mc = treatment.mean, control.mean
    a = treatment.variance / treatment.n / (mc * mc)
    b = mt * mt * control.variance / control.n / mc**4
    estimate = mt / mc - 1.0
    if a + b == 0.0:
        return Interval(estimate, estimate, estimate, confidence)
    df = (a + b) ** 2 / (a * a / (treatment.n - 1) + b * b / (control.n - 1))
    half = student_t_ppf(0.5 + confidence / 2.0, df) * math.sqrt(a + b)
    return Interval(estimate, estimate - half, estimate + half, confidence)
