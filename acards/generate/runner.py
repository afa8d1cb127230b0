"""Generate the outputs of a list of requests, through the output cache.

For each request: resolve its condition's model (:mod:`.models`) and compute its cache key from its
prompt text (:mod:`.cache`): no tokenizer is loaded for that, so a run whose outputs are all cached
never imports torch, transformers or peft.  All keys are looked up in one query per 900; only the
misses reach a model.  Misses are deduplicated by key (two cells asking for the same output make
one request, counted once), tokenized (:mod:`.prompting`), grouped by model and ordered by (prompt
length, descending; then cache key), so batches hold prompts of similar length and the order is the
same on every run.  Each finished batch is committed to the cache in one transaction: an
interrupted run (Ctrl-C) keeps every finished batch and the next run resumes from there.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from acards.errors import AcardsError, Location
from acards.generate.backends import Decoding, backend_class, backend_versions
from acards.generate.cache import (
    OutputCache,
    context_digest,
    main_path,
    request_key,
    sampling_seed,
    seed_key,
    shard_files,
    shard_of,
    shard_path,
)
from acards.generate.models import ModelResolver, tokenizer_digest
from acards.generate.progress import bar
from acards.generate.prompting import RULES, PromptEncoder, pinned_encoder, rendering_key
from acards.generate.requests import GenerationResult, Request

ORDERING = ("requests are deduplicated by cache key, grouped by model, and sorted by prompt length (descending), "
            "then cache key; batches of generation.batch_size are cut from that order")
SAMPLER = "gumbel-max/per-request-generator/1"
SEEDING = ("greedy decoding: no randomness" ,
           "per request: a torch.Generator seeded with the first 63 bits of a digest of generation.seed, weights, "
           "tokenizer, prompt ids, decoding settings with stop ids, backend and sample index; Gumbel-max sampling "
           "over the temperature/top-p warped scores, so a request's sample does not depend on its batch")


def _backend_info(backend: Any, name: str, dtype: str) -> tuple[str, dict, str]:
    if backend is None or isinstance(backend, str):
        name = backend or name
        return name, backend_versions(name), dtype  # from package metadata: the backend is not imported
    return backend.name, backend.versions(), backend.dtype


def _decoding_key(decoding: Decoding) -> dict:
    """The decoding settings the cache key names (stop ids come with the tokenizer and weights digests)."""
    key: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "do_sample": decoding.do_sample}
    if decoding.do_sample:
        key.update(temperature=decoding.temperature, top_p=decoding.top_p, seed=decoding.seed, sampler=SAMPLER)
    return key


def _seed_context(description: dict, eos_ids: list[int]) -> str:
    """The digest a sampled request's seed is drawn from (with its prompt ids): the context in the
    form acards has always seeded from, stop ids included, so samples stay what they were."""
    decoding = dict(description["decoding"])
    decoding["eos_token_ids"] = list(eos_ids)
    return context_digest({"weights": description["weights"], "tokenizer": description["tokenizer"],
                           "decoding": decoding, "backend": description["backend"]})


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


class _Encoders:
    """The prompt encoder of each model's tokenizer, loaded only for models that have misses; each
    must read the tokenizer the cache key named (the same files: the base folder did not change)."""

    def __init__(self, use_template: bool, digests):
        self.use_template, self.digests = use_template, digests
        self._loaded: dict[tuple, PromptEncoder] = {}

    def __call__(self, spec, expected_tokenizer: str) -> PromptEncoder:
        key = (str(spec.base), spec.base_digest, str(spec.full), spec.full_digest)
        if key not in self._loaded:
            encoder, tokenizer = pinned_encoder(spec, self.use_template, self.digests)
            if tokenizer != expected_tokenizer:
                raise AcardsError("evidence.digest-mismatch",
                                  f"the tokenizer files of {spec.base} changed while acards was reading them "
                                  f"(digest {expected_tokenizer[:12]}… when the cache was looked up, {tokenizer[:12]}… when loaded)",
                                  "make sure nothing writes the model folder during verification, then run again",
                                  Location(file=str(spec.base)))
            self._loaded[key] = encoder
        return self._loaded[key]


def run_local(card, requests: list[Request], *, device=None, shard=None, progress=None, backend=None, digests=None,
              cache_dir=None) -> GenerationResult:
    """Generate here.  ``digests``: the command's DigestCache (default: open one for this call);
    ``cache_dir``: the folder of the output cache and control adapters (default: acards.settings)."""
    started = time.time()
    decoding = Decoding.from_card(card)
    use_template = bool(card.section("generation")["chat_template"])
    selected = [i for i, r in enumerate(requests) if shard is None or shard_of(r.identity_dict(), shard[1]) == shard[0]]
    backend_name, backend_versions_, dtype = _backend_info(backend, "transformers", decoding.dtype)
    backend_key = {"name": backend_name, "versions": backend_versions_, "dtype": dtype}
    rendering = rendering_key(use_template)

    resolver = ModelResolver(card, digests=digests, cache_dir=cache_dir)
    tokenizers: dict[tuple[str, str], str] = {}  # (base folder, its digest) -> tokenizer digest
    contexts: dict[str, dict] = {}  # spec ident -> {"digest", "description", "spec"}
    keys: list[str | None] = [None] * len(requests)
    first_of: dict[str, int] = {}  # key -> the first request asking for it
    group_of: dict[str, str] = {}
    models: dict[str, dict] = {}
    # (cell, condition, seed) -> (model ident, context digest): a re-verify asks for thousands of
    # requests of a handful of models, so each model is resolved and described once.
    model_of: dict[tuple, tuple[str, str]] = {}
    try:
        for i in selected:
            request = requests[i]
            asked = (request.cell, request.condition, request.seed)
            known = model_of.get(asked)
            if known is None:
                spec = resolver.spec(*asked)
                ident = spec.ident
                if ident not in contexts:
                    where = (str(spec.base), spec.base_digest)
                    if where not in tokenizers:
                        tokenizers[where] = tokenizer_digest(spec.base, digests)
                    description = {"weights": spec.weights, "tokenizer": tokenizers[where], "prompting": rendering,
                                   "decoding": _decoding_key(decoding), "backend": backend_key}
                    contexts[ident] = {"digest": context_digest(description), "description": description, "spec": spec}
                    models[ident] = {"weights": spec.weights, "conditions": set(),
                                     "prompt_rendering": {"rules": RULES, "chat_template": use_template, "tokenizer": tokenizers[where]}}
                models[ident]["conditions"].add(f"{request.cell}:{request.condition}")
                known = model_of[asked] = (ident, contexts[ident]["digest"])
            ident, context = known
            key = request_key(context, request.prompt, request.system, request.sample)
            keys[i] = key
            if key not in first_of:
                first_of[key], group_of[key] = i, ident
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
        wanted = list(first_of)  # each distinct output once, however many requests share it
        for cache in [*readers, writer]:
            found.update(cache.get_many([k for k in wanted if k not in found]))
        rejected = {str(c.path): c.rejected_count for c in [*readers, writer] if c.rejected_count}
        if rejected:
            _warn_rejected([*readers, writer])
        missing = [k for k in wanted if k not in found]
        model_calls = 0
        if missing:
            by_group: dict[str, list[str]] = defaultdict(list)
            for key in missing:
                by_group[group_of[key]].append(key)
            ids_of = _tokenize(by_group, requests, first_of, contexts, models, _Encoders(use_template, digests), progress)
            made = backend if backend is not None and not isinstance(backend, str) else \
                backend_class(backend or "transformers")(device=device, dtype=decoding.dtype)
            calls_before = made.model_calls
            generated = _generate(made, by_group, ids_of, requests, first_of, contexts, decoding, writer, found, progress)
            model_calls = made.model_calls - calls_before
    finally:
        for cache in [*readers, writer]:
            cache.close()
        device_name = made.device_name() if made is not None else None
        device_kind = getattr(made, "device", None) if made is not None else None
        if made is not None and made is not backend:
            made.close()

    outputs = [found.get(k) if k is not None else None for k in keys]
    counts = {"requested": len(requests), "in_shard": len(selected), "skipped": len(requests) - len(selected),
              "distinct": len(wanted), "cache_hits": len(wanted) - len(missing), "cache_misses": len(missing),
              "generated": generated, "model_calls": model_calls,
              "cache_rejected": sum(rejected.values()) + rejected_controls}
    from acards.generate.provenance import generation_provenance

    provenance = generation_provenance(
        backend_name=backend_name, backend_versions=backend_versions_, dtype=dtype, decoding=decoding,
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


def _tokenize(by_group: dict[str, list[str]], requests: list[Request], first_of: dict[str, int], contexts: dict[str, dict],
              models: dict[str, dict], encoders: _Encoders, progress) -> dict[str, list[int]]:
    """The prompt ids of each missing output (keyed by cache key), with its model's encoder loaded
    into its context (``contexts[ident]["encoder"]``) and its rendering policy into provenance."""
    ids_of: dict[str, list[int]] = {}
    with bar(sum(len(g) for g in by_group.values()), "tokenizing", progress) as tokenizing:
        for ident, group in by_group.items():
            context = contexts[ident]
            encoder = context["encoder"] = encoders(context["spec"], context["description"]["tokenizer"])
            models[ident]["prompt_rendering"]["applied"] = encoder.policy()
            for key in group:
                request = requests[first_of[key]]
                ids_of[key] = encoder.encode(request.prompt, request.system)
            tokenizing.update(len(group))
    return ids_of


def _generate(made, by_group: dict[str, list[str]], ids_of: dict[str, list[int]], requests: list[Request],
              first_of: dict[str, int], contexts: dict[str, dict], decoding: Decoding, writer: OutputCache,
              found: dict[str, str], progress) -> int:
    """Generate the missing outputs batch by batch, writing each batch to the cache; returns how many."""
    generated = 0
    with bar(len(ids_of), "generating", progress) as generating:
        for ident in sorted(by_group):
            context = contexts[ident]
            encoder = context["encoder"]
            seeded_from = _seed_context(context["description"], encoder.eos_ids) if decoding.do_sample else None
            order = sorted(by_group[ident], key=lambda k: (-len(ids_of[k]), k))
            for start in range(0, len(order), decoding.batch_size):
                batch = order[start:start + decoding.batch_size]
                seeds = [sampling_seed(seed_key(seeded_from, ids_of[k], requests[first_of[k]].sample)) for k in batch] \
                    if seeded_from is not None else None
                new_ids = made.generate(context["spec"], [ids_of[k] for k in batch], decoding, seeds,
                                        encoder.pad_id, encoder.eos_ids)
                texts = [encoder.decode(ids) for ids in new_ids]
                writer.put_many([(k, context["digest"], t) for k, t in zip(batch, texts)],
                                {context["digest"]: context["description"]})
                found.update(zip(batch, texts))
                generated += len(batch)
                generating.update(len(batch))
    return generated
