"""The batch path of `acards import` for JSONL sources: a piece of whole lines at a time.

A piece that is provably one JSON object per line (acards.jsonl.one_object_per_line, as the exact
reader's own fast path) is decoded at once with a msgspec Struct made from the source paths the
file's rules read (nested Structs for dotted paths, array-like Structs for list indices, ``Any``
leaves, every other field skipped), so that no dict is built for fields nobody reads.  Every
target field then becomes a Factor (acards.importers.factor: its distinct values and one code per
record), and the rules, the record and prompt schemas and the JSON encoding are applied per
distinct value, or per column where the values are already what the rule gives.  What is unusual goes through the exact
per-record path of acards.importers.run, which words every reason and problem: a piece the Struct
does not decode (a line that is not an object, a parent that is not what the paths say, invalid
UTF-8, a blank line) is read and mapped record by record, and a record some rule or the schema
would skip is decoded as a dict and mapped again (only records left out by `select` are counted
here, with the same words).

The checks across records (one record per identity, one subject per item, one prompt per item and
framing) are done at the end on integer codes (an item's code is that of its text, as in the
record identity); if one fails, the caller runs the exact path, which reports the same problems
as ever.  The records are written with one msgspec ``encode_lines`` per piece, byte for byte what
msgspec writes for each record's dict (acards.importers.sink).  From the same codes, the sink makes
the table acards' records reader would read from the written file (see acards.importers.run).

Known difference: msgspec does not check the numbers of a skipped field, so a line whose unread
field holds a number beyond what msgspec decodes (past ±1.8e308, or an integer of thousands of
digits) is imported here, where the exact reader refuses the line (``import.bad-source``).
"""

from __future__ import annotations

import functools
import itertools
from operator import attrgetter
from typing import Any, Callable

import msgspec
import numpy as np

from acards import jsonl
from acards.importers.factor import Factor, constant, factorize
from acards.importers.jsonl_source import Piece
from acards.importers.mapping import _MISSING, FileRules, LiteralSearch, Skip, _Fail, _path, as_text, field_outcome, lookup, pattern_outcomes
from acards.importers.outcome import EXAMPLES, FileSummary, count_skip, map_record
from acards.importers.sink import Sink
from acards.schemas import load_schema

_ANY = msgspec.json.Decoder()
_CONSTRAINTS = {"pattern", "enum", "minimum", "maximum", "minLength", "maxLength"}
PROMPT_FIELDS = ("item", "split", "task", "subject", "framing", "prompt", "system", "reference")


# --- the typed decoder ----------------------------------------------------------------------------

MAX_INDEX = 64  # a list index typed as a position (a larger one is walked with lookup)


