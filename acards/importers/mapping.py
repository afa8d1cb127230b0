"""The mapping file of `acards import` (schema/mapping-1.0.schema.json): how source records become
acards records and prompts.

Each target field has one rule per input file: the mapping's `fields`, overridden by the `files`
entries whose glob matches the file, else the source's default (an inspect sample's id, an lm-eval
doc_id...).  Every problem of the mapping itself (a required field without a rule, two `files`
entries setting one field of one file, an entry that matches no file, a bad pattern) is raised
before any source record is read.  A source record a rule cannot map is not an error: it is
skipped with a reason (:class:`Skip`), which the import counts and reports.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acards.errors import AcardsError, Location, Problem

SCHEMA = "mapping-1.0"
RECORD_FIELDS = ("cell", "condition", "split", "task", "subject", "item", "framing", "seed", "sample", "score", "output")
REQUIRED = ("cell", "condition", "split", "task", "subject", "item", "framing", "seed")
PROMPT_ONLY = ("prompt", "system", "reference")  # written to the prompts file, not to the records
TARGETS = RECORD_FIELDS + PROMPT_ONLY
INTEGER_FIELDS = ("seed", "sample")
# Why a source record was not imported: each is counted, and listed with its first examples.
REASONS = ("not-selected", "missing-field", "unmapped-value", "no-match", "bad-value", "invalid-record", "sample-error")


class Skip(Exception):
    """A source record that is not imported, and why (one of REASONS)."""

    def __init__(self, reason: str, detail: str, target: str | None = None):
        super().__init__(detail)
        self.reason, self.detail, self.target = reason, detail, target


_MISSING = object()


def lookup(record: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path of a source record (list indices as digits), or _MISSING."""
    node = record
    for part in path:
        if isinstance(node, dict):
            node = node.get(part, _MISSING)
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
        if node is _MISSING:
            return _MISSING
    return _MISSING if node is None else node


def as_text(value: Any) -> str:
    """A source value as the text `map` keys are written in (strings as they are, others as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class Rule:
    """One target field's rule for one file: from a source field, a constant, or a pattern."""

    target: str
    where: str  # the mapping's JSON pointer of this rule, for messages
    field: tuple[str, ...] | None = None
    value: Any = None
    pattern: Any = None  # an acards.patterns.PatternMatcher
    search_in: tuple[str, ...] | None = None  # default: the mapped prompt
    then: Any = None
    otherwise: Any = _MISSING
    mapping: dict[str, Any] | None = None
    default: Any = _MISSING
    optional: bool = False  # a source's default for an optional field: omitted where it does not apply

    def apply(self, record: Any, prompt: str | None) -> Any:
        if self.pattern is not None:
            text = prompt if self.search_in is None else lookup(record, self.search_in)
            if not isinstance(text, str):
                source = "the prompt" if self.search_in is None else ".".join(self.search_in)
                raise Skip("missing-field", f"{self.target}: {source} is missing, so the pattern cannot be searched")
            if _found(self.pattern, text):
                return self.then
            if self.otherwise is _MISSING:
                raise Skip("no-match", f"{self.target}: the pattern is not found and the rule has no `else`")
            return self.otherwise
        if self.field is None:
            return self.value
        found = lookup(record, self.field)
        if found is _MISSING:
            if self.default is not _MISSING:
                return self.default
            raise Skip("missing-field", f"{self.target}: the source has no {'.'.join(self.field)}")
        if self.mapping is None:
            return found
        key = as_text(found)
        if key in self.mapping:
            return self.mapping[key]
        if self.default is not _MISSING:
            return self.default
        raise Skip("unmapped-value", f"{self.target}: {key!r} of {'.'.join(self.field)} is not in the rule's map")


_FOUND: dict[tuple[str, str], bool] = {}
_FOUND_MAX = 100_000


def _found(pattern, text: str) -> bool:
    """pattern.search(text), remembered: one prompt recurs in the logs of every condition and seed."""
    key = (pattern.pattern, text)
    found = _FOUND.get(key)
    if found is None:
        if len(_FOUND) >= _FOUND_MAX:
            _FOUND.clear()
        found = _FOUND[key] = pattern.search(text)
    return found


