"""How the registry scales: publish time per card, `registry verify` and `registry build` against n.

One registry grows through the sizes (100, 1,000 and 10,000 cards by default) by the real
`store.publish` (signed in-toto cards as in bench_registry_verify.py, two rendered files each; card
i is version 1 + i % 2 of id card-{i // 2}, so every other publish supersedes the one before). At
each size it times the last WINDOW publishes (the cost of one publish at that size),
`verify_registry` without and with re-rendering (`acards registry verify --no-render`, and with a
render callable), and `build_site` (`acards registry build`), the best of 5 runs at 100 cards, of 2
at 1,000, of 1 at 10,000. It prints the fitted exponent b of
time ≈ a·n^b for each: 0 is constant per publish, 1 linear per verify.

With --baseline PATH (a folder holding an older `acards` package, e.g. a copy made with
`cp -r acards /tmp/before/`), the same measurements run on that package, in a child process, at
--baseline-sizes, and on the grown registry (the largest size) the old package also runs one
verify_registry, one build_site and --probe publishes, so the before/after ratios come from one
run. The registry lives on tmpfs (/dev/shm) unless --dir says
otherwise: a publish's ten fsyncs cost the same at every size and would hide the scaling.

    python benchmarks/bench_registry_scale.py [--sizes 100,1000,10000] [--baseline /tmp/before]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _util import load_line, machine  # noqa: E402

ORIGIN = "bench.acards/registry"
NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)


# --- the child: measures the acards package it imports ------------------------------------------


def _keys(folder: Path):
    from acards.attest.keys import load_private_key, new_key

    if not (folder / "registry.key").exists():
        new_key(folder / "registry.key")
        new_key(folder / "author.key")
    return load_private_key(folder / "registry.key"), load_private_key(folder / "author.key")


def _card(author, i: int) -> bytes:
    from bench_registry_verify import signed_card

    return signed_card(author, f"card-{i // 2}", 1 + i % 2)


def _timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def _best(function, size: int) -> tuple[float, float]:
    """The best of a few runs (fewer as n grows): the machine may be shared."""
    runs = [_timed(function) for _ in range(max(1, min(5, 2000 // size)))]
    return min(wall for wall, _ in runs), min(cpu for _, cpu in runs)


def _mean(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return sum(wall for wall, _ in runs) / len(runs), sum(cpu for _, cpu in runs) / len(runs)


def _grow(folder: Path, sizes: list[int], window: int) -> None:
    from bench_registry_verify import render

    from acards.registry import audit, store
    from acards.site.build import build_site

    registry_key, author = _keys(folder)
    root = folder / "registry"
    store.init_registry(root, ORIGIN, folder / "registry.key")
    store.add_trusted_key(root, folder / "author.key.pub")
    published, build = 0, (0.0, 0.0)
    for size in sizes:
        envelopes = [_card(author, i) for i in range(published, size)]
        times = []
        for envelope in envelopes:
            times.append(_timed(lambda: store.publish(root, envelope, registry_key, render, NOW)))
        published = size
        build = (build[0] + sum(wall for wall, _ in times), build[1] + sum(cpu for _, cpu in times))
        result = audit.verify_registry(root)
        assert result.ok and result.size == size, [str(p) for p in result.problems[:3]]
        print(json.dumps({"kind": "size", "n": size, "publish": _mean(times[-min(window, len(times)):]), "build": build,
                          "verify": _best(lambda: audit.verify_registry(root), size),
                          "verify_render": _best(lambda: audit.verify_registry(root, render=render), size),
                          "site": _best(lambda: build_site(root), size)}), flush=True)


def _probe(folder: Path, count: int) -> None:
    """On the registry a run of this script grew: one verify_registry and one build_site, then
    ``count`` more publishes."""
    from bench_registry_verify import render

    from acards.registry import audit, store
    from acards.site.build import build_site

    registry_key, author = _keys(folder)
    root = folder / "registry"
    size = len((root / "log" / "entries.jsonl").read_bytes().splitlines())
    verify = _timed(lambda: audit.verify_registry(root))
    site = _timed(lambda: build_site(root))
    envelopes = [_card(author, i) for i in range(size, size + count)]
    times = [_timed(lambda e=e: store.publish(root, e, registry_key, render, NOW)) for e in envelopes]
    print(json.dumps({"kind": "probe", "n": size, "publish": _mean(times), "verify": verify, "site": site}), flush=True)


# --- the parent: runs the children and fits ------------------------------------------------------


def _child(args: list[str], package: str | None) -> list[dict]:
    env = dict(os.environ)
    if package:
        env["PYTHONPATH"] = os.pathsep.join([package, str(HERE)])
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env, check=True, stdout=subprocess.PIPE)
    return [json.loads(line) for line in out.stdout.decode().splitlines() if line.startswith("{")]


def _exponent(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) on log(n)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


_COLUMNS = (("publish", "publish, per card", 1000, "ms"), ("verify", "verify_registry", 1, "s"),
            ("verify_render", "verify, re-rendering", 1, "s"), ("site", "build_site", 1, "s"),
            ("build", "all publishes", 1, "s"))
_CLOCKS = ("wall", "CPU")


def _table(title: str, rows: list[dict]) -> None:
    for clock, name in enumerate(_CLOCKS):
        print(f"\n{title}, {name} time")
        print(f"{'n':>7}" + "".join(f"{label:>24}" for _, label, _, _ in _COLUMNS))
        for row in rows:
            print(f"{row['n']:>7}" + "".join(f"{row[key][clock] * scale:>21.3f} {unit:<2}" for key, _, scale, unit in _COLUMNS))
        if len(rows) > 1:
            fits = "".join(f"{_exponent([(r['n'], r[key][clock]) for r in rows]):>24.2f}" for key, _, _, _ in _COLUMNS)
            print(f"{'b':>7}{fits}   (time ≈ a·n^b)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--baseline", help="a folder holding an older acards package")
    parser.add_argument("--baseline-sizes", default="100,1000")
    parser.add_argument("--probe", type=int, default=5, help="old publishes timed on the grown registry")
    parser.add_argument("--window", type=int, default=50, help="publishes timed at each size")
    parser.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n]
    if args.child:
        folder = Path(args.dir)
        _probe(folder, args.probe) if args.probe_only else _grow(folder, sizes, args.window)
        return

    print(machine())
    print(f"registry on {args.dir or tempfile.gettempdir()}; {args.window} publishes timed at each size")
    work = Path(tempfile.mkdtemp(prefix="acards-bench-registry-", dir=args.dir))
    try:
        after_dir = work / "after"
        after_dir.mkdir()
        after = _child(["--dir", str(after_dir), "--sizes", args.sizes, "--window", str(args.window)], None)
        _table("this acards", after)
        if not args.baseline:
            return
        before_dir = work / "before"
        before_dir.mkdir()
        before = _child(["--dir", str(before_dir), "--sizes", args.baseline_sizes, "--window", str(args.window)],
                        args.baseline)
        _table(f"baseline ({args.baseline})", before)
        probe = []
        if args.probe:
            probe = _child(["--dir", str(after_dir), "--probe-only", "--probe", str(args.probe)], args.baseline)
            print(f"\nbaseline on the grown registry of {probe[0]['n']} cards (wall, CPU): publish, per card "
                  f"{probe[0]['publish'][0] * 1000:.1f} ms, {probe[0]['publish'][1] * 1000:.1f} ms; verify_registry "
                  f"{probe[0]['verify'][0]:.1f} s, {probe[0]['verify'][1]:.1f} s; build_site {probe[0]['site'][0]:.1f} s, "
                  f"{probe[0]['site'][1]:.1f} s")
        for clock, name in enumerate(_CLOCKS):
            print(f"\nbefore / after, {name} time")
            for old in before:
                new = next((row for row in after if row["n"] == old["n"]), None)
                if new:
                    print(f"  n = {old['n']}: " + ", ".join(
                        f"{label} {old[key][clock] / new[key][clock]:.1f}×" for key, label, _, _ in _COLUMNS))
            if probe:
                grown = next(row for row in after if row["n"] == max(sizes))
                print(f"  n = {max(sizes)}: " + ", ".join(
                    f"{label} {probe[0][key][clock] / grown[key][clock]:.1f}×" for key, label, _, _ in _COLUMNS
                    if key in probe[0] and key != "n"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(load_line())


if __name__ == "__main__":
    main()
