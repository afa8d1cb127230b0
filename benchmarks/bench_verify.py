"""A 46-cell audit, from JSONL records to the verification report: `acards verify` end to end.

Data (simulated like tests/simulate.py: binary refusal scores, audit framing adds the condition's
installed gap), one records file per cell (46 files, evidence/<cell>.jsonl), and a card written as
JSON that points at them with digests from acards.evidence.digests.digest_path.  Per cell:
  held-out   3 conditions (undefended, defended, control:shrinkage) x 2 framings x 3 seeds x
             2,000 items over 50 subjects                               = 36,000 records
  fresh      2 conditions x 2 framings x 3 seeds x 500 items / 25 subjects =  6,000
  transfer   2 conditions x 2 framings x 3 seeds x 500 items / 25 subjects =  6,000
  capability 2 conditions x deploy only x 3 seeds x 500 items / 25 subjects = 3,000
i.e. 51,000 records a cell, 2,346,000 in all (about 400 MB of JSONL).  No checkpoints, so the
mechanism diagnostic rests on the shrinkage control alone; no prompts or training data, so the
n-gram freshness check is skipped.  The data is generated once into a cache folder keyed by these
parameters ($ACARDS_BENCH_CACHE, default ~/.cache/acards-bench) and reused by later runs.

Goals (2 cores): the whole path `acards.pipeline.verify.verify(card, bootstrap=10_000)` in <= 5 s wall and
<= 1.5 GB peak RSS (measured on the subprocess `acards verify CARD --format json`), and >= 20x
faster than the baseline.

Baseline (computed in the same run): the naive prompt-level bootstrap people use,
`scipy.stats.bootstrap((d,), np.mean, n_resamples=10_000, method="percentile", vectorized=True)`
on each cell's 2,000 item-level held-out differences d (items resampled, not subjects; d is
prepared untimed with acards.diagnostics.values).  Timed on --baseline-cells cells and extrapolated to 46 (the
output says so) unless --baseline-cells 46.  Ratios are printed against the whole acards path and
against its statistics step alone, and the same 46 vectors are also run through acards' own
subject bootstrap (acards.stats.mean_ci) for a like-for-like view of the resampling itself.

The in-process breakdown times the real `verify()` call by wrapping the functions its pipeline
steps call (acards.pipeline.load: load_card, check_pointers, read_records; acards.pipeline.verify:
complete_evidence, recompute, judge_claims); "report" is the rest (prompts, environment,
report-schema check) plus serializing the report as the CLI does.  The "statistics step" the
baseline is compared with is recompute + claims.  Digests are recomputed on every timed run (no cache),
the worst case for a reviewer; a warm-digest-cache figure is printed as well.

    python benchmarks/bench_verify.py [--runs 3] [--baseline-cells 6] [--cells 46] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _util import ACARDS, load_line, machine, median, run_child, verdict

GOAL_WALL = 5.0
GOAL_RSS = 1.5e9
GOAL_SPEEDUP = 20.0
B = 10_000
GENERATOR_VERSION = 1

# split -> (task, conditions, framings, items, subjects)
SPLITS = {
    "heldout": ("main-task", ("undefended", "defended", "control:shrinkage"), ("audit", "deploy"), 2000, 50),
    "fresh": ("main-task", ("undefended", "defended"), ("audit", "deploy"), 500, 25),
    "transfer": ("transfer-task", ("undefended", "defended"), ("audit", "deploy"), 500, 25),
    "capability": ("trivia", ("undefended", "defended"), ("deploy",), 500, 25),
}
SEEDS = (0, 1, 2)


# --- data -------------------------------------------------------------------------------------

def cell_ids(n_cells: int) -> list[str]:
    families = 8
    return [f"family{c % families}/config{c:02d}" for c in range(n_cells)]


def _gaps(index: int, n_cells: int) -> dict[str, dict[str, float]]:
    """Installed gaps per split and condition; the defended gap grows with the cell index, so the
    audit holds cells that pass and cells that fail."""
    share = index / max(n_cells - 1, 1)
    defended = 0.02 + 0.36 * share
    return {
        "heldout": {"undefended": 0.40, "defended": defended, "control:shrinkage": 0.30},
        "fresh": {"undefended": 0.40, "defended": min(defended + 0.02, 0.40)},
        "transfer": {"undefended": 0.35, "defended": min(defended * 1.1, 0.35)},
    }


def write_cell(path: Path, rng: np.random.Generator, cell: str, gaps: dict, splits: dict = SPLITS) -> int:
    """Write one cell's records; returns how many."""
    lines: list[str] = []
    for split, (task, conditions, framings, n_items, n_subjects) in splits.items():
        per = n_items // n_subjects
        subject_of = np.repeat(np.arange(n_subjects), per)
        effects = rng.normal(0, 0.06, n_subjects)
        keys = [f'"subject":"{split}-s{s:02d}","item":"{split[:2]}-{s:02d}-{i:03d}"'
                for s in range(n_subjects) for i in range(per)]
        if split == "capability":
            p = np.clip(0.70 + effects[subject_of] + rng.normal(0, 0.15, n_items), 0, 1)
            for seed in SEEDS:
                u = rng.random(n_items) < p
                redraw = rng.random(n_items) < 0.03  # D answers a few items afresh, at the same accuracy
                d = np.where(redraw, rng.random(n_items) < p, u)
                for condition, answers in (("undefended", u), ("defended", d)):
                    head = f'{{"cell":"{cell}","condition":"{condition}","split":"{split}","task":"{task}",'
                    tail = f',"framing":"deploy","seed":{seed},"sample":0,"score":'
                    lines.extend(f"{head}{key}{tail}{'1.0' if ok else '0.0'}}}\n" for key, ok in zip(keys, answers))
            continue
        deploy_p = np.clip(0.30 + effects[subject_of], 0, 1)
        for condition in conditions:
            gap = gaps[split][condition]
            head = f'{{"cell":"{cell}","condition":"{condition}","split":"{split}","task":"{task}",'
            for seed in SEEDS:
                audit_p = np.clip(deploy_p + gap + rng.normal(0, 0.01), 0, 1)
                for framing, p in zip(framings, (audit_p, deploy_p)):
                    hits = rng.random(n_items) < p
                    tail = f',"framing":"{framing}","seed":{seed},"sample":0,"score":'
                    lines.extend(f"{head}{key}{tail}{'1.0' if ok else '0.0'}}}\n" for key, ok in zip(keys, hits))
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    return len(lines)