class LiteralSearch:
    """A pattern that is plain text, after an optional ^ or \\A, searched as Python's re.search would
    (``in`` or ``startswith``), without framing the text for RE2: the audit cue is usually one."""

    def __init__(self, pattern: str, anchored: bool, literal: str):
        self.pattern, self.anchored, self.literal = pattern, anchored, literal

    def search(self, text: str) -> bool:
        return text.startswith(self.literal) if self.anchored else self.literal in text

    @classmethod
    def of(cls, pattern: str) -> "LiteralSearch | None":
        """The literal search equal to ``pattern``, or None when the pattern is more than that."""
        import re

        try:
            import re._parser as parser
            from re._constants import AT, AT_BEGINNING, AT_BEGINNING_STRING, LITERAL
        except ImportError:  # Python < 3.11
            return None
        try:
            parsed = parser.parse(pattern)
        except (re.error, RecursionError, OverflowError):
            return None
        if parsed.state.flags != re.UNICODE:  # (?i), (?m), (?s), (?x)...: leave it to the matcher
            return None
        items = list(parsed)
        anchored = bool(items) and items[0][0] is AT and items[0][1] in (AT_BEGINNING, AT_BEGINNING_STRING)
        body = items[1:] if anchored else items
        if not all(op is LITERAL for op, _ in body):
            return None
        return cls(pattern, anchored, "".join(chr(code) for _, code in body))


def coerce(target: str, value: Any) -> Any:
    """A mapped value in the type the record and prompt schemas want, or Skip(bad-value)."""
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise Skip("bad-value", f"{target}: {as_text(value)} is not a {_kind(target)}", target)
    if target in INTEGER_FIELDS:
        if isinstance(value, str) and re.fullmatch(r"[0-9]+", value.strip()):
            return int(value)
        if isinstance(value, int):
            return value
        raise Skip("bad-value", f"{target}: {as_text(value)} is not a {_kind(target)}", target)
    if target == "score":
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except ValueError:
            raise Skip("bad-value", f"score: {as_text(value)} is not a number", target) from None
    if target == "item":
        if isinstance(value, (str, int)):
            return value
        raise Skip("bad-value", f"item: {as_text(value)} is not a string or an integer", target)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return value
    raise Skip("bad-value", f"{target}: {as_text(value)} is not a {_kind(target)}", target)


def _kind(target: str) -> str:
    return {"seed": "non-negative integer", "sample": "non-negative integer", "score": "number"}.get(target, "string")


@dataclass
class Mapping:
    """A validated mapping file."""

    path: Path
    fields: dict[str, dict]
    files: list[dict]
    select: dict[str, Any]
    locate: Any  # the source map's locate(pointer)

    def rules_for(self, files: list[str], defaults: dict[str, dict]) -> list[dict[str, Rule]]:
        """The rules of each input file (paths as given), or every problem of the mapping at once."""
        problems: list[Problem] = []
        matched = [[self._match(entry["match"], name) for name in files] for entry in self.files]
        for index, hits in enumerate(matched):
            if not any(hits):
                problems.append(Problem("import.unmatched-files", f"files[{index}] matches none of the input files "
                                        f"({self.files[index]['match']!r})", "fix the glob (it is matched against each "
                                        "path as given on the command line), or remove the entry",
                                        self.locate(f"/files/{index}/match")))
        result = []
        for file_index, name in enumerate(files):
            specs = {target: (spec, f"/fields/{target}") for target, spec in self.fields.items()}
            set_by: dict[str, int] = {}
            for index, entry in enumerate(self.files):
                if not matched[index][file_index]:
                    continue
                for target, spec in entry["fields"].items():
                    if target in set_by:
                        problems.append(Problem("import.conflicting-mapping", f"{name}: files[{set_by[target]}] and "
                                                f"files[{index}] both set {target}", "make the globs match disjoint files, "
                                                "or set the field in one entry", self.locate(f"/files/{index}/fields/{target}")))
                        continue
                    set_by[target] = index
                    specs[target] = (spec, f"/files/{index}/fields/{target}")
            for target, spec in defaults.items():
                specs.setdefault(target, (spec, f"(the source's default for {target})"))
            missing = [target for target in REQUIRED if target not in specs]
            if missing:
                problems.append(Problem("import.incomplete-mapping", f"{name}: no rule for {', '.join(missing)}",
                                        "give each required record field a rule under `fields`, or per file under `files`",
                                        self.locate("/fields", at_key=True)))
                continue
            rules = {}
            for target, (spec, where) in specs.items():
                try:
                    rules[target] = _rule(target, spec, where, self.locate)
                except AcardsError as error:
                    problems.extend(error.problems)
            try:
                result.append(FileRules(rules))
            except Skip as skip:  # a constant that no record field can hold
                problems.append(Problem("import.bad-mapping", f"{name}: {skip.detail}", "give the constant the field's type",
                                        self.locate(rules[skip.target].where if skip.target in rules else "/fields")))
        if problems:
            raise AcardsError.collect(_unique(problems))
        return result

    @staticmethod
    def _match(glob: str, name: str) -> bool:
        """A glob with a `/` is matched against the path as given, one without against the file's name."""
        path = Path(name).as_posix()
        return _glob_regex(glob).fullmatch(path if "/" in glob else path.rsplit("/", 1)[-1]) is not None


