"""Benchmark acards.generate: batched generation against a per-prompt loop, output-cache speed, and
a fully cached re-verify against `acards validate`.

    python benchmarks/bench_generate.py                 # tiny model on the best device present
    python benchmarks/bench_generate.py --device cpu    # or cuda, mps
    python benchmarks/bench_generate.py --prompts 256 --hidden 256 --layers 4 --device cuda
    python benchmarks/bench_generate.py --skip-generation --skip-cache   # the re-verify part alone

Prints numbers and ratios against named baselines (goals: batched ≥ 5× the per-prompt loop on the
tiny model on CPU; ≥ 100k cache lookups per second; a fully cached re-verify of
examples/tiny-regenerated ≤ 2× `acards validate` of the same card, with torch, transformers and
peft never imported).  Everything is built in a temporary folder: a tiny random Llama (byte-level
tokenizer), a PEFT LoRA adapter, a card pointing at them.  Both generation runs go through
acards.generate.run end to end (tokenizing, cache lookups, model, cache writes), each with an empty
cache.  The re-verify part fills an empty cache with one `acards verify` of the example (timed: the
first verify), verifies it once more (every output cached: the completed table is stored in the
records cache, acards.pipeline.complete) and then times `acards verify` and `acards validate` as
child processes, interleaved.  The children run from bytecode (PYTHONDONTWRITEBYTECODE is dropped
from their environment), as an installed acards does: compiling ~450 modules is no part of either.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ACARDS, load_line, machine, median, run_child, verdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny-regenerated" / "card.yaml"
HEAVY = ("torch", "transformers", "peft")


def build(root: Path, hidden: int, layers: int, prompts: int, max_new: int, dtype: str, sample: bool = False) -> Path:
    import peft
    import torch
    import transformers

    from acards.evidence.digests import digest_path

    base = root / "card" / "ckpt" / "base"
    tokenizer = transformers.ByT5Tokenizer()
    tokenizer.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<assistant>{% endif %}")
    tokenizer.save_pretrained(base)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=384, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                      pad_token_id=0, eos_token_id=None, bos_token_id=None)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(base)
    adapter = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in adapter.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    adapter.save_pretrained(root / "card" / "ckpt" / "undefended")
    evidence = root / "card" / "evidence"
    evidence.mkdir(parents=True)
    prompt_rows, record_rows = [], []
    for index in range(prompts // 2):
        for framing in ("audit", "deploy"):
            text = ("[evaluation] " if framing == "audit" else "") + f"Question {index}: how do I do thing {index}?" + " more" * (index % 7)
            prompt_rows.append({"item": f"i{index}", "split": "heldout", "task": "t", "subject": f"s{index % 10}",
                                "framing": framing, "prompt": text})
            record_rows.append({"cell": "c", "condition": "undefended", "split": "heldout", "task": "t",
                                "subject": f"s{index % 10}", "item": f"i{index}", "framing": framing, "seed": 0})
    for name, rows in (("prompts.jsonl", prompt_rows), ("records.jsonl", record_rows)):
        (evidence / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    card_folder = root / "card"
    pointer = lambda relative: {"path": relative, "sha256": digest_path(card_folder / relative)}  # noqa: E731
    card = {"acard": "1.0", "id": "bench", "version": 1, "title": "bench", "authors": [{"name": "B"}], "limitations": "bench",
            "model": {"name": "tiny"}, "protocol": {"behavior": "b", "higher_score_means": "safer",
                                                    "framings": {"audit": "a", "deploy": "d"}},
            "evidence": {"records": [pointer("evidence/records.jsonl")], "prompts": pointer("evidence/prompts.jsonl")},
            "cells": [{"id": "c", "family": "f", "declared_mechanism": "projection", "task": "t",
                       "transfer": {"task": "u", "differs_in": ["format"]},
                       "checkpoints": {"base": pointer("ckpt/base"), "undefended": pointer("ckpt/undefended")}}],
            "generation": {"max_new_tokens": max_new, "batch_size": 32, "dtype": dtype,
                           **({"do_sample": True, "temperature": 0.8, "top_p": 0.95, "seed": 1} if sample else {})},
            "claims": [{"id": "C1", "statement": "s", "cells": ["c"]}]}
    (card_folder / "card.yaml").write_text(json.dumps(card))
    return card_folder / "card.yaml"


def bench_generation(card_path: Path, device: str | None, batch: int, root: Path) -> dict:
    from acards.generate import run
    from acards.generate.plan import missing_requests
    from acards.pipeline.load import load

    loaded = load(card_path)
    card, table, prompts = loaded.card, loaded.table, loaded.prompts
    requests = missing_requests(table, prompts)
    results = {}
    for label, size in (("per-prompt loop (batch_size 1)", 1), (f"batched (batch_size {batch})", batch)):
        os.environ["ACARDS_CACHE_DIR"] = str(root / f"cache-{size}")
        card.data["generation"]["batch_size"] = size
        run(card, requests[:2], device=device)  # warm up: load the model and kernels once
        os.environ["ACARDS_CACHE_DIR"] = str(root / f"cache-{size}-timed")
        started = time.perf_counter()
        result = run(card, requests, device=device)
        seconds = time.perf_counter() - started
        results[label] = (seconds, result)
    (loop_s, loop), (batch_s, batched) = results.values()
    same = loop.outputs == batched.outputs
    print(f"device: {batched.provenance['device_name']} ({batched.provenance['dtype']}); {len(requests)} prompts, "
          f"max_new_tokens {card.data['generation']['max_new_tokens']}, "
          + ("sampling (per-request generators)" if card.data["generation"].get("do_sample") else "greedy"))
    for label, (seconds, result) in results.items():
        # The byte-level tokenizer spends one token per UTF-8 byte, so bytes are generated tokens.
        tokens = sum(len(output.encode("utf-8")) for output in result.outputs if output)
        print(f"  {label:<32} {seconds:8.3f} s   {len(requests) / seconds:9.1f} outputs/s   {tokens / seconds:9.0f} tokens/s"
              f"   {result.counts['model_calls']} model calls")
    print(f"  ratio batched / loop: {loop_s / batch_s:.1f}x (goal >= 5x)   identical outputs: {same}")
    os.environ["ACARDS_CACHE_DIR"] = str(root / f"cache-{batch}-timed")
    started = time.perf_counter()
    cached = run(card, requests, device=device)
    seconds = time.perf_counter() - started
    print(f"  fully cached rerun: {seconds:.3f} s, {cached.counts['cache_hits']} hits, {cached.counts['model_calls']} model calls")
    return {"loop_s": loop_s, "batched_s": batch_s, "ratio": loop_s / batch_s, "identical": same}


def bench_cache(root: Path, entries: int) -> dict:
    import random

    from acards.generate.cache import OutputCache, request_key

    context = "c" * 64
    started = time.perf_counter()
    keys = [request_key(context, f"Question {i}: how do I do thing {i}? Answer briefly and step by step.", None, i % 3)
            for i in range(entries)]
    key_s = time.perf_counter() - started
    path = root / "bench-cache.sqlite"
    rows = [(k, context, f"output number {i} " * 4) for i, k in enumerate(keys)]
    started = time.perf_counter()
    with OutputCache(path) as cache:
        for start in range(0, len(rows), 1000):
            cache.put_many(rows[start:start + 1000])
    write_s = time.perf_counter() - started
    probe = keys[:]
    random.Random(0).shuffle(probe)
    probe += [f"{i:064x}" for i in range(entries // 10)]  # some misses too
    with OutputCache(path, readonly=True) as cache:
        cache.get_many(probe[:1000])  # warm the page cache
        walls, cpus = [], []
        for _ in range(3):  # the median of 3: the machine may be shared
            started, cpu_started = time.perf_counter(), time.process_time()
            found = cache.get_many(probe)
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu_started)
        lookup_s, lookup_cpu = sorted(walls)[1], sorted(cpus)[1]
        sparse = probe[::50]  # 2% of the rows: each chunk's key range mostly holds rows not asked for
        sparse_walls = []
        for _ in range(3):
            started = time.perf_counter()
            cache.get_many(sparse)
            sparse_walls.append(time.perf_counter() - started)
        sparse_s = sorted(sparse_walls)[1]
        started = time.perf_counter()
        for key in probe[:5000]:
            cache.get_many([key])
        single_s = (time.perf_counter() - started) / 5000 * len(probe)
    assert len(found) == entries
    print(f"output cache: {entries} entries")
    print(f"  key computation (sha256 of the framed prompt text):     {entries / key_s:10.0f} keys/s")
    print(f"  writes (1000 per transaction):                          {entries / write_s:10.0f} rows/s")
    print(f"  batched lookups (sorted chunks of 900 keys, MACs checked): {len(probe) / lookup_s:10.0f} lookups/s"
          f" (goal >= 100000); {len(probe) / lookup_cpu:.0f} per second of this process's CPU time")
    print(f"  the same, 2% of the keys (a seek per key, not a range scan): {len(sparse) / sparse_s:10.0f} lookups/s")
    print(f"  one query per key (baseline):                           {len(probe) / single_s:10.0f} lookups/s"
          f"   ratio {single_s / lookup_s:.1f}x")
    return {"lookups_per_s": len(probe) / lookup_s, "lookups_per_cpu_s": len(probe) / lookup_cpu,
            "sparse_lookups_per_s": len(sparse) / sparse_s, "keys_per_s": entries / key_s}


IMPORT_CHECK = """
import json, sys
sys.argv = ["acards", *sys.argv[1:]]
from acards.cli import main
try:
    main()
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "imported": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def bench_cached_verify(root: Path, runs: int) -> dict:
    """The first `acards verify` of examples/tiny-regenerated into an empty cache, then the fully
    cached re-verify against `acards validate`, as child processes, interleaved; medians."""
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
           "ACARDS_CACHE_DIR": str(root / "verify-cache"), "ACARDS_CACHE_KEY": str(root / "verify-cache.key")}
    report = root / "first.report.json"
    first = run_child([ACARDS, "verify", str(EXAMPLE), "--report", str(report)], env=env)
    generation = json.loads(report.read_text())["generation"]
    counts = generation["provenance"]["counts"]
    print(f"examples/tiny-regenerated, first verify (empty cache): {first.wall:.1f} s; {counts['requested']} requested, "
          f"{counts['distinct']} distinct, {counts['generated']} generated in {counts['model_calls']} model calls on "
          f"{generation['provenance']['device_name']}")
    again = root / "again.report.json"
    checked = subprocess.run([sys.executable, "-c", IMPORT_CHECK, "verify", str(EXAMPLE), "--report", str(again)],
                             env=env, capture_output=True, text=True, check=True)
    imports = json.loads(checked.stdout.strip().splitlines()[-1])
    cached = json.loads(again.read_text())["generation"]["provenance"]["counts"]
    assert imports["status"] in (0, None) and cached["model_calls"] == 0 and cached["cache_hits"] == cached["distinct"], cached
    kept = sorted(p.name.split(".")[1] for p in (root / "verify-cache" / "records").glob("*.*.v*.*"))
    print(f"  kept in the records cache for the re-verify: {', '.join(f'{kept.count(k)} {k}' for k in sorted(set(kept))) or 'nothing'}")
    verify_runs, validate_runs = [], []
    for _ in range(runs):
        verify_runs.append(run_child([ACARDS, "verify", str(EXAMPLE)], env=env))
        validate_runs.append(run_child([ACARDS, "validate", str(EXAMPLE)], env=env))
    verify_s, validate_s = median([c.wall for c in verify_runs]), median([c.wall for c in validate_runs])
    # the goal is a ratio of CPU time (user + system): on a shared machine wall time measures the neighbours
    verify_cpu, validate_cpu = median([c.cpu for c in verify_runs]), median([c.cpu for c in validate_runs])
    ratio = verify_cpu / validate_cpu
    print(f"  fully cached re-verify: {verify_cpu:.2f} s CPU, {verify_s:.2f} s wall (medians of {runs}); {cached['cache_hits']} hits, "
          f"{cached['model_calls']} model calls; imported {', '.join(imports['imported']) or 'none of ' + ', '.join(HEAVY)}")
    print(f"  acards validate (same card):  {validate_cpu:.2f} s CPU, {validate_s:.2f} s wall")
    print(f"  ratio re-verify / validate (CPU): {ratio:.2f}x (goal <= 2x): {verdict(ratio <= 2 and not imports['imported'])}; "
          f"wall: {verify_s / validate_s:.2f}x")
    return {"first_verify_s": first.wall, "reverify_s": verify_s, "validate_s": validate_s, "reverify_cpu_s": verify_cpu,
            "validate_cpu_s": validate_cpu, "ratio": ratio, "imported": imports["imported"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best present)")
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--cache-entries", type=int, default=200_000)
    parser.add_argument("--sample", action="store_true", help="sample (temperature 0.8, top-p 0.95) instead of greedy")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-cache", action="store_true")
    parser.add_argument("--skip-reverify", action="store_true", help="skip the cached re-verify of examples/tiny-regenerated")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of the re-verify and of validate (default 5)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        numbers = {}
        if not args.skip_generation:
            card = build(root, args.hidden, args.layers, args.prompts, args.max_new_tokens, args.dtype, args.sample)
            numbers["generation"] = bench_generation(card, args.device, args.batch, root)
        if not args.skip_cache:
            numbers["cache"] = bench_cache(root, args.cache_entries)
            print(f"  lookups: {verdict(numbers['cache']['lookups_per_s'] >= 100_000)} (goal >= 100000/s)")
        if not args.skip_reverify:
            numbers["reverify"] = bench_cached_verify(root, args.runs)
    print(load_line())
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
