"""Standard 1.1's critical values (SPEC §10.2–§10.4): the total SE with the seed variation counted
once, its Satterthwaite degrees of freedom, and the t quantities read on that df.

Wherever a 1.0 rule says ``z·SE``, a 1.1 rule says ``t_crit·SE_tot`` with ``t_crit`` the quantile of a
t distribution with ``df`` degrees of freedom at the one-sided level the card's ``z`` names under a
normal (z = 2: 0.9772).  The MDE and the reported 95% interval use the same df.  Pure: numpy and
acards.distributions on numbers the comparison has already computed.

Two choices here depart from the letter of SPEC §10 to meet its calibration contract (§10.3–§10.4),
which the letter misses at S = 3 (benchmarks/bench_calibration.py measured both; docs/diagnostics.md
has the tables): the seed variance component enters SE_tot untruncated (a truncated component
leaves a cell whose three seeds agree by chance judged on the clustered SE alone, whatever the true
seed variance: the null pass rate reached 4.3%), and the MDE corrects (t_crit + t_power)·SE_tot for
the SE being estimated (the plain formula gave 64–79% power at the MDE).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from acards import stats
from acards.distributions import stdtr, stdtrit  # scipy.special (and scipy.stats more so) is heavy to import

_NORMAL = NormalDist()


def calibrated_se(se_cl: float, n_clusters: int, spreads: list[stats.SeedSpread]) -> tuple[float, float]:
    """Standard 1.1 SE_tot and its degrees of freedom (SPEC §10.2).

    ``spreads`` holds one :class:`~acards.stats.SeedSpread` for a paired comparison, U's and D's when
    their seeds differ.  SE_cl already holds each seed's sampling noise, seed-averaged
    (``noise_k/S_k``), and the spread of the per-seed means holds that same noise plus the seed
    variance component, so the variance of the estimate is counted once as

    ``SE_tot² = A + Σ_k spread_k/S_k`` with ``A = max(0, SE_cl² − Σ_k noise_k/S_k)``,

    i.e. ``SE_cl² + Σ_k (spread_k − noise_k)/S_k``: the moment estimate of each seed component
    added untruncated.  It is unbiased; a cell whose seeds agree by chance gets an SE_tot below SE_cl,
    and the few df of its spreads, which it then rests on, raise the critical value instead.
    Degrees of freedom (Satterthwaite): each spread is known to S_k − 1 df, and A, the difference of
    SE_cl² (C − 1 df) and a far more precise noise estimate, varies between what a C − 1-df mean
    square of size A would (2A²/(C − 1)) and what SE_cl² does (2SE_cl⁴/(C − 1), the normal-theory
    value, too large for scores as light-tailed as binary ones); the mean of the two is the choice
    that meets the calibration contract on the §10.3 grid (either end misses it: see
    docs/diagnostics.md), so
    ``df = SE_tot⁴ / ((A² + SE_cl⁴)/(2·(C − 1)) + Σ_k (spread_k/S_k)²/(S_k − 1))``, kept between the
    smallest and the sum of those dfs.  Without spreads (fewer than two seeds on a side) SE_tot = SE_cl on
    C − 1 df.  NaN when SE_cl is NaN or there are fewer than two subjects.
    """
    se_cl = float(se_cl)
    if not np.isfinite(se_cl) or n_clusters < 2:
        return float("nan"), float("nan")
    subjects_df = n_clusters - 1.0
    if not spreads:
        return se_cl, subjects_df
    between = max(0.0, se_cl**2 - sum(s.noise / s.n_seeds for s in spreads))
    seed_parts = [(s.spread / s.n_seeds, s.n_seeds - 1.0) for s in spreads]
    variance = between + sum(part for part, _ in seed_parts)
    denominator = (between**2 + se_cl**4) / (2.0 * subjects_df) + sum(part**2 / df for part, df in seed_parts)
    dfs = [subjects_df] + [df for _, df in seed_parts]
    df = variance**2 / denominator if denominator > 0.0 else sum(dfs)
    return float(math.sqrt(variance)), float(min(max(df, min(dfs)), sum(dfs)))


def t_critical(z: float, df: float) -> float:
    """The t quantile at the one-sided level Φ(z) of the card's nominal ``z`` (z = 2: 0.9772);
    the normal quantile, z itself, when df is infinite.  NaN for a NaN df."""
    if not df > 0.0:
        return float("nan")
    return float(z) if np.isinf(df) else float(stdtrit(df, _NORMAL.cdf(float(z))))


def t_pvalue(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value ``2·P(T_df > |estimate/se|)``; NaN unless se and df are positive and finite."""
    est, s = float(estimate), float(se)
    if not (np.isfinite(est) and np.isfinite(s) and s > 0.0 and df > 0.0):
        return float("nan")
    return float(2.0 * stdtr(df, -abs(est / s)))


def t_mde(se: float, critical: float, df: float, margin: float = 0.0, power: float = 0.8) -> float:
    """Standard 1.1 MDE: the true reduction the pass rule ``Δ − t_crit·SE_tot > margin`` detects with
    probability ``power``, estimated from the cell's own SE_tot (SPEC §10.4).

    On a known SE the answer is ``(t_crit + t_power)·SE + margin``.  SE_tot is estimated, so the rule
    passes when a noncentral t with ``df`` df and noncentrality Δ/σ clears t_crit; the noncentrality
    that does so with probability ``power`` is ``δ = t_crit·(1 − 1/(4·df)) + z_power·√(1 + t_crit²/(2·df))``
    (the normal approximation to the noncentral t of Johnson & Welch, 1940), and
    σ is estimated without bias by ``SE_tot / c4(df)`` (``c4 = E[s]/σ`` for s² on df degrees of
    freedom).  So ``MDE = δ·SE_tot/c4(df) + margin``, which tends to ``(z + z_power)·SE + margin``
    as df grows."""
    if not (0.0 < power < 1.0):
        raise ValueError("power must lie in (0, 1)")
    if not (np.isfinite(se) and np.isfinite(critical) and df > 0.0):
        return float("nan")
    z_power = _NORMAL.inv_cdf(power)
    if math.isinf(df):
        return float((critical + z_power) * float(se) + margin)
    delta = critical * (1.0 - 1.0 / (4.0 * df)) + z_power * math.sqrt(1.0 + critical**2 / (2.0 * df))
    return float(delta * float(se) / c4(df) + margin)


def c4(df: float) -> float:
    """``E[s]/σ`` for an s² on ``df`` degrees of freedom (s²·df/σ² ~ χ²_df): √(2/df)·Γ((df+1)/2)/Γ(df/2)."""
    if math.isinf(df):
        return 1.0
    return math.sqrt(2.0 / df) * math.exp(math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0))


def t_interval(estimate: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    """The t-based cluster interval ``estimate ± t_{(1+level)/2, df}·SE_tot`` (SPEC §10.3); NaN ends
    when SE or df is not usable."""
    if not (np.isfinite(estimate) and np.isfinite(se) and df > 0.0):
        return float("nan"), float("nan")
    half = float(stdtrit(df, (1.0 + level) / 2.0)) * float(se)
    return float(estimate) - half, float(estimate) + half