def _glob_regex(glob: str) -> re.Pattern:
    """`**` crosses folders, `*` and `?` do not (PurePath.full_match of Python 3.13)."""
    out, index = [], 0
    while index < len(glob):
        if glob.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
        elif glob.startswith("**", index):
            out.append(".*")
            index += 2
        elif glob[index] == "*":
            out.append("[^/]*")
            index += 1
        elif glob[index] == "?":
            out.append("[^/]")
            index += 1
        else:
            out.append(re.escape(glob[index]))
            index += 1
    return re.compile("".join(out))


def _unique(problems: list[Problem]) -> list[Problem]:
    """Each problem once: a bad rule is found again for every file it applies to."""
    seen, result = set(), []
    for problem in problems:
        key = (problem.code, problem.message, problem.location)
        if key not in seen:
            seen.add(key)
            result.append(problem)
    return result


def _rule(target: str, spec: dict, where: str, locate) -> Rule:
    if "pattern" in spec:
        from acards.patterns import check_pattern

        try:
            matcher = check_pattern(spec["pattern"])
        except AcardsError as error:
            first = error.problems[0]
            raise AcardsError("import.bad-pattern", first.message.replace("scorer.pattern", f"{where}/pattern"), first.hint,
                              locate(f"{where}/pattern")) from None
        search_in = tuple(spec["in"].split(".")) if "in" in spec else None
        return Rule(target, where, pattern=LiteralSearch.of(spec["pattern"]) or matcher, search_in=search_in, then=spec["then"],
                    otherwise=spec.get("else", _MISSING))
    if "value" in spec:
        return Rule(target, where, value=spec["value"])
    mapping = {str(key): value for key, value in spec["map"].items()} if "map" in spec else None
    return Rule(target, where, field=tuple(spec["field"].split(".")), mapping=mapping, default=spec.get("default", _MISSING),
                optional=bool(spec.get("optional")))


def load_mapping(path: str | Path, sha256: str | None = None, pinned_at: Location | None = None) -> Mapping:
    """The mapping file, checked against its schema (every problem at once).  With ``sha256`` (a
    card's pin, at ``pinned_at``), the bytes parsed must be the bytes pinned."""
    import hashlib

    from acards.card.yaml import parse_yaml
    from acards.files import read_input
    from acards.schemas import validate

    path = Path(path)
    raw = read_input(path, 1024 * 1024, what="mapping")
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        from acards.evidence.digests import digest_mismatch

        raise AcardsError.collect([digest_mismatch(str(path), sha256, hashlib.sha256(raw).hexdigest(), False, pinned_at)])
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise AcardsError("yaml.encoding", "the mapping is not valid UTF-8", "save it as UTF-8", Location(str(path))) from None
    data, source = parse_yaml(text, str(path))
    from acards.card.validate import placeholders

    problems = [Problem("import.bad-mapping", "this value is still a TODO placeholder",
                        "replace it (docs/importing.md explains each rule)", Location(str(path), pointer=pointer))
                for pointer in placeholders(data)]
    problems += validate(data, SCHEMA, code="import.bad-mapping", message="{at}: {message}", file=str(path))
    if problems:
        raise AcardsError.collect([Problem(p.code, p.message, p.hint, source.locate(p.location.pointer or ""))
                                   for p in problems])
    return Mapping(path, data["fields"], data.get("files") or [], data.get("select") or {}, source.locate)


def mapping_template(schema_ref: str | None = None) -> str:
    """The commented mapping that `acards init --mapping` writes; its modeline names ``schema_ref``
    (default: the local schema file, acards.schemas.editor_reference; docs/editors.md)."""
    from acards.present.render import environment
    from acards.schemas import editor_reference

    return environment().get_template("mapping.yaml.j2").render(schema_id=schema_ref or editor_reference(SCHEMA))


