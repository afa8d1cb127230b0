"""Clustered estimators, the subject bootstrap, and the small tests that Acceptance Cards need.

Everything here is a pure function over numpy arrays: no I/O, no global random state.  Randomness
only comes from an explicit ``numpy.random.Generator``; :func:`cell_rng` derives one per cell (and
per purpose) from the audit's master seed, so that every number is reproducible in any process.

Items cluster by subject, so every uncertainty below treats subjects, not items, as the unit of independence (SPEC §2–§3).

API
---
``cluster_index(labels) -> (codes, n_clusters)``
    Integer subject codes 0..C-1 for any array of labels.
``cluster_sums(values, codes, n_clusters=None) -> (sums, counts)``
    Per-subject sum and item count; the sufficient statistics of a mean under subject resampling.
``clustered_se(values, codes, n_clusters=None) -> float``
    SE of the item mean with subjects as clusters (Miller 2024, with the C/(C-1) factor).
``seed_se2(per_seed_u, per_seed_d, paired) -> float | None``
    The seed-variance term added to SE² when U and D each have at least two seeds.
``total_se(se_cl, seed_term) -> float``
    sqrt(SE_cl² + seed term); the seed term may be ``None`` (not available).
``seed_spread(values, codes, n_clusters=None) -> SeedSpread | None``
    Standard 1.1: spread of per-seed means, and the part sampling noise explains (seed component).
``bootstrap_weights(rng, n_clusters, B, max_bytes=...) -> Iterator[ndarray]``
    Row chunks of the B×C multinomial weight matrix of the subject bootstrap.
``bootstrap_ratio(numerators, denominators, rng, B, max_bytes=...) -> ndarray``
    Replicates of one or more ratios of per-subject sums, all on one shared weight matrix.
``jackknife_ratio(numerators, denominators) -> ndarray``
    Leave-one-subject-out values of a ratio of sums, in closed form.
``ci_from_replicates(estimate, replicates, method, level=0.95, jackknife=None, ...) -> BootstrapCI``
    Percentile or BCa interval, with Monte-Carlo errors of the endpoints (standard 1.1,
    ``atoms=True``: never 0 on lumpy replicates).
``ratio_ci(numerators, denominators, rng, B=10_000, level=0.95, method="auto", ...) -> BootstrapCI``
    Subject-bootstrap interval of sum(numerators)/sum(denominators).
``mean_ci(values, codes, rng, ...) -> BootstrapCI``
    Subject-bootstrap interval of the item mean (the SPEC §3 confirmation of Δ).
``holm(pvalues) -> ndarray``
    Holm step-down adjusted p-values (monotone, capped at 1; NaN stays NaN and is not counted).
``normal_pvalue(estimate, se) -> float``
    Two-sided p-value of estimate/se against a standard normal.
``mde(se, alpha=0.05, power=0.8) -> float``
    Minimum detectable effect (z_{1-α/2} + z_power)·se.
``cell_rng(master_seed, cell_id, purpose=None) -> Generator``
    A generator seeded from (master seed, sha256 of the cell id[, sha256 of the purpose]).

Conventions: "auto" picks the percentile interval when C >= 50 subjects and BCa otherwise (SPEC §3).
Degenerate inputs (fewer than two subjects, no spread between subject means, non-finite values)
give NaN endpoints with the point estimate and never raise warnings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from acards.distributions import log_ndtr, ndtr, ndtri  # not scipy.special: its import costs more than a validate

__all__ = [
    "DEFAULT_MAX_BYTES",
    "PERCENTILE_MIN_CLUSTERS",
    "BootstrapCI",
    "SeedSpread",
    "bootstrap_ratio",
    "bootstrap_weights",
    "cell_rng",
    "ci_from_replicates",
    "cluster_index",
    "cluster_sums",
    "clustered_se",
    "holm",
    "jackknife_ratio",
    "mde",
    "mean_ci",
    "normal_pvalue",
    "ratio_ci",
    "seed_se2",
    "seed_spread",
    "total_se",
]

#: Upper bound on the memory that bootstrap weight chunks may hold at once.
DEFAULT_MAX_BYTES = 64 * 2**20
#: SPEC §3: percentile interval from this many subjects on, BCa below.
PERCENTILE_MIN_CLUSTERS = 50

Method = Literal["percentile", "bca"]


def _norm_pdf(x: ArrayLike) -> np.ndarray:
    """Standard normal density φ."""
    x = np.asarray(x, dtype=float)
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


# --------------------------------------------------------------------------------------------
# Clusters and the analytic clustered SE
# --------------------------------------------------------------------------------------------


def cluster_index(labels: ArrayLike) -> tuple[np.ndarray, int]:
    """Map subject labels to codes 0..C-1 (sorted label order), so sums can use ``bincount``."""
    uniques, codes = np.unique(np.asarray(labels), return_inverse=True)
    return codes.reshape(-1).astype(np.intp, copy=False), int(uniques.size)


def cluster_sums(
    values: ArrayLike, codes: ArrayLike, n_clusters: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject sums and item counts.

    These two vectors are all that the clustered SE, the jackknife and the subject bootstrap of a
    mean need, which is why resampling never has to touch individual items.
    """
    v = np.asarray(values, dtype=float).reshape(-1)
    c = np.asarray(codes).reshape(-1)
    if v.shape != c.shape:
        raise ValueError(f"values and codes differ in length ({v.size} vs {c.size})")
    if not c.size:
        c = c.astype(np.intp)
    elif not np.issubdtype(c.dtype, np.integer) or c.min() < 0:
        raise ValueError("codes must be non-negative integers (see cluster_index)")
    k = int(c.max()) + 1 if c.size else 0
    if n_clusters is None:
        n_clusters = k
    elif n_clusters < k:
        raise ValueError(f"n_clusters={n_clusters} but codes go up to {k - 1}")
    sums = np.bincount(c, weights=v, minlength=n_clusters).astype(float)
    counts = np.bincount(c, minlength=n_clusters).astype(float)
    return sums, counts


