"""Threshold-free statistics of a paired comparison, and the making of a diagnostic's result."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from acards import stats
from acards.diagnostics import critical
from acards.numbers import fixed
from acards.report.model import Diagnostic, Reason


def number(value) -> float | None:
    """A JSON-ready float: None for nan, inf and missing values."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def reason(code: str, message: str) -> Reason:
    return Reason(code=code, message=message)


def has_reason(reasons: list[Reason], code: str) -> bool:
    return any(r.code == code for r in reasons)


def result(outcome: str, reasons: list[Reason], estimates: dict, thresholds: dict, details: dict | None = None) -> Diagnostic:
    """A diagnostic's result: floats made JSON-ready (nan and inf become None), the thresholds
    without their justification (the card keeps it), details always present."""
    return Diagnostic(
        outcome=outcome,
        reasons=reasons,
        estimates={k: number(v) if isinstance(v, (float, np.floating)) else v for k, v in estimates.items()},
        thresholds={k: v for k, v in thresholds.items() if k != "justification"},
        details=details or {},
    )


@dataclass
class FramingMeans:
    """One condition's mean score under each framing over a comparison's items (seed-averaged per
    item), with subject-clustered SEs: what lies behind its gap, audit − deploy."""

    audit: float
    se_audit: float
    deploy: float
    se_deploy: float


def framing_means(audit: np.ndarray, deploy: np.ndarray, subjects: np.ndarray) -> FramingMeans:
    """:class:`FramingMeans` of per-seed item scores ``audit`` and ``deploy`` (S × n, complete items only)."""
    if not audit.shape[1]:
        return FramingMeans(math.nan, math.nan, math.nan, math.nan)
    codes, n_clusters = stats.cluster_index(subjects)
    item_audit, item_deploy = audit.mean(axis=0), deploy.mean(axis=0)
    return FramingMeans(float(item_audit.mean()), stats.clustered_se(item_audit, codes, n_clusters),
                        float(item_deploy.mean()), stats.clustered_se(item_deploy, codes, n_clusters))


def framing_estimates(means: FramingMeans | None, condition: str) -> dict:
    """The report's ``audit_<condition>``, ``se_audit_<condition>``, ``deploy_<condition>``,
    ``se_deploy_<condition>`` (none when the comparison carries no framing means)."""
    if means is None:
        return {}
    return {f"audit_{condition}": means.audit, f"se_audit_{condition}": means.se_audit,
            f"deploy_{condition}": means.deploy, f"se_deploy_{condition}": means.se_deploy}


@dataclass
class Comparison:
    """mean(a) − mean(b) over paired items, clustered by subject (SPEC §3), without thresholds.

    For the gap reduction a = γ_U and b = γ_D, so ``difference`` is Δ; for the cost guard a = acc_D
    and b = acc_U, so it is δ.  ``standard`` names the rules the numbers follow: "1.0" (SPEC §3:
    the 1.0 seed term, normal critical values) or "1.1" (SPEC §10: the seed variance component
    of ``spreads`` added once, t critical values on :attr:`df`).
    """

    n_items: int
    n_subjects: int
    seeds_a: list[int]
    seeds_b: list[int]
    mean_a: float
    se_a: float
    mean_b: float
    se_b: float
    difference: float
    se_cluster: float
    seed_term: float | None  # variance added to SE²; None when a side has < 2 seeds
    per_seed: list[float] | None  # Δ_s when both sides share their seeds
    ci: stats.BootstrapCI | None
    standard: str = "1.0"
    spreads: list[stats.SeedSpread] = field(default_factory=list)  # 1.1: of a − b (paired seeds), else of a and of b
    spread_a: stats.SeedSpread | None = None  # 1.1: of a alone, for SE(G_U)
    means_a: FramingMeans | None = None  # each framing's mean behind a's gap (gap comparisons only)
    means_b: FramingMeans | None = None

    @property
    def se_total(self) -> float:
        if self.standard == "1.1":
            return critical.calibrated_se(self.se_cluster, self.n_subjects, self.spreads)[0]
        return stats.total_se(self.se_cluster, self.seed_term)

    @property
    def df(self) -> float:
        """Degrees of freedom of :attr:`se_total`: infinite (a normal) under 1.0."""
        return critical.calibrated_se(self.se_cluster, self.n_subjects, self.spreads)[1] if self.standard == "1.1" else math.inf

    def critical(self, z: float) -> float:
        """The critical value a rule puts in place of ``z``: z itself under 1.0, the t quantile at the
        one-sided level Φ(z) on :attr:`df` under 1.1."""
        return critical.t_critical(z, self.df) if self.standard == "1.1" else z

    def gap_se_df(self) -> tuple[float, float]:
        """1.1: SE and df of mean_a (G_U) with a's own seed variance component."""
        return critical.calibrated_se(self.se_a, self.n_subjects, [self.spread_a] if self.spread_a else [])

    @property
    def paired_seeds(self) -> bool:
        return self.seeds_a == self.seeds_b


