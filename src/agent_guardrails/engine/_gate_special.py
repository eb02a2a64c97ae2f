"""Special functions behind :mod:`agent_guardrails.gates.stats`, in pure Python (``math`` only).

The normal quantile is Wichura's AS241 (1988) polished by one Halley step on ``math.erfc``.
The regularized incomplete beta is the continued fraction of Numerical Recipes, evaluated by
the modified Lentz method on the side of the mode where it converges fast (the other side
by the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)``); its prefactor ``x^a (1-x)^b / B(a, b)``
is computed as Loader (2000) computes binomial probabilities: Stirling-series corrections
and a deviance term, so that it keeps full relative precision for counts in the millions.
Arguments are carried as the pair ``(x, 1 - x)`` so that a tail near 0 or 1 is never
rounded away. The binomial CDF and survival function are incomplete betas; quantiles are
found by Newton steps kept inside a shrinking bracket (bisection when a step would leave it).

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


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (modified Lentz), fast for x below the mode."""

    def guard(value: float) -> float:
        return value if abs(value) > _TINY else _TINY

    c, d = 1.0, 1.0 / guard(1.0 - (a + b) * x / (a + 1.0))
    h = d
    for m in range(1, 1000 + 2 * math.isqrt(int(a + b) + 1)):
        even = m * (b - m) * x / ((a - 1.0 + 2 * m) * (a + 2 * m))
        d = 1.0 / guard(1.0 + even * d)
        c = guard(1.0 + even / c)
        h *= d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 1.0 + 2 * m))
        d = 1.0 / guard(1.0 + odd * d)
        c = guard(1.0 + odd / c)
        h *= d * c
        if abs(d * c - 1.0) <= 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def _ibeta(a: float, b: float, x: float, y: float) -> tuple[float, float]:
    """``(I_x(a, b), 1 - I_x(a, b))`` for ``a, b > 0`` and ``y = 1 - x``; the smaller
    of the two is computed directly, so it keeps its relative precision."""
    if x <= 0.0:
        return 0.0, 1.0
    if y <= 0.0:
        return 1.0, 0.0
    if x < (a + 1.0) / (a + b + 2.0):
        lower = min(1.0, _scaled_power(a, b, x, y) * b / (a + b) * _beta_fraction(a, b, x))
        return lower, 1.0 - lower
    upper = min(1.0, _scaled_power(b, a, y, x) * a / (a + b) * _beta_fraction(b, a, y))
    return 1.0 - upper, upper


def _beta_density(a: float, b: float, x: float, y: float) -> float:
    return _scaled_power(a, b, x, y) * (a * b / (a + b)) / (x * y)


def _beta_ppf(a: float, b: float, target: float, *, upper: bool, guess: float) -> float:
    """The ``x`` in (0, 1) whose lower tail ``I_x(a, b)`` (or upper tail, if ``upper``)
    equals ``target``: Newton steps from ``guess``, bisection when a step leaves the bracket."""
    low, high = 0.0, 1.0
    x = min(max(guess, 1e-300), 1.0 - 1e-16)
    for _ in range(400):
        lower_tail, upper_tail = _ibeta(a, b, x, 1.0 - x)
        excess = target - upper_tail if upper else lower_tail - target  # increasing in x
        if excess == 0.0:
            return x
        if excess < 0.0:
            low = x
        else:
            high = x
        density = _beta_density(a, b, x, 1.0 - x)
        step = excess / density if density > 0.0 else math.inf
        proposal = x - step
        if not low < proposal < high:
            proposal = 0.5 * (low + high)
        if abs(proposal - x) <= 1e-15 * x or proposal in (low, high):
            return proposal
        x = proposal
    return x


# --- the public functions ---------------------------------------------------------------


def normal_cdf(x: float) -> float:
    """P[Z <= x] for a standard normal Z."""
    return _normal_cdf(check_real("x", x))


def normal_ppf(q: float) -> float:
    """The standard normal quantile: the x with P[Z <= x] = q, for 0 < q < 1."""
    return _normal_ppf(check_unit("q", q, open_=True))


def _t_upper(t: float, df: float) -> float:
    """P[T > t] for t >= 0: half the incomplete beta at df / (df + t^2)."""
    ratio = t * t / df
    if math.isinf(ratio):
        return 0.0
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
    # Solve P[T > t] = q for t = -x > 0 through the beta variable that is small at the root:
    # y = t^2 / (df + t^2) when t^2 < df, else z = df / (df + t^2) (heavy tails, tiny q).
    guess = _normal_ppf(q) ** 2
    if 2.0 * q >= _ibeta(0.5 * df, 0.5, 0.5, 0.5)[0]:
        y = _beta_ppf(0.5, 0.5 * df, 2.0 * q, upper=True, guess=guess / (df + guess))
        return -math.sqrt(df * y / (1.0 - y))
    z = _beta_ppf(0.5 * df, 0.5, 2.0 * q, upper=False, guess=min(0.5, df / (df + guess)))
    return -math.sqrt(df * (1.0 - z) / z)


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
