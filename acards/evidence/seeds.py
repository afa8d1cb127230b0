"""Which training seeds a cell pins checkpoints for: the one home of ``checkpoints.seed`` and
``checkpoints.seeds`` (docs/card-format.md, ``cells[].checkpoints``).

A cell's top-level ``undefended``/``defended`` are the checkpoints of ``checkpoints.seed``
(default 0); each entry of ``checkpoints.seeds`` pins the pair of one further seed.  Pure: card
data in, plain values out, so the card checks, verification and regeneration all read seeds the
same way without importing anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

FINE_TUNED = ("undefended", "defended")


@dataclass(frozen=True)
class SeedCheckpoints:
    """One training seed's checkpoints as the card pins them."""

    seed: int
    undefended: dict | None  # the pointer ({path, sha256}) as written, or None
    defended: dict | None
    at: str  # JSON pointer of the mapping that holds them, relative to the cell's checkpoints ("" or "/seeds/<i>")
    reference: dict | None = None  # the seed's own reference_subspace pointer (an entry of seeds), else the cell's

    def pointer(self, name: str) -> dict | None:
        return self.undefended if name == "undefended" else self.defended if name == "defended" else None

    @property
    def pair(self) -> bool:
        """Both checkpoints are pinned (the weight signature and the control need both)."""
        return self.undefended is not None and self.defended is not None


def _checkpoints(cell: dict) -> dict:
    checkpoints = cell.get("checkpoints") if isinstance(cell, dict) else None
    return checkpoints if isinstance(checkpoints, dict) else {}


def seed_checkpoints(cell: dict) -> list[SeedCheckpoints]:
    """Every seed the cell pins fine-tuned checkpoints for, in the card's order: the top-level pair
    (under ``checkpoints.seed``) first, when it gives either checkpoint, then ``checkpoints.seeds``."""
    checkpoints = _checkpoints(cell)
    found = []
    if any(isinstance(checkpoints.get(name), dict) for name in FINE_TUNED):
        seed = checkpoints.get("seed", 0)
        found.append(SeedCheckpoints(int(seed) if isinstance(seed, int) else 0, _pointer(checkpoints, "undefended"),
                                     _pointer(checkpoints, "defended"), ""))
    for index, entry in enumerate(checkpoints.get("seeds") or []):
        if isinstance(entry, dict) and isinstance(entry.get("seed"), int) and not isinstance(entry.get("seed"), bool):
            found.append(SeedCheckpoints(entry["seed"], _pointer(entry, "undefended"), _pointer(entry, "defended"), f"/seeds/{index}",
                                         _pointer(entry, "reference_subspace")))
    return found


def _pointer(mapping: dict, name: str) -> dict | None:
    value = mapping.get(name)
    return value if isinstance(value, dict) else None


def for_seed(cell: dict, seed: int) -> SeedCheckpoints | None:
    """The checkpoints the cell pins for ``seed`` (the first entry, should a card repeat one)."""
    return next((entry for entry in seed_checkpoints(cell) if entry.seed == seed), None)


def pair_seeds(cell: dict) -> list[SeedCheckpoints]:
    """The seeds with both undefended and defended pinned, in the card's order."""
    return [entry for entry in seed_checkpoints(cell) if entry.pair]


def has_pair(cell: dict) -> bool:
    return bool(pair_seeds(cell))


def duplicate_seeds(cell: dict) -> Iterator[tuple[SeedCheckpoints, SeedCheckpoints]]:
    """(first, repeat) for every seed the cell pins twice."""
    seen: dict[int, SeedCheckpoints] = {}
    for entry in seed_checkpoints(cell):
        if entry.seed in seen:
            yield seen[entry.seed], entry
        else:
            seen[entry.seed] = entry
