"""Records as Parquet or Arrow IPC files (a records pointer's ``format: parquet`` or ``arrow``).

A columnar records file is one table whose columns are the record fields: the same names, types
and constraints as a JSONL record, read from the one record schema (schema/record-1.0.schema.json)
through the msgspec types acards.schemas generates from it.  So:

- every column must be a schema field (``additionalProperties: false``) and every required field
  a column; a string field is an Arrow string column (plain, large, view or dictionary-encoded), an
  integer field an integer column, a number field a float or integer column, ``item`` either;
- a null in an optional column means the field is absent (as a missing key in JSONL); a null in a
  required column is the field missing from that row;
- every distinct value of a string or integer column is checked with msgspec against the field's
  type (enums, lengths, minimums, exactly as for JSONL); a number column is checked against the
  schema's ``minimum`` and ``maximum`` all at once (NaN is refused: JSON has none);
- problems are ``records.invalid`` (``records.out-of-range`` for an integer beyond int64) with the
  file, the 1-based row number (where a JSONL problem names its line) and the field.

pyarrow is needed only for these files: it is imported when a card names one, and its absence is
``records.missing-extra``.  The file's bytes are read once, through the caller's hashed handle,
and parsed from memory, so the bytes parsed are the bytes hashed.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from acards import schemas
from acards.errors import AcardsError, Location, Problem
from acards.evidence import flatjson

RECORD = "record-1.0"
MAX_PROBLEMS = 20
MAX_ROWS = 2 ** 31 - 1  # a bound on what one file makes acards allocate, checked before decompressing
TEXT = frozenset({"prompt", "output"})
CODED = ("cell", "condition", "split", "task", "subject", "item", "framing")
SCORES = "scores."  # as acards.evidence.records names a scorer's column
_MAGIC = {"parquet": (b"PAR1",), "arrow": (b"ARROW1",)}


def sniff(head: bytes) -> str | None:
    """The format whose magic bytes ``head`` starts with (parquet, arrow), else None."""
    return next((fmt for fmt, magics in _MAGIC.items() if head.startswith(magics)), None)


def bad_format(file: str, message: str, hint: str) -> Problem:
    return Problem("records.bad-format", message, hint, Location(file))


def _fits(value, kind) -> bool:
    try:
        msgspec.convert(value, kind)
    except msgspec.ValidationError:
        return False
    return True


def pyarrow_module(location: Location | None = None):
    """pyarrow with its IPC and Parquet modules loaded; records.missing-extra when it is not installed
    (the records reader and the table importer both come here)."""
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise AcardsError("records.missing-extra", "reading Parquet or Arrow records needs pyarrow, which is not installed",
                          "pip install 'acards[columnar]' (or pyarrow), or give the records as JSONL", location) from None
    return pyarrow


def read_columnar(handle, file: str, fmt: str, struct: type) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The records of one Parquet or Arrow file, read whole through ``handle`` (which hashes what
    it reads), as {"columns", "vocab", "outputs", "prompts"}; None with the file's problems."""
    pa = pyarrow_module()
    data = handle.read()
    try:
        if fmt == "parquet":
            # String columns come as their dictionaries (Parquet stores them so): no string is made per row.
            opened = pa.parquet.ParquetFile(pa.BufferReader(data))
            strings = [f.name for f in opened.schema_arrow if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
            opened = pa.parquet.ParquetFile(pa.BufferReader(data), read_dictionary=[n for n in strings if n in CODED])
            if opened.metadata.num_rows > MAX_ROWS:  # before decompressing anything
                return None, [_too_many(file, opened.metadata.num_rows)]
            table = opened.read(use_threads=False)
        elif data.startswith(b"ARROW1"):
            table = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        else:
            table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    except (pa.ArrowException, OSError, ValueError) as error:
        found = sniff(data[:8]) or ("jsonl" if data.lstrip()[:1] == b"{" else None)
        hint = (f"it looks like {found}: set `format: {found}` on its records pointer in the card" if found and found != fmt
                else f"write the records as a {fmt} file (or as JSONL, the default format)")
        return None, [bad_format(file, f"{file} is not a readable {fmt} file ({error})", hint)]
    if table.num_rows > MAX_ROWS:
        return None, [_too_many(file, table.num_rows)]
    return _Reader(pa, table, file, struct).read()


def _too_many(file: str, rows: int) -> Problem:
    return bad_format(file, f"{file} declares {rows:,} rows, more than the {MAX_ROWS:,} acards reads from one file",
                      "split the records into several files, each its own records pointer")


class _Reader:
    """One table checked against the record schema, column by column."""

    def __init__(self, pa, table, file: str, struct: type):
        self.pa, self.table, self.file = pa, table, file
        self.plan = flatjson.plan(struct, TEXT)
        self.schema = schemas.load_schema(RECORD)
        self.problems: list[Problem] = []
        self.rows = table.num_rows

    def problem(self, message: str, row: int | None, name: str, code: str = "records.invalid", hint: str | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            spec = self.schema["properties"].get(name, {})
            where = f"row {row}: " if row is not None else ""
            self.problems.append(Problem(code, where + message, hint or spec.get("description") or
                                         f"see schema/{RECORD}.schema.json", Location(self.file, row, None, f"/{name}")))

    def read(self) -> tuple[dict[str, Any] | None, list[Problem]]:
        names = self.table.column_names
        properties = self.schema["properties"]
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.problem(f"the column {name} appears more than once", None, name)
        for name in names:
            if name not in properties:
                self.problem(f"the column {name} is not a record field", None, name,
                             hint=f"a record's fields are {', '.join(properties)}; drop or rename the column")
        for name in self.schema["required"]:
            if name not in names:
                self.problem(f"Object missing required field `{name}` (the file has no {name} column)", None, name)
        if self.problems:
            return None, self.problems
        # A column of Arrow's null type (every value null, as writers make of an all-None column)
        # is an optional field absent from every row; for a required field, a null at row 1.
        null_typed = [n for n in names if self.pa.types.is_null(self.table.schema.field(n).type)]
        for name in null_typed:
            self.required_present(name)
        names = [n for n in names if n not in null_typed]
        columns: dict[str, np.ndarray] = {}
        vocab: dict[str, list[str]] = {}
        for name in CODED:
            found = self.coded(name) if name in names else None
            if found is not None:
                columns[name], vocab[name] = found
        for name, default, dtype in (("seed", 0, np.int64), ("sample", 0, np.int64), ("score", np.nan, np.float64)):
            values = self.numbers(name, dtype, names)
            if values is not None:
                columns[name] = values.astype(dtype, copy=False)
            elif name not in names:
                columns[name] = np.full(self.rows, default, dtype)
        texts = {name: self.text(name) for name in TEXT if name in names}
        if "scores" in names:
            columns.update(self.scores())
        if self.problems:
            return None, self.problems
        output = texts.get("output")
        columns["has_output"] = output.is_valid().to_numpy(zero_copy_only=False) if output is not None else np.zeros(self.rows, bool)
        unscored = np.flatnonzero(np.isnan(columns["score"]) & columns["has_output"])
        outputs = dict(zip(unscored.tolist(), output.take(unscored).to_pylist())) if output is not None and len(unscored) else {}
        prompts = {}
        prompt = texts.get("prompt")
        if prompt is not None and "fresh" in vocab["split"]:
            fresh = np.flatnonzero((columns["split"] == vocab["split"].index("fresh"))
                                   & prompt.is_valid().to_numpy(zero_copy_only=False))
            prompts = dict(zip(fresh.tolist(), prompt.take(fresh).to_pylist()))
        columns["line"] = np.arange(1, self.rows + 1, dtype=np.int64)  # a row's number stands for a line's
        return {"columns": columns, "vocab": vocab, "outputs": outputs, "prompts": prompts}, []

    def column(self, name: str):
        """The column as one Arrow array."""
        column = self.table.column(name)
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)

    def kind_ok(self, name: str) -> bool:
        """Whether the column's Arrow type fits the schema type of the field."""
        types = self.pa.types
        kinds = self.schema["properties"][name]["type"]
        kinds = kinds if isinstance(kinds, list) else [kinds]
        value_type = self.table.schema.field(name).type
        value_type = value_type.value_type if types.is_dictionary(value_type) else value_type
        is_text = types.is_string(value_type) or types.is_large_string(value_type) or \
            getattr(types, "is_string_view", lambda _: False)(value_type)
        fits = ("string" in kinds and is_text) or ("integer" in kinds and types.is_integer(value_type)) or \
            ("number" in kinds and (types.is_floating(value_type) or types.is_integer(value_type)))
        if not fits:
            self.problem(f"the column {name} holds {value_type} values; the schema says {' or '.join(kinds)}", 1, name)
        return fits

    def required_present(self, name: str) -> bool:
        column = self.table.column(name)
        if column.null_count and name in self.schema["required"]:
            row = int(np.flatnonzero(self.pa.compute.is_null(column).to_numpy(zero_copy_only=False))[0]) + 1
            self.problem(f"Object missing required field `{name}` (a null)", row, name)
            return False
        return True

    def coded(self, name: str) -> tuple[np.ndarray, list[str]] | None:
        """(codes, distinct values in order of first appearance, as the JSONL reader orders them)
        of a string (or item) column."""
        column = self.table.column(name)
        if not self.kind_ok(name) or not self.required_present(name):
            return None
        if self.pa.types.is_dictionary(column.type):
            column = self.pa.chunked_array(self.pa.table({name: column}).unify_dictionaries().column(0).chunks, column.type)
            dictionary = column.chunk(0).dictionary if column.num_chunks else self.pa.array([], column.type.value_type)
            indices = [chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks]
            codes = np.concatenate(indices).astype(np.int32) if indices else np.zeros(0, np.int32)
        else:
            encoded = self.pa.compute.dictionary_encode(self.column(name))
            dictionary, codes = encoded.dictionary, encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        # Codes in order of first appearance (the reverse assignment leaves each value's first row).
        first = np.full(len(dictionary), len(codes), np.int64)
        first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        used = np.flatnonzero(first < len(codes))
        used = used[np.argsort(first[used], kind="stable")]
        renumber = np.zeros(len(dictionary), np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        codes = renumber[codes]
        values = dictionary.take(self.pa.array(used)).to_pylist()
        kind = self.plan.kinds[name]
        try:
            msgspec.convert(values, list[kind])  # type: ignore[valid-type]  # every distinct value at once; one by one only to find a bad one
        except msgspec.ValidationError:
            for code, value in enumerate(values):
                try:
                    msgspec.convert(value, kind)
                except msgspec.ValidationError as error:
                    self.problem(f"{name} {value!r}: {error}", int(np.flatnonzero(codes == code)[0]) + 1, name)
        return codes, [str(v) for v in values]

    def numbers(self, name: str, dtype, names: list[str]) -> np.ndarray | None:
        """The column as numbers (NaN where null), each distinct integer checked by msgspec and a
        number column against the schema's minimum and maximum; None if absent or refused."""
        if name not in names:
            return None
        if not self.kind_ok(name) or not self.required_present(name):
            return None
        array = self.column(name)
        if self.pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        missing = ~array.is_valid().to_numpy(zero_copy_only=False)
        spec = self.schema["properties"][name]
        if dtype is np.int64:
            values = array.fill_null(0).to_numpy(zero_copy_only=False)
            if values.dtype == np.uint64 and (values > 2 ** 63 - 1).any():
                row = int(np.flatnonzero(values > 2 ** 63 - 1)[0]) + 1
                self.problem(f"{name} {int(values[row - 1])} is larger than {2 ** 63 - 1}", row, name, "records.out-of-range",
                             f"acards reads a {name} up to 2^63-1; renumber the {name}s of this file")
                return None
            values = values.astype(np.int64)
            bad = np.zeros(len(values), bool)
        else:
            values = array.cast(self.pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
            bad = np.isnan(values) & ~missing  # JSON has no NaN
        # The schema's bounds at once (the only constraints a number field has: see schemas._field_type).
        if "minimum" in spec:
            bad |= (values < spec["minimum"]) & ~missing
        if "maximum" in spec:
            bad |= (values > spec["maximum"]) & ~missing
        if set(spec) - {"description", "examples", "type", "minimum", "maximum", "default"}:  # a constraint not checked above
            distinct = np.unique(values[~missing & ~bad])
            try:
                msgspec.convert(distinct.tolist(), list[self.plan.kinds[name]])  # type: ignore[name-defined]
            except msgspec.ValidationError:
                bad |= np.isin(values, [v for v in distinct.tolist() if not _fits(v, self.plan.kinds[name])]) & ~missing
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = values[row].item()
            try:
                msgspec.convert(value, self.plan.kinds[name])
                reason = "JSON has no NaN"
            except msgspec.ValidationError as error:
                reason = str(error)
            self.problem(f"{name} {value}: {reason}", row + 1, name)
            return None
        return np.where(missing, 0, values) if dtype is np.int64 else values

    def scores(self) -> dict[str, np.ndarray]:
        """A ``scores`` column (a struct of one number field per scorer, or a map of scorer name to
        number) as ``scores.<name>`` float64 columns, NaN where a row has no score under the name.
        Names are checked as JSONL keys are; values against the schema's bounds (NaN refused)."""
        types, array = self.pa.types, self.column("scores")
        valid = array.is_valid().to_numpy(zero_copy_only=False)
        if types.is_struct(array.type):
            fields = [(array.type.field(i).name, array.field(i)) for i in range(array.type.num_fields)]
        elif types.is_map(array.type) and (types.is_string(array.type.key_type) or types.is_large_string(array.type.key_type)):
            fields = self.map_fields(array, valid)
        else:
            self.problem(f"the column scores holds {array.type} values; the schema says an object of numbers by scorer name "
                         "(an Arrow struct of float fields, or a map of string to float)", 1, "scores")
            return {}
        key_type = self.plan.kinds["scores"].__args__[0]
        spec = self.schema["properties"]["scores"]["additionalProperties"]
        found = {}
        for name, child in fields:
            if not _fits(name, key_type):
                self.problem(f"scores names the scorer {name!r}, which does not match "
                             f"{self.schema['properties']['scores']['propertyNames']['pattern']}", 1, "scores")
                continue
            if not (types.is_floating(child.type) or types.is_integer(child.type) or types.is_null(child.type)):
                self.problem(f"scores.{name} holds {child.type} values; the schema says numbers", 1, "scores")
                continue
            values = child.cast(self.pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False).copy()
            present = ~child.is_null(nan_is_null=False).to_numpy(zero_copy_only=False) & valid
            values[~valid] = np.nan
            bad = present & (np.isnan(values) | (values < spec["minimum"]) | (values > spec["maximum"]))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                self.problem(f"scores.{name} {values[row]}: a score is a number in [0, 1]", row + 1, "scores")
                continue
            found[SCORES + name] = values
        return found

    def map_fields(self, array, valid: np.ndarray) -> list:
        """A map column's entries as (name, one float array per row) pairs, null where a row lacks the name."""
        offsets = array.offsets.to_numpy(zero_copy_only=False)
        first, last = int(offsets[0]), int(offsets[-1])
        keys = array.keys.slice(first, last - first).to_numpy(zero_copy_only=False)
        items = array.items.slice(first, last - first).cast(self.pa.float64())
        rows = np.repeat(np.arange(self.rows), np.diff(offsets))
        kept = valid[rows]  # entries of a null row do not count
        fields = []
        for name in dict.fromkeys(keys[kept].tolist()):
            where = np.flatnonzero((keys == name) & kept)
            if len(np.unique(rows[where])) != len(where):
                self.problem(f"the scores map names {name!r} twice in one row", int(rows[where][0]) + 1, "scores")
                continue
            column = np.full(self.rows, np.nan)
            present = np.zeros(self.rows, bool)
            taken = items.take(self.pa.array(where))
            column[rows[where]] = taken.fill_null(np.nan).to_numpy(zero_copy_only=False)
            present[rows[where]] = taken.is_valid().to_numpy(zero_copy_only=False)
            fields.append((name, self.pa.array(column, mask=~present)))
        return fields

    def text(self, name: str):
        """A text column (outputs, prompts): only its type is checked, as for JSONL."""
        if not self.kind_ok(name):
            return None
        array = self.column(name)
        return array.dictionary_decode() if self.pa.types.is_dictionary(array.type) else array
