"""What `acards generate`, `acards spot-check` and `acards cache …` do; cli.py only parses and prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acards.errors import AcardsError


def load_evidence(card_path: Path):
    """(card, records table, prompts): the card validated, every digest checked, records and prompts read."""
    from acards.card.model import load_card
    from acards.evidence.digests import DigestCache
    from acards.generate.plan import read_prompts
    from acards.pipeline.verify import load_evidence as check_and_read

    card = load_card(card_path)
    cache = DigestCache(DigestCache.default_path())
    try:
        _results, table = check_and_read(card, cache)
    finally:
        cache.close()
    return card, table, read_prompts(card)


def generate_card(card_path: Path, *, shard: str | None = None, executor: str | None = None, shards: int | None = None,
                  device: str | None = None, backend: str | None = None, controls: bool = True, out: Path | None = None,
                  progress: bool | None = None) -> dict[str, Any]:
    """Regenerate every missing output of a card (and missing control:shrinkage records) into the
    cache; with ``out``, also write them, scored by the card's scorer, as records JSONL."""
    from acards.generate import run
    from acards.generate.plan import control_requests, missing_requests, to_records

    if shard is not None and executor == "ray":
        raise AcardsError("usage.conflict", "--shard and --executor ray do not go together",
                          "--executor ray runs every shard itself (--shards N); --shard i/N runs one shard here")
    card, table, prompts = load_evidence(card_path)
    requests = missing_requests(card, table, prompts)
    if controls:
        requests += control_requests(card, table, prompts)
    summary: dict[str, Any] = {"card": str(card_path), "requests": len(requests)}
    if not requests:
        summary.update(counts={"requested": 0, "generated": 0, "cache_hits": 0, "cache_misses": 0}, provenance={})
        return summary
    result = run(card, requests, device=device, shard=shard, executor=executor, progress=progress, backend=backend,
                 shards=shards)
    summary.update(counts=result.counts, provenance=result.provenance)
    if out is not None:
        from acards.files import atomic_write
        from acards.generate.scorers import score_for_card

        scores = None
        if card.data.get("scorer"):
            scores, scorer_provenance = score_for_card(card, [r.split for r in requests], result.outputs,
                                                       [r.reference for r in requests], device=device, progress=progress)
            summary["provenance"] = {**result.provenance, "scorer": scorer_provenance}
        records = to_records(requests, result.outputs, scores)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
        summary.update(out=str(out), written=len(records))
    return summary


def spot_check_card(card_path: Path, *, n: int = 20, seed: int = 0, device: str | None = None,
                    backend: str | None = None, progress: bool | None = None) -> dict[str, Any]:
    from acards.generate import spot_check

    card, table, prompts = load_evidence(card_path)
    return spot_check(card, table, prompts, n=n, seed=seed, device=device, progress=progress, backend=backend)
