"""Running shards on Ray: each shard is one Ray task that runs :func:`~.runner.run_local` on its
part of the requests (with a cache file of its own on the worker, so a rerun resumes there) and
returns its outputs; the driver writes them into its own main cache.  Outputs travel back through
Ray, so workers need no shared file system for the cache — but every worker must see the card
folder at the same path (a shared file system, or ``ray job submit --working-dir``).  The workers'
counts (cache_rejected included) are added up into the driver's, and the cache.entry-rejected
warnings they recorded come back with their outputs and are recorded on the driver.

With no Ray instance connected, ``ray.init()`` starts a local one, or connects to the cluster
that ``RAY_ADDRESS`` names.  Each task asks for one GPU when the cluster has GPUs, else one CPU.
"""

from __future__ import annotations

import os
import time
from typing import Any

from acards.errors import AcardsError
from acards.generate.requests import GenerationResult, Request


def _ray():
    try:
        import ray
    except ImportError:
        raise AcardsError("generate.executor-unavailable", "--executor ray needs the ray package, which is not installed",
                          "pip install ray (acards[ray]), or run the shards yourself with --shard i/N and merge them") from None
    return ray


def _shard_task(card_path: str, requests: list[Request], device: str | None, shard: tuple[int, int],
                backend: str | None, cache_root: str | None) -> dict[str, Any]:
    """Runs on a Ray worker: generate one shard; return its keys, outputs, contexts and counts."""
    if cache_root:
        os.environ["ACARDS_CACHE_DIR"] = cache_root
    from acards.card.model import load_card
    from acards.evidence.cachekey import collected_warnings
    from acards.generate.runner import run_local

    with collected_warnings() as warnings:  # sent back: the driver records them, and its command prints them
        result = run_local(load_card(card_path), requests, device=device, shard=shard, progress=False, backend=backend)
    return {"keys": result.keys, "outputs": result.outputs, "contexts": result.contexts,
            "descriptions": result.descriptions, "counts": result.counts, "provenance": result.provenance,
            "warnings": list(warnings)}


def run_ray(card, requests: list[Request], *, device=None, shards: int | None = None, progress=None,
            backend=None) -> GenerationResult:
    from acards.evidence.cachekey import record_warning
    from acards.generate.cache import OutputCache, main_path, shard_of
    from acards.generate.progress import bar

    started = time.time()
    ray = _ray()
    if backend is not None and not isinstance(backend, str):
        raise AcardsError("usage.bad-backend", "--executor ray takes a backend name, not a backend object",
                          "pass backend='transformers' or 'vllm'")
    if shards is not None and shards < 1:
        raise AcardsError("usage.bad-shard", f"--shards {shards} must be at least 1", "give the number of Ray tasks to split the work into")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    count = shards or max(gpus, 1)
    options = {"num_gpus": 1} if gpus and (device is None or device.startswith("cuda")) else {"num_cpus": 1}
    task = ray.remote(max_retries=1, **options)(_shard_task)
    cache_root = os.environ.get("ACARDS_CACHE_DIR")
    members: list[list[int]] = [[] for _ in range(count)]
    for index, request in enumerate(requests):
        members[shard_of(request.identity_dict(), count)].append(index)
    futures = {task.remote(str(card.path.resolve()), [requests[i] for i in members[s]], device, (s, count), backend, cache_root): s
               for s in range(count) if members[s]}

    keys: list[str | None] = [None] * len(requests)
    outputs: list[str | None] = [None] * len(requests)
    counts = {"requested": len(requests), "in_shard": len(requests), "skipped": 0, "distinct": 0, "cache_hits": 0,
              "cache_misses": 0, "generated": 0, "model_calls": 0, "cache_rejected": 0}
    shard_provenance = []
    with OutputCache(main_path()) as cache, bar(len(futures), "shards", progress) as done:
        pending = list(futures)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for future in ready:
                part, s = ray.get(future), futures[future]
                rows = []
                for position, index in enumerate(members[s]):
                    keys[index], outputs[index] = part["keys"][position], part["outputs"][position]
                    if keys[index] is not None and outputs[index] is not None:
                        rows.append((keys[index], part["contexts"][position], outputs[index]))
                cache.put_many(rows, part["descriptions"])  # the shard's outputs, committed as it arrives
                # Shards are cut by record identity, so an output two shards share is counted (and made) by each.
                for name in ("distinct", "cache_hits", "cache_misses", "generated", "model_calls", "cache_rejected"):
                    counts[name] += part["counts"].get(name, 0)
                shard_provenance.append(part["provenance"])
                for problem in part["warnings"]:
                    record_warning(problem)
            done.update(len(ready))
    provenance = dict(shard_provenance[0]) if shard_provenance else {}
    provenance.update(counts=dict(counts), shard=None, seconds=round(time.time() - started, 3),
                      executor={"name": "ray", "version": ray.__version__, "shards": count, "gpus": gpus,
                                "devices": sorted({p["device_name"] for p in shard_provenance})},
                      cache={"path": str(main_path()), "read": [str(main_path())]})
    models: dict[str, dict] = {}
    for part in shard_provenance:
        for model in part["models"]:
            entry = models.setdefault(repr(sorted(model["weights"].items())), {**model, "conditions": set()})
            entry["conditions"].update(model["conditions"])
    provenance["models"] = [{**m, "conditions": sorted(m["conditions"])} for m in models.values()]
    provenance.pop("cache_rejected", None)  # the first shard's: replaced by every shard's, as run_local reports it
    rejected = [p["cache_rejected"] for p in shard_provenance if "cache_rejected" in p]
    if rejected:
        by_path: dict[str, int] = {}
        for part in rejected:  # workers read the same paths (the main file; their nodes' own copies on a cluster)
            for path, n in part["outputs"].items():
                by_path[path] = by_path.get(path, 0) + n
        provenance["cache_rejected"] = {**rejected[0], "outputs": by_path,
                                        "control_adapters": sum(part["control_adapters"] for part in rejected)}
    return GenerationResult(outputs=outputs, counts=counts, provenance=provenance, keys=keys)
