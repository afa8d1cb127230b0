"""Regeneration of missing evidence (SPEC §5.3): plan the requests, build each condition's model,
generate through a backend, cache every output under a key naming the exact weights, score.

The public surface:

- :class:`Request` — one output to produce (which cell, condition, item, framing, seed, sample).
- :mod:`acards.generate.plan` — ``missing_requests``, ``control_requests`` (prompts: :mod:`acards.evidence.prompts`).
- :func:`run` — generate (or fetch from the cache) the outputs of a list of requests.
- :mod:`acards.generate.scorers` — ``score`` outputs with the card's scorer.
- :func:`spot_check` — regenerate a seeded subset of supplied outputs and report the match rate.
- :mod:`acards.generate.cache` — the SQLite output cache (``info``, ``clear``, ``merge``).

Importing this package is cheap: torch, transformers and peft are imported only inside the
functions that need a model, so ``acards --help`` and ``acards validate`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acards.errors import AcardsError
from acards.generate.requests import GenerationResult, Request

if TYPE_CHECKING:  # pragma: no cover
    from acards.card.model import Card
    from acards.evidence.prompts import Prompts
    from acards.evidence.records import RecordTable

__all__ = ["Request", "GenerationResult", "run", "spot_check"]



EXTRA = ("torch", "transformers", "peft")  # the `generate` extra of pyproject.toml


def require_extra() -> None:
    """Regenerating or classifier-scoring outputs needs the `generate` extra: say so with a coded
    error naming what to do, rather than fail on an import deep inside a backend."""
    import importlib.util

    missing = [name for name in EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        raise AcardsError("generate.missing-extra", f"regenerating model outputs needs {', '.join(missing)}, not installed here",
                          "install the generate extra (pip install 'acards[generate]'), or run `acards verify --no-generate`: "
                          "the diagnostics that need regenerated outputs or the shrinkage control then stay insufficient "
                          "or are judged without them")


def run(card: "Card", requests: list[Request], *, device: str | None = None, shard: tuple[int, int] | str | None = None,
        executor: str | None = None, progress: bool | None = None, backend: Any = None,
        shards: int | None = None, digests: Any = None, cache_dir: Any = None) -> GenerationResult:
    """Produce the output of every request: from the output cache where present, else generated.

    ``device``: "cuda", "cuda:1", "mps", "cpu" or None (auto: cuda, then mps, then cpu; the
    ``ACARDS_DEVICE`` environment variable overrides auto).  ``shard``: ``(i, N)`` or ``"i/N"`` —
    only requests whose stable hash is ``i`` mod ``N`` are generated, into a cache file of their
    own (merge with :func:`acards.generate.cache.merge`).  ``executor``: None/"local", or "ray" to
    run ``shards`` shards as Ray tasks (a local Ray instance unless one is already connected).
    ``progress``: None shows tqdm bars on stderr only when it is a terminal.  ``backend``:
    "transformers" (default), "vllm", or a backend object.  ``digests``: the caller's
    :class:`~acards.evidence.digests.DigestCache` (default: one opened for this call); ``cache_dir``:
    the folder of the output cache and control adapters (default: :mod:`acards.settings`).
    """
    if executor not in (None, "local", "ray"):
        raise AcardsError("usage.bad-executor", f"unknown executor {executor!r}", "use local (default) or ray")
    require_extra()
    if executor == "ray":
        from acards.generate.executors import run_ray

        return run_ray(card, requests, device=device, shards=shards, progress=progress, backend=backend)
    from acards.generate.cache import parse_shard
    from acards.generate.runner import run_local

    return run_local(card, requests, device=device, shard=parse_shard(shard), progress=progress, backend=backend,
                     digests=digests, cache_dir=cache_dir)


def spot_check(card: "Card", table: "RecordTable", prompts: "Prompts", n: int = 20, seed: int = 0, *,
               device: str | None = None, progress: bool | None = None, backend: Any = None, digests: Any = None,
               cache_dir: Any = None) -> dict[str, Any]:
    """Regenerate a seeded random subset (``n``) of the outputs the authors supplied and return the
    exact-match rate of regenerated against supplied outputs (see :mod:`acards.generate.spotcheck`)."""
    from acards.generate.spotcheck import spot_check as _spot_check

    require_extra()
    return _spot_check(card, table, prompts, n=n, seed=seed, device=device, progress=progress, backend=backend,
                       digests=digests, cache_dir=cache_dir)
