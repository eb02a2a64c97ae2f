"""Special functions behind :mod:`agent_guardrails.engine.gate_stats`, pure Python (math only).

The normal quantile is Wichura's AS241 (1988) polished by one Halley step on ``math.erfc``.

The regularized incomplete beta ``I_x(a, b)`` is the continued fraction of DiDonato and
Morris (1992; the form Boost.Math uses), evaluated by the modified Lentz method on the near
side of the mean, the far side following from ``I_x(a, b) = 1 - I_{1-x}(b, a)``. It takes
a few hundred terms at ten million trials. Its prefactor ``x^a (1-x)^b / B(a, b)`` is
computed the way Loader (2000) computes binomial probabilities, from Stirling-series
corrections and a deviance term, so that it keeps full relative precision for counts in the
millions where ``lgamma`` differences would lose eight digits. Arguments travel as the pair
``(x, 1 - x)`` so that a tail near 0 or 1 is never rounded away.

The binomial CDF and survival function are incomplete betas, and so is Student's t (past
``t**2 > 1e290 df``, where ``df / (df + t**2)`` underflows, its tail is the power law
``K t**-df / df``). Quantiles (of the beta, hence Clopper-Pearson; of Student's t) are
Newton steps on the log of the tail, kept inside a shrinking bracket and solved in
whichever of ``x`` and ``1 - x`` is below 1/2.

The underscored functions take validated arguments; the public ones validate first.
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "binom_cdf",
    "binom_pmf",
    "binom_sf",
    "normal_cdf",
    "normal_ppf",
    "regularized_beta",
    "student_t_cdf",
    "student_t_ppf",
]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_SQRT_PI = 0.5 * math.log(math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_TINY = 1e-300


# --- validation -------------------------------------------------------------------------


def check_count(name: str, value: object) -> int:
    """``value`` as a count: an ``int`` (``bool`` is refused) that is ``>= 0``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an int count, got {type(value).__name__} {value!r}")
    count = int(value)
    if count < 0:
        raise ValueError(f"{name} must be >= 0, got {count}: a count cannot be negative")
    return count


