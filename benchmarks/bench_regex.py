"""The regex scorer on long hostile outputs: acards (RE2 over framed text) against Python's `re`.

Goal: each pattern below scores a 100,000-character output in <= 0.1 s (median), where Python's
backtracking `re.search` takes quadratic time (seconds) or exponential time (for ever).
Baseline: `re.search(pattern, output)` on the same output, in the same run; for the cubic and
exponential patterns `re` is timed on a short output instead (its size is printed), with no ratio.
Both engines give the same answer on every case (checked). The last lines time the worst case
found for acards: a pattern whose DFA is too large, so that RE2 falls back to its NFA.

    python benchmarks/bench_regex.py [--chars 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import re
import time

from _util import load_line, machine, median, verdict

from acards.patterns import check_pattern

GOAL = 0.1  # seconds per output of --chars characters

# (pattern, output of about n characters, characters re is timed on: None for the full output)
CASES = [
    (".*sorry", lambda n: "a" * n, None),
    ("a.*b", lambda n: "a" * n, None),
    (r"\w+x", lambda n: "\u00e9" * n, None),
    (r"(?i)\bsorry\b.*x", lambda n: "sorry " * (n // 6), None),
    (r"\w+\w+x", lambda n: "\u00e9" * n, 400),  # cubic under backtracking
    (r"(a|a)*b", lambda n: "a" * n, 22),  # exponential
    (r"(\w+\s?)+$", lambda n: "a" * n + "!", 22),
]


def seconds(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="runs of acards per case (re runs once)")
    args = parser.parse_args()
    print(machine())
    print(f"outputs of {args.chars:,} characters; acards: median of {args.runs} runs after one warm-up; re: one run\n")
    print(f"{'pattern':<22} {'acards':>10} {'re':>23} {'re / acards':>8}  goal")
    met = True
    for pattern, make, baseline_chars in CASES:
        output = make(args.chars)
        matcher = check_pattern(pattern)
        matcher.search(output)  # warm-up: the one-off tables (Unicode categories, word marks)
        ours = seconds(lambda: matcher.search(output), args.runs)
        short = output if baseline_chars is None else make(baseline_chars)
        start = time.perf_counter()
        theirs = re.search(pattern, short) is not None
        baseline = time.perf_counter() - start
        assert matcher.search(short) == theirs, pattern
        met &= ours <= GOAL
        ratio = f"{baseline / ours:,.0f}x" if baseline_chars is None else "-"
        where = "" if baseline_chars is None else f" on {len(short)} ch"
        print(f"{pattern:<22} {ours * 1000:>8.1f}ms {baseline:>10.2f}s{where:<11} {ratio:>8}  {verdict(ours <= GOAL)}")
    print(f"\ngoal: every case <= {GOAL} s: {verdict(met)}")

    rng = random.Random(0)
    text = "".join(rng.choice("ab") for _ in range(args.chars))
    for pattern in (r"[ab]*a[ab]{20}c", r"a.{900}d|[ab]*a[ab]{20}c"):
        matcher = check_pattern(pattern)
        matcher.search(text[:1000])
        ours = seconds(lambda: matcher.search(text), 1)
        print(f"worst case (RE2's NFA): {pattern!r}, {matcher._program.programsize} instructions, random a/b text: "
              f"{ours:.2f} s")
    print(load_line())


if __name__ == "__main__":
    main()
