"""Read records (SPEC §5.1) into integer-coded numpy columns.

A records file is JSONL (the default), Parquet or Arrow IPC (``format`` of its pointer in the
card).  JSONL is read through the one bounded JSONL reader (acards.jsonl) a piece of whole lines at
a time; each piece goes first through the vectorized decoder (acards.evidence.flatjson), which
makes columns straight from the bytes when it can prove the exact reader would accept the piece
with the same values, and otherwise through the exact reader: msgspec, a whole piece at a time,
against the Struct acards.schemas generates from schema/record-1.0.schema.json, so the schema stays
the one description of a record and the exact reader words every problem.  Parquet and Arrow files
are read by acards.evidence.columnar against the same schema.  A file's decoded columns may come
from the records cache (acards.evidence.records_cache), keyed by the digest of the bytes hashed on
this run.  Only compact arrays are kept (about 60 bytes per record), so millions of records load
comfortably.  Outputs and prompts are kept only where a later step needs them (an unscored output,
a fresh prompt for the n-gram check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from acards import jsonl, schemas
from acards.errors import AcardsError, Location, Problem
from acards.evidence.digests import digest_mismatch
from acards.evidence.paths import open_inside
from acards.evidence.records_cache import RecordsCache

if TYPE_CHECKING:
    from acards.evidence import flatjson
# acards.evidence.flatjson and acards.evidence.columnar are imported where a file is parsed: a
# re-read whose every file comes from the records cache needs neither (about 5 ms of imports).

RECORD = "record-1.0"
# Pieces of about 1 MiB: the vectorized decoder's fixed cost per piece is then small, and its
# arrays stay small enough to be reused by the allocator.
CHUNK_BYTES = 1024 * 1024
MAX_PROBLEMS_PER_FILE = jsonl.MAX_PROBLEMS
FORMATS = ("jsonl", "parquet", "arrow")
CODED = ("cell", "condition", "split", "task", "subject", "item", "framing")
NUMERIC = ("seed", "sample", "score", "has_output")
TEXT = frozenset({"prompt", "output"})  # kept only where needed, never interned
# A record's `scores` (one per scorer, SPEC §5.1 judges) become float64 columns "scores.<name>",
# NaN where a record has no score under that name.
SCORES = "scores."
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


def _struct() -> type:
    """The record Struct without the coded columns' patterns (see _decoder)."""
    return schemas.schema_struct(RECORD, frozenset(CODED))


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

    def scorers(self) -> list[str]:
        """The scorer names the records' ``scores`` carry, in order of first appearance."""
        return [name[len(SCORES):] for name in self.columns if name.startswith(SCORES)]