def _typed(paths: list[tuple[str, ...]]) -> tuple[msgspec.json.Decoder, dict[tuple[str, ...], Callable[[list], list]]]:
    """A decoder of one line into a Struct holding the values at ``paths`` (None where absent or
    null), and per path a function of the decoded rows giving its values.  A node whose children
    are all list indices is a list (an array-like Struct), any other an object; a value that is
    not what its node says fails to decode, and the exact path reads the piece.  Where one path
    ends inside another, the shorter one is an ``Any`` leaf and the longer is walked from it."""
    def index(part: str) -> int | None:
        return int(part) if part.isascii() and part.isdigit() and part == str(int(part)) and int(part) < MAX_INDEX else None

    ends = set(paths)
    split = {}
    for path in paths:
        cut = next((i for i in range(1, len(path)) if path[:i] in ends), len(path))
        split[path] = (path[:cut], path[cut:])
    tree: dict = {}
    for typed, _ in split.values():
        node = tree
        for part in typed[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(typed[-1], None)
    attrs: dict[tuple[str, ...], str] = {}

    def struct(node: dict, prefix: tuple[str, ...], name: str) -> type:
        listed = bool(prefix) and all(index(part) is not None for part in node)
        slots = range(max(map(index, node)) + 1) if listed else range(len(node))
        parts = [str(slot) for slot in slots] if listed else list(node)
        fields, rename = [], {}
        for slot, part in enumerate(parts):
            attr = f"f{slot}"
            rename[attr] = part
            attrs[prefix + (part,)] = ".".join(filter(None, (attrs.get(prefix, ""), attr)))
            child = node.get(part)
            if child is None:
                fields.append((attr, Any, None))
            else:
                inner = struct(child, prefix + (part,), f"{name}_{slot}")
                fields.append((attr, inner, inner()))
        return msgspec.defstruct(name, fields, rename=None if listed else rename, array_like=listed, frozen=True, gc=False)

    decoder = msgspec.json.Decoder(struct(tree, (), "Source"))
    getters = {}
    for path, (typed, rest) in split.items():
        get = attrgetter(attrs[typed])
        if rest:
            getters[path] = lambda rows, get=get, rest=rest: [lookup(found, rest) for found in map(get, rows)]
        else:
            getters[path] = lambda rows, get=get: list(map(get, rows))
    return decoder, getters


class _Check:
    """The schema's constraints on one field, for values of the type the rules coerce it to."""

    def __init__(self, schema: str, name: str, spec: dict):
        from acards.schemas import schema_struct

        self.spec, self.name = spec, name
        field = next(f for f in msgspec.structs.fields(schema_struct(schema)) if f.name == name)
        self.one = msgspec.defstruct("One", [(name, field.type)])
        self.known: dict[str, bool] = {}  # per distinct text: most constrained fields are texts

    def _check(self, value: Any) -> bool:
        try:
            msgspec.convert({self.name: value}, self.one)
        except msgspec.ValidationError:
            return False
        return True

    def valid(self, value: Any) -> bool:
        if value.__class__ is not str:
            return self._check(value)
        found = self.known.get(value)
        if found is None:
            if len(self.known) >= 100_000:
                self.known.clear()
            found = self.known[value] = self._check(value)
        return found

    def all_valid(self, values: list) -> bool:
        """True when every value is valid (a False may be wrong: then check each distinct value).
        The values are all texts or all numbers."""
        spec = self.spec
        if not values:
            return True
        if "minLength" in spec and min(map(len, values)) < spec["minLength"]:
            return False
        if "maxLength" in spec and max(map(len, values)) > spec["maxLength"]:
            return False
        if "enum" in spec and not set(values) <= set(spec["enum"]):
            return False
        if "pattern" in spec and not all(map(self.valid, set(values))):
            return False
        if "minimum" in spec or "maximum" in spec:
            try:
                array = np.array(values, np.float64)
            except (OverflowError, TypeError, ValueError):
                return False
            if "minimum" in spec and not (array >= spec["minimum"]).all():  # NaN is never in range
                return False
            if "maximum" in spec and not (array <= spec["maximum"]).all():
                return False
        return True


@functools.lru_cache(maxsize=None)
def _validator(schema: str, name: str) -> _Check | None:
    """The constraints of field ``name`` of the schema; None when it has none beyond its type."""
    spec = load_schema(schema)["properties"][name]
    return _Check(schema, name, spec) if _CONSTRAINTS & set(spec) else None


_UNCHANGED = {"item": {str, int}, "seed": {int}, "sample": {int}, "score": {float}}  # values coerce returns as they are


def _searched(rules: FileRules, target: str, outcomes: tuple, texts: Factor) -> Factor:
    """A pattern rule applied to each distinct text: the codes of (not found, found, no text)."""
    search, then, otherwise, absent = outcomes
    pattern = rules[target].pattern
    values = texts.values
    if texts.kinds == {str} and isinstance(pattern, LiteralSearch):
        test = str.startswith if pattern.anchored else str.__contains__
        found = np.fromiter(map(test, values, itertools.repeat(pattern.literal)), bool, len(values)).astype(np.intp)
    else:
        found = np.array([2 if text.__class__ is not str else int(bool(search(text))) for text in values], np.intp)
    return Factor(found[texts.codes], [otherwise, then, absent])


def _bad(value: Any, check: _Check | None) -> bool:
    if value is _MISSING:
        return False
    if type(value) is _Fail:
        return True
    return check is not None and not check.valid(value)


class Plan:
    """How the pieces of one input file are decoded and mapped under its rules."""

    def __init__(self, rules: FileRules, select: dict[str, Any], want_prompt: bool):
        self.rules, self.select, self.want_prompt = rules, select, want_prompt
        self.prompt_needed = rules.prompt is not None and (want_prompt or rules.prompt_searched)
        used = [rule for target, rule in rules.varying]
        if self.prompt_needed:
            used.append(rules["prompt"])
        if want_prompt:
            used += [rules[target] for target, _ in rules.extras]
        paths = {_path(name) for name in select}
        paths.update(path for rule in used for path in (rule.field, rule.search_in) if path is not None)
        self.decoder, self.getters = _typed(sorted(paths))
        self.outcomes = {target: field_outcome(rules[target]) for target in (*(t for t, _ in rules.varying), "prompt",
                                                                             "system", "reference")
                         if target in rules and rules[target].field is not None}
        self.patterns = {target: pattern_outcomes(rule) for target, rule in rules.varying if rule.pattern is not None}

    @staticmethod
    def supports(rules: FileRules) -> bool:
        """A prompt, system or reference from a pattern is left to the exact path."""
        return all(rules[target].pattern is None for target in ("prompt", "system", "reference") if target in rules)

    def decode(self, data: bytes) -> list | None:
        """The rows of a piece, or None where the exact reader must read it.  As the exact reader's
        own fast path: decoded at once where the piece is provably one object per line."""
        count = jsonl.one_object_per_line(data)
        if count <= 0:
            return None
        if not data.isascii():
            try:
                data.decode("utf-8")  # msgspec does not check the strings it skips
            except UnicodeDecodeError:
                return None
        try:
            rows = self.decoder.decode_lines(data)
        except (msgspec.DecodeError, RecursionError):
            return None
        return rows if len(rows) == count else None

    def columns(self, rows: list) -> tuple[dict[str, Factor], np.ndarray, np.ndarray]:
        """The mapped columns of decoded rows (constants included), the rows left out by `select`
        (with the first failing name's index per row), and the rows another rule or the schema
        would skip."""
        count = len(rows)
        raw = {path: get(rows) for path, get in self.getters.items()}
        factors: dict[tuple[str, ...], Factor] = {}

        def factor(path: tuple[str, ...]) -> Factor:
            if path not in factors:
                factors[path] = factorize(raw[path])
            return factors[path]

        def outcomes(target: str, check: _Check | None) -> tuple[Factor, bool]:
            """The rule applied per distinct value, and whether every row's outcome is a valid value."""
            rule = rules[target]
            values = raw[rule.field]
            column = Factor(np.arange(count), values)
            if rule.mapping is None and column.kinds <= _UNCHANGED.get(target, {str}):
                # the values are what the rule gives: one code per row, unless some may be invalid
                if check is None or check.all_valid(values):
                    return column, True
                return factor(rule.field), False
            return factor(rule.field).mapped(self.outcomes[target]), False

        unselected = np.full(count, -1, np.int32)
        for index, (name, wanted) in enumerate(self.select.items()):
            fails = factor(_path(name)).mask(lambda found, wanted=wanted: _unselected(found, wanted) is not None)
            unselected[fails & (unselected < 0)] = index
        skipped = np.zeros(count, bool)
        columns: dict[str, Factor] = {}
        rules = self.rules
        if self.prompt_needed:
            prompt = outcomes("prompt", None)[0] if rules["prompt"].field is not None \
                else constant(rules.constants["prompt"], count)
            if self.want_prompt:
                skipped |= prompt.mask(lambda value: type(value) is _Fail)
            columns["prompt"] = prompt
        for target in rules.template:
            if target in rules.constants:
                columns[target] = constant(rules.constants[target], count)
                continue
            rule = rules[target]
            check = _validator("record-1.0", target)
            if rule.pattern is not None:
                texts = Factor(np.arange(count), raw[rule.search_in]) if rule.search_in is not None else \
                    columns["prompt"] if "prompt" in columns else constant(None, count)
                column, valid = _searched(rules, target, self.patterns[target], texts), False
            else:
                column, valid = outcomes(target, check)
            if not valid:
                skipped |= column.mask(functools.partial(_bad, check=check))
            columns[target] = column
        if self.want_prompt and "prompt" in columns:
            for target, _ in rules.extras:
                rule = rules[target]
                columns[target] = factor(rule.field).mapped(self.outcomes[target]) if rule.field is not None \
                    else constant(rules.constants[target], count)
            has_prompt = columns["prompt"].mask(lambda value: value.__class__ is str)
            for target in PROMPT_FIELDS:
                if target in columns:
                    skipped |= columns[target].mask(functools.partial(_bad, check=_validator("prompt-1.0", target))) & has_prompt
        return columns, unselected, skipped & (unselected < 0)


def _unselected(found: Any, wanted: Any) -> str | None:
    """apply_rules' `select` test of one name: None when selected, else the words of the skip."""
    if found is None:
        found = _MISSING
    if found is _MISSING or found != wanted or isinstance(found, bool) != isinstance(wanted, bool):
        return f"{as_text(found) if found is not _MISSING else 'missing'}, not {as_text(wanted)}"
    return None


def unselected_detail(plan: Plan, rows: list, row: int, index: int) -> str:
    name, wanted = list(plan.select.items())[index]
    found = plan.getters[_path(name)]([rows[row]])[0]
    return f"{name} is {_unselected(found, wanted)}"


def exact_line(line: bytes) -> dict | None:
    """A line decoded as the exact reader does (a dict), or None where it would not be one."""
    try:
        value = _ANY.decode(line)
    except (msgspec.DecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None



# --- the import, a piece at a time ----------------------------------------------------------------



def batch_import(source, files, rules_per_file: list[FileRules], select: dict[str, Any], want_prompts: bool, summary,
                 writer) -> "Sink":
    """Every file of a JSONL source mapped a piece at a time into ``summary`` (its FileSummary per
    file) and ``writer``; the Sink holds what the checks across records need."""

    sink = Sink(want_prompts, writer)
    for file, rules in zip(files, rules_per_file):
        counts = FileSummary(file.name)
        summary.files.append(counts)
        plan = Plan(rules, select, want_prompts)
        for piece in source.pieces(file):
            if piece.problems:  # after a bad line the exact reader only looks for the file's other problems
                for _ in piece.records():
                    pass
                continue
            rows = plan.decode(piece.data)
            mapped = _mapped_piece(plan, rows, piece.data, piece.first_line, counts) if rows is not None else None
            if mapped is None:
                mapped = _exact_piece(plan, piece, counts)
            columns, count = mapped
            counts.imported += count
            if count:
                sink.add(columns, rules, count)
        counts.sha256, counts.size = file.sha256, file.size
    return sink


def _mapped_piece(plan: Plan, rows: list, data: bytes, first_line: int, counts) -> tuple[dict, int] | None:
    """A decoded piece mapped: its columns of imported records and their count, the skipped ones
    counted (those another rule or the schema skips mapped again by the exact path, for their
    words); None where the exact path must map the whole piece."""

    columns, unselected, skipped = plan.columns(rows)
    exact = []
    lines = data.split(b"\n") if skipped.any() else []  # one object per line: row i is line i of the piece
    for row in np.flatnonzero(skipped).tolist():
        record = exact_line(lines[row])
        if record is None:
            return None
        try:
            map_record(plan.rules, plan.select, record, plan.want_prompt)
        except Skip as skip:
            exact.append((row, skip))
            continue
        return None
    counts.read += len(rows)
    left_out = np.flatnonzero(unselected >= 0)
    if len(left_out):
        counts.skipped["not-selected"] += len(left_out)
        examples = counts.examples.setdefault("not-selected", [])
        for row in left_out[:max(0, EXAMPLES - len(examples))].tolist():
            examples.append(f"line {first_line + row}: {unselected_detail(plan, rows, row, int(unselected[row]))}")
    for row, skip in exact:
        count_skip(counts, f"line {first_line + row}", skip)
    if not len(left_out) and not exact:
        return columns, len(rows)
    keep = np.flatnonzero((unselected < 0) & ~skipped)
    return {target: factor.take(keep) for target, factor in columns.items()}, len(keep)


def _exact_piece(plan: Plan, piece: Piece, counts) -> tuple[dict, int]:
    """A piece read and mapped record by record (the exact path), its records as columns."""

    imported = []
    for where, record in piece.records():
        counts.read += 1
        try:
            imported.append(map_record(plan.rules, plan.select, record, plan.want_prompt))
        except Skip as skip:
            count_skip(counts, where, skip)
    columns = {target: factorize([m.record.get(target, _MISSING) for m in imported]) for target in plan.rules.template}
    if plan.want_prompt:
        for target in ("prompt", "system", "reference"):
            columns[target] = factorize([m.prompt.get(target, _MISSING) if m.prompt is not None else _MISSING
                                         for m in imported])
    return columns, len(imported)