@dataclass(slots=True)
class Mapped:
    """One source record mapped: its record, and its prompt row when the prompt is mapped."""

    record: dict[str, Any]
    prompt: dict[str, Any] | None = field(default=None)


class _Fail:
    """A Skip decided once (for a constant, a map entry, a distinct value) and raised per record."""

    __slots__ = ("reason", "detail", "target")

    def __init__(self, skip: Skip):
        self.reason, self.detail, self.target = skip.reason, skip.detail, skip.target


def _outcome(target: str, decide) -> Any:
    """coerce(target, decide()), or the _Fail of the Skip either raised."""
    try:
        return coerce(target, decide())
    except Skip as skip:
        return _Fail(skip)


def _getter(path: tuple[str, ...]):
    """lookup(record, path) for one path: plain dicts and lists walked inline, anything else
    (a dict subclass, a tuple, an index past the end) left to lookup itself."""
    steps = [(part, int(part) if part.isdigit() and part.isascii() else None) for part in path]
    if len(path) == 1:
        (first,) = path

        def get_one(record):
            if record.__class__ is dict:
                found = record.get(first)
                return _MISSING if found is None else found
            return lookup(record, path)
        return get_one

    def get(record):
        node = record
        for part, index in steps:
            kind = node.__class__
            if kind is dict:
                node = node.get(part)
            elif kind is list and index is not None and index < len(node):
                node = node[index]
            else:
                return lookup(record, path)
            if node is None:
                return _MISSING
        return node
    return get


_CACHE_MAX = 100_000  # distinct values remembered per rule


def _compiled(rule: Rule):
    """One rule as a function of (record, prompt) giving ``coerce(target, rule.apply(...))`` (or
    _MISSING where an optional default does not apply): the work that depends only on the
    source value (the map, the default, the type conversion, a pattern's outcome) is done once per
    distinct value rather than once per record, with the same values and the same skips."""
    target, optional = rule.target, rule.optional

    def result(outcome):
        if type(outcome) is _Fail:
            if optional:
                return _MISSING
            raise Skip(outcome.reason, outcome.detail, outcome.target)
        return outcome

    if rule.pattern is not None:
        return _compiled_pattern(rule, result)
    if rule.field is None:
        constant = _outcome(target, lambda: rule.value)
        return lambda *_: result(constant)
    get = _getter(rule.field)
    missing = _outcome(target, lambda: rule.apply({}, None))  # the default, or the missing-field skip
    cache: dict[type, dict] = {str: {}, int: {}}

    def slow(found):
        outcome = _outcome(target, lambda: _mapped(rule, found))
        values = cache.get(type(found))
        if values is not None:  # exact str or int: equal values give equal outcomes
            if len(values) >= _CACHE_MAX:
                values.clear()
            values[found] = outcome
        return outcome

    if rule.mapping is not None:
        def value(record, _prompt):
            found = get(record)
            if found is _MISSING:
                return result(missing)
            values = cache.get(type(found))
            outcome = values.get(found, _MISSING) if values is not None else _MISSING
            return result(slow(found) if outcome is _MISSING else outcome)
        return value
    kind = "integer" if target in INTEGER_FIELDS else target if target in ("score", "item") else "text"

    def plain_value(record, _prompt):  # without a map: coerce's common cases inlined
        found = get(record)
        if found is _MISSING:
            return result(missing)
        kind_of = type(found)
        if kind_of is str:
            if kind == "text" or kind == "item":
                return found
            outcome = cache[str].get(found, _MISSING)
            return result(slow(found) if outcome is _MISSING else outcome)
        if kind_of is int:
            if kind == "integer" or kind == "item":
                return found
            return str(found) if kind == "text" else float(found)
        if kind_of is float and kind == "score":
            return found
        return result(slow(found))
    return plain_value


def _mapped(rule: Rule, found: Any) -> Any:
    """Rule.apply after its lookup found ``found``."""
    if rule.mapping is None:
        return found
    key = as_text(found)
    if key in rule.mapping:
        return rule.mapping[key]
    if rule.default is not _MISSING:
        return rule.default
    raise Skip("unmapped-value", f"{rule.target}: {key!r} of {'.'.join(rule.field or ())} is not in the rule's map")