def write_card(folder: Path, cells: list[str], files: list[str]) -> Path:
    from acards.evidence.digests import digest_path

    families: dict[str, list[str]] = {}
    for cell in cells:
        families.setdefault(cell.split("/")[0], []).append(cell)
    card = {
        "acard": "1.0", "id": "bench-audit", "version": 1, "title": f"A simulated {len(cells)}-cell audit (benchmark)",
        "authors": [{"name": "acards benchmarks"}], "limitations": "Simulated records for a benchmark.",
        "model": {"name": "simulated"},
        "protocol": {"behavior": "refusal", "higher_score_means": "safer",
                     "framings": {"audit": "evaluation cue", "deploy": "no cue"}},
        "evidence": {"records": [{"path": f, "sha256": digest_path(folder / f)} for f in files]},
        "cells": [{"id": cell, "family": cell.split("/")[0], "declared_mechanism": "projection", "task": "main-task",
                   "transfer": {"task": "transfer-task", "differs_in": ["format"]}} for cell in cells],
        "claims": [{"id": f"C-{family}", "statement": f"The {family} defense works in every configuration.",
                    "cells": members, "family_correction": "holm"} for family, members in families.items()],
    }
    path = folder / "card.json"
    path.write_text(json.dumps(card, indent=2), encoding="utf-8")
    return path


def dataset(n_cells: int, splits: dict = SPLITS, base: Path | None = None) -> Path:
    """The card of the cached data set for these parameters, generating it on first use (into
    ``base``, default $ACARDS_BENCH_CACHE or ~/.cache/acards-bench)."""
    params = {"version": GENERATOR_VERSION, "cells": n_cells, "splits": splits, "seeds": SEEDS}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    base = base or Path(os.environ.get("ACARDS_BENCH_CACHE") or Path.home() / ".cache" / "acards-bench")
    folder = base / f"verify-{n_cells}cells-{key}"
    card = folder / "card.json"
    if card.exists():
        return card
    base.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=folder.name + ".partial-", dir=base))
    print(f"generating the data set once into {folder} ...", flush=True)
    start = time.perf_counter()
    (partial / "evidence").mkdir()
    rng = np.random.default_rng(20260527)
    cells = cell_ids(n_cells)
    files, total = [], 0
    for index, cell in enumerate(cells):
        name = f"evidence/{cell.replace('/', '-')}.jsonl"
        total += write_cell(partial / name, rng, cell, _gaps(index, n_cells), splits)
        files.append(name)
    write_card(partial, cells, files)
    from acards.card.model import load_card

    load_card(partial / "card.json")  # refuse to cache a card that does not validate
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    print(f"  {total:,} records in {len(files)} files, {sum((folder / f).stat().st_size for f in files) / 1e6:.0f} MB,"
          f" generated in {time.perf_counter() - start:.0f} s", flush=True)
    return card


# --- timing acards --------------------------------------------------------------------------------