def clustered_se(values: ArrayLike, codes: ArrayLike, n_clusters: int | None = None) -> float:
    """SE of the item mean with subjects as clusters (SPEC §3, Miller 2024).

    ``SE_cl = (1/n)·sqrt(C/(C-1)·Σ_c (Σ_{i∈c}(d_i - d̄))²)``.  Subjects with no items do not count
    toward C.  Items within a subject are correlated, so the item-level SE would be too small.
    Returns NaN when fewer than two subjects have items (the spread between subjects is unknown).
    """
    sums, counts = cluster_sums(values, codes, n_clusters)
    keep = counts > 0
    sums, counts = sums[keep], counts[keep]
    c = sums.size
    if c < 2:
        return float("nan")
    n = counts.sum()
    mean = sums.sum() / n
    resid = sums - counts * mean  # Σ_{i∈c} (d_i − d̄)
    return float(np.sqrt(c / (c - 1) * np.dot(resid, resid)) / n)


def seed_se2(per_seed_u: ArrayLike, per_seed_d: ArrayLike, paired: bool) -> float | None:
    """Seed-variance term of SE_tot² (SPEC §3), or ``None`` when it cannot be estimated.

    A fine-tune is one draw from the training-seed distribution, so the reduction carries seed
    noise that item resampling cannot see.  Inputs are per-seed installed gaps of U and D.
    Paired seeds (U and D trained from the same seeds, same order): s²(U_s − D_s)/S.
    Unpaired: s_U²/S_U + s_D²/S_D.  Sample variances use ddof=1.  ``None`` when either
    condition has fewer than two seeds.
    """
    u = np.asarray(per_seed_u, dtype=float).reshape(-1)
    d = np.asarray(per_seed_d, dtype=float).reshape(-1)
    if u.size < 2 or d.size < 2:
        return None
    if paired:
        if u.size != d.size:
            raise ValueError(f"paired seeds need equal counts (U has {u.size}, D has {d.size})")
        delta = u - d
        return float(np.var(delta, ddof=1) / delta.size)
    return float(np.var(u, ddof=1) / u.size + np.var(d, ddof=1) / d.size)


def total_se(se_cl: float, seed_term: float | None) -> float:
    """``sqrt(SE_cl² + seed term)``; a ``None`` seed term means seed variance is not included."""
    extra = 0.0 if seed_term is None else float(seed_term)
    return float(np.sqrt(float(se_cl) ** 2 + extra))


