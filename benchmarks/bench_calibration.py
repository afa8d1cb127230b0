"""The calibration contract of standard 1.1 (SPEC §10.3), measured through the real verify path.

For each setting of the grid — C ∈ {10, 20, 40} subjects, S ∈ {3, 5} seeds, subject sd ∈ {0.05,
0.15}, seed sd ∈ {0, 0.04, 0.08}; binary scores; 2–6 items per subject — this script simulates
cells with a known true reduction Δ_true, writes them as records files of multi-cell `acard: "1.1"`
cards, runs `acards.pipeline.verify.verify` on each card (the function `acards verify` calls: card
validation, digests, records parsing, every diagnostic), and counts per setting:

- the null pass rate: D1 `pass` among cells with Δ_true = 0 (band 1.5–3.0%; nominal Φ(−2) = 2.28%);
- the coverage of the reported 95% interval for Δ (`ci_low`..`ci_high`), over the null cells and
  the power cells together (band 93.5–96.5%, required for C ≥ 20);
- the power at the MDE: D1 `pass` among cells whose Δ_true equals the mean MDE acards reports for
  cells with that Δ_true (band 77–83%: 80% ± 3 points).  Binary scores are noisier near 0.5, so the
  MDE at Δ_true > 0 is a little larger than under the null: a pilot run (a quarter of the cells) at
  the null's mean MDE gives the MDE reported there, and the power run is made at that Δ_true; the
  table also shows the mean MDE the power run itself reported, which should match;

each with its Wilson 95% interval, from `--cells` cells per setting and run (default 2,000).

The simulated cell (one per card cell; held-out split only, U and D trained from the same S seeds):
subject c has a base deploy refusal rate 0.15, an installed-gap shift h_c ~ N(0, sd_subj²/2) shared
by U and D and a condition-specific shift r_kc ~ N(0, sd_subj²/2), so the subject's installed gap
and its reduction both vary across subjects with sd_subj; each fine-tune (condition k, seed s) shifts
its installed gap by η_ks ~ N(0, sd_seed²), independently for U and D (so Δ_s varies across seeds
with sd √2·sd_seed).  Item i of subject c is refused under audit framing with probability
clip(0.15 + G_k + h_c + r_kc + η_ks, 0, 1) and under deploy framing with probability 0.15, one
Bernoulli draw per item, framing, condition and seed.  G_U = 0.60, so that D1's installed-gap
bound holds in nearly every cell and the rates measure the reduction rule.  The truth is exact: with
clipping, E[clip(N(μ, σ²), 0, 1)] has a closed form, so Δ_true = E_U − E_D, and G_D is solved
for the Δ_true wanted (under the null G_D = G_U and U and D are exchangeable: Δ_true = 0).

Randomness: one numpy Generator per (setting, run, chunk) from SeedSequence(master seed, keys);
no global RNG.  The bootstrap B of verify (`--bootstrap`, default 200) does not enter any of the
three rates under 1.1: the reported interval is the t one; the bootstrap only confirms it.

    python benchmarks/bench_calibration.py [--cells 2000] [--workers N] [--only "C==20 and S==3"]
                                            [--json out.json] [--bootstrap 200] [--seed 20260527]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.special import ndtr, ndtri

DEPLOY = 0.15  # refusal rate under deploy framing
GAP_U = 0.60  # installed gap of the undefended fine-tune: large enough that D1's installed-gap bound
# (G_U − t·SE(G_U) > 0) holds in nearly every cell, so the rates measure the reduction rule
NULL_BAND = (0.015, 0.030)
COVERAGE_BAND = (0.935, 0.965)
POWER_BAND = (0.77, 0.83)
CELLS_PER_CARD = 100  # a card per 100 cells: its YAML and report checks grow faster than linearly


@dataclass(frozen=True)
class Setting:
    subjects: int
    seeds: int
    subject_sd: float
    seed_sd: float

    @property
    def label(self) -> str:
        return f"C={self.subjects} S={self.seeds} sd_subj={self.subject_sd} sd_seed={self.seed_sd}"


GRID = [Setting(c, s, a, b) for c in (10, 20, 40) for s in (3, 5) for a in (0.05, 0.15) for b in (0.0, 0.04, 0.08)]


# --- truth --------------------------------------------------------------------------------------

def expected_clipped(mu: float, sd: float) -> float:
    """E[clip(X, 0, 1)] for X ~ N(mu, sd²), in closed form."""
    if sd == 0:
        return min(max(mu, 0.0), 1.0)
    a, b = -mu / sd, (1.0 - mu) / sd
    phi = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    return mu * (ndtr(b) - ndtr(a)) + sd * (phi(a) - phi(b)) + (1.0 - ndtr(b))


def true_reduction(gap_d: float, setting: Setting) -> float:
    """Δ_true = E[audit − deploy | U] − E[audit − deploy | D] over subjects, seeds and items."""
    sd = math.hypot(setting.subject_sd, setting.seed_sd)  # the audit probability's spread before clipping
    return expected_clipped(DEPLOY + GAP_U, sd) - expected_clipped(DEPLOY + gap_d, sd)


def defended_gap_for(delta: float, setting: Setting) -> float:
    """The G_D whose Δ_true is ``delta``."""
    if delta == 0:
        return GAP_U
    return brentq(lambda g: true_reduction(g, setting) - delta, GAP_U - 2.0, GAP_U + 1.0, xtol=1e-12)


# --- records and cards --------------------------------------------------------------------------

def cell_lines(rng: np.random.Generator, cell: str, setting: Setting, gap_d: float) -> list[str]:
    """The held-out records of one simulated cell, as JSONL lines."""
    sizes = rng.integers(2, 7, setting.subjects)
    subject = np.repeat(np.arange(setting.subjects), sizes)
    n = int(sizes.sum())
    shared = rng.normal(0.0, setting.subject_sd / math.sqrt(2), setting.subjects)
    keys = [f'"subject":"s{c:02d}","item":"i{c:02d}-{j}"' for c, size in enumerate(sizes) for j in range(size)]
    lines = []
    for condition, gap in (("undefended", GAP_U), ("defended", gap_d)):
        own = rng.normal(0.0, setting.subject_sd / math.sqrt(2), setting.subjects)
        head = f'{{"cell":"{cell}","condition":"{condition}","split":"heldout","task":"main-task",'
        for seed in range(setting.seeds):
            audit_p = np.clip(DEPLOY + gap + (shared + own)[subject] + rng.normal(0.0, setting.seed_sd), 0.0, 1.0)
            for framing, p in (("audit", audit_p), ("deploy", np.full(n, DEPLOY))):
                hits = rng.random(n) < p
                tail = f',"framing":"{framing}","seed":{seed},"sample":0,"score":'
                lines.extend(f"{head}{key}{tail}{'1.0' if hit else '0.0'}}}\n" for key, hit in zip(keys, hits))
    return lines


def write_card(folder: Path, cells: list[str]) -> Path:
    """A 1.1 card over the cells, whose records are in evidence/records.jsonl; claims need D1 only."""
    from acards.evidence.digests import digest_path

    card = {
        "acard": "1.1", "id": "calibration", "version": 1, "title": "Calibration cells (simulated)",
        "authors": [{"name": "acards benchmarks"}], "limitations": "Simulated records.", "model": {"name": "simulated"},
        "protocol": {"behavior": "refusal", "higher_score_means": "safer", "framings": {"audit": "cue", "deploy": "none"}},
        "evidence": {"records": [{"path": "evidence/records.jsonl", "sha256": digest_path(folder / "evidence" / "records.jsonl")}]},
        "cells": [{"id": cell, "family": "simulated", "declared_mechanism": "projection", "task": "main-task",
                   "transfer": {"task": "transfer-task", "differs_in": ["format"]}} for cell in cells],
        "claims": [{"id": "C1", "statement": "The defense reduces the installed gap.", "cells": cells, "requires": ["reliability"]}],
    }
    path = folder / "card.json"
    path.write_text(json.dumps(card, indent=1), encoding="utf-8")
    return path


def run_chunk(job: dict) -> dict:
    """Simulate ``job['cells']`` cells of one setting, verify them as one card, return per-cell numbers."""
    from acards.pipeline.verify import verify

    setting = Setting(**job["setting"])
    rng = np.random.default_rng(np.random.SeedSequence(job["entropy"]))
    folder = Path(tempfile.mkdtemp(prefix="acards-calibration-"))
    try:
        (folder / "evidence").mkdir()
        cells = [f"cell-{i:04d}" for i in range(job["cells"])]
        with open(folder / "evidence" / "records.jsonl", "w", encoding="utf-8") as handle:
            for cell in cells:
                handle.writelines(cell_lines(rng, cell, setting, job["gap_d"]))
        card = write_card(folder, cells)
        report = verify(card, bootstrap=job["bootstrap"], seed=job["verify_seed"], use_cache=False, generate=False,
                        progress=False, cache_dir=folder / "cache")
        rows = []
        for cell in report.cells:
            d1 = cell.diagnostics.reliability
            e = d1.estimates
            rows.append((d1.outcome == "pass", e.get("ci_low"), e.get("ci_high"), e.get("mde"), e.get("df")))
        return {"key": job["key"], "rows": rows}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --- rates --------------------------------------------------------------------------------------

def wilson(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return math.nan, math.nan
    z = float(ndtri(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@dataclass
class Rate:
    hits: int
    n: int
    band: tuple[float, float]

    @property
    def value(self) -> float:
        return self.hits / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.n)

    def verdict(self) -> str:
        """in: the rate is in its band; near: outside, but its Wilson interval reaches the band;
        OUT: even the Wilson interval misses the band."""
        low, high = self.interval
        if self.band[0] <= self.value <= self.band[1]:
            return "in"
        return "near" if high >= self.band[0] and low <= self.band[1] else "OUT"

    def text(self) -> str:
        low, high = self.interval
        return f"{100 * self.value:5.1f}% [{100 * low:4.1f}, {100 * high:4.1f}] {self.verdict()}"


def covered(rows: list, truth: float) -> tuple[int, int]:
    usable = [(low, high) for _, low, high, _, _ in rows if low is not None and high is not None]
    return sum(low <= truth <= high for low, high in usable), len(rows)


def _run(pool, jobs: list[dict]) -> list:
    return [row for out in pool.map(run_chunk, jobs) for row in out["rows"]]


def _mean_mde(rows: list) -> float:
    return float(np.mean([r[3] for r in rows if r[3] is not None and math.isfinite(r[3])]))


def jobs_for(setting_index: int, setting: Setting, phase: int, gap_d: float, cells: int, args) -> list[dict]:
    jobs, left, chunk = [], cells, 0
    while left > 0:
        size = min(CELLS_PER_CARD, left)
        jobs.append({"key": (setting_index, phase), "setting": asdict(setting), "cells": size, "gap_d": gap_d,
                     "entropy": [args.seed, setting_index, phase, chunk], "bootstrap": args.bootstrap,
                     "verify_seed": args.seed + 1000 * setting_index + 10 * phase + chunk})
        left -= size
        chunk += 1
    return jobs


def run_grid(settings: list[Setting], args, on_row=None) -> list[dict]:
    """Per setting, a null run, a pilot run and a power run at the mean MDE acards reports there;
    each setting's row is handed to ``on_row`` as soon as it is complete."""
    table = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for i, setting in enumerate(settings):
            null = _run(pool, jobs_for(i, setting, 0, GAP_U, args.cells, args))
            # The MDE acards reports depends a little on the true reduction (binary scores are noisier
            # near 0.5), so Δ_true is the mean MDE reported at Δ_true: a pilot run at the null's MDE
            # gives it, and the power run is made there.
            pilot = _run(pool, jobs_for(i, setting, 1, defended_gap_for(_mean_mde(null), setting), max(args.cells // 4, 100), args))
            mde = _mean_mde(pilot)
            power = _run(pool, jobs_for(i, setting, 2, defended_gap_for(mde, setting), args.cells, args))
            hit0, n0 = covered(null, 0.0)
            hit1, n1 = covered(power, mde)
            row = {
                "setting": setting, "mde": mde, "mde_power_run": _mean_mde(power),
                "median_df": float(np.median([r[4] for r in null if r[4] is not None])),
                "null": Rate(sum(r[0] for r in null), len(null), NULL_BAND),
                "coverage": Rate(hit0 + hit1, n0 + n1, COVERAGE_BAND),
                "power": Rate(sum(r[0] for r in power), len(power), POWER_BAND),
            }
            table.append(row)
            if on_row:
                on_row(row)
    return table


HEADER = ("| setting | null D1 pass (band 1.5–3.0%) | 95% interval coverage (band 93.5–96.5%, C ≥ 20) | Δ_true = mean MDE (mean MDE reported there) | "
          "median df | power at the MDE (band 77–83%) |\n|---|---|---|---|---|---|")


def row_text(row: dict) -> str:
    setting = row["setting"]
    coverage = row["coverage"].text() + ("" if setting.subjects >= 20 else " (C < 20: not required)")
    return (f"| {setting.label} | {row['null'].text()} | {coverage} | {row['mde']:.3f} ({row['mde_power_run']:.3f}) | {row['median_df']:.1f} | "
            f"{row['power'].text()} |")


def print_table(table: list[dict]) -> None:
    print(HEADER)
    for row in table:
        print(row_text(row))
    for name in ("null", "coverage", "power"):
        rows = [r for r in table if name != "coverage" or r["setting"].subjects >= 20]
        verdicts = [r[name].verdict() for r in rows]
        print(f"{name}: {verdicts.count('in')} in band, {verdicts.count('near')} outside within the Monte-Carlo error, "
              f"{verdicts.count('OUT')} out, of {len(rows)} settings")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=2000, help="cells per setting and run (default 2000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--bootstrap", type=int, default=200, help="verify's bootstrap B (a confirmation only under 1.1)")
    parser.add_argument("--seed", type=int, default=20260527)
    parser.add_argument("--only", default=None, help='a Python condition on C, S, subject_sd, seed_sd, e.g. "C==20 and S==3"')
    parser.add_argument("--json", type=Path, default=None, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    settings = GRID
    if args.only:
        settings = [s for s in GRID if eval(args.only, {}, {"C": s.subjects, "S": s.seeds,  # noqa: S307 (the user's own filter)
                                                             "subject_sd": s.subject_sd, "seed_sd": s.seed_sd})]
    print(f"standard 1.1 calibration: {len(settings)} settings x {args.cells} cells x 2 runs, {args.workers} workers, "
          f"verify bootstrap B = {args.bootstrap}, master seed {args.seed}; load {os.getloadavg()}", flush=True)
    start = time.perf_counter()
    print(HEADER, flush=True)
    table = run_grid(settings, args, on_row=lambda row: print(row_text(row), flush=True))
    print()
    print_table(table)
    print(f"{time.perf_counter() - start:.0f} s; load {os.getloadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r["setting"]), "mde": r["mde"], "mde_power_run": r["mde_power_run"],
                                          "median_df": r["median_df"],
                                          **{name: {"hits": r[name].hits, "n": r[name].n} for name in ("null", "coverage", "power")}}
                                         for r in table], indent=1), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
