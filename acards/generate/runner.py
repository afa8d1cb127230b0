"""Generate the outputs of a list of requests, through the output cache.

For each request: resolve its condition's model (:mod:`.models`), render and tokenize its prompt
once (:mod:`.prompting`), compute its cache key (:mod:`.cache`).  All keys are looked up in one
query per 900; only the misses reach a model, which is loaded only if there is a miss.  Misses
are deduplicated by key, grouped by model, and ordered by (prompt length, descending; then cache
key), so batches hold prompts of similar length and the order is the same on every run.  Each
finished batch is committed to the cache in one transaction: an interrupted run (Ctrl-C) keeps
every finished batch and the next run resumes from there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from acards.generate.backends import Decoding, backend_class
from acards.generate.cache import (
    OutputCache,
    context_digest,
    main_path,
    request_key,
    sampling_seed,
    shard_files,
    shard_of,
    shard_path,
)
from acards.generate.models import ModelResolver, eos_token_ids, tokenizer_digest
from acards.generate.progress import bar
from acards.generate.prompting import PromptEncoder
from acards.generate.requests import GenerationResult, Request

ORDERING = ("requests are deduplicated by cache key, grouped by model, and sorted by prompt length (descending), "
            "then cache key; batches of generation.batch_size are cut from that order")
SAMPLER = "gumbel-max/per-request-generator/1"
SEEDING = ("greedy decoding: no randomness" ,
           "per request: a torch.Generator seeded with the first 63 bits of the request's cache key (a digest of "
           "generation.seed, weights, tokenizer, prompt ids, decoding settings and sample index); Gumbel-max sampling "
           "over the temperature/top-p warped scores, so a request's sample does not depend on its batch")


def _backend_info(backend: Any, name: str, dtype: str) -> tuple[str, dict, str]:
    if backend is None or isinstance(backend, str):
        cls = backend_class(backend or name)
        return cls.name, cls.versions(), dtype
    return backend.name, backend.versions(), backend.dtype


def _decoding_key(decoding: Decoding, eos_ids: list[int]) -> dict:
    key = {"max_new_tokens": decoding.max_new_tokens, "do_sample": decoding.do_sample, "eos_token_ids": list(eos_ids)}
    if decoding.do_sample:
        key.update(temperature=decoding.temperature, top_p=decoding.top_p, seed=decoding.seed, sampler=SAMPLER)
    return key


def _warn_rejected(caches: list[OutputCache]) -> None:
    """One cache.entry-rejected warning per file that held entries failing their check."""
    from acards.errors import Location
    from acards.evidence.cachekey import rejected_warning

    for cache in caches:
        if cache.rejected_count:
            reasons = cache.rejected
            rejected_warning(f"{cache.rejected_count} cached outputs in {cache.path} were not used: their MAC does not verify "
                             f"under this user's cache key ({reasons['altered']} altered, {reasons['other-key']} written "
                             f"under another key, {reasons['no-mac']} without a MAC)",
                             "they are regenerated; if you did not expect this, someone else may be writing this cache folder",
                             Location(file=str(cache.path)))


def run_local(card, requests: list[Request], *, device=None, shard=None, progress=None, backend=None, digests=None,
              cache_dir=None) -> GenerationResult:
    """Generate here.  ``digests``: the command's DigestCache (default: open one for this call);
    ``cache_dir``: the folder of the output cache and control adapters (default: acards.settings)."""
    started = time.time()
    decoding = Decoding.from_card(card)
    use_template = bool(card.section("generation")["chat_template"])
    selected = [i for i, r in enumerate(requests) if shard is None or shard_of(r.identity_dict(), shard[1]) == shard[0]]
    backend_name, backend_versions, dtype = _backend_info(backend, "transformers", decoding.dtype)
    backend_key = {"name": backend_name, "versions": backend_versions, "dtype": dtype}

    resolver = ModelResolver(card, digests=digests, cache_dir=cache_dir)
    encoders: dict[tuple, PromptEncoder] = {}
    tokenizer_digests: dict[str, str] = {}
    contexts: dict[str, dict] = {}  # spec ident -> {"digest", "description", "spec", "encoder"}
    keys: list[str | None] = [None] * len(requests)
    ids_of: dict[str, list[int]] = {}
    sample_of: dict[str, int] = {}
    group_of: dict[str, str] = {}
    models: dict[str, dict] = {}
    try:
        with bar(len(selected), "tokenizing", progress) as tokenizing:
            for i in selected:
                request = requests[i]
                spec = resolver.spec(request.cell, request.condition, request.seed)
                ident = spec.ident
                if ident not in contexts:
                    extra_eos = eos_token_ids(spec.weights_folder) or eos_token_ids(spec.base)
                    encoder_key = (str(spec.base), tuple(extra_eos))
                    if encoder_key not in encoders:
                        encoders[encoder_key] = PromptEncoder(spec.base, use_template, extra_eos)
                    encoder = encoders[encoder_key]
                    if str(spec.base) not in tokenizer_digests:
                        tokenizer_digests[str(spec.base)] = tokenizer_digest(spec.base, digests)
                    description = {"weights": spec.weights, "tokenizer": tokenizer_digests[str(spec.base)],
                                   "decoding": _decoding_key(decoding, encoder.eos_ids), "backend": backend_key}
                    contexts[ident] = {"digest": context_digest(description), "description": description,
                                       "spec": spec, "encoder": encoder}
                    models[ident] = {"weights": spec.weights, "conditions": set(), "prompt_rendering": encoder.policy()}
                models[ident]["conditions"].add(f"{request.cell}:{request.condition}")
                context = contexts[ident]
                ids = context["encoder"].encode(request.prompt, request.system)
                key = request_key(context["digest"], ids, request.sample)
                keys[i] = key
                ids_of[key], sample_of[key], group_of[key] = ids, request.sample, ident
                tokenizing.update()
    finally:
        resolver.close()
    rejected_controls = resolver.rejected_controls

    main = main_path(cache_dir)
    write_path = shard_path(*shard, cache_dir=cache_dir) if shard is not None else main
    # Also read shard files not merged yet, so finished work is never redone.
    others = [p for p in shard_files(cache_dir) if p != write_path]
    readers = ([OutputCache(main, readonly=True)] if shard is not None else []) + [OutputCache(p, readonly=True) for p in others]
    writer = OutputCache(write_path)
    found: dict[str, str] = {}
    generated = 0
    made = None
    try:
        wanted = list(dict.fromkeys(k for k in keys if k is not None))
        for cache in [*readers, writer]:
            found.update(cache.get_many([k for k in wanted if k not in found]))
        rejected = {str(c.path): c.rejected_count for c in [*readers, writer] if c.rejected_count}
        if rejected:
            _warn_rejected([*readers, writer])
        hits = sum(1 for i in selected if keys[i] in found)
        missing = [k for k in wanted if k not in found]
        if missing:
            made = backend if backend is not None and not isinstance(backend, str) else \
                backend_class(backend or "transformers")(device=device, dtype=decoding.dtype)
            calls_before = made.model_calls
            by_group: dict[str, list[str]] = defaultdict(list)
            for key in missing:
                by_group[group_of[key]].append(key)
            with bar(len(missing), "generating", progress) as generating:
                for ident in sorted(by_group):
                    context = contexts[ident]
                    order = sorted(by_group[ident], key=lambda k: (-len(ids_of[k]), k))
                    for start in range(0, len(order), decoding.batch_size):
                        batch = order[start:start + decoding.batch_size]
                        seeds = [sampling_seed(k) for k in batch] if decoding.do_sample else None
                        new_ids = made.generate(context["spec"], [ids_of[k] for k in batch], decoding, seeds,
                                                context["encoder"].pad_id, context["encoder"].eos_ids)
                        texts = [context["encoder"].decode(ids) for ids in new_ids]
                        writer.put_many([(k, context["digest"], t) for k, t in zip(batch, texts)],
                                        {context["digest"]: context["description"]})
                        found.update(zip(batch, texts))
                        generated += len(batch)
                        generating.update(len(batch))
            model_calls = made.model_calls - calls_before
        else:
            model_calls = 0
    finally:
        for cache in [*readers, writer]:
            cache.close()
        device_name = made.device_name() if made is not None else None
        device_kind = getattr(made, "device", None) if made is not None else None
        if made is not None and made is not backend:
            made.close()

    outputs = [found.get(k) if k is not None else None for k in keys]
    counts = {"requested": len(requests), "in_shard": len(selected), "skipped": len(requests) - len(selected),
              "cache_hits": hits, "cache_misses": len(selected) - hits, "generated": generated, "model_calls": model_calls,
              "cache_rejected": sum(rejected.values()) + rejected_controls}
    from acards.generate.provenance import generation_provenance

    provenance = generation_provenance(
        backend_name=backend_name, backend_versions=backend_versions, dtype=dtype, decoding=decoding,
        device=device_name, device_kind=device_kind,
        counts=counts, models=[{**m, "conditions": sorted(m["conditions"])} for m in models.values()],
        cache={"path": str(write_path), "read": [str(c.path) for c in readers] + [str(write_path)]},
        shard=shard, ordering=ORDERING, seeding=SEEDING[1] if decoding.do_sample else SEEDING[0],
        seconds=time.time() - started)
    if rejected or rejected_controls:
        provenance["cache_rejected"] = {
            "code": "cache.entry-rejected", "outputs": rejected, "control_adapters": rejected_controls,
            "message": "cache entries that failed their MAC check (altered, written under another key, or by an acards "
                       "without MACs) were ignored and regenerated; none was used"}
    context_of = [contexts[group_of[k]]["digest"] if k is not None else None for k in keys]
    descriptions = {c["digest"]: c["description"] for c in contexts.values()}
    return GenerationResult(outputs=outputs, counts=counts, provenance=provenance, keys=keys, contexts=context_of,
                            descriptions=descriptions)
