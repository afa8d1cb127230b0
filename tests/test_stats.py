"""Tests of acards.stats against independent computations on the same numbers.

Nothing here compares with numbers copied from acards' own output: each estimator is checked
against a formula written differently (explicit loops, scipy, brute force), and the intervals
against known truth in simulation.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from acards import stats as st

# Every estimator must handle its inputs (degenerate ones included) without numpy/scipy warnings.
pytestmark = pytest.mark.filterwarnings("error")


def _clustered_data(rng: np.random.Generator, n_clusters: int, lo: int = 1, hi: int = 12):
    """Items with a subject effect, unequal subject sizes, subject labels as strings."""
    sizes = rng.integers(lo, hi + 1, size=n_clusters)
    labels = np.repeat([f"subj-{c:03d}" for c in range(n_clusters)], sizes)
    effects = rng.normal(0.0, 0.3, n_clusters)
    values = np.repeat(effects, sizes) + rng.normal(0.3, 0.5, sizes.sum())
    perm = rng.permutation(values.size)  # items of a subject need not be contiguous
    return values[perm], labels[perm]


def _scipy_bootstrap(x: np.ndarray, method: str, n_resamples: int, seed: int):
    kwargs = {"n_resamples": n_resamples, "method": method, "confidence_level": 0.95}
    if "rng" in inspect.signature(sps.bootstrap).parameters:
        kwargs["rng"] = np.random.default_rng(seed)
    else:  # scipy < 1.15
        kwargs["random_state"] = np.random.default_rng(seed)
    return sps.bootstrap((x,), np.mean, **kwargs).confidence_interval


# ---------------------------------------------------------------------------------------------
# cluster_index, clustered_se
# ---------------------------------------------------------------------------------------------


def test_cluster_index_round_trips_labels():
    labels = np.array(["b", "a", "c", "a", "b", "b"])
    codes, n = st.cluster_index(labels)
    assert n == 3
    assert codes.dtype.kind == "i" and codes.shape == labels.shape
    uniques = sorted(set(labels.tolist()))
    assert [uniques[k] for k in codes] == labels.tolist()


def _sandwich_se_loops(values, labels) -> float:
    """Cluster-robust sandwich SE of the intercept in y = β + e, in plain Python loops.

    V = (X'X)^{-1} [C/(C-1) Σ_c (Σ_{i∈c} x_i e_i)²] (X'X)^{-1}, with x_i = 1.
    """
    ys = [float(v) for v in values]
    xtx = sum(1.0 * 1.0 for _ in ys)
    beta = sum(1.0 * y for y in ys) / xtx
    scores: dict[str, float] = {}
    for y, g in zip(ys, labels, strict=True):
        scores[str(g)] = scores.get(str(g), 0.0) + 1.0 * (y - beta)
    c = len(scores)
    meat = c / (c - 1) * sum(s * s for s in scores.values())
    return math.sqrt(meat / xtx / xtx)


@pytest.mark.parametrize("seed", range(5))
def test_clustered_se_matches_sandwich_written_with_loops(seed):
    rng = np.random.default_rng(seed)
    values, labels = _clustered_data(rng, n_clusters=int(rng.integers(2, 30)))
    codes, n = st.cluster_index(labels)
    assert st.clustered_se(values, codes, n) == pytest.approx(
        _sandwich_se_loops(values, labels), rel=1e-10
    )


def test_clustered_se_with_singleton_clusters_is_the_classical_sem():
    x = np.random.default_rng(1).normal(size=37)
    assert st.clustered_se(x, np.arange(x.size)) == pytest.approx(sps.sem(x), rel=1e-12)


def test_clustered_se_with_equal_sizes_is_the_sem_of_subject_means():
    rng = np.random.default_rng(2)
    c, m = 15, 6
    x = rng.normal(size=(c, m)) + rng.normal(size=(c, 1))
    codes = np.repeat(np.arange(c), m)
    assert st.clustered_se(x.reshape(-1), codes) == pytest.approx(
        sps.sem(x.mean(axis=1)), rel=1e-12
    )


def test_clustered_se_ignores_item_order_and_empty_subjects():
    rng = np.random.default_rng(3)
    values, labels = _clustered_data(rng, n_clusters=12)
    codes, n = st.cluster_index(labels)
    se = st.clustered_se(values, codes, n)
    perm = rng.permutation(values.size)
    assert st.clustered_se(values[perm], codes[perm], n) == pytest.approx(se, rel=1e-12)
    # Two extra subject codes with no items must not change C.
    assert st.clustered_se(values, codes + 2, n + 2) == pytest.approx(se, rel=1e-12)


def test_clustered_se_degenerate_inputs():
    assert math.isnan(st.clustered_se([0.1, 0.4, 0.2], [0, 0, 0]))  # one subject
    assert math.isnan(st.clustered_se([], []))
    assert math.isnan(st.mean_ci([], [], np.random.default_rng(0)).estimate)
    assert st.clustered_se([0.25] * 6, [0, 0, 1, 1, 2, 2]) == 0.0  # no variance
    with pytest.raises(ValueError):
        st.clustered_se([1.0, 2.0], [0])
    with pytest.raises(ValueError):
        st.clustered_se([1.0, 2.0], [0, 1], n_clusters=1)


# ---------------------------------------------------------------------------------------------
# seed term, total SE
# ---------------------------------------------------------------------------------------------


def test_seed_term_paired_and_unpaired_against_statistics_module():
    u = [0.31, 0.28, 0.35, 0.30]
    d = [0.10, 0.12, 0.05, 0.11]
    deltas = [a - b for a, b in zip(u, d, strict=True)]
    assert st.seed_se2(u, d, paired=True) == pytest.approx(
        statistics.variance(deltas) / len(deltas), rel=1e-12
    )
    d3 = [0.10, 0.12, 0.05]
    assert st.seed_se2(u, d3, paired=False) == pytest.approx(
        statistics.variance(u) / 4 + statistics.variance(d3) / 3, rel=1e-12
    )


def test_seed_term_needs_two_seeds_each_and_paired_needs_equal_counts():
    assert st.seed_se2([0.3], [0.1, 0.2], paired=False) is None
    assert st.seed_se2([0.3, 0.4], [0.1], paired=True) is None
    with pytest.raises(ValueError):
        st.seed_se2([0.3, 0.4, 0.5], [0.1, 0.2], paired=True)


def test_total_se():
    assert st.total_se(0.03, None) == pytest.approx(0.03)
    assert st.total_se(0.03, 0.04**2) == pytest.approx(0.05)


# ---------------------------------------------------------------------------------------------
# Bootstrap machinery
# ---------------------------------------------------------------------------------------------


def test_bootstrap_weights_are_subject_resamples_and_chunking_does_not_change_them():
    c, b = 37, 500
    chunks = list(st.bootstrap_weights(np.random.default_rng(4), c, b))
    w = np.vstack(chunks)
    assert w.shape == (b, c)
    assert np.all(w.sum(axis=1) == c) and np.all(w >= 0)
    assert np.all(w == np.round(w))
    # Each subject is drawn once on average.
    assert abs(w.mean() - 1.0) < 5 * math.sqrt((1 - 1 / c) / (b * c))
    small = 4 * 8 * c * 7  # room for seven rows per chunk (draws, counts, float copy, previous chunk)
    tiny = list(st.bootstrap_weights(np.random.default_rng(4), c, b, max_bytes=small))
    assert len(tiny) == math.ceil(b / 7)
    assert np.array_equal(np.vstack(tiny), w)


def test_bootstrap_weight_chunks_respect_the_memory_bound():
    c, b, budget = 3000, 10_000, 64 * 2**20
    gen = st.bootstrap_weights(np.random.default_rng(0), c, b, max_bytes=budget)
    first = next(gen)
    # int64 draws + their counts + float64 copy + the previous chunk: four chunk-sized arrays.
    assert 4 * first.nbytes <= budget
    assert first.shape[0] < b  # so it really is chunked


def test_bootstrap_ratio_equals_resampling_items_by_subject():
    """Weights on subject sums give exactly what gathering the drawn subjects' items gives."""
    rng = np.random.default_rng(5)
    values, labels = _clustered_data(rng, n_clusters=9)
    codes, c = st.cluster_index(labels)
    sums, counts = st.cluster_sums(values, codes, c)
    b = 40
    reps = st.bootstrap_ratio(sums, counts, np.random.default_rng(6), b)
    w = np.vstack(list(st.bootstrap_weights(np.random.default_rng(6), c, b)))
    for row, got in zip(w, reps, strict=True):
        items: list[float] = []
        for subject, times in enumerate(row.astype(int)):
            items.extend(values[codes == subject].tolist() * times)
        assert got == pytest.approx(statistics.fmean(items), rel=1e-12)


