"""`acards generate` and `acards spot-check`: the load step, then regeneration alone.

`generate` writes what `verify` would regenerate into the output cache ahead of time (and, with
``out``, as scored records JSONL); `spot-check` regenerates a seeded subset of supplied outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from acards.errors import AcardsError
from acards.files import atomic_write
from acards.generate import run, spot_check
from acards.generate.plan import control_requests, missing_requests, to_records
from acards.generate.scorers import score_for_card
from acards.pipeline.load import load


def generate_card(card_path: Path, *, shard: str | None = None, executor: str | None = None, shards: int | None = None,
                  device: str | None = None, backend: str | None = None, controls: bool = True, out: Path | None = None,
                  progress: bool | None = None, digests=None, cache_dir: Path | None = None) -> dict[str, Any]:
    """Regenerate every missing output of a card (and missing control:shrinkage records) into the
    cache; with ``out``, also write them, scored by the card's scorer, as records JSONL.  ``digests``:
    the command's DigestCache; ``cache_dir``: the folder of the output cache (defaults: acards.settings)."""
    if shard is not None and executor == "ray":
        raise AcardsError("usage.conflict", "--shard and --executor ray do not go together",
                          "--executor ray runs every shard itself (--shards N); --shard i/N runs one shard here")
    loaded = load(card_path, digests=digests)
    card, table, prompts = loaded.card, loaded.table, loaded.prompts
    requests = missing_requests(table, prompts)
    if controls:
        requests += control_requests(card, table, prompts)
    summary: dict[str, Any] = {"card": str(card_path), "requests": len(requests)}
    if not requests:
        summary.update(counts={"requested": 0, "generated": 0, "cache_hits": 0, "cache_misses": 0}, provenance={})
        return summary
    result = run(card, requests, device=device, shard=shard, executor=executor, progress=progress, backend=backend,
                 shards=shards, digests=digests, cache_dir=cache_dir)
    summary.update(counts=result.counts, provenance=result.provenance)
    if out is not None:
        scores = None
        if card.data.get("scorer"):
            scores, scorer_provenance = score_for_card(card, [r.split for r in requests], result.outputs,
                                                       [r.reference for r in requests], device=device, progress=progress,
                                                       digests=digests)
            summary["provenance"] = {**result.provenance, "scorer": scorer_provenance}
        records = list(to_records(requests, result.outputs, scores).values())
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
        summary.update(out=str(out), written=len(records))
    return summary


def spot_check_card(card_path: Path, *, n: int = 20, seed: int = 0, device: str | None = None,
                    backend: str | None = None, progress: bool | None = None, digests=None,
                    cache_dir: Path | None = None) -> dict[str, Any]:
    """Regenerate ``n`` supplied outputs (a choice seeded by ``seed``) and report the exact-match rate."""
    loaded = load(card_path, digests=digests)
    return spot_check(loaded.card, loaded.table, loaded.prompts, n=n, seed=seed, device=device, progress=progress,
                      backend=backend, digests=digests, cache_dir=cache_dir)
