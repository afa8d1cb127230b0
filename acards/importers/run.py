"""Running an import: map every source record, count what is skipped and why, check the records
across files, and write the records (and prompts) files only when everything holds.

Nothing is written when the mapping has a problem, when two source records map to the same record
identity or give one item two subjects or one prompt two texts, when nothing maps, or when records
were skipped without ``allow_skipped``.  The records file is checked as acards' own records reader
(the one `acards verify` uses) checks one before it replaces the output, and the summary's
``table`` is that file as the reader reads it.

A source that reads its files in pieces of JSONL lines (``Source.pieces``) is mapped a piece at a
time (acards.importers.batch), which gives the same files, counts and problems as the record by
record path here (:func:`_import_exact`), and falls back to it for whatever is unusual.

What vouches for the written file: on the record-by-record path, the records reader reads it back
(schema, seeds and samples it keeps, duplicates, subjects).  On the batch path the file is not read
again: every distinct value was checked against the record schema as it was mapped, the lines are
msgspec's JSON of each record, and the table is made from the import's own columns (the columns,
vocabularies in order of first appearance, line numbers and outputs the reader would give), on
which the reader's checks across records run; a seed or sample beyond 2^63-1 has the reader read
the file back, to refuse it in its words.  tests/test_import_batch.py and tests/test_import_table.py
hold every case to it: the table equals what ``read_records`` reads from the written file, and
the written bytes equal those of the record-by-record path.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import msgspec

from acards.errors import AcardsError, Location, Problem
from acards.importers.batch import Plan, batch_import
from acards.importers.mapping import REASONS, Mapping, Skip
from acards.importers.outcome import FileSummary, count_skip, map_record
from acards.importers.source import Source, SourceFile

MAX_PROBLEMS = 20


@dataclass
class Summary:
    """The import's counts per file, and what was written."""

    source: str
    files: list[FileSummary]
    records_path: str | None = None
    prompts_path: str | None = None
    records: int = 0
    prompts: int = 0
    table: Any = field(default=None, repr=False)  # the written records as acards' records reader reads them

    @property
    def skipped(self) -> Counter:
        total: Counter = Counter()
        for file in self.files:
            total.update(file.skipped)
        return total

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "records": self.records, "prompts": self.prompts,
                "records_path": self.records_path, "prompts_path": self.prompts_path,
                "read": sum(f.read for f in self.files), "imported": sum(f.imported for f in self.files),
                "skipped": dict(sorted(self.skipped.items())), "files": [f.as_json() for f in self.files],
                "sources": [{"path": f.path, "sha256": f.sha256} for f in self.files]}


def _identity(record: dict) -> tuple:
    item = record["item"]
    return (record["cell"], record["condition"], record["split"], record["task"], str(item), record["framing"],
            record["seed"], record.get("sample", 0))


class _Checks:
    """The checks across source records: unique identities, one subject per item, one text per prompt."""

    def __init__(self) -> None:
        self.identities: dict[tuple, str] = {}
        self.subjects: dict[tuple, tuple[str, str]] = {}
        self.prompts: dict[tuple, tuple[dict, str]] = {}
        self.problems: list[Problem] = []

    def add(self, record: dict, prompt: dict | None, file: str, where: str) -> None:
        place = f"{file} {where}"
        key = _identity(record)
        if key in self.identities:
            self._problem("import.duplicate", f"{place} maps to the same record as {self.identities[key]} "
                          f"(cell, condition, split, task, item, framing, seed, sample = {', '.join(map(str, key))})",
                          "map what tells them apart (often `sample` for repeated generations, `seed`, or `condition` "
                          "per file), or `select` one of them", file)
        else:
            self.identities[key] = place
        group = (record["cell"], record["split"], record["task"], str(record["item"]))
        first = self.subjects.setdefault(group, (record["subject"], place))
        if first[0] != record["subject"]:
            self._problem("import.subject-mismatch", f"{place} gives item {record['item']} the subject {record['subject']!r}, "
                          f"{first[1]} gave it {first[0]!r}", "one item has one subject: check the subject rule", file)
        if prompt is not None:
            prompt_key = (prompt["split"], prompt["task"], str(prompt["item"]), prompt["framing"])
            seen = self.prompts.setdefault(prompt_key, (prompt, place))
            if seen[0] != prompt:
                self._problem("import.prompt-conflict", f"{place} poses item {prompt['item']} ({prompt['framing']}) with another "
                              f"prompt than {seen[1]}", "one item is posed with one prompt per framing: check the item "
                              "and framing rules", file)

    def _problem(self, code: str, message: str, hint: str, file: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(code, message, hint, Location(file)))