def test_statistics_can_share_one_weight_matrix():
    rng = np.random.default_rng(7)
    num = rng.normal(size=(3, 25))
    den = rng.integers(1, 9, size=(3, 25)).astype(float)
    joint = st.bootstrap_ratio(num, den, np.random.default_rng(8), 300)
    assert joint.shape == (3, 300)
    for k in range(3):
        alone = st.bootstrap_ratio(num[k], den[k], np.random.default_rng(8), 300)
        np.testing.assert_allclose(joint[k], alone, rtol=1e-12)
    # A shared denominator broadcasts.
    shared = st.bootstrap_ratio(num, den[0], np.random.default_rng(8), 300)
    np.testing.assert_allclose(
        shared[2], st.bootstrap_ratio(num[2], den[0], np.random.default_rng(8), 300), rtol=1e-12
    )


def test_bootstrap_spread_matches_the_linearised_clustered_variance():
    """For a ratio of sums, Var*(θ*) ≈ (C−1)/C · SE_cl² (the bootstrap has no C/(C−1))."""
    rng = np.random.default_rng(9)
    values, labels = _clustered_data(rng, n_clusters=40, lo=5, hi=15)
    codes, c = st.cluster_index(labels)
    sums, counts = st.cluster_sums(values, codes, c)
    reps = st.bootstrap_ratio(sums, counts, np.random.default_rng(10), 10_000)
    expected = math.sqrt((c - 1) / c) * st.clustered_se(values, codes, c)
    assert np.std(reps, ddof=1) == pytest.approx(expected, rel=0.05)