class Stopwatch:
    """Wraps functions the pipeline calls by name, adding up the time spent in each.

    ``targets``: (module, attribute, label); the attribute is replaced in that module, where the
    pipeline step that calls it looks it up."""

    def __init__(self, targets: list[tuple[object, str, str]]):
        self.targets, self.spent, self.saved = targets, {}, []

    def __enter__(self):
        for module, attribute, label in self.targets:
            original = getattr(module, attribute)
            self.saved.append((module, attribute, original))
            self.spent[label] = 0.0

            def timed(*args, _original=original, _label=label, **kwargs):
                start = time.perf_counter()
                try:
                    return _original(*args, **kwargs)
                finally:
                    self.spent[_label] += time.perf_counter() - start

            setattr(module, attribute, timed)
        return self

    def __exit__(self, *exc):
        for module, attribute, original in reversed(self.saved):
            setattr(module, attribute, original)


def verify_once(card: Path, use_cache: bool) -> tuple[float, dict, dict]:
    import acards.pipeline.load as load_step
    import acards.pipeline.verify as verify_module
    from acards.present.text import dumps

    gc.collect()
    targets = [(load_step, "load_card", "card validation"), (load_step, "check_pointers", "digest check"),
               (load_step, "read_records", "JSONL reading"), (verify_module, "complete_evidence", "scoring/regeneration"),
               (verify_module, "recompute", "statistics"), (verify_module, "judge_claims", "claims")]
    with Stopwatch(targets) as watch:
        start = time.perf_counter()
        report = verify_module.verify(card, bootstrap=B, use_cache=use_cache)
        text = dumps(report)
        total = time.perf_counter() - start
    steps = dict(watch.spent)
    steps["report"] = total - sum(steps.values())
    del text
    return total, steps, report


# --- the baseline ---------------------------------------------------------------------------------

