"""Provenance of generated outputs and scores, for the report's ``generation`` section (SPEC §7)."""

from __future__ import annotations

from platform import python_version
from typing import Any

from acards.generate.backends.base import package_versions, platform_name

PACKAGES = ("acards", "torch", "transformers", "peft", "tokenizers", "safetensors", "accelerate", "vllm", "ray")


def generation_provenance(*, backend_name: str, backend_versions: dict, dtype: str, decoding, device: str | None,
                          device_kind: str | None, counts: dict, models: list[dict], cache: dict, shard, ordering: str,
                          seeding: str, seconds: float) -> dict[str, Any]:
    from acards import __version__

    versions = {name: version for name, version in package_versions(*PACKAGES).items() if version is not None}
    versions["acards"] = __version__
    return {
        "backend": {"name": backend_name, "versions": backend_versions},
        "packages": versions,
        "python": python_version(),
        "platform": platform_name(),
        "device": device_kind or "none (every output came from the cache)",
        "device_name": device or "none (every output came from the cache)",
        "dtype": dtype,
        "batch_size": decoding.batch_size,
        "decoding": {"max_new_tokens": decoding.max_new_tokens, "do_sample": decoding.do_sample,
                     "temperature": decoding.temperature, "top_p": decoding.top_p, "seed": decoding.seed},
        "ordering": ordering,
        "seeding": seeding,
        "counts": dict(counts),
        "cache": cache,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "models": models,
        "seconds": round(seconds, 3),
        "scorer": None,
    }


def report_section(result=None, *, scored: int = 0, scorer: dict | None = None) -> dict[str, Any]:
    """The report's ``generation`` object: counts, cache hits and provenance (scorer included).
    ``requested`` counts records; ``distinct`` the outputs they need (records that share one, such
    as the same model and prompt in two cells, need it once), which cache_hits + cache_misses add
    up to.

    ``result`` is a :class:`~acards.generate.GenerationResult` (or None when nothing needed
    generating); ``scorer`` the provenance :func:`acards.generate.scorers.score` returned.
    """
    if result is None:
        section = {"requested": 0, "distinct": 0, "generated": 0, "cache_hits": 0, "cache_misses": 0, "scored": scored,
                   "provenance": {"scorer": scorer} if scorer else {}}
        return section
    counts = result.counts
    provenance = dict(result.provenance)
    provenance["scorer"] = scorer
    return {"requested": counts["requested"], "distinct": counts.get("distinct", counts["requested"]),
            "generated": counts["generated"], "cache_hits": counts["cache_hits"], "cache_misses": counts["cache_misses"],
            "scored": scored, "provenance": provenance}