def test_jackknife_matches_leaving_each_subject_out():
    rng = np.random.default_rng(11)
    values, labels = _clustered_data(rng, n_clusters=7)
    codes, c = st.cluster_index(labels)
    jk = st.jackknife_ratio(*st.cluster_sums(values, codes, c))
    for subject in range(c):
        assert jk[subject] == pytest.approx(np.mean(values[codes != subject]), rel=1e-12)
    with np.errstate(all="raise"):
        assert math.isnan(st.jackknife_ratio([1.0], [2.0])[0])


def test_ratio_ci_is_bootstrap_ratio_plus_ci_from_replicates():
    rng = np.random.default_rng(12)
    values, labels = _clustered_data(rng, n_clusters=20)
    codes, c = st.cluster_index(labels)
    sums, counts = st.cluster_sums(values, codes, c)
    got = st.mean_ci(values, codes, np.random.default_rng(13), n_clusters=c, B=2000)
    reps = st.bootstrap_ratio(sums, counts, np.random.default_rng(13), 2000)
    want = st.ci_from_replicates(
        values.mean(), reps, "bca", jackknife=st.jackknife_ratio(sums, counts), n_clusters=c
    )
    assert got.method == "bca" and got.B == 2000 and got.n_clusters == c
    for field in ("estimate", "low", "high", "z0", "acceleration"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), rel=1e-9)