def compare(a: np.ndarray, b: np.ndarray, subjects: np.ndarray, seeds_a, seeds_b,
            rng: np.random.Generator | None, bootstrap: int, standard: str = "1.0", *,
            framings_a: tuple[np.ndarray, np.ndarray] | None = None,
            framings_b: tuple[np.ndarray, np.ndarray] | None = None) -> Comparison:
    """Compare per-seed item values ``a`` (S_a × n) and ``b`` (S_b × n) on the same n items, under
    the rules of ``standard`` ("1.0" or "1.1").  ``framings_a``/``_b``: a side's per-seed audit and
    deploy scores on those items (a gap comparison), whose means the report shows beside the gaps."""
    codes, n_clusters = stats.cluster_index(subjects)
    item_a, item_b = a.mean(axis=0), b.mean(axis=0)  # seed-averaged item values
    difference = item_a - item_b
    seeds_a, seeds_b = [int(s) for s in seeds_a], [int(s) for s in seeds_b]
    seed_means_a, seed_means_b = a.mean(axis=1), b.mean(axis=1)
    paired = seeds_a == seeds_b
    per_seed = [float(x) for x in seed_means_a - seed_means_b] if paired else None
    seed_term = stats.seed_se2(seed_means_a, seed_means_b, paired) if len(difference) else None
    ci = None
    if rng is not None and bootstrap > 0 and len(difference):
        ci = stats.mean_ci(difference, codes, rng, n_clusters=n_clusters, B=bootstrap, atoms=standard == "1.1")
    spreads, spread_a = [], None
    if standard == "1.1" and len(difference) and min(len(seeds_a), len(seeds_b)) >= 2:  # else: not included, as in 1.0
        sides = [a - b] if paired else [a, b]
        spreads = [s for s in (stats.seed_spread(x, codes, n_clusters) for x in sides) if s is not None]
        spread_a = stats.seed_spread(a, codes, n_clusters)
    empty = not len(difference)
    return Comparison(
        n_items=len(difference), n_subjects=n_clusters, seeds_a=seeds_a, seeds_b=seeds_b,
        mean_a=math.nan if empty else float(item_a.mean()), se_a=stats.clustered_se(item_a, codes, n_clusters) if not empty else math.nan,
        mean_b=math.nan if empty else float(item_b.mean()), se_b=stats.clustered_se(item_b, codes, n_clusters) if not empty else math.nan,
        difference=math.nan if empty else float(difference.mean()),
        se_cluster=stats.clustered_se(difference, codes, n_clusters) if not empty else math.nan,
        seed_term=seed_term, per_seed=per_seed, ci=ci, standard=standard, spreads=spreads, spread_a=spread_a,
        means_a=framing_means(*framings_a, subjects) if framings_a is not None else None,
        means_b=framing_means(*framings_b, subjects) if framings_b is not None else None,
    )


def _sizes_and_gap(c: Comparison) -> dict:
    """The report's first reduction numbers, the same under both standards: sizes and U's gap."""
    return {
        "n_items": c.n_items,
        "n_subjects": c.n_subjects,
        "n_seeds_undefended": len(c.seeds_a),
        "n_seeds_defended": len(c.seeds_b),
        "gap_undefended": c.mean_a,
        "se_gap_undefended": c.se_a,
    }


