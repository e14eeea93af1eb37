"""The Beta distribution's quantile function, for the "beta" scheduler, without SciPy.

ComfyUI's beta scheduler calls `scipy.stats.beta.ppf`; SciPy is not a Flowmill dependency, and
the scheduler needs only a handful of quantiles per schedule, so a float64 CDF plus bisection is
plenty. The CDF is the regularized incomplete beta function evaluated with its continued fraction
(Abramowitz & Stegun 26.5.8) by the modified Lentz method (Press et al., Numerical Recipes,
section 6.4). Pure Python floats: no tensors, no state.
"""

from __future__ import annotations

import math

_TINY = 1e-300  # keeps Lentz's recurrences away from division by zero
_CONTINUED_FRACTION_TERMS = 500
_RELATIVE_TOLERANCE = 1e-15
_BISECTION_STEPS = 200  # an upper bound; the loop stops at _QUANTILE_RESOLUTION
# Schedulers scale a quantile by at most ~1e4 table entries and round, so 2**-52 absolute is ample.
_QUANTILE_RESOLUTION = 2.0**-52


def _continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b); converges fast for x < (a + 1) / (a + b + 2)."""
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, _CONTINUED_FRACTION_TERMS + 1):
        # Each m contributes an even and an odd partial numerator (A&S 26.5.8).
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            factor = c * d
            result *= factor
        if abs(factor - 1.0) < _RELATIVE_TOLERANCE:
            return result
    return result


def beta_cdf(x: float, a: float, b: float) -> float:
    """P(X <= x) for X ~ Beta(a, b): the regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    # Use the fraction on the side where it converges; the symmetry I_x(a, b) = 1 - I_{1-x}(b, a) covers the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _continued_fraction(x, a, b) / a
    return 1.0 - front * _continued_fraction(1.0 - x, b, a) / b


def beta_ppf(q: float, a: float, b: float) -> float:
    """The x with P(X <= x) = q for X ~ Beta(a, b) (scipy.stats.beta.ppf), to float64 resolution.

    Bisection, because the CDF is monotone but its slope is infinite at an endpoint whenever
    a < 1 or b < 1 (the scheduler's default is a = b = 0.6), which throws Newton's method off.
    """
    if not (a > 0.0 and b > 0.0):
        raise ValueError(f"Beta shape parameters must be > 0, got a={a!r}, b={b!r}")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile level must lie in [0, 1], got {q!r}")
    if q == 0.0 or q == 1.0:
        return q
    low, high = 0.0, 1.0
    for _ in range(_BISECTION_STEPS):
        if high - low <= _QUANTILE_RESOLUTION:
            break
        middle = 0.5 * (low + high)
        if beta_cdf(middle, a, b) < q:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)