class _Column:
    """One column's rows, grown in place.  ``ndarray.resize`` reallocates, and the C library moves
    a large block by remapping its pages rather than copying them, so a table of millions of rows
    is never held twice while it is built (joining a list of parts would need the parts and the
    whole column at once, and the parts' memory often stays with the process after it is freed)."""

    def __init__(self) -> None:
        self.data: np.ndarray | None = None
        self.size = 0

    def append(self, values: np.ndarray) -> None:
        self.slot(len(values), values.dtype)[:] = values

    def slot(self, count: int, dtype) -> np.ndarray:
        """The next ``count`` rows, to be filled by the caller before anything else is appended."""
        end = self.size + count
        if self.data is None:
            self.data = np.empty(max(end, 4096), dtype)
        elif end > len(self.data):
            self.data.resize(max(end, len(self.data) * 3 // 2), refcheck=False)  # no view of it exists
        start, self.size = self.size, end
        return self.data[start:end]

    def joined(self, dtype) -> np.ndarray:
        data, self.data = self.data, None
        if data is None:
            return np.zeros(0, dtype)
        data.resize(self.size, refcheck=False)
        return data


class _Builder:
    """Accumulates tables (pieces of a file, or whole files) as compact arrays with one vocabulary
    per coded column, optionally after an existing table's rows."""

    def __init__(self, start: RecordTable | None = None):
        self.tables: dict[str, dict[str, int]] = {name: {} for name in CODED}
        self.parts: dict[str, Any] = {name: _Column() for name in (*CODED, *NUMERIC, "file_index", "line")}
        self.outputs: dict[int, str] = {}
        self.prompts: dict[int, str] = {}
        self.rows = 0
        if start is not None:
            self.tables = {name: {value: code for code, value in enumerate(start.vocab[name])} for name in CODED}
            for name, values in start.columns.items():
                self.parts.setdefault(name, []).append(values)
            self.parts["file_index"].append(start.file_index)
            self.parts["line"].append(start.line)
            self.outputs, self.prompts, self.rows = dict(start.outputs), dict(start.prompts), len(start)

    def add(self, part: RecordTable, file_index: int | None = None) -> None:
        """The rows of ``part`` (codes into its own vocabulary), from file ``file_index`` (None:
        keep the part's own file indices)."""
        for name in CODED:
            mapping = self._mapping(self.tables[name], part.vocab[name])
            codes, column = part.columns[name], self.parts[name]
            if isinstance(column, _Column):
                np.take(mapping, codes, out=column.slot(len(codes), np.int32))
            else:
                column.append(mapping[codes])
        for name in NUMERIC:
            self.parts[name].append(part.columns[name])
        self._add_scores(part)
        self.parts["file_index"].append(part.file_index if file_index is None else np.full(len(part), file_index, np.int32))
        self.parts["line"].append(part.line)
        self.outputs.update((self.rows + row, text) for row, text in part.outputs.items())
        self.prompts.update((self.rows + row, text) for row, text in part.prompts.items())
        self.rows += len(part)

    @staticmethod
    def _mapping(table: dict[str, int], vocab: list[str]) -> np.ndarray:
        """The codes in ``table`` of a part's vocabulary, new values added in the part's order (a
        part's vocabulary may repeat a value: ("42", 42) both read as "42")."""
        mapping = np.fromiter(map(table.get, vocab, repeat(-1)), np.int32, len(vocab))  # one C loop: most values are known
        for index in np.flatnonzero(mapping < 0).tolist():
            mapping[index] = table.setdefault(vocab[index], len(table))
        return mapping

    def _add_scores(self, part: RecordTable) -> None:
        """The part's ``scores.<name>`` columns; NaN for rows (before, or in the part) without them."""
        names = [name for name in part.columns if name.startswith(SCORES)]
        for name in names:
            if name not in self.parts:
                self.parts[name] = [np.full(self.rows, np.nan)]
            self.parts[name].append(part.columns[name])
        for name in self.parts:
            if name.startswith(SCORES) and name not in part.columns:
                self.parts[name].append(np.full(len(part), np.nan))

    def table(self, files: list[str]) -> RecordTable:
        """The rows added so far as one table (call it once: the builder lets its columns go)."""
        def joined(name, dtype):
            parts = self.parts[name]
            if isinstance(parts, _Column):
                return parts.joined(dtype)
            column = np.concatenate(parts) if parts else np.zeros(0, dtype)
            parts.clear()
            return column

        columns = {name: joined(name, np.int32) for name in CODED}
        columns.update(seed=joined("seed", np.int64), sample=joined("sample", np.int64),
                       score=joined("score", np.float64), has_output=joined("has_output", bool))
        columns.update((name, joined(name, np.float64)) for name in self.parts if name.startswith(SCORES))
        vocab = {name: list(table) for name, table in self.tables.items()}
        return RecordTable(columns, vocab, files, joined("file_index", np.int32), joined("line", np.int64),
                           self.outputs, self.prompts)


def _struct_part(records: list, lines: np.ndarray) -> RecordTable:
    """Records decoded by the exact reader (Structs) as a one-file table."""
    columns, vocab = {}, {}
    for name in CODED:
        local: dict[str, int] = {}
        values = [getattr(r, name) for r in records]
        if name == "item":  # items may be integers in the file; one id space
            values = [str(v) for v in values]
        columns[name] = np.fromiter((local.setdefault(v, len(local)) for v in values), np.int32, len(values))
        vocab[name] = list(local)
    unset = msgspec.UNSET
    columns["seed"] = np.fromiter((r.seed for r in records), np.int64, len(records))
    columns["sample"] = np.fromiter((r.sample if r.sample is not unset else 0 for r in records), np.int64, len(records))
    scores = columns["score"] = np.fromiter((r.score if r.score is not unset else np.nan for r in records), np.float64, len(records))
    columns["has_output"] = np.fromiter((r.output is not unset for r in records), bool, len(records))
    columns.update(_scores_columns([r.scores for r in records]))
    outputs = {int(row): records[row].output for row in np.flatnonzero(np.isnan(scores)) if records[row].output is not unset}
    prompts = {row: r.prompt for row, r in enumerate(records) if r.split == "fresh" and r.prompt is not unset}
    return RecordTable(columns, vocab, [], np.zeros(len(records), np.int32), lines, outputs, prompts)


def _scores_columns(scores: list) -> dict[str, np.ndarray]:
    """The ``scores.<name>`` columns of records' ``scores`` (UNSET where a record has none)."""
    columns: dict[str, np.ndarray] = {}
    for row, found in enumerate(scores):
        if found is msgspec.UNSET:
            continue
        for name, value in found.items():
            if SCORES + name not in columns:
                columns[SCORES + name] = np.full(len(scores), np.nan)
            columns[SCORES + name][row] = value
    return columns


def _columns_part(found: flatjson.Columns, first_line: int) -> RecordTable | None:
    """A piece decoded by the vectorized decoder as a one-file table; None (read it exactly) if a
    seed or sample is beyond int64, so that the exact reader reports it."""
    columns, vocab = {}, {}
    for name in CODED:
        columns[name] = found.codes[name]
        values = found.values[name]
        # items may be integers in the file (one id space); a field read only from strings holds only str
        vocab[name] = [str(v) for v in values] if name == "item" and name in found.tokens else values
    for name, default, dtype in (("seed", 0, np.int64), ("sample", 0, np.int64), ("score", np.nan, np.float64)):
        values = found.values.get(name, [])
        if dtype is np.int64 and values and max(values) > LARGEST_INTEGER:
            return None
        codes = found.codes.get(name)
        # code -1 (field absent) picks the default appended last
        columns[name] = np.array([*values, default], dtype)[codes] if codes is not None else np.full(len(found), default, dtype)
    spans = found.spans.get("output")
    columns["has_output"] = spans[:, 0] >= 0 if spans is not None else np.zeros(len(found), bool)
    outputs = {int(row): found.text("output", int(row)) or "" for row in np.flatnonzero(np.isnan(columns["score"]) & columns["has_output"])}
    prompts: dict[int, str] = {}
    if "prompt" in found.spans and "fresh" in vocab["split"]:
        fresh = (columns["split"] == vocab["split"].index("fresh")) & (found.spans["prompt"][:, 0] >= 0)
        prompts = {int(row): found.text("prompt", int(row)) or "" for row in np.flatnonzero(fresh)}
    return RecordTable(columns, vocab, [], np.zeros(len(found), np.int32), first_line + found.offsets, outputs, prompts)


def read_records(root: Path, paths: list[tuple[str, Location]], chunk_bytes: int = CHUNK_BYTES,
                 sha256: list[str | None] | None = None, formats: list[str] | None = None,
                 cache: RecordsCache | None = None) -> RecordTable:
    """Read every records file (paths relative to the card's folder) into one table.

    JSONL is strictly one record per non-blank line (see acards.jsonl), so the table has one row
    per non-blank line; Parquet and Arrow files have one row per record (``formats``: one of
    FORMATS per path, default jsonl).  Collects up to 20 problems per file before raising; refuses
    duplicate records.  With ``sha256`` (the digests the card pins, one per path), the bytes parsed
    are hashed as they are read and a file whose bytes differ is refused
    (``evidence.digest-mismatch``): the numbers then come from exactly the bytes the card pins,
    even if the file was replaced after its digest was checked.  With ``cache``, a file whose pinned
    digest has a verified cache entry is hashed (the digest check still happens) but not parsed:
    its columns come from the entry, which was decoded from bytes with that digest.
    """
    builder = _Builder()
    problems: list[Problem] = []
    files = [relative for relative, _ in paths]
    hashed = []  # (digest of the bytes read, format) per file
    for file_index, (relative, location) in enumerate(paths):
        expected = sha256[file_index] if sha256 is not None else None
        fmt = formats[file_index] if formats is not None else "jsonl"
        part, file_problems, actual = _read_file(root, relative, location, expected, fmt, chunk_bytes, cache,
                                                 builder, file_index)
        if part is not None and not file_problems:
            builder.add(part, file_index)
        problems.extend(file_problems)
        hashed.append((actual, fmt))
    if problems:
        raise AcardsError.collect(problems)
    table = builder.table(files)
    # The checks across records depend only on the files' bytes: once passed for these digests,
    # the records cache remembers it (MAC'd like its entries).
    if cache is None or not cache.checked(hashed):
        check_across_records(table)
        if cache is not None:
            cache.mark_checked(hashed)
    return table


def check_across_records(table: RecordTable) -> None:
    """The checks a records table gets once all its files are read: the schema's patterns on the
    coded columns (once per distinct value), one record per identity, one subject per item."""
    _check_coded_patterns(table)
    _refuse_duplicates(table)
    _refuse_inconsistent_subjects(table)


def _read_file(root: Path, relative: str, location: Location, expected: str | None, fmt: str, chunk_bytes: int,
               cache: RecordsCache | None, into: _Builder | None = None,
               file_index: int = 0) -> tuple[RecordTable | None, list[Problem], str]:
    """One file as a one-file table (None when it has problems), its problems, and the digest of
    the bytes read.  With ``into`` and no records cache, a JSONL file's rows go straight into that
    builder as file ``file_index`` (the table returned is then None): no one-file table is built
    and copied again (with problems, the rows added are not to be used)."""
    cached = cache.get(root, relative, expected, fmt) if cache is not None and expected is not None else None
    part: RecordTable | None
    problems: list[Problem]
    with open_inside(root, relative, location) as raw:
        handle = jsonl.Hashed(raw)
        if cached is not None:
            part, problems = _part_of(cached), []
        elif fmt == "jsonl":
            part, problems = _read_jsonl(handle, relative, chunk_bytes, into if cache is None else None, file_index)
        else:
            from acards.evidence import columnar

            entry, problems = columnar.read_columnar(handle, relative, fmt, _struct())
            part = _part_of(entry) if entry is not None else None
        actual = handle.finish()
    if expected is not None and actual != expected:
        raise AcardsError.collect([digest_mismatch(relative, expected, actual, False, location)])
    if cache is not None and cached is None and part is not None and not problems:
        cache.put(actual, fmt, _cacheable(part), handle.size)
    return part, problems, actual


def _read_jsonl(handle, relative: str, chunk_bytes: int, into: _Builder | None = None,
                file_index: int = 0) -> tuple[RecordTable | None, list[Problem]]:
    """A JSONL file's rows as a one-file table (None with problems), or added to ``into`` as file
    ``file_index`` (None returned), and the file's problems."""
    from acards.evidence import columnar, flatjson

    builder = into if into is not None else _Builder()
    problems = jsonl.Problems()
    describe = _describer(relative)
    fast = _decoder(coded_patterns=False)
    plan = flatjson.plan(_struct(), TEXT)
    for first_line, piece in jsonl.chunks(handle, relative, problems, size=chunk_bytes):
        if first_line == 1 and columnar.sniff(piece[:8]):  # a Parquet or Arrow file left as JSONL
            found_format = columnar.sniff(piece[:8])
            problems.add(columnar.bad_format(relative, f"{relative} is a {found_format} file, not JSONL",
                                             f"set `format: {found_format}` on its records pointer in the card"))
            break
        found = flatjson.decode_columns(piece, plan)
        part = _columns_part(found, first_line) if found is not None else None
        if part is None:  # the exact reader: the same records, or the problems of this piece
            lines, records = jsonl.decode_piece(piece, first_line, fast, _decoder(), describe, problems, relative)
            _refuse_huge_integers(records, lines, relative, problems)
            if records and not problems:
                part = _struct_part(records, lines)
        if part is not None and not problems:
            builder.add(part, file_index)
    return (None if problems or into is not None else builder.table([relative])), list(problems)


def _cacheable(part: RecordTable) -> dict[str, Any]:
    """A one-file table as the records cache stores it."""
    return {"columns": {**part.columns, "line": part.line}, "vocab": part.vocab,
            "outputs": part.outputs, "prompts": part.prompts}


def _part_of(entry: dict[str, Any]) -> RecordTable:
    """A one-file table from what the records cache or the columnar reader give."""
    columns = dict(entry["columns"])
    line = columns.pop("line")
    return RecordTable(columns, entry["vocab"], [], np.zeros(len(line), np.int32), line,
                       entry["outputs"], entry["prompts"])


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
    return composite_key([table.columns[name] for name in names])


def composite_key(columns: list[np.ndarray]) -> np.ndarray:
    """One int64 key per row of several columns of non-negative codes, equal exactly where every
    column is (mixed radix; lexsort ranks if it would overflow)."""
    radices = [int(column.max()) + 1 if len(column) else 1 for column in columns]
    if np.prod([float(r) for r in radices]) < 2**62:
        key = np.zeros(len(columns[0]), np.int64)
        for column, radix in zip(columns, radices):  # in place: no temporary arrays of a million rows
            key *= radix
            key += column
        return key
    columns = [column.astype(np.int64) for column in columns]
    order = np.lexsort(columns[::-1])
    ranks = np.empty(len(order), np.int64)
    stacked = np.stack([c[order] for c in columns])
    new = np.ones(len(order), bool)
    new[1:] = np.any(stacked[:, 1:] != stacked[:, :-1], axis=0)
    ranks[order] = np.cumsum(new) - 1
    return ranks


def has_two_values(keys: np.ndarray, values: np.ndarray) -> bool:
    """Whether some key comes with two different values (both non-negative integer codes): one
    sort of the (key, value) pairs where they fit in 62 bits, else by counting distinct pairs."""
    if not len(keys):
        return False
    radix = int(values.max()) + 1
    if int(keys.max()) < 2**62 // radix:
        ordered = np.sort(keys * radix + values)
        return bool(((ordered[1:] // radix == ordered[:-1] // radix) & (ordered[1:] != ordered[:-1])).any())
    return len(np.unique(keys)) != len(np.unique(composite_key([keys, values])))


def _refuse_duplicates(table: RecordTable) -> None:
    if not len(table):
        return
    key = _composite(table, IDENTITY)
    ordered = np.sort(key)  # several times faster than argsort: the rows are looked up only on a repeat
    if not (ordered[1:] == ordered[:-1]).any():
        return
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
    if not has_two_values(item_key, table.columns["subject"]):  # the clashes are located only when there is one
        return
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
    builder.add(_struct_part([msgspec.convert(record, struct) for record in records],
                             np.arange(1, len(records) + 1, dtype=np.int64)), len(table.files))
    extended = builder.table([*table.files, source])
    _refuse_duplicates(extended)
    return extended


def fill_scores(table: RecordTable, records: list[dict]) -> int:
    """Set the score of each unscored row that one of ``records`` identifies; returns how many.

    Regenerated records of rows that lacked an output carry the row's identity and a score."""
    # IDENTITY spelled out: no generator per record (a re-verify fills every regenerated row)
    wanted = {(str(r["cell"]), str(r["condition"]), str(r["split"]), str(r["task"]), str(r["item"]), str(r["framing"]),
               str(r["seed"]), str(r["sample"])): r.get("score") for r in records}
    rows = np.flatnonzero(np.isnan(table.columns["score"]))
    if not wanted or not len(rows):
        return 0
    # The rows' identities as text a column at a time: a coded value's text is made once.
    texts = []
    for name in IDENTITY:
        values = table.columns[name][rows]
        if name in CODED:
            texts.append(np.array([str(v) for v in table.vocab[name]], dtype=object)[values].tolist())
        else:
            texts.append([str(v) for v in values.tolist()])
    return _fill_rows(table, rows, zip(*texts), wanted)


def fill_identified_scores(table: RecordTable, scores: dict[tuple, float | None]) -> int:
    """:func:`fill_scores` for scores keyed by the identity a row decodes to (coded fields as their
    vocabulary values, seed and sample as ints: ``Request.identity()`` of a request made from the
    row), so that no text is built per record; a None score is left out."""
    rows = np.flatnonzero(np.isnan(table.columns["score"]))
    if not scores or not len(rows):
        return 0
    values = [np.array(table.vocab[name], dtype=object)[table.columns[name][rows]].tolist() if name in CODED
              else table.columns[name][rows].tolist() for name in IDENTITY]
    return _fill_rows(table, rows, zip(*values), scores)


def _fill_rows(table: RecordTable, rows: np.ndarray, identities, scores: dict) -> int:
    hits = [(row, score) for row, score in zip(rows.tolist(), map(scores.get, identities)) if score is not None]
    if hits:
        at, values = zip(*hits)
        table.columns["score"][list(at)] = values
    return len(hits)


def records_summary(table: RecordTable) -> dict[str, Any]:
    """Counts for the report: records, and how many lack outputs or scores."""
    score = table.columns["score"]
    return {
        "records": len(table),
        "unscored": int(np.isnan(score).sum()),
        "without_output": int((np.isnan(score) & ~table.columns["has_output"]).sum()),
    }