@dataclass(frozen=True)
class SeedSpread:
    """Standard 1.1 (SPEC §10.2): the spread (s², ddof=1) of S per-seed means, and ``noise``, what
    within-seed sampling noise alone explains of it."""

    n_seeds: int
    spread: float
    noise: float

    @property
    def component(self) -> float:
        """The seed variance component by the method of moments: spread − noise, truncated at 0."""
        return max(0.0, float(self.spread - self.noise))


def seed_spread(values: ArrayLike, codes: ArrayLike, n_clusters: int | None = None) -> SeedSpread | None:
    """Split the spread of per-seed item means ``values`` (S × n) by the method of moments.

    With per-seed subject sums M_sc (n_c items, n in all, w_c = n_c/n), the seed means Δ_s have
    E[s²] = σ²_seed + V/n², V = Σ_c v_c the per-seed noise variance of the sums.  The residuals
    R_sc = M_sc − M̄_c − n_c·(Δ_s − Δ̄) hold no seed or subject effect and q_c = Σ_s R_sc²/(S − 1)
    has mean v_c·(1 − 2w_c) + w_c²·V, so V̂ = Σ q_c/(1 − 2w_c) / (1 + Σ w_c²/(1 − 2w_c)) is
    unbiased (Σ q_c/(1 − Σ w_c²) when a subject holds half the items); ``noise`` = V̂/n².  One
    item per subject, equal sizes: the two-way ANOVA (MS_seed − MS_residual)/C.  ``None`` with
    fewer than two seeds or no items; NaN noise with one subject.
    """
    v = np.asarray(values, dtype=float)
    c = np.asarray(codes).reshape(-1)
    if v.ndim != 2 or v.shape[0] < 2 or v.shape[1] == 0:
        return None
    seeds, n_items = v.shape
    if c.size != n_items:
        raise ValueError(f"values have {n_items} items but codes {c.size}")
    k = int(c.max()) + 1 if n_clusters is None else int(n_clusters)
    flat = (np.arange(seeds)[:, None] * k + c[None, :]).ravel()
    sums = np.bincount(flat, weights=v.ravel(), minlength=seeds * k).reshape(seeds, k)
    counts = np.bincount(c, minlength=k).astype(float)
    sums, counts = sums[:, counts > 0], counts[counts > 0]
    n = counts.sum()
    means = sums.sum(axis=1) / n
    spread = float(np.var(means, ddof=1))
    resid = sums - sums.mean(axis=0) - np.outer(means - means.mean(), counts)
    q = np.einsum("sc,sc->c", resid, resid) / (seeds - 1)
    w = counts / n
    if counts.size < 2:
        return SeedSpread(seeds, spread, float("nan"))
    if np.all(w < 0.5):
        total = float(np.sum(q / (1.0 - 2.0 * w)) / (1.0 + np.sum(w * w / (1.0 - 2.0 * w))))
    else:
        total = float(q.sum() / (1.0 - np.dot(w, w)))
    return SeedSpread(seeds, spread, total / (n * n))


# --------------------------------------------------------------------------------------------
# Subject bootstrap with multinomial weights
# --------------------------------------------------------------------------------------------


