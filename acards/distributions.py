"""The normal and Student t distribution functions the statistics need, without ``scipy.special``.

Why not scipy: importing ``scipy.special`` (1.17) costs more CPU than validating a card, because its
array-API shim touches every lazy submodule of numpy (``numpy.f2py``, ``numpy.testing``…); a fully
cached re-verify paid it for a handful of scalar quantiles (benchmarks/README.md, "Regeneration:
cached re-verify").  So:

``ndtr(x)``, ``log_ndtr(x)``, ``ndtri(p)``
    Φ, log Φ and Φ⁻¹ on scalars or arrays, from the standard library: ``math.erf``/``math.erfc``
    (as scipy's own ``ndtr`` splits them), the asymptotic series of log Φ far in the lower tail, and
    ``statistics.NormalDist.inv_cdf`` (Wichura's AS 241, full double precision).
``stdtr(df, t)``, ``stdtrit(df, p)``
    The Student t CDF and quantile for any real ``df > 0`` (``inf``: the normal).  The tail
    ``P(T > t) = I_x(df/2, 1/2)/2`` with ``x = df/(df + t²)``, and the middle ``P(0 < T < t)`` with
    the other incomplete beta, each from the continued fraction on the side where it converges, so
    neither is ever a difference of near-equal numbers; ``log B(df/2, 1/2)`` from Stirling's series
    for large df (the plain ``lgamma`` difference loses digits there).  The quantile solves for the
    smaller of the tail and the middle by Newton steps on log-probability in ``log t`` (both are
    close to linear there), safeguarded by bisection.  From df 4,000 on, the quantile is the
    Cornish-Fisher expansion to 1/df⁴ instead (exact to double precision there, while rounding x
    near 1 costs the continued fraction digits: 1e-11 relative at df 1e6).

tests/unit/test_distributions.py checks them against scipy: the quantile within 1e-12 relative over
df 1…1e6 and p 1e-10…1 − 1e-10, except within 1e-3 of p = ½, where scipy's own quantile is off by up
to 2e-9 relative (its CDF near t = 0 is) and mpmath at 40 digits decides instead; the CDF within
1e-10 relative (1e-13 up to df 1e4).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["log_ndtr", "ndtr", "ndtri", "stdtr", "stdtrit"]

_STANDARD = NormalDist()
_SQRT_HALF = math.sqrt(0.5)
_LOG_SQRT_PI = 0.5 * math.log(math.pi)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
CORNISH_FISHER_DF = 4000.0  # from here on the quantile is the expansion (both within 2e-13 of scipy at 3000-10000)


def _ndtr1(x: float) -> float:
    z = x * _SQRT_HALF
    if abs(z) < _SQRT_HALF:
        return 0.5 + 0.5 * math.erf(z)
    return 0.5 * math.erfc(-z) if z < 0.0 else 1.0 - 0.5 * math.erfc(z)


def _log_ndtr1(x: float) -> float:
    if x > 0.0:
        return math.log1p(-0.5 * math.erfc(x * _SQRT_HALF))
    if x > -20.0:
        return math.log(_ndtr1(x))
    # log Φ(x) = −x²/2 − log(−x) − log √(2π) + log(1 − 1/x² + 3/x⁴ − 15/x⁶ + …), x ≤ −20
    inverse, term, total = 1.0 / (x * x), 1.0, 1.0
    for k in range(1, 12):
        term *= -(2 * k - 1) * inverse
        total += term
    return -0.5 * x * x - math.log(-x) - _LOG_SQRT_2PI + math.log(total)


def _ndtri1(p: float) -> float:
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    return _STANDARD.inv_cdf(p) if 0.0 < p < 1.0 else math.nan


def _elementwise(function):
    ufunc = np.frompyfunc(function, 1, 1)

    def apply(values):
        if np.ndim(values) == 0:
            return function(float(values))
        return np.asarray(ufunc(np.asarray(values, dtype=float)), dtype=float)

    apply.__name__, apply.__doc__ = function.__name__.strip("_").rstrip("1"), function.__doc__
    return apply


_ndtr_each = _elementwise(_ndtr1)


def ndtr(x):
    """Φ(x).  On arrays only −40 ≤ x ≤ 9 go through Python: beyond, Φ is 0 or 1 in double precision
    (Φ(−40) < 1e-349; 1 − Φ(9) ≈ 1e-19, below half an ulp of 1), and the bootstrap's Monte-Carlo
    errors ask for thousands of points, most of them there."""
    if np.ndim(x) == 0:
        return _ndtr1(float(x))
    x = np.asarray(x, dtype=float)
    out = np.where(x > 9.0, 1.0, np.where(np.isnan(x), np.nan, 0.0))
    middle = (x >= -40.0) & (x <= 9.0)
    if middle.any():
        out[middle] = _ndtr_each(x[middle])
    return out


log_ndtr = _elementwise(_log_ndtr1)  # log Φ(x), finite far into the lower tail
ndtri = _elementwise(_ndtri1)  # Φ⁻¹(p)


# --- Student t ------------------------------------------------------------------------------------

def _stirling(z: float) -> float:
    """log Γ(z) − ((z − ½)·log z − z + log √(2π)), z ≥ 20 (the next term is below 1e-17)."""
    inverse = 1.0 / z
    square = inverse * inverse
    return inverse * (1 / 12 - square * (1 / 360 - square * (1 / 1260 - square * (1 / 1680 - square / 1188))))


def _log_beta_half(a: float) -> float:
    """log B(a, ½) = log Γ(a) + log √π − log Γ(a + ½)."""
    if a < 20.0:
        return math.lgamma(a) + _LOG_SQRT_PI - math.lgamma(a + 0.5)
    # log Γ(a + ½) − log Γ(a) = a·log1p(1/(2a)) + ½·log a − ½ + S(a + ½) − S(a)
    difference = (a * math.log1p(0.5 / a) - 0.5) + 0.5 * math.log(a) + (_stirling(a + 0.5) - _stirling(a))
    return _LOG_SQRT_PI - difference


def _continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), for x < (a + 1)/(a + b + 2)."""
    tiny, total, plus, minus = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - total * x / plus
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        for step in (m * (b - m) * x / ((minus + m2) * (a + m2)), -(a + m) * (total + m) * x / ((a + m2) * (plus + m2))):
            d = 1.0 + step * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + step / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            return h
    raise ArithmeticError(f"the incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def _log_incomplete(a: float, b: float, x: float, log_x: float, log_1mx: float, log_beta: float) -> float:
    """log I_x(a, b) through the continued fraction (the caller picks the convergent side)."""
    return a * log_x + b * log_1mx - log_beta - math.log(a) + math.log(_continued_fraction(a, b, x))


def _t_parts(t: float, df: float) -> tuple[bool, float]:
    """For t ≥ 0: ``(True, log P(T > t))`` or ``(False, log P(0 < T < t))``, whichever the continued
    fraction gives directly (the other is ½ minus it)."""
    a = 0.5 * df
    ratio = t * t / df  # t²/df; x = 1/(1 + ratio), 1 − x = ratio/(1 + ratio)
    log_x = -math.log1p(ratio)
    log_1mx = math.log(ratio) + log_x if ratio > 0.0 else -math.inf
    x = 1.0 / (1.0 + ratio)
    log_beta = _log_beta_half(a)
    if x < (a + 1.0) / (a + 2.5):
        return True, math.log(0.5) + _log_incomplete(a, 0.5, x, log_x, log_1mx, log_beta)
    if ratio == 0.0:
        return False, -math.inf
    return False, math.log(0.5) + _log_incomplete(0.5, a, ratio / (1.0 + ratio), log_1mx, log_x, log_beta)


def _log_tail(t: float, df: float, upper: bool) -> float:
    """log P(T > t) (``upper``) or log P(0 < T < t), t ≥ 0."""
    direct, value = _t_parts(t, df)
    if direct == upper:
        return value
    return math.log(0.5 - math.exp(value))  # the other part is ≥ ½·0.04 here: no cancellation to speak of


def _log_pdf(t: float, df: float) -> float:
    return -0.5 * (df + 1.0) * math.log1p(t * t / df) - 0.5 * math.log(df) - _log_beta_half(0.5 * df)


def stdtr(df: float, t: float) -> float:
    """P(T ≤ t) for a Student t with ``df`` degrees of freedom (scalars)."""
    df, t = float(df), float(t)
    if math.isnan(df) or math.isnan(t) or not df > 0.0:
        return math.nan
    if math.isinf(df):
        return _ndtr1(t)
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = math.exp(_log_tail(abs(t), df, upper=True))
    return tail if t < 0.0 else 1.0 - tail


def stdtrit(df: float, p: float) -> float:
    """The t with P(T ≤ t) = p for a Student t with ``df`` degrees of freedom (scalars)."""
    df, p = float(df), float(p)
    if math.isnan(df) or math.isnan(p) or not df > 0.0 or not 0.0 <= p <= 1.0:
        return math.nan
    if p in (0.0, 1.0):
        return math.inf if p else -math.inf
    if math.isinf(df):
        return _ndtri1(p)
    if p == 0.5:
        return 0.0
    if df >= CORNISH_FISHER_DF:
        return _cornish_fisher(df, _ndtri1(p))
    sign, tail = (1.0, 1.0 - p) if p > 0.5 else (-1.0, p)  # 1 − p is exact for p ≥ ½
    upper = tail < 0.25  # solve for the smaller part, so that the target is exact and far from 0
    target = math.log(tail if upper else 0.5 - tail)
    return sign * _solve(df, target, upper, -_ndtri1(tail))


def _cornish_fisher(df: float, z: float) -> float:
    """The t quantile from the normal one, to 1/df⁴ (Abramowitz & Stegun 26.7.5): for large df, where
    it is exact to double precision and the continued fraction is not (x is too close to 1)."""
    z2 = z * z
    g1 = (z2 + 1.0) * z / 4.0
    g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0
    g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0
    g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0
    return z + (g1 + (g2 + (g3 + g4 / df) / df) / df) / df


def _solve(df: float, target: float, upper: bool, normal_guess: float) -> float:
    """The t ≥ 0 where log P(T > t) (``upper``) or log P(0 < T < t) equals ``target``: Newton in
    u = log t, kept inside a bracket that bisection narrows when a step leaves it."""
    guess = max(normal_guess, 1e-300)
    if upper:  # the Cornish-Fisher start, and the heavier tail of small df
        guess = max(guess + (guess**3 + guess) / (4.0 * df), math.exp(-(target + math.log(df)) / df) if df < 3 else 0.0)
    u = math.log(guess)
    direction = -1.0 if upper else 1.0  # the sign of d(log part)/du

    def residual(u: float) -> float:
        return _log_tail(math.exp(u), df, upper) - target

    r = residual(u)
    low = high = None
    step = 1.0
    while low is None or high is None:  # bracket: the part minus target changes sign between low and high
        if (r > 0.0) == (direction > 0.0):
            high, u_next = u, u - step
        else:
            low, u_next = u, u + step
        if low is None or high is None:
            u, step = u_next, step * 2.0
            r = residual(u)
    u = low if abs(residual(low)) < abs(residual(high)) else high
    r = residual(u)
    for _ in range(200):
        t = math.exp(u)
        slope = direction * t * math.exp(_log_pdf(t, df) - _log_tail(t, df, upper))
        u_next = u - r / slope
        if not low < u_next < high:
            u_next = 0.5 * (low + high)
        if abs(u_next - u) <= 2e-16 * max(1.0, abs(u)):
            return math.exp(u_next)
        u = u_next
        r = residual(u)
        if r == 0.0:
            return math.exp(u)
        if (r > 0.0) == (direction > 0.0):
            high = u
        else:
            low = u
    return math.exp(u)