def heldout_differences(card_path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(cell, item-level held-out differences U - D averaged over seeds, subject codes) per cell."""
    from acards.card.model import load_card
    from acards.diagnostics.values import GroupIndex, split_values
    from acards.evidence.records import read_records

    card = load_card(card_path)
    paths = [(p["path"], card.source.locate(f"/evidence/records/{i}/path")) for i, p in enumerate(card.data["evidence"]["records"])]
    table = read_records(card.folder, paths)
    index = GroupIndex(table)
    out = []
    for cell in card.cells:
        values = split_values(index, cell["id"], "heldout", cell["task"])
        a, b, subjects, _ = values.paired("undefended", "defended")
        out.append((cell["id"], a.mean(axis=0) - b.mean(axis=0), subjects))
    return out


def scipy_bootstrap(d: np.ndarray, seed: int):
    from scipy import stats

    options = dict(n_resamples=B, method="percentile", vectorized=True)
    try:
        return stats.bootstrap((d,), np.mean, rng=np.random.default_rng(seed), **options)
    except TypeError:  # SciPy < 1.15 names it random_state
        return stats.bootstrap((d,), np.mean, random_state=np.random.default_rng(seed), **options)


# --- main -----------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs, in process and as a subprocess (default 3)")
    parser.add_argument("--cells", type=int, default=46, help="cells in the audit (default 46)")
    parser.add_argument("--baseline-cells", type=int, default=6, help="cells the scipy baseline is timed on (default 6; the cell count for no extrapolation)")
    parser.add_argument("--profile", action="store_true", help="also profile one in-process run with cProfile and print the top functions")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    card = dataset(args.cells)
    files = json.loads(card.read_text())["evidence"]["records"]
    size = sum((card.parent / f["path"]).stat().st_size for f in files)
    print(f"card: {card} ({args.cells} cells, {len(files)} records files, {size / 1e6:.0f} MB of JSONL)")
    for f in files:  # page cache: every run reads from memory
        (card.parent / f["path"]).read_bytes()

    os.environ["ACARDS_CACHE_DIR"] = tempfile.mkdtemp(prefix="acards-bench-verify-cache-")
    try:
        # In process, digests recomputed (no cache).
        verify_once(card, use_cache=True)  # warm-up (imports, schema compilation); fills the digest cache
        totals, breakdowns, warm, warm_digest = [], [], [], []
        for _ in range(args.runs):  # interleaved, so both see the same load on a shared machine
            total, steps, report = verify_once(card, use_cache=False)
            totals.append(total)
            breakdowns.append(steps)
            total, steps, _ = verify_once(card, use_cache=True)
            warm.append(total)
            warm_digest.append(steps["digest check"])
        n_records = report["generation"]["provenance"]["records"]["records"]
        summary = report["audit"]

        # As a subprocess, for wall time with start-up and for peak RSS.
        env = dict(os.environ)
        children = [run_child([ACARDS, "verify", str(card), "--format", "json", "--no-cache"], env=env, check=False)
                    for _ in range(args.runs)]
        bad = [c.returncode for c in children if c.returncode not in (0, 1)]
        if bad:
            sys.exit(f"acards verify exited {bad[0]}")

        # The baseline, on the same held-out item-level differences.
        diffs = heldout_differences(card)
        k = max(1, min(args.baseline_cells, len(diffs)))
        scipy_bootstrap(diffs[0][1], 0)  # warm-up
        per_cell = []
        for i, (_, d, _) in enumerate(diffs[:k]):
            gc.collect()
            start = time.perf_counter()
            scipy_bootstrap(d, i)
            per_cell.append(time.perf_counter() - start)
        baseline = median(per_cell) * len(diffs) if k < len(diffs) else sum(per_cell)

        from acards import stats

        start = time.perf_counter()
        for cell, d, subjects in diffs:
            codes, n_clusters = stats.cluster_index(subjects)
            stats.mean_ci(d, codes, stats.cell_rng(1, cell, "heldout"), n_clusters=n_clusters, B=B)
        subject_bootstrap = time.perf_counter() - start
    finally:
        shutil.rmtree(os.environ.pop("ACARDS_CACHE_DIR"), ignore_errors=True)

    whole = median(totals)
    stats_step = median([s["statistics"] + s["claims"] for s in breakdowns])
    print(f"\n{n_records:,} records; B = {B:,}; audit: {summary['passes']} passes, full card {summary['full_card']}")
    print(f"\nin process, acards.pipeline.verify.verify(card, bootstrap={B}) + JSON report, digests recomputed; median of {args.runs}")
    print(f"  whole path             : {whole:.2f} s   runs {', '.join(f'{t:.2f}' for t in totals)}")
    for label in breakdowns[0]:
        values = [s[label] for s in breakdowns]
        print(f"    {label:<21}: {median(values):6.2f} s  ({median(values) / whole:5.1%})")
    print(f"  with a warm digest cache: {median(warm):.2f} s (digest check {median(warm_digest) * 1000:.0f} ms)   runs {', '.join(f'{t:.2f}' for t in warm)}")
    child_wall = median([c.wall for c in children])
    child_rss = max(c.peak_rss for c in children)
    print(f"\nsubprocess `acards verify CARD --format json --no-cache`, median of {args.runs}")
    print(f"  wall {child_wall:.2f} s (runs {', '.join(f'{c.wall:.2f}' for c in children)}); peak RSS {child_rss / 1e6:.0f} MB")

    how = f"measured on all {len(diffs)} cells" if k >= len(diffs) else \
        f"EXTRAPOLATED: median of {k} cells ({', '.join(f'{t:.3f}' for t in per_cell)} s) x {len(diffs)} cells"
    print(f"\nbaseline: scipy.stats.bootstrap per cell, items resampled (2,000 held-out differences), B = {B:,}, percentile, vectorized")
    print(f"  {len(diffs)} cells: {baseline:.2f} s ({how})")
    print(f"  acards subject bootstrap (stats.mean_ci) on the same {len(diffs)} vectors: {subject_bootstrap:.3f} s"
          f" -> {baseline / subject_bootstrap:.0f}x faster per bootstrap")
    print(f"  baseline / acards statistics step ({stats_step:.2f} s, 3 bootstraps a cell and everything else): {baseline / stats_step:.1f}x")
    print(f"  baseline / acards whole path ({whole:.2f} s): {baseline / whole:.1f}x")

    print("\ngoals")
    print(f"  whole path <= {GOAL_WALL} s: {verdict(whole <= GOAL_WALL)} (in process {whole:.2f} s; subprocess {child_wall:.2f} s)")
    print(f"  peak RSS <= {GOAL_RSS / 1e9} GB: {verdict(child_rss <= GOAL_RSS)} ({child_rss / 1e9:.2f} GB)")
    print(f"  >= {GOAL_SPEEDUP:.0f}x the baseline (whole path): {verdict(baseline / whole >= GOAL_SPEEDUP)} ({baseline / whole:.1f}x);"
          f" statistics step alone: {verdict(baseline / stats_step >= GOAL_SPEEDUP)} ({baseline / stats_step:.1f}x)")
    print(load_line())

    if args.profile:
        profiler = cProfile.Profile()
        import acards.pipeline.verify as verify_module

        profiler.enable()
        verify_module.verify(card, bootstrap=B, use_cache=False)
        profiler.disable()
        for key in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(18)
            print(f"\ncProfile of one verify() call, by {key}")
            print("\n".join(out.getvalue().splitlines()[6:]))


if __name__ == "__main__":
    main()