def bootstrap_weights(
    rng: np.random.Generator, n_clusters: int, B: int, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[np.ndarray]:
    """Yield the B×C subject-bootstrap weight matrix in row chunks (float64).

    Row b counts how often each subject is drawn when C subjects are drawn with replacement,
    i.e. a Multinomial(C, [1/C]*C) row, built by counting C uniform draws per row (the same
    distribution as ``rng.multinomial``, several times faster).  Weighting per-subject sums is the
    same as resampling whole subjects, without ever gathering items.  Chunks are sized so that
    the draws, their counts, the float64 copy and the previous chunk stay under ``max_bytes``, and
    to at most 2**16 cells, so that the matrix products on them stay in cache and off BLAS
    threads; draws are made in order, so the chunk size does not change the weights.
    """
    if n_clusters < 1 or B < 1:
        raise ValueError("need n_clusters >= 1 and B >= 1")
    rows = max(1, min(int(max_bytes) // (32 * n_clusters), 2**16 // n_clusters))
    done = 0
    while done < B:
        k = min(rows, B - done)
        draws = rng.integers(0, n_clusters, size=(k, n_clusters))
        draws += n_clusters * np.arange(k)[:, None]
        yield np.bincount(draws.ravel(), minlength=k * n_clusters).reshape(k, n_clusters).astype(np.float64)
        done += k


def bootstrap_ratio(
    numerators: ArrayLike,
    denominators: ArrayLike,
    rng: np.random.Generator,
    B: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> np.ndarray:
    """Subject-bootstrap replicates of ``Σ_c num_c / Σ_c den_c`` (shape ``(..., B)``).

    ``numerators``/``denominators`` are per-subject sums of shape (C,) or (K, C); the K ratios
    share one weight matrix, so statistics on the same subjects (Δ, G_U, ρ = Δ/G_U, …) are
    resampled jointly.  A mean is the ratio (Σ values)/(Σ counts).  A replicate whose weighted
    denominator is 0 is NaN.
    """
    num = np.asarray(numerators, dtype=float)
    den = np.asarray(denominators, dtype=float)
    num, den = np.broadcast_arrays(num, den)
    one = num.ndim == 1
    num2 = np.atleast_2d(num)
    den2 = np.atleast_2d(den)
    if num2.ndim != 2:
        raise ValueError("numerators must have shape (C,) or (K, C)")
    k, c = num2.shape
    top = np.empty((k, B))
    bottom = np.empty((k, B))
    start = 0
    for w in bootstrap_weights(rng, c, B, max_bytes):
        stop = start + w.shape[0]
        top[:, start:stop] = (w @ num2.T).T  # (rows, C) @ (C, K): no copy of w
        bottom[:, start:stop] = (w @ den2.T).T
        start = stop
        del w  # let the next chunk reuse the memory
    out = np.full((k, B), np.nan)
    np.divide(top, bottom, out=out, where=bottom != 0)
    return out[0] if one else out


def jackknife_ratio(numerators: ArrayLike, denominators: ArrayLike) -> np.ndarray:
    """Leave-one-subject-out values ``(S − S_c)/(N − n_c)`` of a ratio of sums (NaN if N = n_c).

    Closed form, O(C): BCa's acceleration needs these and nothing else.
    """
    num = np.asarray(numerators, dtype=float).reshape(-1)
    den = np.asarray(denominators, dtype=float).reshape(-1)
    top = num.sum() - num
    bottom = den.sum() - den
    out = np.full(num.shape, np.nan)
    np.divide(top, bottom, out=out, where=bottom != 0)
    return out


@dataclass(frozen=True)
class BootstrapCI:
    """A bootstrap confidence interval and what is needed to judge it.

    ``mc_error_low``/``mc_error_high`` estimate the Monte-Carlo standard deviation of each endpoint
    (see :func:`ci_from_replicates`).  ``B`` is the number of replicates actually drawn (0 when the
    interval was undefined before resampling).  ``z0``/``acceleration`` are set for BCa only.
    """

    estimate: float
    low: float
    high: float
    method: Method
    level: float
    B: int
    n_clusters: int
    mc_error_low: float
    mc_error_high: float
    z0: float | None = None
    acceleration: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain dict for JSON reports."""
        return asdict(self)


def _nan_ci(estimate: float, method: Method, level: float, B: int, n_clusters: int) -> BootstrapCI:
    nan = float("nan")
    return BootstrapCI(float(estimate), nan, nan, method, level, B, n_clusters, nan, nan)


def _endpoint_mc(
    reps_sorted: np.ndarray, p: float, z0_gain: float = 0.0, p0: float = 0.5, atoms: bool = False
) -> tuple[float, float]:
    """Endpoint at probability p and its Monte-Carlo SD (see :func:`ci_from_replicates`)."""
    b = reps_sorted.size
    value = float(np.quantile(reps_sorted, p))
    if atoms:
        g = z0_gain
        var_p = (p * (1.0 - p) + g * g * p0 * (1.0 - p0) - 2.0 * g * (min(p, p0) - p * p0)) / b
        return value, _atom_sd(reps_sorted, p, float(np.sqrt(max(var_p, 0.0))))
    half = np.sqrt(p * (1.0 - p) / b)
    if half == 0.0:
        return value, 0.0
    lo = float(np.quantile(reps_sorted, max(0.0, p - half)))
    hi = float(np.quantile(reps_sorted, min(1.0, p + half)))
    slope = (hi - lo) / (2.0 * half)  # d endpoint / d p, i.e. 1/density at the endpoint
    g = z0_gain
    var_p = (p * (1.0 - p) + g * g * p0 * (1.0 - p0) - 2.0 * g * (min(p, p0) - p * p0)) / b
    return value, float(slope * np.sqrt(max(var_p, 0.0)))


def _atom_sd(reps_sorted: np.ndarray, p: float, sd_p: float) -> float:
    """Monte-Carlo SD of the p-quantile of B replicates over reruns, from their distinct values x_j:
    the rerun quantile is at most x_j with probability Φ((F̂(x_j) − p)/sd_p).  Smooth replicates:
    the rank-spread estimate; lumpy ones: the jumps to neighbouring values, where the rank spread
    sees a flat step and says 0.  Never 0 with two or more values (0 would say the end never moves).
    """
    values, counts = np.unique(reps_sorted, return_counts=True)
    if values.size < 2:
        return 0.0
    cdf = np.cumsum(counts) / reps_sorted.size
    if not sd_p > 0.0:
        return float(np.finfo(float).tiny)
    at_most = ndtr((cdf - p) / sd_p)
    at_most[-1] = 1.0
    probs = np.diff(at_most, prepend=0.0)
    mean = float(probs @ values)
    sd = float(np.sqrt(probs @ (values - mean) ** 2))
    if sd > 0.0:
        return sd
    # far in the tails ndtr underflows: the jumps to the nearest values, in log space
    j = int(np.searchsorted(cdf, p))  # the value the quantile sits on
    logs = [log_ndtr((cdf[j - 1] - p) / sd_p) + 2.0 * np.log(values[j] - values[j - 1])] if j > 0 else []
    if j + 1 < values.size:
        logs.append(log_ndtr((p - cdf[j]) / sd_p) + 2.0 * np.log(values[j + 1] - values[j]))
    return max(float(np.exp(0.5 * max(logs))), float(np.finfo(float).tiny))


def ci_from_replicates(
    estimate: float,
    replicates: ArrayLike,
    method: Method,
    level: float = 0.95,
    jackknife: ArrayLike | None = None,
    n_clusters: int | None = None,
    atoms: bool = False,
) -> BootstrapCI:
    """Percentile or BCa interval from bootstrap replicates of ``estimate``.

    BCa (Efron 1987) adjusts the percentile levels for median bias,
    ``z0 = Φ⁻¹(#{θ* < θ̂}/B + ½·#{θ* = θ̂}/B)``, and for skewness via the acceleration
    ``a = Σ(θ̄ − θ_(−c))³ / (6·(Σ(θ̄ − θ_(−c))²)^{3/2})`` from the leave-one-subject-out
    ``jackknife`` values θ_(−c) (θ̄ their mean).  Endpoints use linear interpolation between
    order statistics (numpy's and scipy's default).

    Monte-Carlo error (SD over bootstrap reruns) of an endpoint at probability p: the number of
    replicates below the true p-quantile of the bootstrap distribution is Binomial(B, p), so the
    endpoint's rank has SD sqrt(B·p·(1−p)), and half the distance between the replicates at ranks
    B·p ± sqrt(B·p·(1−p)) estimates the endpoint's SD (distribution-free; this is the whole error
    of a percentile endpoint).  For BCa, z0 is itself estimated from the same replicates and
    moves p; by the delta method the endpoint error is (g·X₀ − X_p)/f with X = F̂ − F at θ̂ and at
    the endpoint, f the bootstrap density there and g = (dp/dz0)/φ(z0), dp/dz0 =
    φ(Φ⁻¹(p))·(1 + 1/(1 − a·(z0 + z))²).  Its variance uses Cov(X₀, X_p) =
    (min(p, p₀) − p·p₀)/B, with p₀ the share below θ̂; 1/f comes from the same rank spread.  The
    jackknife acceleration has no Monte-Carlo error.  With ``atoms`` (standard 1.1) the endpoint's
    error comes from the distribution of the replicates' distinct values instead (see
    :func:`_atom_sd`), with the same variance of the effective probability.

    NaN endpoints when the replicates are not all finite, have no spread, or put every replicate
    on one side of the estimate (z0 infinite), or when BCa's level map breaks down
    (1 − a·(z0 + z) ≤ 0).
    """
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', not {method!r}")
    if not 0.0 < level < 1.0:
        raise ValueError("level must lie in (0, 1)")
    reps = np.sort(np.asarray(replicates, dtype=float).reshape(-1))
    b = reps.size
    c = (
        int(n_clusters)
        if n_clusters is not None
        else (int(np.asarray(jackknife).size) if jackknife is not None else 0)
    )
    est = float(estimate)
    if b == 0 or not np.isfinite(est) or not np.all(np.isfinite(reps)) or reps[0] == reps[-1]:
        return _nan_ci(est, method, level, b, c)
    tails = np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    z0 = a = None
    probs, gains, share = tails, np.zeros(2), 0.5  # percentile: p fixed, nothing else is noisy
    if method == "bca":
        if jackknife is None:
            raise ValueError("BCa needs the jackknife values")
        jk = np.asarray(jackknife, dtype=float).reshape(-1)
        if jk.size < 2 or not np.all(np.isfinite(jk)):
            return _nan_ci(est, method, level, b, c)
        share = (np.count_nonzero(reps < est) + 0.5 * np.count_nonzero(reps == est)) / b
        if share <= 0.0 or share >= 1.0:
            return _nan_ci(est, method, level, b, c)
        z0 = float(ndtri(share))
        dev = jk.mean() - jk
        ss = float(np.dot(dev, dev))
        a = float(np.sum(dev**3) / (6.0 * ss**1.5)) if ss > 0.0 else 0.0
        zt = ndtri(tails)
        denom = 1.0 - a * (z0 + zt)
        if np.any(denom <= 0.0):
            nan = float("nan")
            return BootstrapCI(est, nan, nan, method, level, b, c, nan, nan, z0, a)
        probs = ndtr(z0 + (z0 + zt) / denom)
        gains = _norm_pdf(ndtri(probs)) * (1.0 + 1.0 / denom**2) / _norm_pdf(z0)
    low, mc_low = _endpoint_mc(reps, float(probs[0]), float(gains[0]), share, atoms)
    high, mc_high = _endpoint_mc(reps, float(probs[1]), float(gains[1]), share, atoms)
    return BootstrapCI(est, low, high, method, level, b, c, mc_low, mc_high, z0, a)


def ratio_ci(
    numerators: ArrayLike,
    denominators: ArrayLike,
    rng: np.random.Generator,
    B: int = 10_000,
    level: float = 0.95,
    method: Literal["auto", "percentile", "bca"] = "auto",
    percentile_min_clusters: int = PERCENTILE_MIN_CLUSTERS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    atoms: bool = False,
) -> BootstrapCI:
    """Subject-bootstrap interval of ``Σ num_c / Σ den_c`` from per-subject sums (SPEC §3).

    ``method="auto"``: percentile when C >= ``percentile_min_clusters`` (50), BCa otherwise; BCa's
    acceleration uses the closed-form leave-one-subject-out jackknife.  Subjects with a zero
    denominator (no items) are dropped first.  With fewer than two subjects, or when every subject
    has the same ratio (no spread to resample), the estimate comes back with NaN endpoints and
    nothing is drawn from ``rng``.
    """
    num = np.asarray(numerators, dtype=float).reshape(-1)
    den = np.asarray(denominators, dtype=float).reshape(-1)
    if num.shape != den.shape:
        raise ValueError("numerators and denominators differ in length")
    keep = den != 0
    num, den = num[keep], den[keep]
    c = int(num.size)
    if method == "auto":
        chosen: Method = "percentile" if c >= percentile_min_clusters else "bca"
    elif method in ("percentile", "bca"):
        chosen = method
    else:
        raise ValueError(f"method must be 'auto', 'percentile' or 'bca', not {method!r}")
    total = den.sum()
    if c == 0 or total == 0 or not (np.all(np.isfinite(num)) and np.all(np.isfinite(den))):
        return _nan_ci(float("nan"), chosen, level, 0, c)
    est = float(num.sum() / total)
    per = num / den
    scale = float(np.max(np.abs(per)))
    if c < 2 or float(np.max(np.abs(per - est))) <= 1e-12 * scale:
        return _nan_ci(est, chosen, level, 0, c)
    reps = bootstrap_ratio(num, den, rng, B, max_bytes)
    jk = jackknife_ratio(num, den) if chosen == "bca" else None
    return ci_from_replicates(est, reps, chosen, level, jackknife=jk, n_clusters=c, atoms=atoms)


def mean_ci(
    values: ArrayLike,
    codes: ArrayLike,
    rng: np.random.Generator,
    n_clusters: int | None = None,
    B: int = 10_000,
    level: float = 0.95,
    method: Literal["auto", "percentile", "bca"] = "auto",
    percentile_min_clusters: int = PERCENTILE_MIN_CLUSTERS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    atoms: bool = False,
) -> BootstrapCI:
    """Subject-bootstrap interval of the item mean (e.g. Δ = mean d_i); see :func:`ratio_ci`."""
    sums, counts = cluster_sums(values, codes, n_clusters)
    return ratio_ci(sums, counts, rng, B=B, level=level, method=method,
                    percentile_min_clusters=percentile_min_clusters, max_bytes=max_bytes, atoms=atoms)


# --------------------------------------------------------------------------------------------
# Tests, power, seeds
# --------------------------------------------------------------------------------------------


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order.

    ``p̃_(j) = max_{k≤j} min(1, (m − k + 1)·p_(k))`` over the m non-NaN p-values; it controls the
    family-wise error across a card's cells without assuming independence.  NaN stays NaN and does
    not count toward m.
    """
    p = np.asarray(pvalues, dtype=float)
    flat = p.reshape(-1)
    ok = ~np.isnan(flat)
    if np.any((flat[ok] < 0.0) | (flat[ok] > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(flat.shape, np.nan)
    idx = np.flatnonzero(ok)
    m = idx.size
    if m:
        order = idx[np.argsort(flat[idx], kind="stable")]
        scaled = (m - np.arange(m)) * flat[order]
        out[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return out.reshape(p.shape)


def normal_pvalue(estimate: float, se: float) -> float:
    """Two-sided p-value ``2·Φ(−|estimate/se|)``; NaN when se is not a positive finite number."""
    est, s = float(estimate), float(se)
    if not (np.isfinite(est) and np.isfinite(s) and s > 0.0):
        return float("nan")
    return float(2.0 * ndtr(-abs(est / s)))


def mde(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect ``(z_{1−α/2} + z_power)·se`` of a two-sided level-α z-test.

    Reported next to a non-significant reduction so it is not read as "no effect" (SPEC §3).
    """
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError("alpha and power must lie in (0, 1)")
    return float((ndtri(1.0 - alpha / 2.0) + ndtri(power)) * float(se))


def _label_int(text: str) -> int:
    """First 8 bytes of sha256(text, UTF-8) as a big-endian unsigned int (stable everywhere)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def cell_rng(master_seed: int, cell_id: str, purpose: str | None = None) -> np.random.Generator:
    """Generator for one cell: ``SeedSequence(entropy=(master_seed, h(cell_id)))``.

    ``h`` is the first 8 bytes of sha256 (big-endian), never Python's salted ``hash()``, so a cell
    gets the same stream in every process and cells do not depend on their order in the card.
    ``purpose`` (e.g. ``"heldout"``, ``"fresh"``) becomes the spawn key ``(h(purpose),)``, giving
    each statistic of a cell its own independent, deterministic stream.
    """
    if isinstance(master_seed, bool) or not isinstance(master_seed, (int, np.integer)):
        raise TypeError("master_seed must be an int")
    if master_seed < 0:
        raise ValueError("master_seed must be non-negative")
    spawn_key = () if purpose is None else (_label_int(purpose),)
    seq = np.random.SeedSequence(
        entropy=(int(master_seed), _label_int(cell_id)), spawn_key=spawn_key
    )
    return np.random.default_rng(seq)