# ---------------------------------------------------------------------------------------------
# Intervals against scipy (singleton subjects: subject bootstrap == iid bootstrap)
# ---------------------------------------------------------------------------------------------


def test_percentile_interval_agrees_with_scipy_on_singleton_subjects():
    x = np.random.default_rng(14).gamma(2.0, 1.0, size=60)
    b = 10_000
    ours = st.mean_ci(x, np.arange(x.size), np.random.default_rng(15), B=b)
    assert ours.method == "percentile"  # C = 60 >= 50
    ref = _scipy_bootstrap(x, "percentile", b, seed=16)
    # Both sides carry Monte-Carlo error of about the same size: allow 4 SDs of the difference.
    assert abs(ours.low - ref.low) <= 4 * math.sqrt(2) * ours.mc_error_low
    assert abs(ours.high - ref.high) <= 4 * math.sqrt(2) * ours.mc_error_high
    assert ours.low < x.mean() < ours.high


def test_bca_interval_agrees_with_scipy_on_singleton_subjects():
    x = np.random.default_rng(17).lognormal(0.0, 1.0, size=25)  # skewed: BCa matters
    b = 20_000
    ours = st.mean_ci(x, np.arange(x.size), np.random.default_rng(18), B=b)
    assert ours.method == "bca"  # C = 25 < 50
    ref = _scipy_bootstrap(x, "BCa", b, seed=19)
    tol_low = 4 * math.sqrt(2) * ours.mc_error_low
    tol_high = 4 * math.sqrt(2) * ours.mc_error_high
    assert abs(ours.low - ref.low) <= tol_low
    assert abs(ours.high - ref.high) <= tol_high
    # The comparison has power: a percentile interval would not pass it on these data.
    pct = st.mean_ci(x, np.arange(x.size), np.random.default_rng(18), B=b, method="percentile")
    assert abs(pct.high - ref.high) > tol_high and abs(pct.low - ref.low) > tol_low
    # Acceleration is a property of the data (no Monte-Carlo): Efron's jackknife formula directly.
    loo = np.array([np.mean(np.delete(x, i)) for i in range(x.size)])
    dev = loo.mean() - loo
    assert ours.acceleration == pytest.approx(
        np.sum(dev**3) / (6 * np.sum(dev**2) ** 1.5), rel=1e-9
    )


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_reported_monte_carlo_error_matches_spread_over_reruns(method):
    rng = np.random.default_rng(20)
    sizes = rng.integers(3, 15, size=25)
    codes = np.repeat(np.arange(25), sizes)
    values = rng.lognormal(0.0, 1.0, 25)[codes] + rng.normal(0.0, 0.5, codes.size)
    sums, counts = st.cluster_sums(values, codes)
    runs = [
        st.ratio_ci(sums, counts, np.random.default_rng(1000 + k), B=1000, method=method)
        for k in range(250)
    ]
    for end in ("low", "high"):
        spread = np.std([getattr(r, end) for r in runs], ddof=1)
        reported = np.mean([getattr(r, f"mc_error_{end}") for r in runs])
        # 250 reruns estimate an SD to about ±4.5%; allow ±20%.
        assert 0.8 * spread <= reported <= 1.2 * spread, (end, spread, reported)


# ---------------------------------------------------------------------------------------------
# Determinism and seeding
# ---------------------------------------------------------------------------------------------


def test_same_master_seed_and_cell_give_identical_intervals():
    rng = np.random.default_rng(21)
    values, labels = _clustered_data(rng, n_clusters=18)
    codes, c = st.cluster_index(labels)
    first = st.mean_ci(values, codes, st.cell_rng(2024, "safelora/top10"), n_clusters=c, B=2000)
    again = st.mean_ci(values, codes, st.cell_rng(2024, "safelora/top10"), n_clusters=c, B=2000)
    assert first == again
    other = st.mean_ci(values, codes, st.cell_rng(2024, "safelora/top20"), n_clusters=c, B=2000)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.estimate == first.estimate


