"""What happens to one source record of an import, on either path (record by record in
acards.importers.run, a piece at a time in acards.importers.batch): mapped and checked against the
record and prompt schemas, or skipped with a reason that is counted per file with its first examples."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgspec

from acards.importers.mapping import FileRules, Mapped, Skip, apply_rules
from acards.schemas import schema_struct

EXAMPLES = 3  # examples kept per (file, reason)


@dataclass
class FileSummary:
    """What happened to the records of one input file."""

    path: str
    sha256: str | None = None
    size: int = 0
    read: int = 0
    imported: int = 0
    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "read": self.read, "imported": self.imported,
                "skipped": dict(sorted(self.skipped.items())), "examples": self.examples}


def map_record(rules: FileRules, select: dict, record: Any, want_prompts: bool) -> Mapped:
    """One source record mapped and checked against the record and prompt schemas, or Skip."""
    if isinstance(record, Skip):
        raise record
    mapped = apply_rules(rules, select, record, want_prompts)
    _conform(mapped.record, schema_struct("record-1.0"), "record")
    if mapped.prompt is not None:
        _conform(mapped.prompt, schema_struct("prompt-1.0"), "prompt")
    return mapped


def count_skip(counts: FileSummary, where: str, skip: Skip) -> None:
    counts.skipped[skip.reason] += 1
    examples = counts.examples.setdefault(skip.reason, [])
    if len(examples) < EXAMPLES:
        examples.append(f"{where}: {skip.detail}")


def _conform(row: dict, kind: type, what: str) -> None:
    """Skip(invalid-record) unless ``row`` is valid under its schema (the records reader's struct)."""
    try:
        msgspec.convert(row, kind)
    except msgspec.ValidationError as error:
        raise Skip("invalid-record", f"the {what} is not valid: {error}") from None
