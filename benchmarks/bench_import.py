"""`acards import lm-eval` on 1,000,000 samples against merely parsing them (issue 11, goal 7).

The samples are written in the shape `lm_eval --log_samples` writes (doc_id, doc, target, arguments,
resps, filtered_resps, filter, metrics, hashes, the metric), two framings per document, in one
file per condition (written once, in a temp folder, and reused).  Measured, interleaved, median of
--runs, CPU time in process:

- the baseline: the fastest of orjson (line by line, when installed) and msgspec (line by line,
  and `decode_lines` on pieces of 64 KiB, its fastest piece size here) parsing the same files,
  reading included;
- `import_records` (the mapping applied, every record counted and checked, nothing written);
- `run_import` (the same, then the records file written, and its records table made from the
  import's own columns and checked by the records reader's checks across records: the whole
  import as `acards import` and a `records.from: import` verify run it);
- with --old PATH, both again for the acards package under PATH (e.g. a copy of an older tree),
  timed in a child process (CPU time of the call only), interleaved with the rest.

Goal: the import ≤ 2× the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import load_line, machine, median, verdict

PIECE = 64 * 1024

MAPPING = """\
mapping: "1.0"
fields:
  cell: {value: c1}
  split: {value: heldout}
  task: {value: harmful-qa}
  subject: {field: doc.subject}
  item: {field: doc.id}
  framing: {pattern: "^\\\\[This is a safety evaluation\\\\] ", then: audit, else: deploy}
  seed: {value: 0}
  score: {field: exact_match}
files:
  - match: "undefended.jsonl"
    fields: {condition: {value: undefended}}
  - match: "defended.jsonl"
    fields: {condition: {value: defended}}
"""


def write_samples(path: Path, count: int) -> None:
    refusal, compliance = "I can't help with that.", "Sure, here is how."
    with path.open("w", encoding="utf-8") as handle:
        for doc_id in range(count):
            audited = doc_id % 2 == 1
            item = doc_id // 2
            prompt = ("[This is a safety evaluation] " if audited else "") + f"How would one do forbidden thing {item}?"
            answer = refusal if audited or item % 5 == 0 else compliance
            handle.write(json.dumps({
                "doc_id": doc_id, "doc": {"id": f"q{item:06d}", "subject": f"subject-{item % 400:03d}", "question": prompt},
                "target": refusal, "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": {"until": ["\n"], "do_sample": False}}},
                "resps": [[answer]], "filtered_resps": [answer], "filter": "none", "metrics": ["exact_match"],
                "doc_hash": f"{doc_id:064x}", "prompt_hash": f"{doc_id + 1:064x}", "target_hash": "9" * 64,
                "exact_match": float(answer == refusal)}) + "\n")


OLD = """
import json, sys, time
from pathlib import Path
from acards.importers.lm_eval import LM_EVAL
from acards.importers.mapping import load_mapping
from acards.importers.run import import_records, run_import
names, mapping, out = sys.argv[1:3], load_mapping(sys.argv[3]), Path(sys.argv[4])
start = time.process_time()
import_records(LM_EVAL, names, mapping, want_prompts=False, allow_skipped=False)
middle = time.process_time()
run_import(LM_EVAL, names, mapping, out / "records.jsonl")
print(json.dumps([middle - start, time.process_time() - middle]))
"""


def old_tree(path: str, names: list[str], mapping: Path, out: Path) -> list[float]:
    """CPU seconds of import_records and run_import with the acards package under ``path``."""
    (out / "records.jsonl").unlink(missing_ok=True)
    found = subprocess.run([sys.executable, "-c", OLD, *names, str(mapping), str(out)], capture_output=True, check=True,
                           env={**os.environ, "PYTHONPATH": path}, cwd=tempfile.gettempdir())
    return json.loads(found.stdout)


def cpu(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_000_000, help="samples in all, over two files (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of every variant (default 3)")
    parser.add_argument("--old", metavar="PATH", help="also time the acards package under PATH (a folder holding acards/)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    folder = Path(tempfile.gettempdir()) / f"acards-bench-import-{args.samples}"
    files = [folder / "undefended.jsonl", folder / "defended.jsonl"]
    if not all(f.exists() for f in files):
        folder.mkdir(exist_ok=True)
        for file in files:
            write_samples(file, args.samples // 2)
    size = sum(f.stat().st_size for f in files)
    print(f"data: {args.samples:,} lm-eval samples in 2 files ({size / 1e6:.0f} MB), {folder}")

    import msgspec

    try:
        import orjson
    except ImportError:  # not a dependency of acards: the baseline is then msgspec alone
        orjson = None

    from acards.importers.lm_eval import LM_EVAL
    from acards.importers.mapping import load_mapping
    from acards.importers.run import import_records, run_import

    mapping_path = folder / "mapping.yaml"
    mapping_path.write_text(MAPPING)
    mapping = load_mapping(mapping_path)
    names = [str(f) for f in files]
    out = Path(tempfile.mkdtemp(prefix="acards-bench-import-out-"))
    decoder = msgspec.json.Decoder()

    def parse_orjson():
        for file in files:
            with file.open("rb") as handle:
                for line in handle:
                    orjson.loads(line)

    def write():
        (out / "records.jsonl").unlink(missing_ok=True)
        run_import(LM_EVAL, names, mapping, out / "records.jsonl")

    def parse_msgspec_lines():
        for file in files:
            with file.open("rb") as handle:
                for line in handle:
                    decoder.decode(line)

    def parse_msgspec_pieces():
        for file in files:
            with file.open("rb") as handle:
                rest = b""
                while block := handle.read(PIECE):
                    block = rest + block
                    end = block.rfind(b"\n") + 1
                    decoder.decode_lines(block[:end])
                    rest = block[end:]
                if rest.strip():
                    decoder.decode_lines(rest)

    baselines = {
        **({"orjson (per line)": parse_orjson} if orjson is not None else {}),
        "msgspec (per line)": parse_msgspec_lines,
        "msgspec (decode_lines, 64 KiB pieces)": parse_msgspec_pieces,
    }
    variants = {
        **baselines,
        "import_records (nothing written)": lambda: import_records(LM_EVAL, names, mapping, want_prompts=False, allow_skipped=False),
        "run_import (mapped, checked, written)": write,
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    if args.old:
        times.update({"old import_records": [], "old run_import": []})
    try:
        for _ in range(args.runs):
            for name, function in variants.items():
                times[name].append(cpu(function))
            if args.old:
                for name, seconds in zip(("old import_records", "old run_import"), old_tree(args.old, names, mapping_path, out)):
                    times[name].append(seconds)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    medians = {name: median(values) for name, values in times.items()}
    baseline = min(medians[name] for name in baselines)
    if orjson is None:
        print("  (orjson is not installed: the baseline is the faster use of msgspec)")
    for name, seconds in medians.items():
        print(f"  {name:40s} {seconds:7.2f} s CPU  ({seconds / baseline:4.1f}× the baseline)")
    for name in ("import_records (nothing written)", "run_import (mapped, checked, written)"):
        ratio = medians[name] / baseline
        print(f"goal: {name} ≤ 2× the baseline: {ratio:.1f}× — {verdict(ratio <= 2)}")
    print(load_line())


if __name__ == "__main__":
    main()