def pattern_outcomes(rule: Rule) -> tuple[Any, Any, Any, Any]:
    """A pattern rule's search (text -> bool) and its three outcomes: found, not found, no text."""
    target, pattern = rule.target, rule.pattern
    then = _outcome(target, lambda: rule.then)
    otherwise = (_Fail(Skip("no-match", f"{target}: the pattern is not found and the rule has no `else`"))
                 if rule.otherwise is _MISSING else _outcome(target, lambda: rule.otherwise))
    source = "the prompt" if rule.search_in is None else ".".join(rule.search_in)
    absent = _Fail(Skip("missing-field", f"{target}: {source} is missing, so the pattern cannot be searched"))
    search = pattern.search if isinstance(pattern, LiteralSearch) else lambda text: _found(pattern, text)
    return search, then, otherwise, absent


def field_outcome(rule: Rule):
    """A field rule as a function of the value found (None or _MISSING: absent) giving the coerced
    value, _MISSING (an optional default that does not apply) or a _Fail: what ``_compiled`` gives
    or raises, for one distinct value (acards.importers.batch)."""
    target = rule.target
    missing = _outcome(target, lambda: rule.apply({}, None))

    def outcome(found):
        decided = missing if found is None or found is _MISSING else _outcome(target, lambda: _mapped(rule, found))
        return _MISSING if rule.optional and type(decided) is _Fail else decided
    return outcome


def _compiled_pattern(rule: Rule, result):
    search, then, otherwise, absent = pattern_outcomes(rule)
    get = None if rule.search_in is None else _getter(rule.search_in)

    def value(record, prompt):
        text = prompt if get is None else get(record)
        if not isinstance(text, str):
            return result(absent)
        return result(then if search(text) else otherwise)
    return value


class FileRules:
    """The rules of one input file, with its constants coerced once rather than per record, and each
    varying rule compiled (``_compiled``)."""

    def __init__(self, rules: dict[str, Rule]):
        self.rules = rules
        self.constants = {t: coerce(t, r.value) for t, r in rules.items() if r.field is None and r.pattern is None}
        self.varying = [(t, r) for t, r in rules.items() if t in RECORD_FIELDS and t not in self.constants]
        self.compiled = [(t, _compiled(r)) for t, r in self.varying]
        # the record's keys in the record schema's order (so the same sources always give the same
        # bytes), the constants already in place; the varying values are set into a copy
        self.template = {t: self.constants.get(t) for t in RECORD_FIELDS if t in self.constants or t in rules}
        self.prompt = _compiled(rules["prompt"]) if "prompt" in rules else None
        # the prompt is needed for the prompts file and for a pattern searched in it
        self.prompt_searched = any(r.pattern is not None and r.search_in is None for _, r in self.varying)
        self.extras = [(t, _compiled(rules[t])) for t in ("system", "reference") if t in rules]

    def __contains__(self, target: str) -> bool:
        return target in self.rules

    def __getitem__(self, target: str) -> Rule:
        return self.rules[target]


@functools.lru_cache(maxsize=256)
def _path(name: str) -> tuple[str, ...]:
    return tuple(name.split("."))


def apply_rules(rules: FileRules, select: dict[str, Any], record: Any, want_prompt: bool) -> Mapped:
    """The record (and, with ``want_prompt``, the prompt row) a source record maps to, or Skip."""
    for name, wanted in select.items():
        found = lookup(record, _path(name))
        if found is _MISSING or found != wanted or isinstance(found, bool) != isinstance(wanted, bool):
            raise Skip("not-selected", f"{name} is {as_text(found) if found is not _MISSING else 'missing'}, not {as_text(wanted)}")
    text = None
    if rules.prompt is not None and (want_prompt or rules.prompt_searched):
        try:
            prompt = rules.prompt(record, None)
        except Skip:
            if want_prompt:
                raise
            prompt = _MISSING
        text = None if prompt is _MISSING else prompt
    out = rules.template.copy()
    for target, value_of in rules.compiled:  # in the rules' order: the first rule that skips names the reason
        value = value_of(record, text)
        if value is _MISSING:
            del out[target]
        else:
            out[target] = value
    row = None
    if want_prompt and text is not None:
        row = {"item": out["item"], "split": out["split"], "task": out["task"], "subject": out["subject"],
               "framing": out["framing"], "prompt": text}
        for target, value_of in rules.extras:
            value = value_of(record, text)
            if value is not _MISSING:
                row[target] = value
    return Mapped(out, row)