def reduction_estimates(c: Comparison, z: float, margin: float = 0.0) -> dict:
    """The gap-reduction numbers of the report (SPEC §3, or §10 for a 1.1 comparison) for a U-vs-D
    comparison; ``margin`` enters the 1.1 MDE."""
    if c.standard == "1.1":
        return _reduction_estimates_1_1(c, z, margin)
    gap_lower = c.mean_a - z * c.se_a
    relative = c.difference / c.mean_a if gap_lower > 0 else math.nan
    ci = c.ci
    return {
        **_sizes_and_gap(c),
        "gap_undefended_lower": gap_lower,
        "gap_defended": c.mean_b,
        "se_gap_defended": c.se_b,
        "reduction": c.difference,
        "relative_reduction": relative,
        "se_cluster": c.se_cluster,
        "se_seed": math.sqrt(c.seed_term) if c.seed_term is not None else None,
        "se_total": c.se_total,
        "reduction_lower": c.difference - z * c.se_total,
        "ci_low": ci.low if ci else None,
        "ci_high": ci.high if ci else None,
        "ci_mc_error": max(ci.mc_error_low, ci.mc_error_high) if ci and math.isfinite(ci.low) else None,
        "mde": stats.mde(c.se_total) if math.isfinite(c.se_total) else None,
        **framing_estimates(c.means_a, "undefended"),
        **framing_estimates(c.means_b, "defended"),
    }


def _reduction_estimates_1_1(c: Comparison, z: float, margin: float) -> dict:
    """SPEC §10: the seed component added once, t critical values, the t interval, the MDE on them."""
    gap_se, gap_df = c.gap_se_df()
    gap_critical = critical.t_critical(z, gap_df)
    gap_lower = c.mean_a - gap_critical * gap_se
    se, df = c.se_total, c.df
    crit = critical.t_critical(z, df)
    low, high = critical.t_interval(c.difference, se, df)
    paired = c.spreads[0] if len(c.spreads) == 1 and c.paired_seeds else None
    seed_variance = sum(s.component / s.n_seeds for s in c.spreads)
    return {
        **_sizes_and_gap(c),
        "se_gap_undefended_total": gap_se,
        "df_gap": gap_df,
        "critical_value_gap": gap_critical,
        "gap_undefended_lower": gap_lower,
        "gap_defended": c.mean_b,
        "se_gap_defended": c.se_b,
        "reduction": c.difference,
        "relative_reduction": c.difference / c.mean_a if gap_lower > 0 else math.nan,
        "se_cluster": c.se_cluster,
        "seed_spread": paired.spread if paired else None,
        "seed_noise": paired.noise if paired else None,
        "seed_variance": paired.component if paired else None,
        "se_seed": math.sqrt(seed_variance) if c.spreads else None,
        "se_total": se,
        "df": df,
        "critical_value": crit,
        "reduction_lower": c.difference - crit * se,
        "ci_low": low,
        "ci_high": high,
        "ci_mc_error": None,  # the t interval is computed, not resampled
        "mde": critical.t_mde(se, crit, df, margin),
        **framing_estimates(c.means_a, "undefended"),
        **framing_estimates(c.means_b, "defended"),
    }


def critical_symbol(value: float | None, df: float | None) -> str:
    """How a 1.1 reason names its critical value, e.g. ``t(7.3)=2.41`` (df in brackets)."""
    return f"t({fixed(df, 1)})={fixed(value, 2)}" if value is not None and df is not None else "t"


def bootstrap_details(c: Comparison) -> dict:
    if c.ci is None:
        return {"interval": "t"} if c.standard == "1.1" else {}
    found = {"method": c.ci.method, "B": c.ci.B, "level": c.ci.level, "n_clusters": c.ci.n_clusters,
             "mc_error_low": number(c.ci.mc_error_low), "mc_error_high": number(c.ci.mc_error_high)}
    if c.standard == "1.1":  # the reported interval is the t one; the bootstrap one confirms it
        return {"interval": "t", "bootstrap": {**found, "low": number(c.ci.low), "high": number(c.ci.high)}}
    return {"bootstrap": found}


def availability(split_name: str, conditions: dict, needed: tuple[str, ...]) -> list[Reason]:
    """Reasons a comparison cannot be made: a missing condition or unscored records."""
    reasons = []
    for condition in needed:
        if condition not in conditions:
            reasons.append(reason("missing-condition", f"no {condition} records on the {split_name} split"))
        elif conditions[condition].unscored:
            reasons.append(reason("unscored-records", f"{conditions[condition].unscored} {condition} records on the {split_name} "
                                  "split have no score (and no regenerated output)"))
    return reasons