def test_cell_rng_streams_differ_by_cell_purpose_and_master_seed():
    draws = {
        key: st.cell_rng(*key).integers(0, 2**63, size=4).tolist()
        for key in [(1, "a"), (1, "b"), (2, "a"), (1, "a", "heldout"), (1, "a", "fresh")]
    }
    assert len({tuple(v) for v in draws.values()}) == len(draws)
    assert st.cell_rng(1, "a", "fresh").random() == st.cell_rng(1, "a", "fresh").random()


def test_cell_rng_follows_the_documented_construction():
    cell = "cell/ü-1"
    h = int.from_bytes(hashlib.sha256(cell.encode("utf-8")).digest()[:8], "big")
    want = np.random.Generator(np.random.PCG64(np.random.SeedSequence([7, h])))
    assert st.cell_rng(7, cell).random(5).tolist() == want.random(5).tolist()
    hp = int.from_bytes(hashlib.sha256(b"transfer").digest()[:8], "big")
    want = np.random.default_rng(np.random.SeedSequence([7, h], spawn_key=(hp,)))
    assert st.cell_rng(7, cell, "transfer").random(5).tolist() == want.random(5).tolist()


def test_cell_rng_is_stable_across_processes():
    code = "from acards.stats import cell_rng; print(cell_rng(99, 'x/y').integers(0, 10**9, 3))"
    outs = set()
    root = Path(__file__).resolve().parents[1]
    for hashseed in ("0", "12345"):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": hashseed},
        )
        outs.add(proc.stdout)
    assert len(outs) == 1
    assert outs.pop().strip() == str(st.cell_rng(99, "x/y").integers(0, 10**9, 3))


def test_cell_rng_rejects_bad_seeds():
    with pytest.raises(ValueError):
        st.cell_rng(-1, "a")
    with pytest.raises(TypeError):
        st.cell_rng(1.5, "a")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Degenerate intervals
# ---------------------------------------------------------------------------------------------


def test_single_subject_gives_estimate_with_nan_endpoints():
    ci = st.mean_ci([0.2, 0.5, 0.1], [0, 0, 0], np.random.default_rng(0))
    assert ci.estimate == pytest.approx(0.8 / 3)
    assert math.isnan(ci.low) and math.isnan(ci.high)
    assert math.isnan(ci.mc_error_low) and ci.B == 0 and ci.n_clusters == 1


@pytest.mark.parametrize("method", ["auto", "percentile", "bca"])
def test_no_spread_between_subjects_gives_nan_endpoints(method):
    # Zero variance; and within-subject variance whose subject means all agree.
    for values in ([0.3] * 8, [0.1, 0.5, 0.2, 0.4, 0.0, 0.6, 0.3, 0.3]):
        ci = st.mean_ci(values, [0, 0, 1, 1, 2, 2, 3, 3], np.random.default_rng(0), method=method)
        assert ci.estimate == pytest.approx(0.3)
        assert math.isnan(ci.low) and math.isnan(ci.high)


def test_non_finite_values_do_not_crash():
    ci = st.mean_ci([0.1, float("nan"), 0.3, 0.2], [0, 1, 2, 3], np.random.default_rng(0))
    assert math.isnan(ci.estimate) and math.isnan(ci.low)


