"""Benchmark acards.generate: batched generation against a per-prompt loop, and output-cache speed.

    python benchmarks/bench_generate.py                 # tiny model on the best device present
    python benchmarks/bench_generate.py --device cpu    # or cuda, mps
    python benchmarks/bench_generate.py --prompts 256 --hidden 256 --layers 4 --device cuda

Prints numbers and ratios against named baselines (goals: batched ≥ 5× the per-prompt loop on the
tiny model on CPU; ≥ 100k cache lookups per second).  Everything is built in a temporary folder:
a tiny random Llama (byte-level tokenizer), a PEFT LoRA adapter, a card pointing at them.  Both
generation runs go through acards.generate.run end to end (tokenizing, cache lookups, model,
cache writes), each with an empty cache.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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
    keys = [request_key(context, [i] + list(range(1, 60)), i % 3) for i in range(entries)]
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
        started = time.perf_counter()
        found = cache.get_many(probe)
        lookup_s = time.perf_counter() - started
        started = time.perf_counter()
        for key in probe[:5000]:
            cache.get_many([key])
        single_s = (time.perf_counter() - started) / 5000 * len(probe)
    assert len(found) == entries
    print(f"output cache: {entries} entries")
    print(f"  key computation (RFC 8785 + sha256, 60-token prompts): {entries / key_s:10.0f} keys/s")
    print(f"  writes (1000 per transaction):                          {entries / write_s:10.0f} rows/s")
    print(f"  batched lookups (one query per 900 keys):               {len(probe) / lookup_s:10.0f} lookups/s (goal >= 100000)")
    print(f"  one query per key (baseline):                           {len(probe) / single_s:10.0f} lookups/s"
          f"   ratio {single_s / lookup_s:.1f}x")
    return {"lookups_per_s": len(probe) / lookup_s, "keys_per_s": entries / key_s}


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
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        numbers = {}
        if not args.skip_generation:
            card = build(root, args.hidden, args.layers, args.prompts, args.max_new_tokens, args.dtype, args.sample)
            numbers["generation"] = bench_generation(card, args.device, args.batch, root)
        if not args.skip_cache:
            numbers["cache"] = bench_cache(root, args.cache_entries)
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
