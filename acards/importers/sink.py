"""Where the batch import's records go (acards.importers.batch): written as JSONL a piece at a time,
coded for the checks across records, their prompt rows kept, and made into the table acards'
records reader would read from the written file (see acards.importers.run)."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import msgspec
import numpy as np

from acards.evidence.records import CODED, LARGEST_INTEGER, RecordTable, composite_key, has_two_values
from acards.importers.factor import Factor, constant
from acards.importers.mapping import _MISSING, FileRules

_ENCODE = msgspec.json.Encoder().encode
_ENCODE_LINES = msgspec.json.Encoder().encode_lines
CHECKED = ("cell", "condition", "split", "task", "item", "framing", "seed", "sample", "subject")


class Sink:
    """The imported records of every piece: written (as JSON lines or dicts), coded for the checks
    across records, and their prompt rows kept where first seen.  Where the records are written,
    it also keeps what the records reader's table holds beyond those codes (scores, outputs), so
    that :meth:`table` is the written file as acards.evidence.records reads it."""

    def __init__(self, want_prompts: bool, writer):
        self.want_prompts, self.writer = want_prompts, writer
        self.tables: dict[str, dict] = {name: {} for name in CHECKED}  # value (item: its text) -> label
        self.codes: dict[str, list[np.ndarray]] = {name: [] for name in CHECKED}
        self.issued = dict.fromkeys(CHECKED, 0)  # labels are unique per value, not dense
        self.prompt_keys: dict[tuple, int] = {}
        self.prompt_values: dict[tuple, int] = {}
        self.prompt_codes: list[tuple[np.ndarray, np.ndarray]] = []
        self.prompts: list[dict] = []
        self.scores: list[np.ndarray] = []  # per written record: its score (NaN: none)
        self.has_output: list[np.ndarray] = []
        self.outputs: dict[int, str] = {}  # row -> output, where the score is missing (as RecordTable.outputs)
        self.rows = 0
        self._joined: dict[str, tuple[np.ndarray, list]] | None = None

    def add(self, columns: dict[str, Factor], rules: FileRules, count: int) -> None:
        coded = {}
        for name in CHECKED:
            factor = columns.get(name) or constant(0, count)
            values: Any = factor.values
            if name == "item" and factor.kinds != {str}:  # one id space for 5 and "5", as the identity and the records reader have it
                values = map(str, values)
            elif name == "sample":
                values = map(_sample, values)
            table = self.tables[name]
            start = self.issued[name]
            self.issued[name] += len(factor.values)
            if len(factor.values) == 1:
                coded[name] = np.full(count, table.setdefault(next(iter(values)), start), np.int64)
            else:
                per_value = np.fromiter(map(table.setdefault, values, itertools.count(start)), np.int64, len(factor.values))
                coded[name] = per_value[factor.codes]
            self.codes[name].append(coded[name])
        if self.want_prompts and "prompt" in columns:
            self._add_prompts(columns, coded)
        if self.writer is not None:
            self._add_values(columns, count)
            if self.writer.write_lines is not None:
                self.writer.write_lines(_lines(columns, rules, count))
            else:
                names = list(rules.template)
                for values in zip(*(columns[name].rows() for name in names)):
                    self.writer.write_record({name: value for name, value in zip(names, values) if value is not _MISSING})

    def _add_values(self, columns: dict[str, Factor], count: int) -> None:
        """The scores and outputs of written records, as the records reader keeps them."""
        score = columns.get("score")
        if score is None:
            scores = np.full(count, np.nan)
        else:  # an imported score is a number (the schema's); NaN stands for none
            try:
                per_value = np.array(score.values, np.float64)
            except TypeError:  # _MISSING, or a skipped record's _Fail
                per_value = np.fromiter((float(value) if value.__class__ in (float, int) else np.nan for value in score.values),
                                        np.float64, len(score.values))
            scores = per_value[score.codes]
        output = columns.get("output")
        if output is None:
            has_output = np.zeros(count, bool)
        elif output.kinds == {str}:
            has_output = np.ones(count, bool)
        else:
            has_output = output.mask(lambda value: value.__class__ is str)
        unscored = np.flatnonzero(np.isnan(scores) & has_output)
        if len(unscored) and output is not None:
            self.outputs.update(zip((self.rows + unscored).tolist(), output.take(unscored).rows()))
        self.scores.append(scores)
        self.has_output.append(has_output)
        self.rows += count

    def _add_prompts(self, columns: dict[str, Factor], coded: dict[str, np.ndarray]) -> None:
        rows = np.flatnonzero(columns["prompt"].mask(lambda value: value.__class__ is str))
        if not len(rows):
            return
        items = map(str, columns["item"].take(rows).rows())  # the text itself: a hash could stand for two items
        keys = list(zip(coded["split"][rows].tolist(), coded["task"][rows].tolist(), items, coded["framing"][rows].tolist()))
        parts = [columns[name].take(rows).rows() if name in columns else itertools.repeat(_MISSING, len(rows))
                 for name in ("item", "subject", "prompt", "system", "reference")]
        values = list(zip(*parts))
        key_codes = np.fromiter((self.prompt_keys.setdefault(key, len(self.prompt_keys)) for key in keys), np.int64, len(rows))
        value_codes = np.fromiter((self.prompt_values.setdefault(value, len(self.prompt_values)) for value in values),
                                  np.int64, len(rows))
        seen = len(self.prompts)
        self.prompt_codes.append((key_codes, value_codes))
        fields = {name: columns[name].take(rows) for name in ("split", "task", "framing")}
        for index in np.flatnonzero(key_codes >= seen).tolist():
            if key_codes[index] != len(self.prompts):
                continue  # a key new to this piece, seen again later in it
            item, subject, prompt, system, reference = values[index]
            row = {"item": item, "split": fields["split"].values[fields["split"].codes[index]],
                   "task": fields["task"].values[fields["task"].codes[index]], "subject": subject,
                   "framing": fields["framing"].values[fields["framing"].codes[index]], "prompt": prompt}
            if system is not _MISSING:
                row["system"] = system
            if reference is not _MISSING:
                row["reference"] = reference
            self.prompts.append(row)

    def prompt_rows(self) -> list[dict]:
        return self.prompts

    def joined(self) -> dict[str, np.ndarray]:
        """Per checked field, one dense code per record (over all pieces)."""
        if self._joined is None:
            self._joined = {}
            for name, parts in self.codes.items():
                labels = np.concatenate(parts) if parts else np.zeros(0, np.int64)
                self._joined[name] = _dense(labels, self.issued[name], self.tables[name], name in CODED)
        return {name: codes for name, (codes, _) in self._joined.items()}

    def problem_found(self) -> bool:
        """Whether two records share an identity, an item has two subjects, or an item and framing
        two prompts: the exact path then finds (and words) them."""
        codes = self.joined()
        identity = np.sort(composite_key([codes[name] for name in CHECKED[:-1]]))
        if (identity[1:] == identity[:-1]).any():
            return True
        if has_two_values(composite_key([codes[name] for name in ("cell", "split", "task", "item")]), codes["subject"]):
            return True
        if self.prompt_codes:
            keys = np.concatenate([k for k, _ in self.prompt_codes])
            values = np.concatenate([v for _, v in self.prompt_codes])
            if has_two_values(keys, values):
                return True
        return False

    def table(self) -> RecordTable | None:
        """The written records as acards' records reader reads them back from the file (one file,
        its lines numbered from 1, vocabularies in order of first appearance), made from the
        columns the import made; None where a seed or sample is beyond what the reader keeps, so
        that the reader, reading the file, refuses it in its words."""
        self.joined()
        assert self._joined is not None
        columns, vocab = {}, {}
        for name in CODED:
            columns[name], vocab[name] = self._joined[name]
        for name in ("seed", "sample"):
            codes, values = self._joined[name]
            numbers = [value if value.__class__ is int else 0 for value in values]  # the rest: no written record's
            if numbers and max(numbers) > LARGEST_INTEGER:  # a seed or sample the records reader refuses
                return None
            columns[name] = np.array(numbers, np.int64)[codes] if numbers else np.zeros(0, np.int64)
        columns["score"] = np.concatenate(self.scores) if self.scores else np.zeros(0)
        columns["has_output"] = np.concatenate(self.has_output) if self.has_output else np.zeros(0, bool)
        return RecordTable(columns, vocab, [], np.zeros(self.rows, np.int32), np.arange(1, self.rows + 1, dtype=np.int64),
                           self.outputs, {})


def _dense(labels: np.ndarray, issued: int, table: dict, by_appearance: bool) -> tuple[np.ndarray, list]:
    """Labels (unique per value, not dense; ``table`` maps each value to its label) as dense codes,
    and the values in code order.  With ``by_appearance``, the codes are numbered in order of first
    appearance and values no record has are left out, as the records reader numbers them."""
    given = np.fromiter(table.values(), np.int64, len(table))
    remap = np.full(issued, -1, np.int32)
    remap[given] = np.arange(len(given), dtype=np.int32)  # in the table's order: mostly that of first appearance
    codes = remap[labels]
    if not by_appearance or len(given) == 1 or _numbered_by_appearance(codes, len(given)):
        return codes, list(table)
    count = len(labels)
    first = np.full(len(given), count, np.int64)
    np.minimum.at(first, codes, np.arange(count))
    order = np.argsort(first, kind="stable")
    order = order[first[order] < count]
    remap = np.full(len(given), -1, np.int32)
    remap[order] = np.arange(len(order), dtype=np.int32)
    values = list(table)
    return remap[codes], [values[index] for index in order.tolist()]


def _numbered_by_appearance(codes: np.ndarray, distinct: int) -> bool:
    """Whether codes 0..distinct-1 all occur, each first after every smaller one."""
    if not len(codes):
        return distinct == 0
    highest = np.maximum.accumulate(codes)
    return int(codes[0]) == 0 and int(highest[-1]) == distinct - 1 and bool((codes[1:] <= highest[:-1] + 1).all())


def _sample(value: Any) -> Any:
    return 0 if value is _MISSING else value


def _lines(columns: dict[str, Factor], rules: FileRules, count: int) -> bytes:
    """The records as JSONL, byte for byte what msgspec writes for each record's dict, in one
    ``encode_lines`` of one Struct per record: its fields are the record's keys in order, a field
    with one value in all records (and the run of such fields after it) is one raw JSON constant,
    and a field a record lacks is UNSET, which msgspec leaves out as it leaves out a missing key."""
    names: list[str] = []
    parts: list = []  # per Struct field: its value in every record, or a list of one per record
    constant = b""  # the raw JSON of the constant run being built (after its first key)
    for target in rules.template:
        factor = columns[target]
        values = factor.values
        if len(values) == 1 and values[0] is not _MISSING:
            if constant:
                constant += b"," + _ENCODE(target) + b":" + _ENCODE(values[0])
            else:
                names.append(target)
                constant = _ENCODE(values[0])
            continue
        if constant:
            parts.append(msgspec.Raw(constant))
            constant = b""
        names.append(target)
        if not factor.kinds <= _NATIVE:
            values = [value if value.__class__ in _NATIVE else msgspec.UNSET for value in values]  # _MISSING; _Fail: no record's
        codes = factor.codes
        in_order = len(values) == count and bool((codes == np.arange(count)).all())
        parts.append(values if in_order else list(map(values.__getitem__, codes.tolist())))
    if constant:
        parts.append(msgspec.Raw(constant))
    record = _record_struct(tuple(names))
    return _ENCODE_LINES(map(record, *(part if isinstance(part, list) else itertools.repeat(part, count) for part in parts)))


_NATIVE = {str, int, float, bool, type(None), list, dict}  # what a mapped value is (a field's JSON as decoded)


@functools.lru_cache(maxsize=64)
def _record_struct(names: tuple[str, ...]) -> type:
    """A Struct whose fields are ``names`` in order, each left out where UNSET."""
    return msgspec.defstruct("Written", [(name, Any, msgspec.UNSET) for name in names], gc=False)
