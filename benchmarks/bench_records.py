"""Reading records at the parse floor: acards against the fastest installed JSON parser, one run.

Data: bench_verify's 46-cell audit (46 JSONL files, 2,346,000 records, about 434 MB; generated
once into $ACARDS_BENCH_CACHE, see bench_verify.py) and, made once next to it with pyarrow, the
same records as 46 Parquet files.  Every figure is CPU time (time.process_time: this process, all
its threads) of one in-process call, the files read from the page cache; runs are interleaved so
that every variant sees the same load on a shared machine, and medians are printed.

- baseline: the fastest of the installed JSON parsers merely parsing the same bytes into Python
  objects: orjson (each line), msgspec (untyped, decode_lines on each file) and pyarrow's JSON
  reader, each including reading the files; msgspec decoding into the record Struct (typed and
  checked, the floor of acards' exact reader) is shown for reference;
- acards' first read: acards.evidence.records.read_records on the card's 46 files, digests pinned
  (the bytes hashed as they are parsed), every rule checked (schema, duplicates, subjects), no
  records cache; and the same filling an empty records cache (parse + writing the entries);
- acards' cached re-read: read_records with the filled cache: each file is read and hashed (the
  digest check still happens), its columns loaded from the verified entry;
- Parquet: read_records on the 46 Parquet files (format parquet), no records cache.

Targets (issue "Evidence at the speed of the disk", as ratios to the baseline in the same run):
first read <= 1.3x, cached re-read <= 0.35x, Parquet <= 0.5x.

    python benchmarks/bench_records.py [--runs 3] [--cells 46]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import msgspec
from _util import load_line, machine, median, verdict
from bench_verify import dataset

TARGETS = {"first read": 1.3, "cached re-read": 0.35, "Parquet": 0.5}
# Shown for reference, not a baseline candidate: decoding into the record Struct also checks types
# and ranges, and it is the floor of acards' exact reader (which then builds the columns in Python).
REFERENCE = "msgspec into the record Struct"


def cpu(function) -> float:
    gc.collect()
    start = time.process_time()
    function()
    return time.process_time() - start


def parquet_files(card: Path, files: list[str]) -> list[str]:
    """The records as Parquet, one file per JSONL file, made once next to the card."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    out = []
    for name in files:
        target = card.parent / "parquet" / Path(name).with_suffix(".parquet").name
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            table = pj.read_json(card.parent / name)
            staging = target.with_suffix(".partial")
            pq.write_table(table, staging)
            staging.rename(target)
        out.append(str(target.relative_to(card.parent)))
    return out


def baselines(folder: Path, files: list[str]) -> dict:
    """label -> function that parses every file with one installed parser."""
    parsers = {}
    try:
        import orjson

        def with_orjson():
            for name in files:
                for line in (folder / name).read_bytes().splitlines():
                    orjson.loads(line)
        parsers["orjson (per line)"] = with_orjson
    except ImportError:
        pass
    untyped = msgspec.json.Decoder()
    parsers["msgspec (untyped, decode_lines)"] = lambda: [untyped.decode_lines((folder / n).read_bytes()) for n in files]
    try:
        import pyarrow.json as pj

        parsers["pyarrow.json.read_json"] = lambda: [pj.read_json(folder / n) for n in files]
    except ImportError:
        pass
    return parsers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of every variant (default 3)")
    parser.add_argument("--cells", type=int, default=46, help="cells (records files) of bench_verify's data (default 46)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    card = dataset(args.cells)
    folder = card.parent
    pointers = json.loads(card.read_text())["evidence"]["records"]
    files = [p["path"] for p in pointers]
    size = sum((folder / f).stat().st_size for f in files)

    from acards.errors import Location
    from acards.evidence.cachekey import CacheKey
    from acards.evidence.digests import digest_path
    from acards.evidence.records import read_records
    from acards.evidence.records_cache import RecordsCache

    parquet = parquet_files(card, files)
    parquet_digests = [digest_path(folder / f) for f in parquet]
    parquet_size = sum((folder / f).stat().st_size for f in parquet)
    paths = [(f, Location(f)) for f in files]
    digests = [p["sha256"] for p in pointers]
    for name in files + parquet:  # the page cache: every run reads from memory
        (folder / name).read_bytes()
    scratch = Path(tempfile.mkdtemp(prefix="acards-bench-records-"))
    key = CacheKey(os.urandom(32))  # a key of this run: the user's own key file is left alone
    try:
        rows = len(read_records(folder, paths, sha256=digests))
        print(f"data: {rows:,} records in {len(files)} JSONL files ({size / 1e6:.0f} MB) and {len(parquet)} Parquet files"
              f" ({parquet_size / 1e6:.0f} MB), {folder}")

        def fill():
            shutil.rmtree(scratch / "records", ignore_errors=True)
            read_records(folder, paths, sha256=digests, cache=RecordsCache(scratch / "records", key))

        from acards.evidence.records import _struct

        typed = msgspec.json.Decoder(_struct())
        variants = {
            **baselines(folder, files),
            REFERENCE: lambda: [typed.decode_lines((folder / n).read_bytes()) for n in files],
            "first read": lambda: read_records(folder, paths, sha256=digests),
            "first read, filling the cache": fill,
            "cached re-read": lambda: read_records(folder, paths, sha256=digests, cache=RecordsCache(scratch / "records", key)),
            "Parquet": lambda: read_records(folder, [(f, Location(f)) for f in parquet], sha256=parquet_digests,
                                            formats=["parquet"] * len(parquet)),
        }
        fill()  # the cached re-read of the first round finds the cache filled
        times: dict[str, list[float]] = {label: [] for label in variants}
        for _ in range(args.runs):
            for label, function in variants.items():
                times[label].append(cpu(function))
        entries = sum(p.stat().st_size for p in (scratch / "records").iterdir())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    medians = {label: median(values) for label, values in times.items()}
    parsers = [label for label in variants if label not in TARGETS and label != REFERENCE and not label.startswith("first read,")]
    base_label = min(parsers, key=medians.get)
    base = medians[base_label]
    print(f"\nCPU time, median of {args.runs} interleaved runs (ns per record in brackets)")
    for label, value in medians.items():
        note = " <- baseline (the fastest parser)" if label == base_label else ""
        print(f"  {label:<34} {value:6.2f} s  [{value / rows * 1e9:5.0f}]  {value / base:5.2f}x{note}"
              f"   runs {', '.join(f'{t:.2f}' for t in times[label])}")
    print(f"  records cache: {entries / 1e6:.1f} MB for {rows:,} records ({entries / rows:.1f} bytes a record)")
    print("\ntargets (ratio to the baseline)")
    for label, target in TARGETS.items():
        ratio = medians[label] / base
        print(f"  {label:<16} <= {target:4.2f}x: {verdict(ratio <= target)} ({ratio:.2f}x)")
    print(load_line())


if __name__ == "__main__":
    main()