def test_bca_with_every_replicate_on_one_side_is_nan_not_inf():
    ci = st.ci_from_replicates(1.0, np.linspace(1.5, 2.0, 100), "bca", jackknife=[0.9, 1.1, 1.0])
    assert math.isnan(ci.low) and math.isnan(ci.high)
    pct = st.ci_from_replicates(1.0, np.linspace(1.5, 2.0, 100), "percentile")
    assert 1.5 <= pct.low < pct.high <= 2.0


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_two_subjects_are_enough_for_an_interval(method):
    # Subject means 0.05 and 0.95, two items each: replicates can only be 0.05, 0.5 or 0.95, with
    # probabilities 1/4, 1/2, 1/4; the data are symmetric, so z0 ≈ 0 and a = 0, and the 95%
    # interval runs from the smallest to the largest possible replicate.
    ci = st.mean_ci(
        [0.0, 0.1, 1.0, 0.9], [0, 0, 1, 1], np.random.default_rng(1), B=4000, method=method
    )
    assert ci.estimate == pytest.approx(0.5)
    assert ci.low == pytest.approx(0.05) and ci.high == pytest.approx(0.95)
    if method == "bca":
        assert ci.acceleration == pytest.approx(0.0, abs=1e-12)
        assert abs(ci.z0) < 0.1


def test_as_dict_is_plain():
    ci = st.mean_ci([0.1, 0.2, 0.4, 0.3], [0, 1, 2, 3], np.random.default_rng(2), B=200)
    d = ci.as_dict()
    assert set(d) >= {"estimate", "low", "high", "method", "B", "mc_error_low", "mc_error_high"}
    assert all(isinstance(d[k], float) for k in ("estimate", "low", "high", "mc_error_low"))


# ---------------------------------------------------------------------------------------------
# Holm, p-values, MDE
# ---------------------------------------------------------------------------------------------


def _holm_by_closed_testing(p: list[float]) -> list[float]:
    """Closed testing with Bonferroni local tests: p̃_i = max over J ∋ i of min(1, |J|·min_J p)."""
    m = len(p)
    out = []
    for i in range(m):
        worst = 0.0
        for size in range(1, m + 1):
            for subset in itertools.combinations(range(m), size):
                if i in subset:
                    worst = max(worst, min(1.0, size * min(p[j] for j in subset)))
        out.append(worst)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_holm_equals_closed_testing_brute_force(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 8))
    p = rng.uniform(0, 0.3, m) ** 2
    if m > 2:
        p[1] = p[0]  # ties
        p[-1] = 0.97
    got = st.holm(p)
    np.testing.assert_allclose(got, _holm_by_closed_testing(p.tolist()), rtol=1e-12)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(got[order]) >= 0) and np.all(got <= 1) and np.all(got >= p)


def test_holm_keeps_nan_out_of_the_family():
    got = st.holm([0.01, float("nan"), 0.04])
    np.testing.assert_allclose(got[[0, 2]], _holm_by_closed_testing([0.01, 0.04]))
    assert math.isnan(got[1])
    assert st.holm([]).shape == (0,)
    with pytest.raises(ValueError):
        st.holm([0.5, 1.2])


