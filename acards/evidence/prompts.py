"""The prompts file (SPEC §5.2, schema/prompt-1.0.schema.json): the inputs regeneration needs.

``read_prompts`` reads the card's ``evidence.prompts`` JSONL through the one bounded reader
(acards.jsonl), each line validated by the Struct generated from the prompt schema, into an index
keyed by ``(split, task, item, framing)``.  `{from: import}` prompts, imported again from the
card's pinned sources (acards.importers.reimport), are read back by the same reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from acards import jsonl, schemas
from acards.errors import AcardsError, Location, Problem
from acards.evidence.digests import digest_mismatch
from acards.evidence.paths import open_inside

SCHEMA = "prompt-1.0"
MAX_PROBLEMS = jsonl.MAX_PROBLEMS


@dataclass
class Prompt:
    item: str
    split: str
    task: str
    subject: str
    framing: str
    prompt: str
    system: str | None = None
    reference: str | None = None


@dataclass
class Prompts:
    """The prompts file as ``{(split, task, item, framing): Prompt}``; ``file`` is its card path,
    ``sha256`` the digest of the bytes read (for `{from: import}` prompts: of the bytes the import wrote)."""

    index: dict[tuple[str, str, str, str], Prompt] = field(default_factory=dict)
    file: str | None = None
    sha256: str | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key) -> bool:
        return key in self.index

    def get(self, split: str, task: str, item: str, framing: str) -> Prompt | None:
        return self.index.get((split, task, str(item), framing))

    def items_of(self, split: str, task: str) -> list[str]:
        """Item ids of one split and task, in file order, each once."""
        seen: dict[str, None] = {}
        for (s, t, item, _framing) in self.index:
            if s == split and t == task:
                seen.setdefault(item, None)
        return list(seen)


def _unset(value):
    return None if value is msgspec.UNSET else value


def _describer(file: str) -> jsonl.Describe:
    def describe(error: msgspec.DecodeError, number: int) -> Problem:
        if isinstance(error, msgspec.ValidationError):
            return Problem("records.invalid-prompt", f"prompt line {number}: {error}",
                           "each line of the prompts file follows schema/prompt-1.0.schema.json "
                           "(item, split, task, subject, framing, prompt; optional system, reference)",
                           Location(file, number))
        return Problem("records.invalid-prompt", f"prompt line {number} is not valid JSON ({error})",
                       "each line of the prompts file is one JSON object", Location(file, number))
    return describe


def read_prompts(card) -> Prompts:
    """The card's pinned prompts file as an index (:func:`read_prompts_file`); an empty index when
    the card points at none.  `{from: import}` prompts are no file: acards.pipeline.load imports
    them again with the records (``read_card_prompts``, ``read_evidence_and_prompts``)."""
    pointer = (card.data.get("evidence") or {}).get("prompts")
    if not pointer:
        return Prompts({}, None)
    if "path" not in pointer:
        raise AcardsError("internal.error", "evidence.prompts is {from: import}, and was read as a prompts file",
                          "a bug in acards: such prompts are read by acards.pipeline.load; report it",
                          card.source.locate("/evidence/prompts", at_key=True))
    return read_prompts_file(card.folder, pointer["path"], card.source.locate("/evidence/prompts/path"), pointer.get("sha256"))


def read_prompts_file(folder: Path, relative: str, location: Location, sha256: str | None = None) -> Prompts:
    """The prompts file ``relative`` (inside ``folder``) as an index.

    Every line is validated against the prompt schema; up to 20 problems are collected before
    raising, and a repeated ``(split, task, item, framing)`` is refused.  The bytes parsed are
    hashed as read and must be ``sha256`` when given (``evidence.digest-mismatch`` at ``location``).
    """
    decoder = msgspec.json.Decoder(schemas.schema_struct(SCHEMA))
    index: dict[tuple[str, str, str, str], Prompt] = {}
    problems = jsonl.Problems(MAX_PROBLEMS)
    first_line: dict[tuple, int] = {}
    with open_inside(folder, relative, location) as raw:
        handle = jsonl.Hashed(raw)  # the bytes parsed must be the bytes the card pins
        for number, row in jsonl.objects(handle, relative, decoder, _describer(relative), problems):
            prompt = Prompt(str(row.item), row.split, row.task, row.subject, row.framing, row.prompt,
                            _unset(row.system), _unset(row.reference))
            key = (prompt.split, prompt.task, prompt.item, prompt.framing)
            if key in index:
                problems.add(Problem("records.duplicate-prompt",
                                     f"prompt line {number} repeats (split, task, item, framing) of line {first_line[key]}",
                                     "give each item one prompt per framing", Location(relative, number)))
                continue
            index[key] = prompt
            first_line[key] = number
        actual = handle.finish()
    if sha256 is not None and actual != sha256:
        raise AcardsError.collect([digest_mismatch(relative, sha256, actual, False, location)])
    if problems:
        raise AcardsError.collect(problems)
    return Prompts(index, relative, actual)
