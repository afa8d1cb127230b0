"""`acards plan`: the design an experiment needs before it runs, under the rules `verify` applies.

Standard 1.1 only (SPEC §10).  A cell's held-out reduction is modelled by four variance components
and the installed gap of U:

- ``subject_sd``: the spread across subjects of a subject's true reduction;
- ``seed_sd``: the spread across training seeds of the per-seed reduction Δ_s (beyond sampling
  noise), the component :func:`acards.stats.seed_spread` estimates;
- ``item_sd``: the spread of an item's true reduction around its subject's, the same for every
  seed and sample;
- sampling noise: either ``noise_sd``, the sd of one sample's d = γ_U − γ_D around its item's
  value, or, for binary scores, ``base_rate`` (the deploy-framing score), from which the Bernoulli
  noise follows.

**The MDE of a design** is the MDE verify would report if every estimate equalled its expectation:
``SE_cl² = (subject_sd² + (item_sd² + v/S)/m)/C`` with ``v`` the noise of one item's value under one
seed (samples averaged), and the per-seed spread ``seed_sd² + v/(C·m)`` of which ``v/(C·m)`` is
noise; both go through :func:`acards.diagnostics.critical.calibrated_se`, ``t_critical`` and
``t_mde``, so the planned MDE moves with whatever those compute.  The smallest number of subjects
whose MDE is at most the target is found by bisection (the MDE falls as C grows).

**Pass probabilities** come from a seeded simulation (an explicit numpy Generator): cells of the
design are drawn from the stated model with the assumed true reduction, compared with
:func:`acards.diagnostics.common.compare` under standard 1.1 and judged by the real D1, D2 and D4
functions (:mod:`reliability`, :func:`fresh.generalization`), so every margin, retention and
minimum the rules hold is in the prediction.  No bootstrap is drawn: under 1.1 it confirms the
interval and never decides an outcome.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import NoReturn

import numpy as np

from acards import stats
from acards.diagnostics import critical
from acards.diagnostics.common import compare
from acards.diagnostics.fresh import generalization
from acards.diagnostics.reliability import reliability
from acards.errors import AcardsError, Location

STANDARD = "1.1"
# The largest number of subjects the design search tries before calling a target unreachable.
MAX_SUBJECTS = 100_000
DEFAULT_CELLS = 2000
GENERALIZATION = ("fresh", "transfer")


@dataclass(frozen=True)
class Components:
    """The variance model of one split (see the module's docstring); score units throughout."""

    gap_undefended: float
    subject_sd: float = 0.0
    seed_sd: float = 0.0
    item_sd: float = 0.0
    noise_sd: float | None = None  # one sample's d; None for binary scores (then base_rate)
    base_rate: float | None = None  # binary scores: the deploy-framing score, 0..1
    source: str = "stated"  # or "pilot"

    @property
    def binary(self) -> bool:
        return self.base_rate is not None

    def check(self) -> None:
        """Refuse a model that cannot describe scores (plan.bad-components)."""
        named = {"subject_sd": self.subject_sd, "seed_sd": self.seed_sd, "item_sd": self.item_sd, "gap_undefended": self.gap_undefended}
        if self.noise_sd is not None:
            named["noise_sd"] = self.noise_sd
        for name, value in named.items():
            if not math.isfinite(value) or (name != "gap_undefended" and value < 0):
                _bad("plan.bad-components", f"{name} = {value} is not a finite number ≥ 0",
                     "state every standard deviation as a number ≥ 0 in score units")
        if (self.noise_sd is None) == (self.base_rate is None):
            _bad("plan.bad-components", "the sampling noise needs exactly one of noise_sd and base_rate",
                 "give --noise-sd for continuous scores or --base-rate for binary ones (or a --pilot records file)")
        if self.binary and not (0.0 <= self.base_rate <= 1.0 and 0.0 <= self.base_rate + self.gap_undefended <= 1.0):  # type: ignore[operator]
            _bad("plan.bad-components", f"base_rate {self.base_rate} and gap {self.gap_undefended} do not give audit and deploy rates in [0, 1]",
                 "binary scores need 0 ≤ base_rate ≤ base_rate + gap ≤ 1")


@dataclass(frozen=True)
class Design:
    subjects: int
    items_per_subject: int
    seeds: int
    samples: int = 1

    @property
    def generations(self) -> int:
        """Outputs to score on one split: U and D, both framings."""
        return 4 * self.subjects * self.items_per_subject * self.seeds * self.samples


@dataclass(frozen=True)
class Setting:
    """What else the simulation needs: the assumed truth and the other splits' sizes and retention."""

    true_reduction: float
    fresh_subjects: int | None = None  # None: the held-out design's subjects
    transfer_subjects: int | None = None
    fresh_retention: float = 1.0  # true ρ_fresh / ρ_heldout
    transfer_retention: float = 1.0


@dataclass
class Rate:
    value: float
    mc_error: float

    @classmethod
    def of(cls, hits: np.ndarray) -> "Rate":
        n = len(hits)
        p = float(np.mean(hits)) if n else math.nan
        return cls(p, math.sqrt(max(p * (1 - p), 0.25 / n) / n) if n else math.nan)


@dataclass
class Expected:
    """The numbers verify would report for a design if every estimate equalled its expectation."""

    se_cluster: float
    seed_variance: float
    se_total: float
    df: float
    critical_value: float
    mde: float


@dataclass
class Plan:
    components: Components
    thresholds: dict
    target_mde: float | None
    design: Design
    expected: Expected
    setting: Setting
    pass_probability: dict[str, Rate]
    mean_reported_mde: float
    simulation: dict
    alternatives: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["design"]["generations"] = self.design.generations
        out["components"]["binary"] = self.components.binary
        out["standard"] = STANDARD
        return out


def _bad(code: str, message: str, hint: str) -> NoReturn:
    raise AcardsError(code, message, hint, Location())


# --- the expected numbers ---------------------------------------------------------------------

def item_noise(components: Components, design: Design, reduction: float) -> float:
    """Variance of one item's d under one seed, its samples averaged (v of the module docstring).
    Binary: Bernoulli variances of the four (condition, framing) rates, less the spread of the audit
    rate that the subject, item and seed effects explain (E[p(1−p)] = p̄(1−p̄) − Var p)."""
    if not components.binary:
        return float(components.noise_sd) ** 2 / design.samples  # type: ignore[arg-type]
    base = float(components.base_rate)  # type: ignore[arg-type]
    latent = components.subject_sd**2 + (components.item_sd**2 + components.seed_sd**2) / 2
    total = 2 * base * (1 - base)
    for gap in (components.gap_undefended, components.gap_undefended - reduction):
        p = min(max(base + gap, 0.0), 1.0)
        total += max(p * (1 - p) - latent, 0.0)
    return total / design.samples


def expected(components: Components, design: Design, thresholds: dict, reduction: float) -> Expected:
    """SE_tot, df, critical value and MDE of a design from the components, through the functions
    verify uses (critical.calibrated_se, t_critical, t_mde)."""
    v = item_noise(components, design, reduction)
    c, m, s = design.subjects, design.items_per_subject, design.seeds
    se_cl = math.sqrt((components.subject_sd**2 + (components.item_sd**2 + v / s) / m) / c)
    spreads = []
    if s >= 2:  # verify adds no seed component with fewer seeds
        noise = v / (c * m)
        spreads = [stats.SeedSpread(s, components.seed_sd**2 + noise, noise)]
    se, df = critical.calibrated_se(se_cl, c, spreads)
    crit = critical.t_critical(thresholds["z"], df)
    return Expected(se_cl, components.seed_sd**2 if s >= 2 else 0.0, se, df, crit,
                    critical.t_mde(se, crit, df, thresholds["margin"]))


def check_design(design: Design, thresholds: dict, subjects: bool = True) -> None:
    """Refuse a design the rules would call insufficient (plan.bad-design); ``subjects``: also its subjects."""
    if design.items_per_subject < 1 or design.samples < 1:
        _bad("plan.bad-design", "items per subject and samples must be at least 1", "use --items-per-subject ≥ 1 and --samples ≥ 1")
    if design.seeds < thresholds["min_seeds"]:
        _bad("plan.bad-design", f"{design.seeds} seeds is fewer than min_seeds = {thresholds['min_seeds']}: D1, D2 and D4 would be insufficient",
             f"plan with --seeds {thresholds['min_seeds']} or more (or lower --min-seeds, as a card may with a justification)")
    if subjects and design.subjects < max(2, thresholds["min_subjects"]):
        _bad("plan.bad-design", f"{design.subjects} subjects is fewer than min_subjects = {thresholds['min_subjects']}: D1 would be insufficient",
             "plan with more subjects, or leave --subjects out to have them found")


def smallest_design(components: Components, template: Design, thresholds: dict, target: float, reduction: float) -> Design | None:
    """The design with the fewest subjects (the template's items, seeds and samples) whose expected
    MDE is at most ``target``; None when even MAX_SUBJECTS do not reach it."""
    low = max(2, int(thresholds["min_subjects"]))

    def reaches(c: int) -> bool:
        mde = expected(components, replace(template, subjects=c), thresholds, reduction).mde
        return math.isfinite(mde) and mde <= target

    if not reaches(MAX_SUBJECTS):
        return None
    high = MAX_SUBJECTS
    if reaches(low):
        return replace(template, subjects=low)
    while high - low > 1:  # reaches(high) and not reaches(low)
        middle = (low + high) // 2
        low, high = (low, middle) if reaches(middle) else (middle, high)
    return replace(template, subjects=high)


def seed_floor(components: Components, seeds: int, thresholds: dict) -> float:
    """The MDE as subjects grow without bound: the seed component alone (t on S − 1 df at most)."""
    if seeds < 2 or components.seed_sd == 0:
        return thresholds["margin"]
    se = components.seed_sd / math.sqrt(seeds)
    df = float(seeds - 1)
    return critical.t_mde(se, critical.t_critical(thresholds["z"], df), df, thresholds["margin"])


# --- the simulation -----------------------------------------------------------------------------

def simulate_split(rng: np.random.Generator, components: Components, design: Design, gap_undefended: float,
                   reduction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cell's per-seed item gaps of U and D (S × n each) and the items' subject codes.

    Subject c shifts both conditions' gaps by h_c and each its own by r_kc (each N(0, subject_sd²/2),
    so the subject's reduction varies with subject_sd); each item by e_ki (N(0, item_sd²/2) per
    condition); each fine-tune (condition, seed) by η_ks (N(0, seed_sd²/2)).  Continuous scores add
    noise of variance noise_sd²/2 per condition and sample; binary ones draw audit scores with
    probability clip(base + gap + effects) and deploy scores with probability base."""
    c, m, s, k = design.subjects, design.items_per_subject, design.seeds, design.samples
    n = c * m
    subjects = np.repeat(np.arange(c), m)
    half = math.sqrt(0.5)
    shared = rng.normal(0.0, components.subject_sd * half, c)[subjects]
    out = []
    for gap in (gap_undefended, gap_undefended - reduction):
        own = rng.normal(0.0, components.subject_sd * half, c)[subjects] + rng.normal(0.0, components.item_sd * half, n)
        shift = rng.normal(0.0, components.seed_sd * half, (s, 1))
        mean = gap + shared + own + shift  # (S, n)
        if components.binary:
            base = float(components.base_rate)  # type: ignore[arg-type]
            audit = rng.binomial(k, np.clip(base + mean, 0.0, 1.0)) / k
            deploy = rng.binomial(k, base, (s, n)) / k
            out.append(audit - deploy)
        else:
            noise = float(components.noise_sd) * half / math.sqrt(k)  # type: ignore[arg-type]
            out.append(mean + rng.normal(0.0, noise, (s, n)))
    return out[0], out[1], subjects


def simulate(components: Components, design: Design, setting: Setting, thresholds: dict[str, dict], cells: int,
             seed: int, splits: tuple[str, ...] = GENERALIZATION) -> tuple[dict[str, Rate], float]:
    """Pass rates of D1, D2, D4 and of the three together over ``cells`` simulated cells, and the
    mean MDE D1 reported.  ``thresholds``: the reliability, fresh and transfer groups in force.
    Each split draws from its own stream of ``SeedSequence(seed)``, so D1's rate does not depend on
    which other ``splits`` are simulated."""
    streams = dict(zip(("heldout", *GENERALIZATION), (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))))
    seeds = list(range(design.seeds))
    sizes = {"fresh": setting.fresh_subjects or design.subjects, "transfer": setting.transfer_subjects or design.subjects}
    retention = {"fresh": setting.fresh_retention, "transfer": setting.transfer_retention}
    outcome = {name: np.zeros(cells, bool) for name in ("reliability", *splits)}
    mdes = np.full(cells, np.nan)
    general = {name: {**thresholds[name], "min_seeds": thresholds["reliability"]["min_seeds"]} for name in GENERALIZATION}
    gap = components.gap_undefended
    for i in range(cells):
        a, b, subjects = simulate_split(streams["heldout"], components, design, gap, setting.true_reduction)
        d1 = reliability(compare(a, b, subjects, seeds, seeds, None, 0, STANDARD), [], thresholds["reliability"])
        outcome["reliability"][i] = d1.outcome == "pass"
        mdes[i] = d1.estimates.get("mde") if d1.estimates.get("mde") is not None else np.nan
        held = d1.estimates.get("relative_reduction")
        for name in splits:
            split = replace(design, subjects=sizes[name])
            a, b, subjects = simulate_split(streams[name], components, split, gap, setting.true_reduction * retention[name])
            found = generalization(name, compare(a, b, subjects, seeds, seeds, None, 0, STANDARD), [], held, general[name])
            outcome[name][i] = found.outcome == "pass"
    rates = {name: Rate.of(hits) for name, hits in outcome.items()}
    if set(splits) == set(GENERALIZATION):
        rates["all"] = Rate.of(outcome["reliability"] & outcome["fresh"] & outcome["transfer"])
    return rates, float(np.nanmean(mdes)) if np.isfinite(mdes).any() else math.nan


# --- the plan -----------------------------------------------------------------------------------

def plan(components: Components, thresholds: dict[str, dict], template: Design, target_mde: float | None,
         setting: Setting, cells: int = DEFAULT_CELLS, seed: int = 0, fixed_subjects: bool = False,
         splits: tuple[str, ...] = GENERALIZATION) -> Plan:
    """The design for ``target_mde`` (or, with ``fixed_subjects``, the template as given), what verify
    would report for it, and its pass probabilities at ``setting.true_reduction`` (D1, and D2 and D4
    as far as ``splits`` names them)."""
    components.check()
    th = thresholds["reliability"]
    if cells < 1:
        _bad("plan.bad-design", f"{cells} simulated cells", "simulate at least 1 cell (default 2000)")
    notes = []
    check_design(template, th, subjects=False)
    if fixed_subjects:
        design = template
    else:
        if target_mde is None or not target_mde > th["margin"]:
            _bad("plan.bad-design", f"the target MDE {target_mde} is not above the margin {th['margin']}",
                 "give --mde larger than the D1 margin (an MDE always includes the margin)")
        found = smallest_design(components, replace(template, subjects=max(2, int(th["min_subjects"]))), th, float(target_mde),
                                setting.true_reduction)
        if found is None:
            more = next((s for s in range(template.seeds + 1, 101) if seed_floor(components, s, th) < target_mde), None)
            _bad("plan.unreachable", f"no number of subjects reaches an MDE of {target_mde} with {template.seeds} seeds: "
                 f"the seed variance alone gives at least {seed_floor(components, template.seeds, th):.4g}",
                 f"plan with more seeds (--seeds {more})" if more else "lower the target, or reduce the seed variance")
        design = found
    check_design(design, th)
    for name in GENERALIZATION:
        size = getattr(setting, f"{name}_subjects")
        if size is not None and size < 2:
            _bad("plan.bad-design", f"{size} {name} subjects: a clustered SE needs at least 2", f"use --{name}-subjects 2 or more")
    numbers = expected(components, design, th, setting.true_reduction)
    if design.seeds >= 2 and components.seed_sd > 0 and design.seeds <= 3:
        notes.append("with 3 seeds the seed component is estimated on 2 df: expect the reported MDE and the pass rate to vary "
                     "more from cell to cell than the expected values suggest (docs/diagnostics.md, Calibration)")
    rates, mean_mde = simulate(components, design, setting, thresholds, cells, seed, splits)
    alternatives = []
    if target_mde is not None:
        for seeds in sorted({3, 5, 8, design.seeds}):
            for items in sorted({design.items_per_subject, 2 * design.items_per_subject}):
                if seeds < th["min_seeds"]:
                    continue
                other = smallest_design(components, replace(design, seeds=seeds, items_per_subject=items), th, float(target_mde),
                                        setting.true_reduction)
                alternatives.append({"seeds": seeds, "items_per_subject": items, "samples": design.samples,
                                     "subjects": other.subjects if other else None,
                                     "generations": other.generations if other else None,
                                     "mde": expected(components, other, th, setting.true_reduction).mde if other else None})
    return Plan(components, {name: dict(values) for name, values in thresholds.items()}, target_mde, design, numbers, setting, rates,
                mean_mde, {"method": "simulation", "cells": cells, "seed": seed, "generator": "numpy PCG64, one SeedSequence(seed).spawn stream per split"}, alternatives, notes)


# --- components from a pilot ----------------------------------------------------------------------

def components_from_pilot(undefended: np.ndarray, defended: np.ndarray, subjects: np.ndarray, deploy_mean: float | None,
                          samples: float, seed_sd: float | None = None) -> Components:
    """Estimate the components from a pilot's held-out values (S × n per condition, as verify's
    values.py builds them, seeds paired) by the method of moments.

    Seed component and per-seed noise: :func:`acards.stats.seed_spread` of d = γ_U − γ_D (the same
    estimator verify uses; it needs two seeds, else ``seed_sd`` must be stated).  Subject and item
    components: a one-way analysis of variance of the seed-averaged d_i by subject, the item part
    less the noise the seeds did not average away.  ``deploy_mean`` (binary scores: the pilot's
    deploy-framing mean) makes the model binary; otherwise the noise of one sample is the
    per-seed noise scaled back by the pilot's ``samples`` per framing."""
    d = undefended - defended
    seeds, n = d.shape
    codes, n_clusters = stats.cluster_index(subjects)
    if n_clusters < 2 or n < 3:
        _bad("plan.pilot-too-small", f"the pilot has {n_clusters} subjects and {n} paired items", "a pilot needs at least 2 subjects and 3 items")
    per_item = d.mean(axis=0)
    sums, counts = stats.cluster_sums(per_item, codes, n_clusters)
    means = sums / counts
    within_ss = float(np.sum((per_item - means[codes]) ** 2))
    within = within_ss / (n - n_clusters) if n > n_clusters else 0.0
    grand = float(per_item.mean())
    between = float(np.sum(counts * (means - grand) ** 2)) / (n_clusters - 1)
    n0 = (n - float(np.sum(counts**2)) / n) / (n_clusters - 1)
    spread = stats.seed_spread(d, codes, n_clusters) if seeds >= 2 else None
    if spread is not None:
        noise_item = spread.noise * n  # one item's value under one seed
        seed_sd = math.sqrt(spread.component)
    else:
        if seed_sd is None:
            _bad("plan.pilot-too-small", "the pilot has one seed: the seed variance cannot be estimated from it",
                 "state it with --seed-sd (the sd of the per-seed reduction across training seeds), or pilot two seeds or more")
        noise_item = within  # one seed cannot tell item effects from noise: all of it is taken as noise
    item_var = max(0.0, within - noise_item / seeds)
    subject_var = max(0.0, (between - within) / n0) if n0 > 0 else 0.0
    gap = float(undefended.mean())
    found = Components(gap_undefended=gap, subject_sd=math.sqrt(subject_var), seed_sd=float(seed_sd), item_sd=math.sqrt(item_var),
                       source="pilot")
    if deploy_mean is not None:
        return replace(found, base_rate=min(max(deploy_mean, 0.0), 1.0 - max(gap, 0.0)))
    return replace(found, noise_sd=math.sqrt(noise_item * samples))