def check_real(name: str, value: object) -> float:
    """``value`` as a finite float (an ``int`` is accepted, ``bool`` is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    real = float(value)
    if not math.isfinite(real):
        raise ValueError(f"{name} must be finite, got {real!r}")
    return real


def check_unit(name: str, value: object, *, open_: bool = False) -> float:
    """``value`` as a probability: in ``[0, 1]``, or in ``(0, 1)`` when ``open_``."""
    real = check_real(name, value)
    if open_ and not 0.0 < real < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {real!r}")
    if not 0.0 <= real <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {real!r}")
    return real


def check_positive(name: str, value: object) -> float:
    real = check_real(name, value)
    if real <= 0.0:
        raise ValueError(f"{name} must be > 0, got {real!r}")
    return real


def check_successes(successes: object, n: object, names: tuple[str, str]) -> tuple[int, int]:
    k, total = check_count(names[0], successes), check_count(names[1], n)
    if k > total:
        raise ValueError(
            f"{names[0]} must be <= {names[1]} (got {k} > {total}): "
            f"{names[0]} counts the trials among {names[1]} that succeeded"
        )
    return k, total


# --- the normal distribution ------------------------------------------------------------

# Wichura's AS241 (PPND16): rational approximations in three regions, highest power first.
_A = (2.5090809287301226727e3, 3.3430575583588128105e4, 6.7265770927008700853e4,
      4.5921953931549871457e4, 1.3731693765509461125e4, 1.9715909503065514427e3,
      1.3314166789178437745e2, 3.3871328727963666080e0)  # fmt: skip
_B = (5.2264952788528545610e3, 2.8729085735721942674e4, 3.9307895800092710610e4,
      2.1213794301586595867e4, 5.3941960214247511077e3, 6.8718700749205790830e2,
      4.2313330701600911252e1, 1.0)  # fmt: skip
_C = (7.74545014278341407640e-4, 2.27238449892691845833e-2, 2.41780725177450611770e-1,
      1.27045825245236838258e0, 3.64784832476320460504e0, 5.76949722146069140550e0,
      4.63033784615654529590e0, 1.42343711074968357734e0)  # fmt: skip
_D = (1.05075007164441684324e-9, 5.47593808499534494600e-4, 1.51986665636164571966e-2,
      1.48103976427480074590e-1, 6.89767334985100004550e-1, 1.67638483018380384940e0,
      2.05319162663775882187e0, 1.0)  # fmt: skip
_E = (2.01033439929228813265e-7, 2.71155556874348757815e-5, 1.24266094738807843860e-3,
      2.65321895265761230930e-2, 2.96560571828504891230e-1, 1.78482653991729133580e0,
      5.46378491116411436990e0, 6.65790464350110377720e0)  # fmt: skip
_F = (2.04426310338993978564e-15, 1.42151175831644588870e-7, 1.84631831751005468180e-5,
      7.86869131145613259100e-4, 1.48753612908506148525e-2, 1.36929880922735805310e-1,
      5.99832206555887937690e-1, 1.0)  # fmt: skip


def _poly(coefficients: tuple[float, ...], x: float) -> float:
    total = 0.0
    for c in coefficients:
        total = total * x + c
    return total


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _normal_ppf(q: float) -> float:
    """The standard normal quantile for ``0 < q < 1``."""
    if q > 0.5:
        return -_normal_ppf(1.0 - q)  # exact: 1 - q has no rounding for q in [0.5, 1]
    d = q - 0.5
    if abs(d) <= 0.425:
        r = 0.180625 - d * d
        x = d * _poly(_A, r) / _poly(_B, r)
    else:
        r = math.sqrt(-math.log(q))
        if r <= 5.0:
            x = -_poly(_C, r - 1.6) / _poly(_D, r - 1.6)
        else:
            x = -_poly(_E, r - 5.0) / _poly(_F, r - 5.0)
    if q > 1e-300:  # one Halley step on the lower tail, where erfc keeps relative precision
        u = (_normal_cdf(x) - q) * _SQRT_2PI * math.exp(0.5 * x * x)
        x -= u / (1.0 + 0.5 * x * u)
    return x


# --- the incomplete beta ----------------------------------------------------------------


def _stirling_error(z: float) -> float:
    """``lgamma(z + 1) - ((z + 1/2) log z - z + log sqrt(2 pi))`` for ``z > 0``."""
    if z > 15.0:
        w = 1.0 / (z * z)
        return (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - w / 1188) * w) * w) * w) / z
    return math.lgamma(z + 1.0) - (z + 0.5) * math.log(z) + z - _LOG_SQRT_2PI


def _deviance(x: float, m: float, diff: float) -> float:
    """``x log(x / m) + m - x`` (Loader's bd0) given ``diff = x - m``, without cancellation."""
    if m <= 0.0:
        return math.inf
    if abs(diff) < 0.1 * (x + m):
        v = diff / (x + m)
        total, term, v2, j = diff * v, 2.0 * x * v, v * v, 1
        while True:
            term *= v2
            updated = total + term / (2 * j + 1)
            if updated == total:
                return total
            total, j = updated, j + 1
    return x * math.log(x / m) - diff


def _scaled_power(a: float, b: float, x: float, y: float) -> float:
    """``Gamma(a+b+1) / (Gamma(a+1) Gamma(b+1)) * x**a * y**b`` for ``a, b > 0``, ``y = 1-x``."""
    n = a + b
    # a - n x, from whichever of x and y is the exact one (the smaller)
    diff = a - n * x if x <= y else n * y - b
    log_value = (
        _stirling_error(n)
        - _stirling_error(a)
        - _stirling_error(b)
        - _deviance(a, n * x, diff)
        - _deviance(b, n * y, -diff)
    )
    return math.exp(log_value) * math.sqrt(n / (2.0 * math.pi * a * b))


def _beta_fraction(a: float, b: float, x: float, y: float, lam: float) -> float:
    """The continued fraction ``F`` with ``I_x(a, b) = x^a y^b / (B(a, b) F)`` (DiDonato and
    Morris 1992), for ``lam = a - (a + b) x >= 0``; modified Lentz evaluation. ``lam`` is
    computed by the caller from the exact one of x and y, so x near 1 costs no precision."""

    def guard(value: float) -> float:
        return value if abs(value) > _TINY else _TINY

    f = guard(a * (lam + 1.0) / (a + 1.0))
    c, d = f, 0.0
    for m in range(1, 1000 + 2 * math.isqrt(int(a + b) + 1)):
        odd = a + 2 * m - 1.0
        alpha = (a + m - 1.0) * (a + b + m - 1.0) * m * (b - m) * x * x / (odd * odd)
        beta = m + m * (b - m) * x / odd + (a + m) * (lam + 1.0 + m * (1.0 + y)) / (odd + 2.0)
        d = 1.0 / guard(beta + alpha * d)
        c = guard(beta + alpha / c)
        f *= c * d
        if abs(c * d - 1.0) <= 1e-15:
            return f
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _ibeta(a: float, b: float, x: float, y: float) -> tuple[float, float]:
    """``(I_x(a, b), 1 - I_x(a, b))`` for ``a, b > 0`` and ``y = 1 - x``. The tail on the
    near side of the mean ``a / (a + b)`` is computed directly (the other as ``1 -`` it), so
    a small tail keeps its relative precision."""
    if x <= 0.0:
        return 0.0, 1.0
    if y <= 0.0:
        return 1.0, 0.0
    lam = a - (a + b) * x if x <= y else (a + b) * y - b
    scale = a * b / (a + b)
    if lam >= 0.0:
        lower = min(1.0, _scaled_power(a, b, x, y) * scale / _beta_fraction(a, b, x, y, lam))
        return lower, 1.0 - lower
    upper = min(1.0, _scaled_power(b, a, y, x) * scale / _beta_fraction(b, a, y, x, -lam))
    return 1.0 - upper, upper


def _beta_density(a: float, b: float, x: float, y: float) -> float:
    return _scaled_power(a, b, x, y) * (a * b / (a + b)) / (x * y)


def _beta_root(a: float, b: float, target: float, upper: bool, guess: float) -> float:
    """The x in (0, 1/2] whose lower tail ``I_x(a, b)`` (upper tail, if ``upper``) is
    ``target``. Newton steps on the log of the tail: against log x for a lower tail (a power
    of x near 0), against x for an upper tail (near an exponential decay). A step that would
    leave the bracket bisects it instead, geometrically while it spans orders of magnitude."""
    if upper and target >= 0.5:
        upper, target = False, 1.0 - target  # exact for target in [1/2, 1]
    low, high = 0.0, 0.5
    x = min(max(guess, 1e-300), 0.5)
    for _ in range(200):
        lower_tail, upper_tail = _ibeta(a, b, x, 1.0 - x)
        tail = upper_tail if upper else lower_tail
        if tail == target:
            return x
        if (tail < target) != upper:
            low = x
        else:
            high = x
        if high - low <= 1e-15 * high:  # as close as the tail's own rounding lets it get
            return x
        density = _beta_density(a, b, x, 1.0 - x)
        proposal = -1.0
        if tail > 0.0 and density > 0.0:
            excess = math.log(tail / target)
            if upper:
                proposal = x + excess * tail / density
            else:
                proposal = x * math.exp(max(-700.0, min(700.0, -excess * tail / (x * density))))
            if abs(proposal - x) <= 1e-15 * x:
                return proposal
        if low < proposal < high:
            x = proposal
        elif low == 0.0 or high > 16.0 * low:
            x = math.sqrt(low * high) if low > 0.0 else high / 16.0
        else:
            x = 0.5 * (low + high)
    return x


def _beta_ppf(
    a: float, b: float, target: float, *, upper: bool, guess: float
) -> tuple[float, float]:
    """``(x, 1 - x)`` where the lower tail ``I_x(a, b)`` (upper tail, if ``upper``) is
    ``target``, for ``0 < target < 1``. The root is found in whichever of x and 1 - x is
    below 1/2, so a quantile near 1 keeps the precision of its distance to 1."""
    lower_half, upper_half = _ibeta(a, b, 0.5, 0.5)
    if (target >= upper_half) if upper else (target <= lower_half):
        x = _beta_root(a, b, target, upper, guess)
        return x, 1.0 - x
    # mirror: the lower tail of I_x(a, b) is the upper tail of I_{1-x}(b, a)
    y = _beta_root(b, a, target, not upper, 1.0 - guess)
    return 1.0 - y, y


# --- the public functions ---------------------------------------------------------------


def normal_cdf(x: float) -> float:
    """P[Z <= x] for a standard normal Z."""
    return _normal_cdf(check_real("x", x))


def normal_ppf(q: float) -> float:
    """The standard normal quantile: the x with P[Z <= x] = q, for 0 < q < 1."""
    return _normal_ppf(check_unit("q", q, open_=True))


def _t_log_k(df: float) -> float:
    """log K, where the tail of Student's t is ``K t**-df / df`` once ``t**2 >> df``."""
    half = 0.5 * df
    return math.lgamma(half + 0.5) - math.lgamma(half) + half * math.log(df) - _LOG_SQRT_PI


def _t_upper(t: float, df: float) -> float:
    """P[T > t] for t >= 0: half the incomplete beta at df / (df + t^2)."""
    ratio = (t / df) * t
    if ratio > 1e290:  # df / (df + t^2) would underflow; the power law is exact to doubles
        return math.exp(_t_log_k(df) - math.log(df) - df * math.log(t))
    return 0.5 * _ibeta(0.5 * df, 0.5, 1.0 / (1.0 + ratio), ratio / (1.0 + ratio))[0]


def student_t_cdf(x: float, df: float) -> float:
    """P[T <= x] for Student's t with ``df > 0`` degrees of freedom (df need not be whole)."""
    x, df = check_real("x", x), check_positive("df", df)
    return 1.0 - _t_upper(x, df) if x >= 0.0 else _t_upper(-x, df)


def _t_ppf(q: float, df: float) -> float:
    if q > 0.5:
        return -_t_ppf(1.0 - q, df)
    if q == 0.5:
        return 0.0
    if 2.0 * q < _ibeta(0.5 * df, 0.5, 1e-290, 1.0)[0]:  # as far out as _t_upper's power law
        log_t = (_t_log_k(df) - math.log(df * q)) / df
        return -math.exp(log_t) if log_t < 709.0 else -math.inf
    # P[T > t] = q for t > 0 is the upper tail of I_y(1/2, df/2) = 2q at y = t^2 / (df + t^2)
    guess = _normal_ppf(q) ** 2
    y, z = _beta_ppf(0.5, 0.5 * df, 2.0 * q, upper=True, guess=guess / (df + guess))
    return -math.sqrt(df * y / z)


def student_t_ppf(q: float, df: float) -> float:
    """The quantile of Student's t with ``df > 0`` degrees of freedom, for 0 < q < 1."""
    return _t_ppf(check_unit("q", q, open_=True), check_positive("df", df))


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta ``I_x(a, b)`` for ``a, b > 0`` and ``0 <= x <= 1``."""
    a, b = check_positive("a", a), check_positive("b", b)
    x = check_unit("x", x)
    return _ibeta(a, b, x, 1.0 - x)[0]


def _binom_pmf(k: int, n: int, p: float) -> float:
    if p == 0.0 or p == 1.0:
        return 1.0 if k == (0 if p == 0.0 else n) else 0.0
    if k == 0:
        return math.exp(n * math.log1p(-p))
    if k == n:
        return math.exp(n * math.log(p))
    return _scaled_power(k, n - k, p, 1.0 - p)


def _binom_tails(k: int, n: int, p: float) -> tuple[float, float]:
    """``(P[X <= k], P[X > k])`` for ``X ~ Binomial(n, p)`` and any int ``k``."""
    if k < 0:
        return 0.0, 1.0
    if k >= n or p == 0.0:
        return 1.0, 0.0
    if p == 1.0:
        return 0.0, 1.0
    return _ibeta(n - k, k + 1, 1.0 - p, p)


def _binom_args(k: object, n: object, p: object) -> tuple[int, int, float]:
    k_, n_ = check_successes(k, n, ("k", "n"))
    return k_, n_, check_unit("p", p)


def binom_pmf(k: int, n: int, p: float) -> float:
    """P[X = k] for ``X ~ Binomial(n, p)``, ``0 <= k <= n``."""
    return _binom_pmf(*_binom_args(k, n, p))


def binom_cdf(k: int, n: int, p: float) -> float:
    """P[X <= k] for ``X ~ Binomial(n, p)``, ``0 <= k <= n``."""
    return _binom_tails(*_binom_args(k, n, p))[0]


def binom_sf(k: int, n: int, p: float) -> float:
    """P[X > k] for ``X ~ Binomial(n, p)``, ``0 <= k <= n``."""
    return _binom_tails(*_binom_args(k, n, p))[1]
