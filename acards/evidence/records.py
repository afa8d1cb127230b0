"""Read records JSONL (SPEC §5.1) into integer-coded numpy columns.

Files are read through the one bounded JSONL reader (acards.jsonl); decoding and validation are
done by msgspec, a whole chunk at a time, against the Struct acards.schemas generates from
schema/record-1.0.schema.json, so the schema stays the one description of a record.  Only compact
arrays are kept (about 60 bytes per record), so a million records load comfortably.  Outputs and
prompts are kept only where a later step needs them (an unscored output, a fresh prompt for the
n-gram check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from acards import jsonl, schemas
from acards.errors import AcardsError, Location, Problem
from acards.evidence.digests import digest_mismatch
from acards.evidence.paths import open_inside

RECORD = "record-1.0"
CHUNK_BYTES = jsonl.CHUNK_BYTES
MAX_PROBLEMS_PER_FILE = jsonl.MAX_PROBLEMS
CODED = ("cell", "condition", "split", "task", "subject", "item", "framing")
# A record is identified by these; two records with the same values are duplicates.
IDENTITY = ("cell", "condition", "split", "task", "item", "framing", "seed", "sample")
# Seeds and sample indices are kept as int64 columns: the schema sets no maximum, so a larger one
# is refused at its line (records.out-of-range) rather than overflowing later.
LARGEST_INTEGER = 2 ** 63 - 1


# --- the Struct, generated from the schema ------------------------------------------------------

@lru_cache(maxsize=None)
def _decoder(schema: str = RECORD, coded_patterns: bool = True) -> msgspec.json.Decoder:
    """A decoder of one line (or, with decode_lines, a chunk) into the schema's Struct.  With
    ``coded_patterns=False`` the record Struct skips the regular expressions of the integer-coded
    columns: :func:`read_records` checks those once per distinct value instead of once per record
    (a regex per record was half the decoding time)."""
    unchecked = frozenset() if coded_patterns or schema != RECORD else frozenset(CODED)
    return msgspec.json.Decoder(schemas.schema_struct(schema, unchecked))


def _describer(file: str, schema: str = RECORD) -> jsonl.Describe:
    """How a bad line of a records (or training data) file is worded."""
    def describe(error: msgspec.DecodeError, number: int) -> Problem:
        if isinstance(error, msgspec.ValidationError):
            return schemas.struct_problem(error, schema, "records.invalid", file, number)
        return Problem("records.bad-json", f"line {number} is not valid JSON ({error})",
                       "each line of a records file is one JSON object", Location(file, number))
    return describe


# --- the table ------------------------------------------------------------------------------------

@dataclass
class RecordTable:
    """All records of a card as columns; string columns are codes into ``vocab[column]``."""

    columns: dict[str, np.ndarray]
    vocab: dict[str, list[str]]
    files: list[str]
    # Per record: which file and line it came from, for error messages.
    file_index: np.ndarray
    line: np.ndarray
    outputs: dict[int, str] = field(default_factory=dict)  # row -> output, where the score is missing
    prompts: dict[int, str] = field(default_factory=dict)  # row -> prompt, fresh split only

    def __len__(self) -> int:
        return len(self.line)

    def code(self, column: str, value: str) -> int:
        """The code of ``value`` in ``column``, or -1 if no record has it."""
        try:
            return self.vocab[column].index(value)
        except ValueError:
            return -1

    def where(self, row: int) -> Location:
        return Location(self.files[self.file_index[row]], int(self.line[row]))


class _Builder:
    """Accumulates decoded chunks as compact arrays (optionally after an existing table's)."""

    def __init__(self, start: RecordTable | None = None):
        self.tables: dict[str, dict[str, int]] = {name: {} for name in CODED}
        self.parts: dict[str, list[np.ndarray]] = {name: [] for name in (*CODED, "seed", "sample", "score", "has_output", "file_index", "line")}
        self.outputs: dict[int, str] = {}
        self.prompts: dict[int, str] = {}
        self.rows = 0
        if start is not None:
            self.tables = {name: {value: code for code, value in enumerate(start.vocab[name])} for name in CODED}
            for name, values in start.columns.items():
                self.parts[name].append(values)
            self.parts["file_index"].append(start.file_index)
            self.parts["line"].append(start.line)
            self.outputs, self.prompts, self.rows = dict(start.outputs), dict(start.prompts), len(start)

    def add(self, records: list, file_index: int, lines: np.ndarray) -> None:
        for name in CODED:
            table = self.tables[name]
            values = [getattr(r, name) for r in records]
            if name == "item":  # items may be integers in the file; one id space
                values = [str(v) for v in values]
            self.parts[name].append(np.fromiter((table.setdefault(v, len(table)) for v in values), np.int32, len(values)))
        unset = msgspec.UNSET
        self.parts["seed"].append(np.fromiter((r.seed for r in records), np.int64, len(records)))
        self.parts["sample"].append(np.fromiter((r.sample if r.sample is not unset else 0 for r in records), np.int64, len(records)))
        scores = np.fromiter((r.score if r.score is not unset else np.nan for r in records), np.float64, len(records))
        self.parts["score"].append(scores)
        self.parts["has_output"].append(np.fromiter((r.output is not unset for r in records), bool, len(records)))
        self.parts["file_index"].append(np.full(len(records), file_index, np.int32))
        self.parts["line"].append(lines)
        for offset in np.flatnonzero(np.isnan(scores)):
            record = records[offset]
            if record.output is not unset:
                self.outputs[self.rows + int(offset)] = record.output
        for offset, record in enumerate(records):
            if record.split == "fresh" and record.prompt is not unset:
                self.prompts[self.rows + offset] = record.prompt
        self.rows += len(records)

    def table(self, files: list[str]) -> RecordTable:
        def joined(name, dtype):
            parts = self.parts[name]
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        columns = {name: joined(name, np.int32) for name in CODED}
        columns.update(seed=joined("seed", np.int64), sample=joined("sample", np.int64),
                       score=joined("score", np.float64), has_output=joined("has_output", bool))
        vocab = {name: list(table) for name, table in self.tables.items()}
        return RecordTable(columns, vocab, files, joined("file_index", np.int32), joined("line", np.int64),
                           self.outputs, self.prompts)


def read_records(root: Path, paths: list[tuple[str, Location]], chunk_bytes: int = CHUNK_BYTES,
                 sha256: list[str | None] | None = None) -> RecordTable:
    """Read every records file (paths relative to the card's folder) into one table.

    Strictly one record per non-blank line (see acards.jsonl), so the table has one row per
    non-blank line.  Collects up to 20 problems per file before raising; refuses duplicate records.
    With ``sha256`` (the digests the card pins, one per path), the bytes parsed are hashed as they
    are read and a file whose bytes differ is refused (``evidence.digest-mismatch``): the numbers
    then come from exactly the bytes the card pins, even if the file was replaced after its digest
    was checked.
    """
    builder = _Builder()
    problems: list[Problem] = []
    files = [relative for relative, _ in paths]
    fast = _decoder(coded_patterns=False)
    for file_index, (relative, location) in enumerate(paths):
        file_problems = jsonl.Problems()
        describe = _describer(relative)
        expected = sha256[file_index] if sha256 is not None else None
        with open_inside(root, relative, location) as raw:
            handle = jsonl.Hashed(raw)
            for first_line, piece in jsonl.chunks(handle, relative, file_problems, size=chunk_bytes):
                lines, records = jsonl.decode_piece(piece, first_line, fast, _decoder(), describe, file_problems, relative)
                _refuse_huge_integers(records, lines, relative, file_problems)
                if records and not file_problems:
                    builder.add(records, file_index, lines)
            actual = handle.finish()
        if expected is not None and actual != expected:
            raise AcardsError.collect([digest_mismatch(relative, expected, actual, False, location)])
        problems.extend(file_problems)
    if problems:
        raise AcardsError.collect(problems)
    table = builder.table(files)
    _check_coded_patterns(table)
    _refuse_duplicates(table)
    _refuse_inconsistent_subjects(table)
    return table


def _refuse_huge_integers(records: list, lines: np.ndarray, file: str, problems: jsonl.Problems) -> None:
    """A seed or sample index above 2⁶³−1 (what the int64 columns hold), refused at its line."""
    for record, line in zip(records, lines):
        for name in ("seed", "sample"):
            value = getattr(record, name)
            if value is not msgspec.UNSET and value > LARGEST_INTEGER:
                problems.add(Problem("records.out-of-range",
                                     f"line {int(line)}: {name} {value} is larger than {LARGEST_INTEGER}",
                                     f"acards reads a {name} up to 2^63-1; renumber the {name}s of this file",
                                     Location(file, int(line), None, f"/{name}")))


def _check_coded_patterns(table: RecordTable) -> None:
    """The schema's patterns on coded columns, checked once per distinct value (see _decoder)."""
    problems = []
    for name in CODED:
        spec = schemas.load_schema(RECORD)["properties"][name]
        pattern = spec.get("pattern")
        if not pattern:
            continue
        for code, value in enumerate(table.vocab[name]):
            if re.search(pattern, value) is None and len(problems) < MAX_PROBLEMS_PER_FILE:
                row = int(np.flatnonzero(table.columns[name] == code)[0])
                where = table.where(row)
                problems.append(Problem("records.invalid", f"{name} {value!r} does not match {pattern}",
                                        spec["description"],
                                        Location(where.file, where.line, None, f"/{name}")))
    if problems:
        raise AcardsError.collect(problems)


def _composite(table: RecordTable, names: tuple[str, ...]) -> np.ndarray:
    """One int64 key per record from several columns (mixed radix; lexsort ranks if it would overflow)."""
    columns = [table.columns[name].astype(np.int64) for name in names]
    radices = [int(column.max()) + 1 if len(column) else 1 for column in columns]
    if np.prod([float(r) for r in radices]) < 2**62:
        key = np.zeros(len(table), np.int64)
        for column, radix in zip(columns, radices):
            key = key * radix + column
        return key
    order = np.lexsort(columns[::-1])
    ranks = np.empty(len(order), np.int64)
    stacked = np.stack([c[order] for c in columns])
    new = np.ones(len(order), bool)
    new[1:] = np.any(stacked[:, 1:] != stacked[:, :-1], axis=0)
    ranks[order] = np.cumsum(new) - 1
    return ranks


def _refuse_duplicates(table: RecordTable) -> None:
    if not len(table):
        return
    key = _composite(table, IDENTITY)
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if not len(same):
        return
    problems = []
    for position in same[:MAX_PROBLEMS_PER_FILE]:
        first, second = int(order[position]), int(order[position + 1])
        where = table.where(second)
        earlier = table.where(first)
        problems.append(Problem(
            "records.duplicate", f"this record repeats {', '.join(IDENTITY)} of {earlier.file}:{earlier.line}",
            "each (cell, condition, split, task, item, framing, seed, sample) may appear once; drop the repeat or give it its sample index",
            where))
    raise AcardsError.collect(problems)


def _refuse_inconsistent_subjects(table: RecordTable) -> None:
    """An item must belong to one subject: otherwise clustering by subject is undefined."""
    if not len(table):
        return
    item_key = _composite(table, ("cell", "split", "task", "item"))
    order = np.argsort(item_key, kind="stable")
    keys, subjects = item_key[order], table.columns["subject"][order]
    clash = np.flatnonzero((keys[1:] == keys[:-1]) & (subjects[1:] != subjects[:-1]))
    if not len(clash):
        return
    problems = []
    for position in clash[:MAX_PROBLEMS_PER_FILE]:
        row = int(order[position + 1])
        item = table.vocab["item"][table.columns["item"][row]]
        problems.append(Problem("records.subject-mismatch", f"item {item!r} is filed under two subjects",
                                "give every record of an item the same subject", table.where(row)))
    raise AcardsError.collect(problems)


def read_objects(root: Path, relative: str, location: Location, schema: str, sha256: str | None = None) -> list:
    """Every line of a JSONL evidence file (training data) as a Struct of ``schema``; with
    ``sha256``, the bytes parsed must be the bytes pinned (see :func:`read_records`)."""
    problems = jsonl.Problems()
    with open_inside(root, relative, location) as raw:
        handle = jsonl.Hashed(raw)
        objects = [value for _number, value in jsonl.objects(handle, relative, _decoder(schema), _describer(relative, schema), problems)]
        actual = handle.finish()
    if sha256 is not None and actual != sha256:
        raise AcardsError.collect([digest_mismatch(relative, sha256, actual, False, location)])
    if problems:
        raise AcardsError.collect(problems)
    return objects


def append_records(table: RecordTable, records: list[dict], source: str) -> RecordTable:
    """A new table with ``records`` (record-1.0 dicts, e.g. regenerated ones) after the table's
    rows; ``source`` names where they came from in error messages.  Duplicates are refused."""
    if not records:
        return table
    struct = schemas.schema_struct(RECORD)
    builder = _Builder(table)
    builder.add([msgspec.convert(record, struct) for record in records], len(table.files),
                np.arange(1, len(records) + 1, dtype=np.int64))
    extended = builder.table([*table.files, source])
    _refuse_duplicates(extended)
    return extended


def fill_scores(table: RecordTable, records: list[dict]) -> int:
    """Set the score of each unscored row that one of ``records`` identifies; returns how many.

    Regenerated records of rows that lacked an output carry the row's identity and a score."""
    wanted = {tuple(str(record[name]) for name in IDENTITY): record.get("score") for record in records}
    filled = 0
    for row in np.flatnonzero(np.isnan(table.columns["score"])):
        identity = tuple(str(table.vocab[name][table.columns[name][row]]) if name in CODED else str(table.columns[name][row])
                         for name in IDENTITY)
        score = wanted.get(identity)
        if score is not None:
            table.columns["score"][row] = score
            filled += 1
    return filled


def records_summary(table: RecordTable) -> dict[str, Any]:
    """Counts for the report: records, and how many lack outputs or scores."""
    score = table.columns["score"]
    return {
        "records": len(table),
        "unscored": int(np.isnan(score).sum()),
        "without_output": int((np.isnan(score) & ~table.columns["has_output"]).sum()),
    }
