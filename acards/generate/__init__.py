"""Regeneration of missing evidence (SPEC §5.3): plan the requests, build each condition's model,
generate through a backend, cache every output under a key naming the exact weights, score.

The public surface:

- :class:`Request` — one output to produce (which cell, condition, item, framing, seed, sample).
- :mod:`acards.generate.plan` — ``read_prompts``, ``missing_requests``, ``control_requests``.
- :func:`run` — generate (or fetch from the cache) the outputs of a list of requests.
- :mod:`acards.generate.scorers` — ``score`` outputs with the card's scorer.
- :func:`spot_check` — regenerate a seeded subset of supplied outputs and report the match rate.
- :mod:`acards.generate.cache` — the SQLite output cache (``info``, ``clear``, ``merge``).

Importing this package is cheap: torch, transformers and peft are imported only inside the
functions that need a model, so ``acards --help`` and ``acards validate`` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from acards.vocabulary import BUILDABLE_CONDITIONS

if TYPE_CHECKING:  # pragma: no cover
    from acards.card.model import Card
    from acards.evidence.records import RecordTable
    from acards.generate.plan import Prompts

__all__ = ["Request", "GenerationResult", "run", "spot_check"]

CONDITIONS_WE_BUILD = BUILDABLE_CONDITIONS


@dataclass(frozen=True, order=False)
class Request:
    """One output to produce: a record's identity and the prompt it is generated from.

    ``item`` is always a string (records may write integer ids; the table keeps one id space).
    ``seed`` is the training seed the output is filed under (the cell's ``checkpoints.seed`` for
    fine-tuned conditions); ``sample`` the sample index (0 when greedy).  ``subject`` is carried
    along so that regenerated records can be written; it is not part of the identity.
    """

    cell: str
    condition: str
    split: str
    task: str
    item: str
    framing: str
    seed: int
    sample: int
    prompt: str
    system: str | None = None
    reference: str | None = None
    subject: str | None = field(default=None, compare=False)

    def identity(self) -> tuple:
        """The record identity (SPEC §5.1): the sort key and what shards hash."""
        return (self.cell, self.condition, self.split, self.task, self.item, self.framing, self.seed, self.sample)

    def identity_dict(self) -> dict[str, Any]:
        return {"cell": self.cell, "condition": self.condition, "split": self.split, "task": self.task,
                "item": self.item, "framing": self.framing, "seed": self.seed, "sample": self.sample}


@dataclass
class GenerationResult:
    """What :func:`run` returns.

    ``outputs[i]`` is the output of ``requests[i]``; it is ``None`` only for a request outside the
    shard that was run (``--shard i/N``).  ``counts`` holds
    requested / in_shard / cache_hits / cache_misses / generated / model_calls / skipped;
    ``provenance`` is the dict the report's ``generation.provenance`` carries.
    """

    outputs: list[str | None]
    counts: dict[str, int]
    provenance: dict[str, Any]
    keys: list[str | None] = field(default_factory=list)  # cache key (hex) per request, None outside the shard
    contexts: list[str | None] = field(default_factory=list)  # context digest per request (see acards.generate.cache)
    descriptions: dict[str, dict] = field(default_factory=dict)  # context digest -> what it names


def run(card: "Card", requests: list[Request], *, device: str | None = None, shard: tuple[int, int] | str | None = None,
        executor: str | None = None, progress: bool | None = None, backend: Any = None,
        shards: int | None = None) -> GenerationResult:
    """Produce the output of every request: from the output cache where present, else generated.

    ``device``: "cuda", "cuda:1", "mps", "cpu" or None (auto: cuda, then mps, then cpu; the
    ``ACARDS_DEVICE`` environment variable overrides auto).  ``shard``: ``(i, N)`` or ``"i/N"`` —
    only requests whose stable hash is ``i`` mod ``N`` are generated, into a cache file of their
    own (merge with :func:`acards.generate.cache.merge`).  ``executor``: None/"local", or "ray" to
    run ``shards`` shards as Ray tasks (a local Ray instance unless one is already connected).
    ``progress``: None shows tqdm bars on stderr only when it is a terminal.  ``backend``:
    "transformers" (default), "vllm", or a backend object.
    """
    from acards.generate.runner import run as _run

    return _run(card, requests, device=device, shard=shard, executor=executor, progress=progress,
                backend=backend, shards=shards)


def spot_check(card: "Card", table: "RecordTable", prompts: "Prompts", n: int = 20, seed: int = 0, *,
               device: str | None = None, progress: bool | None = None, backend: Any = None) -> dict[str, Any]:
    """Regenerate a seeded random subset (``n``) of the outputs the authors supplied and return the
    exact-match rate of regenerated against supplied outputs (see :mod:`acards.generate.spotcheck`)."""
    from acards.generate.spotcheck import spot_check as _spot_check

    return _spot_check(card, table, prompts, n=n, seed=seed, device=device, progress=progress, backend=backend)