def import_records(source: Source, names: list[str], mapping: Mapping, *, want_prompts: bool, allow_skipped: bool,
                   write_record: Callable[[dict], None] | None = None, root: Path | None = None) -> tuple[Summary, list[dict]]:
    """Every source record mapped, counted and checked: (summary, prompt rows).  Each imported record
    goes to ``write_record`` as it is made, so the records are never all held in memory.  With
    ``root``, the names are paths relative to it (a card's folder); the mapping's globs see the names."""
    writer = None if write_record is None else _RecordWriter(write_record)
    return _import(source, names, mapping, want_prompts, allow_skipped, writer, root)


class _RecordWriter:
    """Where imported records go: as dicts (``write_record``) or, from the batch path, as the
    bytes of whole lines where the destination takes them (``write_lines``)."""

    def __init__(self, write_record: Callable[[dict], None], write_lines: Callable[[bytes], None] | None = None):
        self.write_record, self.write_lines = write_record, write_lines


def _import(source: Source, names: list[str], mapping: Mapping, want_prompts: bool, allow_skipped: bool,
            writer: _RecordWriter | None, root: Path | None) -> tuple[Summary, list[dict]]:
    rules_per_file = mapping.rules_for(names, source.defaults)  # every mapping problem, before reading
    files = [SourceFile(name, root=root) for name in names]
    if _batch_readable(source, files, rules_per_file):
        summary = Summary(source.name, [])
        sink = batch_import(source, files, rules_per_file, mapping.select, want_prompts, summary, writer)
        if sink.problem_found():  # the exact path finds and words the problems across records
            _import_exact(source, names, mapping, rules_per_file, want_prompts, allow_skipped, None, root)
        finished = _finish(summary, [], names, mapping, want_prompts, allow_skipped, sink.prompt_rows())
        if writer is not None:  # the records written, as the records reader reads them (see run_import)
            summary.table = sink.table()
        return finished
    return _import_exact(source, names, mapping, rules_per_file, want_prompts, allow_skipped, writer, root)


def _batch_readable(source: Source, files: list[SourceFile], rules_per_file: list) -> bool:
    """Whether every file is read in pieces under rules the batch path maps."""
    if source.pieces is None or not all(map(Plan.supports, rules_per_file)):
        return False
    try:
        return all(source.pieces(file) is not None for file in files)
    except AcardsError:  # e.g. a table whose format cannot be told: the exact path says so, in its turn
        return False


def _import_exact(source: Source, names: list[str], mapping: Mapping, rules_per_file: list, want_prompts: bool,
                  allow_skipped: bool, writer: _RecordWriter | None, root: Path | None) -> tuple[Summary, list[dict]]:
    """The per-record path: every source record mapped and checked one at a time."""
    summary = Summary(source.name, [])
    checks = _Checks()
    prompts: dict[tuple, dict] = {}
    write_record = None if writer is None else writer.write_record
    for name, rules in zip(names, rules_per_file):
        file = SourceFile(name, root=root)
        counts = FileSummary(name)
        summary.files.append(counts)
        read = imported = 0  # counted in locals, the per-record loop being the import's hot path
        for where, record in source.read(file):
            read += 1
            try:
                mapped = map_record(rules, mapping.select, record, want_prompts)
            except Skip as skip:
                count_skip(counts, where, skip)
                continue
            checks.add(mapped.record, mapped.prompt, name, where)
            imported += 1
            if write_record is not None:
                write_record(mapped.record)
            if mapped.prompt is not None:
                prompts.setdefault((mapped.prompt["split"], mapped.prompt["task"], str(mapped.prompt["item"]),
                                    mapped.prompt["framing"]), mapped.prompt)
        counts.read, counts.imported = read, imported
        counts.sha256, counts.size = file.sha256, file.size
    return _finish(summary, list(checks.problems), names, mapping, want_prompts, allow_skipped, list(prompts.values()))


