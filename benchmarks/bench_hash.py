"""Hashing a 2 GB evidence file: `acards hash` against `sha256sum`, and re-checks with a warm digest cache.

Goals
  1. `acards hash FILE` (digest cache disabled: ACARDS_CACHE_DIR is a fresh empty folder each run)
     reaches >= 0.9x the throughput of `sha256sum FILE`, i.e. time(sha256sum)/time(acards) >= 0.9,
     with the acards process's peak RSS <= 64 MB.
  2. With the digest cache warm, the digest step of `acards check CARD` (a card pointing at the
     2 GB file, second and later runs) takes <= 0.1 s.  Measured three ways: the whole command, the
     whole command minus `acards validate CARD` (the same card, no evidence read) and the in-process
     `acards.evidence.digests.digest_file(path, cache)` call.

  3. A folder of many small files (--small-files, default 20,000 files of 1 KiB in 20 subfolders):
     the in-process `digest_path(FOLDER, cache)` (which lists, checks and opens every file safely and
     builds the RFC 8785 manifest) takes <= 2x the time of a plain hashlib loop over the same files
     (os.walk, open, read, sha256), with no cache and with a fresh (cold) digest cache.

Baseline: `sha256sum` (GNU coreutils) on the same file, in the same run, runs interleaved.  The
file is read once before timing, so both read from the page cache.  Medians of --runs runs.

    python benchmarks/bench_hash.py [--size-mb 2048] [--runs 5] [--dir /tmp] [--small-files 20000] [--only-small]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _util import ACARDS, load_line, machine, median, mib, run_child, verdict

GOAL_RATIO = 0.9
GOAL_RSS = 64 * 10**6  # 64 MB
GOAL_WARM = 0.1  # seconds
GOAL_SMALL = 2.0  # folder of small files: time(acards) / time(plain hashlib) <= 2


def plain_hashlib(folder: Path) -> list[str]:
    """The baseline: every file below ``folder``, opened, read and hashed, nothing else."""
    import hashlib

    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            with open(os.path.join(dirpath, name), "rb") as handle:
                out.append(hashlib.sha256(handle.read()).hexdigest())
    return out


def small_files(root: Path, count: int, runs: int) -> None:
    """Goal 3: a folder of ``count`` 1 KiB files, acards against a plain hashlib loop, interleaved."""
    from acards.evidence.digests import DigestCache, digest_path

    folder = root / "many"
    per = max(1, count // 20)
    for index in range(count):
        sub = folder / f"d{index // per:03}"
        if index % per == 0:
            sub.mkdir(parents=True)
        (sub / f"f{index:06}.bin").write_bytes(os.urandom(1024))
    plain_hashlib(folder)  # warm the page cache and the dentry cache
    base_t, none_t, cold_t = [], [], []
    for run in range(runs):
        start = time.perf_counter()
        plain_hashlib(folder)
        base_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        digest_path(folder, DigestCache(None))
        none_t.append(time.perf_counter() - start)
        with DigestCache(root / f"small-cache-{run}.sqlite") as cache:
            start = time.perf_counter()
            digest_path(folder, cache)
            cold_t.append(time.perf_counter() - start)
    ratio_none, ratio_cold = median(none_t) / median(base_t), median(cold_t) / median(base_t)
    print(f"\n3. a folder of {count} files of 1 KiB, median of {runs} interleaved runs")
    print(f"   plain hashlib loop          : {median(base_t):.3f} s")
    print(f"   acards digest_path, no cache: {median(none_t):.3f} s  ratio {ratio_none:.2f}x")
    print(f"   acards digest_path, cold    : {median(cold_t):.3f} s  ratio {ratio_cold:.2f}x")
    print(f"   goal <= {GOAL_SMALL}x plain hashlib: {verdict(max(ratio_none, ratio_cold) <= GOAL_SMALL)}")


def make_file(path: Path, size: int) -> None:
    chunk = 16 * 2**20
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(chunk, left)
            handle.write(os.urandom(n))
            left -= n


def warm_page_cache(path: Path) -> None:
    with open(path, "rb", buffering=0) as handle:
        while handle.read(16 * 2**20):
            pass


def card_for(folder: Path, big: Path, digest: str) -> Path:
    """A valid card whose only large pointer is the 2 GB file (as a cell's defended checkpoint)."""
    evidence = folder / "evidence"
    evidence.mkdir()
    records = evidence / "records.jsonl"
    records.write_text(json.dumps({"cell": "bench/one", "condition": "undefended", "split": "heldout", "task": "t",
                                   "subject": "s", "item": "i", "framing": "audit", "seed": 0, "score": 1.0}) + "\n")
    from acards.evidence.digests import digest_path

    card = {
        "acard": "1.0", "id": "bench-hash", "version": 1, "title": "Hash benchmark", "authors": [{"name": "bench"}],
        "limitations": "Benchmark only.", "model": {"name": "none"},
        "protocol": {"behavior": "refusal", "higher_score_means": "safer", "framings": {"audit": "cue", "deploy": "none"}},
        "evidence": {"records": [{"path": "evidence/records.jsonl", "sha256": digest_path(records)}]},
        "cells": [{"id": "bench/one", "family": "bench", "declared_mechanism": "projection", "task": "t",
                   "transfer": {"task": "u", "differs_in": ["format"]},
                   "checkpoints": {"defended": {"path": big.relative_to(folder).as_posix(), "sha256": digest}}}],
        "claims": [{"id": "C1", "statement": "Benchmark.", "cells": ["bench/one"]}],
    }
    path = folder / "card.yaml"
    path.write_text(json.dumps(card, indent=2))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=2048, help="file size in MiB (default 2048)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each tool (default 5)")
    parser.add_argument("--warm-runs", type=int, default=10, help="runs of the warm-cache re-check (default 10)")
    parser.add_argument("--dir", default=None, help="where the temporary folder goes (default: the system's)")
    parser.add_argument("--small-files", type=int, default=20_000, help="files in the small-files folder (default 20000)")
    parser.add_argument("--only-small", action="store_true", help="run only goal 3 (the small-files folder)")
    args = parser.parse_args()
    if args.only_small:
        print(f"machine: {machine()}")
        with tempfile.TemporaryDirectory(prefix="acards-bench-hash-", dir=args.dir) as temporary:
            small_files(Path(temporary), args.small_files, args.runs)
        print(load_line())
        return
    sha256sum = shutil.which("sha256sum")
    if not sha256sum:
        sys.exit("sha256sum is not installed: it is this benchmark's baseline")
    size = args.size_mb * 2**20
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="acards-bench-hash-", dir=args.dir) as temporary:
        root = Path(temporary)
        (root / "ckpt").mkdir()
        big = root / "ckpt" / "model.safetensors"
        start = time.perf_counter()
        make_file(big, size)
        print(f"created {mib(size)} of random bytes in {time.perf_counter() - start:.1f} s")
        warm_page_cache(big)

        # One untimed run of each, so both start from a warm page cache and warm binaries.
        expected = run_child([sha256sum, str(big)], capture=True).stdout.split()[0].decode()
        env = dict(os.environ, ACARDS_CACHE_DIR=tempfile.mkdtemp(dir=root))
        got = run_child([ACARDS, "hash", str(big)], env=env, capture=True).stdout.split()[0].decode()
        if got != expected:
            sys.exit(f"digests differ: acards {got}, sha256sum {expected}")

        base_t, acards_t, acards_rss, ratios = [], [], [], []
        for _ in range(args.runs):
            b = run_child([sha256sum, str(big)])
            env = dict(os.environ, ACARDS_CACHE_DIR=tempfile.mkdtemp(dir=root))  # a fresh, empty digest cache
            a = run_child([ACARDS, "hash", str(big)], env=env)
            base_t.append(b.wall)
            acards_t.append(a.wall)
            acards_rss.append(a.peak_rss)
            ratios.append(b.wall / a.wall)
        gb = size / 1e9
        ratio = median(base_t) / median(acards_t)
        print(f"\n1. hash {mib(size)} from the page cache, median of {args.runs} interleaved runs")
        print(f"   sha256sum    : {median(base_t):.3f} s  ({gb / median(base_t):.2f} GB/s)   runs {', '.join(f'{t:.2f}' for t in base_t)}")
        print(f"   acards hash  : {median(acards_t):.3f} s  ({gb / median(acards_t):.2f} GB/s)   runs {', '.join(f'{t:.2f}' for t in acards_t)}")
        print(f"   ratio time(sha256sum)/time(acards) = {ratio:.2f} (median of per-pair ratios {median(ratios):.2f});"
              f" goal >= {GOAL_RATIO}: {verdict(ratio >= GOAL_RATIO)}")
        peak = max(acards_rss)
        print(f"   acards peak RSS: max {peak / 1e6:.1f} MB, median {median(acards_rss) / 1e6:.1f} MB;"
              f" goal <= {GOAL_RSS / 1e6:.0f} MB: {verdict(peak <= GOAL_RSS)}")

        # 2. Re-check with a warm digest cache.
        card = card_for(root, big, expected)
        cache_dir = Path(tempfile.mkdtemp(dir=root))
        env = dict(os.environ, ACARDS_CACHE_DIR=str(cache_dir))
        cold = run_child([ACARDS, "check", str(card)], env=env)  # first run: hashes and fills the cache
        check_t, validate_t, check_rss = [], [], []
        for _ in range(args.warm_runs):
            c = run_child([ACARDS, "check", str(card)], env=env)
            v = run_child([ACARDS, "validate", str(card)], env=env)
            check_t.append(c.wall)
            check_rss.append(c.peak_rss)
            validate_t.append(v.wall)
        step = median(check_t) - median(validate_t)

        from acards.evidence.digests import DigestCache, digest_file

        cache_path = cache_dir / "digests.sqlite"
        cache = DigestCache(cache_path)
        digest_file(big, cache)  # warm the connection and the OS caches
        call_t, open_call_t = [], []
        for _ in range(max(args.warm_runs, 20)):
            start = time.perf_counter()
            _, value = digest_file(big, cache)
            call_t.append(time.perf_counter() - start)
            assert value == expected
        cache.close()
        for _ in range(max(args.warm_runs, 20)):
            start = time.perf_counter()
            fresh = DigestCache(cache_path)
            digest_file(big, fresh)
            fresh.close()
            open_call_t.append(time.perf_counter() - start)

        print(f"\n2. `acards check` on a card pointing at the {mib(size)} file (cache in a fresh folder)")
        print(f"   first run (cache cold, hashes)       : {cold.wall:.3f} s")
        print(f"   later runs (cache warm), whole command: median {median(check_t):.3f} s over {args.warm_runs}; peak RSS {max(check_rss) / 1e6:.1f} MB")
        print(f"   `acards validate` on the same card    : median {median(validate_t):.3f} s")
        print(f"   digest step = check - validate        : {step * 1000:.1f} ms")
        print(f"   in-process digest_file, cache warm    : median {median(call_t) * 1e3:.3f} ms"
              f" (with opening and closing the SQLite cache: {median(open_call_t) * 1e3:.3f} ms)")
        worst = max(step, median(open_call_t))
        print(f"   goal digest step <= {GOAL_WARM} s: {verdict(worst <= GOAL_WARM)}"
              f" (whole command {median(check_t):.3f} s {'<=' if median(check_t) <= GOAL_WARM else '>'} {GOAL_WARM} s)")
        small_files(root, args.small_files, args.runs)
        print(load_line())


if __name__ == "__main__":
    main()
