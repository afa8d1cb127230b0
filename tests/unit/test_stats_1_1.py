"""Standard 1.1's estimators (SPEC §10.2–§10.4) against independent computations on the same numbers.

- the seed spread split (acards.stats.seed_spread) against a two-way ANOVA written with loops, and
  its unbiasedness by simulation with unequal subjects and unequal noise;
- the total SE, its degrees of freedom and the t quantities (acards.diagnostics.critical) against
  scipy.stats and the closed forms of their docstrings;
- the Monte-Carlo error of a bootstrap interval end on a lumpy bootstrap distribution against the
  spread of that end over bootstrap reruns.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from acards import stats as st
from acards.diagnostics import critical

pytestmark = pytest.mark.filterwarnings("error")


# --- seed_spread ------------------------------------------------------------------------------------

def test_seed_spread_is_the_two_way_anova_component_with_one_item_per_subject():
    """One item per subject: spread/noise are MS_seed/C and MS_residual/C of a seeds × subjects table."""
    rng = np.random.default_rng(11)
    S, C = 4, 9
    table = rng.normal(0, 1, (S, C)) + rng.normal(0, 0.7, (S, 1)) + rng.normal(0, 0.5, (1, C))
    grand = sum(sum(row) for row in table) / (S * C)
    row_means = [sum(row) / C for row in table]
    col_means = [sum(table[s][c] for s in range(S)) / S for c in range(C)]
    ms_seed = C * sum((m - grand) ** 2 for m in row_means) / (S - 1)
    ms_resid = sum((table[s][c] - row_means[s] - col_means[c] + grand) ** 2
                   for s in range(S) for c in range(C)) / ((S - 1) * (C - 1))
    got = st.seed_spread(table, np.arange(C))
    assert got.n_seeds == S
    assert got.spread == pytest.approx(ms_seed / C, rel=1e-12)
    assert got.noise == pytest.approx(ms_resid / C, rel=1e-12)
    assert got.component == pytest.approx(max(0.0, (ms_seed - ms_resid) / C), rel=1e-12, abs=1e-15)


def test_seed_spread_is_unbiased_with_unequal_subjects_and_noise():
    """E[noise] = V/n² and E[spread − noise] = σ²_seed, by simulation (untruncated, so unbiased)."""
    rng = np.random.default_rng(5)
    sizes = np.array([1, 2, 7, 3, 5, 2, 9, 4, 1, 6])
    codes = np.repeat(np.arange(sizes.size), sizes)
    item_sd = rng.uniform(0.2, 1.2, sizes.size)[codes]  # each subject its own noise level
    n, S, seed_sd = sizes.sum(), 3, 0.15
    true_noise = float(np.sum(item_sd**2)) / n**2  # Var of a seed's item mean from item noise alone
    subject = rng.normal(0, 0.8, sizes.size)[codes]  # shared across seeds: must not count
    noise, excess = [], []
    for _ in range(4000):
        values = subject + rng.normal(0, seed_sd, (S, 1)) + rng.normal(0, 1, (S, n)) * item_sd
        got = st.seed_spread(values, codes)
        noise.append(got.noise)
        excess.append(got.spread - got.noise)
    assert np.mean(noise) == pytest.approx(true_noise, rel=0.03)
    assert np.mean(excess) == pytest.approx(seed_sd**2, abs=4 * np.std(excess) / math.sqrt(len(excess)))


def test_seed_spread_edges():
    codes = np.array([0, 0, 1, 1])
    assert st.seed_spread(np.ones((1, 4)), codes) is None  # one seed: no spread
    assert st.seed_spread(np.ones((3, 0)), np.array([], int)) is None
    one_subject = st.seed_spread(np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]), np.array([0, 0]))
    assert math.isnan(one_subject.noise) and one_subject.component == 0.0
    # a subject holding half the items or more takes the cruder unbiased form, still finite
    half = st.seed_spread(np.random.default_rng(0).normal(size=(3, 4)), np.array([0, 0, 1, 2]))
    assert math.isfinite(half.noise) and half.noise > 0
    assert st.SeedSpread(3, 0.01, 0.02).component == 0.0  # truncated at 0
    assert st.SeedSpread(3, 0.03, 0.01).component == pytest.approx(0.02)


# --- calibrated SE and df -------------------------------------------------------------------------

def test_without_spreads_se_total_is_the_clustered_se_on_c_minus_1_df():
    assert critical.calibrated_se(0.05, 12, []) == (0.05, 11.0)
    assert all(math.isnan(x) for x in critical.calibrated_se(float("nan"), 1, []))


def test_seed_spread_enters_once_with_the_satterthwaite_df_of_the_docstring():
    se_cl, C = 0.04, 20
    spread = st.SeedSpread(3, spread=0.006, noise=0.0015)
    se, df = critical.calibrated_se(se_cl, C, [spread])
    assert se == pytest.approx(math.sqrt(se_cl**2 + (0.006 - 0.0015) / 3))  # SE_cl² + component/S
    a = se_cl**2 - 0.0015 / 3
    assert df == pytest.approx((a + 0.006 / 3) ** 2 / ((a**2 + se_cl**4) / (2 * (C - 1)) + (0.006 / 3) ** 2 / 2))


def test_a_negative_moment_estimate_is_not_truncated_and_leans_on_the_seed_df():
    """Seeds that agree by chance (spread below its noise floor) give SE_tot < SE_cl, on fewer df."""
    se, df = critical.calibrated_se(0.03, 12, [st.SeedSpread(3, 0.0015, 0.0024)])
    assert se == pytest.approx(math.sqrt(0.03**2 + (0.0015 - 0.0024) / 3)) and se < 0.03
    a = 0.03**2 - 0.0024 / 3
    assert df == pytest.approx((a + 0.0015 / 3) ** 2 / ((a**2 + 0.03**4) / 22 + (0.0015 / 3) ** 2 / 2)) and df < 3


def test_unpaired_seeds_add_both_spreads_and_df_stays_in_bounds():
    u, d = st.SeedSpread(3, 0.004, 0.001), st.SeedSpread(5, 0.003, 0.001)
    se, df = critical.calibrated_se(0.02, 10, [u, d])
    # SE_cl² = 0.0004 is below the seeds' noise (0.001/3 + 0.001/5): the subject part A is 0
    assert se == pytest.approx(math.sqrt(0.004 / 3 + 0.003 / 5))
    assert df == pytest.approx((0.004 / 3 + 0.003 / 5) ** 2 / (0.02**4 / 18 + (0.004 / 3) ** 2 / 2 + (0.003 / 5) ** 2 / 4))
    assert 2.0 <= df <= 9 + 2 + 4


def test_se_total_is_unbiased_for_the_true_variance_by_simulation():
    """Known truth: subject effects (sd 0.1), seed effects and item noise (sd 0.3), three seeds, unequal
    subject sizes.  The variance of the estimate is known in closed form; the mean of SE_tot² over
    simulated cells must match it (its Monte-Carlo error here is about 1%)."""
    rng = np.random.default_rng(20261202)
    sizes = np.array([2, 3, 4, 5, 6, 2, 3, 4, 5, 6, 3, 4])
    codes = np.repeat(np.arange(sizes.size), sizes)
    n = sizes.sum()
    for sd_seed in (0.0, 0.1):
        truth = 0.1**2 * np.sum((sizes / n) ** 2) + sd_seed**2 / 3 + 0.3**2 / (3 * n)
        variances = []
        for _ in range(2500):
            values = (rng.normal(0, 0.1, sizes.size)[codes][None, :] + rng.normal(0, sd_seed, (3, 1))
                      + rng.normal(0, 0.3, (3, codes.size)))
            se_cl = st.clustered_se(values.mean(axis=0), codes)
            variances.append(critical.calibrated_se(se_cl, sizes.size, [st.seed_spread(values, codes)])[0] ** 2)
        assert np.mean(variances) == pytest.approx(truth, rel=0.05)


@pytest.mark.parametrize("df", [1.5, 2.0, 4.7, 19.0, 39.0, 1e6])
@pytest.mark.parametrize("z", [1.0, 2.0, 3.0])
def test_t_quantities_agree_with_scipy(z, df):
    level = sps.norm.cdf(z)
    crit = critical.t_critical(z, df)
    assert crit == pytest.approx(sps.t.ppf(level, df), rel=1e-10)
    assert critical.t_pvalue(0.3, 0.1, df) == pytest.approx(2 * sps.t.sf(3.0, df), rel=1e-9)
    low, high = critical.t_interval(0.2, 0.05, df)
    assert (low, high) == pytest.approx(sps.t.interval(0.95, df, loc=0.2, scale=0.05), rel=1e-10)
    assert critical.c4(df) == pytest.approx(sps.chi(df).mean() / math.sqrt(df), rel=1e-7)  # E[√χ²_df]/√df


def test_c4_is_the_mean_of_an_estimated_sd_by_simulation():
    rng = np.random.default_rng(7)
    for df in (2, 5, 19):
        assert np.mean(np.sqrt(rng.chisquare(df, 400_000) / df)) == pytest.approx(critical.c4(df), rel=0.003)


def test_t_quantities_at_the_edges():
    assert critical.t_critical(2.0, math.inf) == 2.0  # the normal
    assert math.isnan(critical.t_critical(2.0, float("nan")))
    assert math.isnan(critical.t_pvalue(0.1, 0.0, 5))
    assert math.isnan(critical.t_mde(float("nan"), 2.0, 5))
    assert critical.t_mde(0.1, 2.0, math.inf, margin=0.02) == pytest.approx((2.0 + sps.norm.ppf(0.8)) * 0.1 + 0.02)
    assert all(math.isnan(x) for x in critical.t_interval(0.1, 0.05, float("nan")))


@pytest.mark.parametrize("df", [2, 3, 4, 9, 19, 39])
@pytest.mark.parametrize("z", [2.0, 3.0])
def test_power_at_the_mean_reported_mde_is_80_percent(df, z):
    """SE estimated on df degrees of freedom (s = σ·√(χ²_df/df)): the mean MDE the cells report is
    t_mde(σ)·c4(df), and at that true reduction the t rule passes with probability nct.sf(t_crit) —
    scipy's exact noncentral t — which must be 80% (the normal approximation to the noncentral t
    that t_mde uses is within 1.5 points of it from 2 df on)."""
    crit = critical.t_critical(z, df)
    mean_mde = critical.t_mde(1.0, crit, df) * critical.c4(df)
    assert sps.nct.sf(crit, df, mean_mde) == pytest.approx(0.80, abs=0.015)
    assert critical.t_mde(1.0, crit, df, margin=0.05) == pytest.approx(critical.t_mde(1.0, crit, df) + 0.05)


# --- Monte-Carlo error of an interval end on lumpy replicates ---------------------------------------

def _lumpy_subjects():
    """Eight subjects of binary items: few distinct subject means, a lumpy bootstrap distribution."""
    values = np.array([1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 1], float)
    codes = np.repeat(np.arange(8), 2)
    return st.cluster_sums(values, codes)


def test_lumpy_bootstrap_end_has_a_positive_mc_error_that_matches_reruns():
    sums, counts = _lumpy_subjects()
    ends, reported = [], []
    for seed in range(300):
        ci = st.ratio_ci(sums, counts, np.random.default_rng(seed), B=400, method="percentile", atoms=True)
        ends.append(ci.low)
        reported.append(ci.mc_error_low)
    observed = float(np.std(ends, ddof=1))
    assert observed > 0  # the end does move between reruns ...
    assert min(reported) > 0  # ... and the reported error is never 0
    assert 0.4 < float(np.mean(reported)) / observed < 2.5


def test_the_1_0_rank_spread_can_say_0_on_the_same_replicates():
    """What 1.1 fixes: with a flat step around the endpoint's rank, the 1.0 estimate is exactly 0."""
    reps = np.repeat([0.25, 0.5, 0.75], [30, 340, 30])  # the 2.5% end sits inside the first step
    old = st.ci_from_replicates(0.5, reps, "percentile")
    new = st.ci_from_replicates(0.5, reps, "percentile", atoms=True)
    assert old.mc_error_low == 0.0
    assert new.mc_error_low > 0.0 and new.low == old.low


def test_atoms_agree_with_the_rank_spread_on_smooth_replicates():
    reps = np.random.default_rng(3).normal(0.1, 0.05, 20_000)
    old = st.ci_from_replicates(0.1, reps, "percentile")
    new = st.ci_from_replicates(0.1, reps, "percentile", atoms=True)
    assert new.mc_error_low == pytest.approx(old.mc_error_low, rel=0.25)
    assert new.mc_error_high == pytest.approx(old.mc_error_high, rel=0.25)


def test_an_end_far_inside_one_value_still_reports_a_positive_error():
    reps = np.repeat([0.0, 1.0], [5000, 5000])  # the 2.5% end moves only with a vanishing probability
    assert 0.0 < st.ci_from_replicates(0.5, reps, "percentile", atoms=True).mc_error_low < 1e-100
