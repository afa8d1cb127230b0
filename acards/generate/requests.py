"""What regeneration is asked for and what it gives back: one Request per output, one GenerationResult per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    shard that was run (``--shard i/N``).  ``counts`` holds requested / in_shard / skipped (requests)
    and distinct / cache_hits / cache_misses / generated (distinct outputs: requests that share a
    cache key, such as the same model asked the same prompt by two cells, are one output, looked up
    and generated once; cache_hits + cache_misses = distinct), model_calls (batched calls) and
    cache_rejected; ``provenance`` is the dict the report's ``generation.provenance`` carries.
    """

    outputs: list[str | None]
    counts: dict[str, int]
    provenance: dict[str, Any]
    keys: list[str | None] = field(default_factory=list)  # cache key (hex) per request, None outside the shard
    contexts: list[str | None] = field(default_factory=list)  # context digest per request (see acards.generate.cache)
    descriptions: dict[str, dict] = field(default_factory=dict)  # context digest -> what it names
