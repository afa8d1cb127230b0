"""Start-up cost of the command line: `acards --help` and `acards validate` on the shipped example card.

Goal: `acards --help` in <= 0.3 s wall (median of >= 10 runs).
Baseline: `python -c pass` with the same venv's interpreter, runs interleaved in the same loop, so
the difference is what acards itself adds (imports, click) on top of starting Python.
`acards validate examples/tiny-defense/card.yaml` is timed the same way (no goal of its own; it
shows what loading the schema, YAML and the rules costs).  With -X importtime, the packages whose
imports cost most are listed for each command.

    python benchmarks/bench_cli.py [--runs 20]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from _util import ACARDS, load_line, machine, median, run_child, verdict

GOAL_HELP = 0.3
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny-defense" / "card.yaml"


def import_costs(args: list[str], top: int = 6) -> str:
    """Self import time per top-level package (ms), from `python -X importtime` running the CLI."""
    code = f"import sys; sys.argv = {['acards', *args]!r}; from acards.cli import main; main()"
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    per_package: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, _cumulative, name = (part.strip() for part in line[len("import time:"):].split("|"))
            per_package[name.split(".")[0]] += int(self_us) / 1000
        except ValueError:
            continue
    total = sum(per_package.values())
    ranked = sorted(per_package.items(), key=lambda kv: -kv[1])[:top]
    return f"{total:.0f} ms of imports; most: " + ", ".join(f"{name} {ms:.0f} ms" for name, ms in ranked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20, at least 10)")
    args = parser.parse_args()
    runs = max(args.runs, 10)
    print(f"machine: {machine()}")
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "acards --help": [ACARDS, "--help"],
        "acards validate (example)": [ACARDS, "validate", str(EXAMPLE)],
    }
    for argv in commands.values():  # warm the OS caches and the .pyc files
        run_child(argv)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            times[name].append(run_child(argv).wall)
    base = median(times["python -c pass"])
    print(f"\nmedian of {runs} interleaved runs (min .. max)")
    for name, values in times.items():
        extra = "" if name == "python -c pass" else f"   +{(median(values) - base) * 1000:.0f} ms over python -c pass ({median(values) / base:.1f}x)"
        print(f"  {name:<27}: {median(values) * 1000:6.1f} ms  ({min(values) * 1000:.1f} .. {max(values) * 1000:.1f}){extra}")
    help_time = median(times["acards --help"])
    print(f"\ngoal `acards --help` <= {GOAL_HELP} s: {verdict(help_time <= GOAL_HELP)} ({help_time:.3f} s)")
    print("\nimport cost (python -X importtime, one run each)")
    print(f"  acards --help  : {import_costs(['--help'])}")
    print(f"  acards validate: {import_costs(['validate', str(EXAMPLE)])}")
    print(load_line())


if __name__ == "__main__":
    main()