def test_normal_pvalue_and_mde_against_scipy_norm():
    assert st.normal_pvalue(0.05, 0.02) == pytest.approx(2 * sps.norm.sf(2.5), rel=1e-12)
    assert st.normal_pvalue(-0.05, 0.02) == pytest.approx(2 * sps.norm.sf(2.5), rel=1e-12)
    assert st.normal_pvalue(0.0, 0.02) == pytest.approx(1.0)
    assert math.isnan(st.normal_pvalue(0.1, 0.0))
    assert math.isnan(st.normal_pvalue(0.1, float("nan")))
    assert st.mde(0.02) == pytest.approx(
        (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * 0.02, rel=1e-12
    )
    assert st.mde(1.0, alpha=0.01, power=0.9) == pytest.approx(
        sps.norm.isf(0.005) + sps.norm.ppf(0.9), rel=1e-12
    )


# ---------------------------------------------------------------------------------------------
# Calibration against known truth
# ---------------------------------------------------------------------------------------------

TRUE_DELTA = 0.05
CELLS = 8000  # per number of subjects
GROUP = 250  # cells that share one weight matrix
B_CALIBRATION = 2000  # smaller than the default 10,000 to keep the run short
BAND = (0.935, 0.965)


def _coverage(n_subjects: int, seed: int) -> dict[str, float]:
    """Coverage of the 95% intervals over CELLS simulated cells with known Δ.

    d_i = Δ + u_subject + e_i, u ~ N(0, 0.1²), e ~ N(0, 0.3²), 5–40 items per subject.  To keep the
    run short, the GROUP cells of a group share one weight matrix (the K-statistic path of
    bootstrap_ratio); cells are independent, so coverage across them is an honest estimate, and
    each group draws its own matrix from cell_rng.
    """
    rng = np.random.default_rng(seed)
    c = n_subjects
    z_crit, t_crit = sps.norm.ppf(0.975), sps.t.ppf(0.975, c - 1)
    hits = {"wald": 0, "wald_t": 0, "auto": 0, "percentile": 0, "bca": 0}
    for g in range(CELLS // GROUP):
        nums, dens, ests = [], [], []
        for _ in range(GROUP):
            sizes = rng.integers(5, 41, size=c)
            codes = np.repeat(np.arange(c), sizes)
            d = TRUE_DELTA + rng.normal(0.0, 0.1, c)[codes] + rng.normal(0.0, 0.3, codes.size)
            est, se = d.mean(), st.clustered_se(d, codes, c)
            hits["wald"] += abs(est - TRUE_DELTA) <= z_crit * se
            hits["wald_t"] += abs(est - TRUE_DELTA) <= t_crit * se
            s, n = st.cluster_sums(d, codes, c)
            nums.append(s)
            dens.append(n)
            ests.append(est)
        reps = st.bootstrap_ratio(
            np.array(nums),
            np.array(dens),
            st.cell_rng(seed, f"calibration/C{c}/{g}"),
            B_CALIBRATION,
        )
        auto = "percentile" if c >= st.PERCENTILE_MIN_CLUSTERS else "bca"
        for s, n, est, r in zip(nums, dens, ests, reps, strict=True):
            jk = st.jackknife_ratio(s, n)
            for method in ("percentile", "bca"):
                ci = st.ci_from_replicates(est, r, method, jackknife=jk)
                covered = ci.low <= TRUE_DELTA <= ci.high
                hits[method] += covered
                hits["auto"] += covered and method == auto
    return {k: v / CELLS for k, v in hits.items()}


@pytest.mark.slow
def test_calibration_of_wald_and_bootstrap_intervals():
    """95% intervals cover a known Δ in 93.5–96.5% of cells (8,000 cells per C, B = 2,000).

    - C = 60 and C = 200: Δ ± 1.96·SE_cl and the default ("auto" = percentile) interval.
    - C = 200: BCa as well (forced; its default path is C < 50, see below).
    - C = 20 (BCa path): Δ ± t_{C−1}·SE_cl must be in the band.  The z-based intervals at C = 20
      are known to undercover (about 92–93% in long runs): the t_{19} vs z quantile alone costs
      ~1.5 points, unequal subject sizes lower the effective degrees of freedom further, and the
      bootstrap variance lacks the C/(C−1) factor (it is ≈ (C−1)/C·SE_cl²).  Those are only
      guarded against gross failure (≥ 90%) here.
    """
    cov = {c: _coverage(c, seed=100 + c) for c in (20, 60, 200)}
    lo, hi = BAND
    for c in (60, 200):
        assert lo <= cov[c]["wald"] <= hi, (c, cov[c])
        assert lo <= cov[c]["auto"] <= hi, (c, cov[c])
    assert lo <= cov[200]["bca"] <= hi, cov[200]
    assert lo <= cov[20]["wald_t"] <= hi, cov[20]
    assert 0.90 <= cov[20]["wald"] <= hi, cov[20]
    assert 0.90 <= cov[20]["auto"] <= hi, cov[20]
