"""acards.distributions against scipy.special (and mpmath where scipy itself is off).

The statistics stopped importing scipy.special for its cost (acards/distributions.py says why); these
tests hold the replacement to scipy's numbers over the whole range the statistics use: the t
quantile within 1e-12 relative for df 1…1e6 and p 1e-10…1 − 1e-10.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import special

from acards import distributions as dist
from acards.evidence import records

DFS = sorted({*np.geomspace(1.0, 1e6, 41).tolist(), 1.0, 1.5, 2.0, 2.5, 3.0, 3.7, 19.99, 20.0, 20.01, 3999.0, 4000.0, 1e6})
TAILS = np.geomspace(1e-10, 0.499, 50)
PS = sorted({*TAILS.tolist(), *(1.0 - TAILS).tolist(), 0.2499, 0.25, 0.2501, 0.975, 0.9772498680518208})


def _relative(got: float, want: float) -> float:
    return abs(got - want) / abs(want)


@pytest.mark.parametrize("df", DFS)
def test_the_t_quantile_is_scipys_to_1e_12(df):
    worst = max((_relative(dist.stdtrit(df, p), float(special.stdtrit(df, p))), p) for p in PS)
    assert worst[0] <= 1e-12, worst


def _mp_quantile(mp, df: float, p: float, start: float):
    def cdf(t):
        x = mp.mpf(df) / (mp.mpf(df) + t * t)
        tail = mp.betainc(mp.mpf(df) / 2, mp.mpf(1) / 2, 0, x, regularized=True) / 2
        return tail if t < 0 else 1 - tail

    return mp.findroot(lambda t: cdf(t) - mp.mpf(p), mp.mpf(start))


@pytest.mark.parametrize("df", [1.0, 2.5, 4.075, 30.0, 1000.0, 3999.0])
@pytest.mark.parametrize("p", [0.49999999, 0.4999, 0.5000001, 0.5009])
def test_near_the_median_mpmath_decides(df, p):
    """Within 1e-3 of p = ½ scipy's quantile is off by up to 2e-9 relative (its CDF near t = 0 is);
    40 digits of mpmath say which is right."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 40
    got = dist.stdtrit(df, p)
    assert float(abs((got - _mp_quantile(mp, df, p, got)) / got)) <= 1e-13


@pytest.mark.parametrize("df", [1.0, 2.0, 3.3, 10.0, 150.0, 1e4, 1e6])
def test_the_t_cdf_is_scipys(df):
    ts = np.concatenate([-np.geomspace(1e-2, 1e9, 60), np.geomspace(1e-2, 1e9, 60)])
    worst = 0.0
    for t in ts:
        want = float(special.stdtr(df, t))
        if want > 1e-300:
            worst = max(worst, _relative(dist.stdtr(df, t), want))
    assert worst <= (1e-12 if df <= 1e4 else 1e-10), worst  # x this close to 1 costs the fraction digits


def test_the_quantile_and_the_cdf_invert_each_other():
    for df in (1.0, 2.7, 45.0, 2000.0):
        for p in (1e-9, 0.01, 0.3, 0.7, 0.9772498680518208, 1 - 1e-9):
            assert dist.stdtr(df, dist.stdtrit(df, p)) == pytest.approx(p, rel=1e-12)


def test_edges():
    assert dist.stdtrit(5.0, 0.5) == 0.0 and dist.stdtrit(5.0, 0.0) == -math.inf and dist.stdtrit(5.0, 1.0) == math.inf
    assert math.isnan(dist.stdtrit(0.0, 0.3)) and math.isnan(dist.stdtrit(float("nan"), 0.3)) and math.isnan(dist.stdtrit(3.0, 1.5))
    assert dist.stdtrit(math.inf, 0.975) == pytest.approx(1.959963984540054, rel=1e-15)
    assert dist.stdtr(math.inf, -2.0) == pytest.approx(float(special.ndtr(-2.0)), rel=1e-15)
    assert dist.stdtr(3.0, math.inf) == 1.0 and dist.stdtr(3.0, -math.inf) == 0.0 and math.isnan(dist.stdtr(-1.0, 1.0))
    for df in (1.0, 7.5, 5000.0):
        for p in (2.0**-20, 0.125, 0.375):  # 1 − p is exact for these: the quantile is odd
            assert _relative(dist.stdtrit(df, 1.0 - p), -dist.stdtrit(df, p)) <= 1e-15


def test_the_normal_functions_are_scipys():
    x = np.linspace(-38.0, 38.0, 3001)
    for name in ("ndtr", "log_ndtr"):
        want, got = getattr(special, name)(x), getattr(dist, name)(x)
        kept = want != 0.0
        assert np.max(np.abs(got[kept] - want[kept]) / np.abs(want[kept])) <= 1e-13, name
    assert dist.log_ndtr(-60.0) == pytest.approx(float(special.log_ndtr(-60.0)), rel=1e-14)
    p = np.concatenate([np.geomspace(1e-300, 0.49, 400), 1.0 - np.geomspace(1e-15, 0.49, 400)])
    assert np.max(np.abs(dist.ndtri(p) - special.ndtri(p)) / np.abs(special.ndtri(p))) <= 1e-14
    assert isinstance(dist.ndtr(0.3), float) and dist.ndtri(np.array([0.5, 0.0])).tolist() == [0.0, -math.inf]
    # arrays: only −40…9 go through Python; beyond, 0 and 1 exactly as in double precision (scipy
    # flushes Φ to 0 below about −37.6, where the true value is a denormal: hence the absolute 1e-300)
    wide = np.concatenate([np.linspace(-1e3, 1e3, 20_001), [-40.0, -39.99, 8.99, 9.0, 9.01, np.inf, -np.inf, np.nan]])
    assert np.allclose(dist.ndtr(wide), special.ndtr(wide), rtol=1e-13, atol=1e-300, equal_nan=True)
    assert dist.ndtr(np.array([9.5, 50.0])).tolist() == [1.0, 1.0] and dist.ndtr(np.array([-40.5])).tolist() == [0.0]


def test_fill_scores_spells_the_identity_out_in_order():
    """records.fill_scores writes IDENTITY's fields out by name, for speed: they must stay these."""
    assert records.IDENTITY == ("cell", "condition", "split", "task", "item", "framing", "seed", "sample")


def test_the_pipeline_does_not_import_scipy_special():
    code = "import sys, acards.pipeline.verify; print(sorted(m for m in ('scipy', 'scipy.special', 'scipy.stats') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