def _finish(summary: Summary, problems: list[Problem], names: list[str], mapping: Mapping, want_prompts: bool,
            allow_skipped: bool, prompts: list[dict]) -> tuple[Summary, list[dict]]:
    """The problems of the import as a whole (after those across records), raised together."""
    if not allow_skipped:  # records left out by the mapping's own `select` are counted, never an error
        problems += [_skipped_problem(f, reason) for f in summary.files for reason in REASONS
                     if f.skipped[reason] and reason != "not-selected"]
    imported = sum(f.imported for f in summary.files)
    if not imported and not problems:
        problems.append(Problem("import.nothing-imported", "no source record was imported",
                                "check the input files and the mapping's `select`", Location(names[0] if names else None)))
    if want_prompts and imported and not prompts and not problems:
        problems.append(Problem("import.no-prompts", "no imported record has a prompt to write",
                                "map `prompt`, or leave out --prompts", Location(str(mapping.path))))
    if problems:
        raise AcardsError.collect(problems)
    summary.records, summary.prompts = imported, len(prompts)
    return summary, prompts


def _skipped_problem(file: FileSummary, reason: str) -> Problem:
    count = file.skipped[reason]
    return Problem("import.skipped", f"{count:,} source record{'s' if count != 1 else ''} not imported: {reason} "
                   f"(first: {'; '.join(file.examples.get(reason, []))})",
                   "fix the mapping (see docs/importing.md#why-a-record-is-not-imported), or pass --allow-skipped "
                   "to write the records that map and report the rest", Location(file.path))


class StagedJsonl:
    """A JSONL file written beside its final path, moved into place by :meth:`commit`, removed by
    :meth:`discard`: an import that stops leaves no output behind."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        self.temporary = Path(temporary)
        self._handle = os.fdopen(descriptor, "wb")
        self._encoder, self._buffer = msgspec.json.Encoder(), bytearray()

    def write(self, row: dict) -> None:
        self._encoder.encode_into(row, self._buffer, len(self._buffer))
        self.write_lines(b"\n")

    def write_lines(self, lines: bytes) -> None:
        """Whole JSONL lines, already encoded (the batch import's); a large block is written as it
        is, without a copy into the buffer."""
        if len(lines) >= 1 << 16:
            if self._buffer:
                self._handle.write(self._buffer)
                self._buffer.clear()
            self._handle.write(lines)
            return
        self._buffer += lines
        if len(self._buffer) >= 1 << 20:
            self._handle.write(self._buffer)
            self._buffer.clear()

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.write(self._buffer)
            self._buffer.clear()
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()

    def commit(self) -> None:
        self.close()
        os.chmod(self.temporary, 0o644)
        os.replace(self.temporary, self.path)

    def discard(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self.temporary.unlink(missing_ok=True)


def _records_table(table: Any, records: StagedJsonl, records_path: Path) -> Any:
    """The written records as acards' records reader has them, checked by its checks across
    records: the batch path's table (made from its own columns), or on the exact path (or for a
    seed beyond what the reader keeps) the staged file read back by the reader.  Problems name the
    records file, not its staged copy."""
    from acards.evidence.records import check_across_records, read_records

    staged, name = records.temporary.name, str(records_path)
    try:
        if table is None:
            table = read_records(records.temporary.parent, [(staged, Location(name))])
        else:
            table.files = [name]
            check_across_records(table)
    except AcardsError as error:
        raise AcardsError.collect([replace(problem, location=replace(problem.location, file=name))
                                   if problem.location.file == staged else problem for problem in error.problems]) from None
    table.files = [name]
    return table


def run_import(source: Source, names: list[str], mapping: Mapping, records_path: Path, prompts_path: Path | None = None,
               *, allow_skipped: bool = False, root: Path | None = None) -> Summary:
    """Import, check, and write the records file (and the prompts file when asked).  The records
    are checked as acards' own records reader checks them (schema, duplicates, subjects) before
    they land; the summary's ``table`` is the file as that reader reads it (see the module's
    docstring for how each path vouches for it)."""
    records = StagedJsonl(records_path)
    prompts = None
    try:
        summary, rows = _import(source, names, mapping, prompts_path is not None, allow_skipped,
                                _RecordWriter(records.write, records.write_lines), root)
        records.close()
        summary.table = _records_table(summary.table, records, records_path)
        if prompts_path is not None:
            prompts = StagedJsonl(prompts_path)
            for row in rows:
                prompts.write(row)
            prompts.commit()
            summary.prompts_path = str(prompts_path)
        records.commit()
    except BaseException:
        records.discard()
        if prompts is not None:
            prompts.discard()
        raise
    summary.records_path = str(records_path)
    return summary
