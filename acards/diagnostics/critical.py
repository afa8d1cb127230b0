"""Standard 1.1's critical values (SPEC §10.2–§10.4): the total SE with the seed variance component
added once, its Satterthwaite degrees of freedom, and the t quantities read on that df.

Wherever a 1.0 rule says ``z·SE``, a 1.1 rule says ``t_crit·SE_tot`` with ``t_crit`` the quantile of a
t distribution with ``df`` degrees of freedom at the one-sided level the card's ``z`` names under a
normal (z = 2: 0.9772).  The MDE and the reported 95% interval use the same df.  Pure: numpy and
scipy on numbers the comparison has already computed.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, stdtr, stdtrit  # Student t CDF and quantile; scipy.stats is heavy to import

from acards import stats

# How fast the df moves from the subjects' C − 1 to the seeds' as the seed component grows: fully
# there once the component is a quarter of the per-seed spread (calibrated in benchmarks/bench_calibration.py).
SEED_WEIGHT_GAIN = 4.0


def calibrated_se(se_cl: float, n_clusters: int, spreads: list[stats.SeedSpread]) -> tuple[float, float]:
    """Standard 1.1 SE_tot and its degrees of freedom (SPEC §10.2).

    ``SE_tot² = SE_cl² + Σ_k component_k / S_k``: SE_cl already holds each seed's sampling noise
    (seed-averaged), so only the seed variance component is added, once (``spreads``: one for a
    paired comparison, U's and D's when their seeds differ).

    Degrees of freedom (Satterthwaite).  With no component above 0, SE_tot = SE_cl, a spread
    between subjects known to C − 1 df.  With components, SE_tot² = A + Σ spread_k/S_k, where
    A = SE_cl² − Σ noise_k/S_k (≥ 0) is known to C − 1 df and each per-seed spread to S_k − 1, so
    ``df_seed = SE_tot⁴ / (A²/(C − 1) + Σ (spread_k/S_k)²/(S_k − 1))``.  Between the two, the
    denominators are blended by w = min(1, 4·Σ component_k/S_k / Σ spread_k/S_k), so the df
    falls continuously from C − 1 as the seed component appears, instead of jumping.  The df is
    kept between the smallest and the sum of the dfs involved.  NaN when SE_cl is NaN.
    """
    se_cl = float(se_cl)
    if not np.isfinite(se_cl) or n_clusters < 2:
        return float("nan"), float("nan")
    active = [s for s in spreads if s.component > 0.0]
    variance = se_cl**2 + sum(s.component / s.n_seeds for s in active)
    if not active:
        return float(np.sqrt(variance)), float(n_clusters - 1)
    between = max(0.0, se_cl**2 - sum(s.noise / s.n_seeds for s in active))
    subjects_df = n_clusters - 1.0
    seed_part = between**2 / subjects_df + sum((s.spread / s.n_seeds) ** 2 / (s.n_seeds - 1) for s in active)
    weight = min(1.0, SEED_WEIGHT_GAIN * sum(s.component / s.n_seeds for s in active) / sum(s.spread / s.n_seeds for s in active))
    denominator = (1.0 - weight) * se_cl**4 / subjects_df + weight * seed_part
    dfs = [subjects_df] + [s.n_seeds - 1.0 for s in active]
    df = variance**2 / denominator if denominator > 0.0 else sum(dfs)
    return float(np.sqrt(variance)), float(min(max(df, min(dfs)), sum(dfs)))


def t_critical(z: float, df: float) -> float:
    """The t quantile at the one-sided level Φ(z) of the card's nominal ``z`` (z = 2: 0.9772);
    the normal quantile, z itself, when df is infinite.  NaN for a NaN df."""
    if not df > 0.0:
        return float("nan")
    return float(z) if np.isinf(df) else float(stdtrit(df, ndtr(float(z))))


def t_pvalue(estimate: float, se: float, df: float) -> float:
    """Two-sided p-value ``2·P(T_df > |estimate/se|)``; NaN unless se and df are positive and finite."""
    est, s = float(estimate), float(se)
    if not (np.isfinite(est) and np.isfinite(s) and s > 0.0 and df > 0.0):
        return float("nan")
    return float(2.0 * stdtr(df, -abs(est / s)))


def t_mde(se: float, critical: float, df: float, margin: float = 0.0, power: float = 0.8) -> float:
    """Standard 1.1 MDE ``(t_crit + t_power)·SE_tot + margin`` on the pass rule's own critical value
    and df (SPEC §10.4): the true reduction the rule detects with probability ``power``."""
    if not (0.0 < power < 1.0):
        raise ValueError("power must lie in (0, 1)")
    if not (np.isfinite(se) and np.isfinite(critical) and df > 0.0):
        return float("nan")
    return float((critical + stdtrit(df, power)) * float(se) + margin)


def t_interval(estimate: float, se: float, df: float, level: float = 0.95) -> tuple[float, float]:
    """The t-based cluster interval ``estimate ± t_{(1+level)/2, df}·SE_tot`` (SPEC §10.3); NaN ends
    when SE or df is not usable."""
    if not (np.isfinite(estimate) and np.isfinite(se) and df > 0.0):
        return float("nan"), float("nan")
    half = float(stdtrit(df, (1.0 + level) / 2.0)) * float(se)
    return float(estimate) - half, float(estimate) + half
