"""Verify at scale: 46 cells of 0.1M, 1M and 10M records, streamed, with the fitted exponents.

Data: bench_verify's 46-cell audit with more or fewer items per subject (the same splits,
conditions, framings, seeds and subjects; see bench_verify.py), generated into --dir (default: a
fresh folder under $TMPDIR, never the repository) and deleted after each size unless --keep.
10M records are about 1.9 GB of JSONL: the script checks the free space first.

Per size: `acards verify CARD --format json --no-cache` as a child process (the CLI's defaults,
every digest recomputed, no records cache), its wall time, CPU time (user + system, os.wait4) and
peak RSS (ru_maxrss); and, in the same run, the baseline: orjson merely parsing every line of the
same files in a child process (the fastest installed JSON parser, see bench_records.py), its CPU
time and peak RSS.  Then the fitted exponent b of time ~ a * n^b and of peak RSS, by least squares
on log-log (b = 1: linear; peak RSS is affine in n, so its b rises towards 1 as n grows).

Goal (issue "Evidence at the speed of the disk", item 4): 10M records verify in <= 2 GB peak RSS
(streamed: never the whole file as Python objects).

    python benchmarks/bench_scale.py [--sizes 0.1,1,10] [--runs 1] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _util import ACARDS, load_line, machine, median, run_child, verdict
from bench_verify import SPLITS, dataset

GOAL_RSS = 2e9
GOAL_RECORDS = 10_000_000
BYTES_A_RECORD = 200  # a little above the data's 185, for the free-space check
# The default data set: 40 items a held-out subject, 20 for the other splits -> 51,000 records a cell.
HELDOUT_PER_SUBJECT, OTHER_PER_SUBJECT = 40, 20

BASELINE = """
import sys, orjson
from pathlib import Path
for name in sys.argv[1:]:
    for line in Path(name).read_bytes().splitlines():
        orjson.loads(line)
"""


def splits_for(millions: float, n_cells: int = 46) -> dict:
    """bench_verify's splits with items per subject scaled so that n_cells cells hold about
    ``millions`` million records (at least one item a subject)."""
    factor = millions * 1e6 / (n_cells * 51_000)
    heldout = max(1, round(HELDOUT_PER_SUBJECT * factor))
    other = max(1, round(OTHER_PER_SUBJECT * factor))
    out = {}
    for split, (task, conditions, framings, _items, subjects) in SPLITS.items():
        per = heldout if split == "heldout" else other
        out[split] = (task, conditions, framings, per * subjects, subjects)
    return out


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0.1,1,10", help="millions of records, comma-separated (default 0.1,1,10)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each child per size (default 1; medians)")
    parser.add_argument("--dir", type=Path, default=None, help="where the data goes (default: a fresh folder under $TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data (reused by later runs with the same --dir)")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    print(f"machine: {machine()}")
    base = args.dir or Path(tempfile.mkdtemp(prefix="acards-bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    need = max(sizes) * 1e6 * BYTES_A_RECORD
    if free < 1.5 * need:
        sys.exit(f"{base}: {free / 1e9:.1f} GB free, the largest size needs about {need / 1e9:.1f} GB")
    rows = []
    env = dict(os.environ, ACARDS_CACHE_DIR=tempfile.mkdtemp(prefix="acards-bench-scale-cache-"))
    try:
        for millions in sizes:
            card = dataset(46, splits_for(millions), base)
            folder = card.parent
            files = sorted(str(p) for p in (folder / "evidence").iterdir())
            size = sum(Path(f).stat().st_size for f in files)
            for name in files:  # the page cache: every run reads from memory where it fits
                with open(name, "rb") as handle:
                    while handle.read(1 << 24):
                        pass
            verifies, parses = [], []
            for _ in range(args.runs):  # interleaved
                child = run_child([ACARDS, "verify", str(card), "--format", "json", "--no-cache"], env=env,
                                  capture=True, check=False)
                if child.returncode not in (0, 1):
                    sys.exit(f"acards verify exited {child.returncode} at {millions}M")
                verifies.append(child)
                parses.append(run_child([sys.executable, "-c", BASELINE, *files]))
            records = json.loads(verifies[-1].stdout)["generation"]["provenance"]["records"]["records"]
            row = {"records": records, "bytes": size,
                   "wall": median([c.wall for c in verifies]), "cpu": median([c.cpu for c in verifies]),
                   "rss": median([c.peak_rss for c in verifies]),
                   "parse_cpu": median([c.cpu for c in parses]), "parse_rss": median([c.peak_rss for c in parses])}
            rows.append(row)
            print(f"{records:>12,} records ({size / 1e6:,.0f} MB): verify wall {row['wall']:.2f} s, CPU {row['cpu']:.2f} s,"
                  f" peak RSS {row['rss'] / 1e6:,.0f} MB; orjson parse CPU {row['parse_cpu']:.2f} s"
                  f" ({row['cpu'] / row['parse_cpu']:.2f}x), peak RSS {row['parse_rss'] / 1e6:,.0f} MB", flush=True)
            if not args.keep:
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(env["ACARDS_CACHE_DIR"], ignore_errors=True)
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)

    print("\n| records | JSONL | verify wall | verify CPU | CPU / orjson parse | peak RSS | orjson parse peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['records']:,} | {row['bytes'] / 1e6:,.0f} MB | {row['wall']:.2f} s | {row['cpu']:.2f} s"
              f" | {row['cpu'] / row['parse_cpu']:.2f}x | {row['rss'] / 1e6:,.0f} MB | {row['parse_rss'] / 1e6:,.0f} MB |")
    if len(rows) > 1:
        n = [r["records"] for r in rows]
        print(f"| fitted b | | {slope(n, [r['wall'] for r in rows]):.2f} | {slope(n, [r['cpu'] for r in rows]):.2f} |"
              f" | {slope(n, [r['rss'] for r in rows]):.2f} | |")
        if len(rows) > 2:  # the exponent between the two largest sizes, where fixed costs weigh least
            print(f"| b, last two sizes | | {slope(n[-2:], [r['wall'] for r in rows[-2:]]):.2f}"
                  f" | {slope(n[-2:], [r['cpu'] for r in rows[-2:]]):.2f} | | {slope(n[-2:], [r['rss'] for r in rows[-2:]]):.2f} | |")
    largest = max(rows, key=lambda r: r["records"])
    if largest["records"] >= GOAL_RECORDS * 0.99:
        print(f"\ngoal: {largest['records']:,} records in <= {GOAL_RSS / 1e9:.0f} GB peak RSS:"
              f" {verdict(largest['rss'] <= GOAL_RSS)} ({largest['rss'] / 1e9:.2f} GB)")
    print(load_line())


if __name__ == "__main__":
    main()
