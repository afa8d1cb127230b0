"""Load an Acceptance Card: safe YAML → plain data with a source map → schema → semantic checks.

The schema (schema/acard-1.0.schema.json) is the one description of the card's fields; this
module adds what a schema cannot say (unique ids, claims naming real cells, justified overrides,
safe evidence paths, unfilled placeholders) and turns every finding into a coded problem with a
``file:line:col`` and a JSON pointer.  All problems are collected before anything is raised.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from jsonschema import Draft202012Validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, DocumentStartEvent, NodeEvent
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from . import SUPPORTED_CARD_VERSIONS, __version__
from .errors import AcardsError, Location, Problem
from .evidence import check_relative_path
from .resources import load_schema

MAX_CARD_BYTES = 1024 * 1024
MAX_DEPTH = 64
SCHEMA_NAME = "acard-1.0"
PLACEHOLDER = re.compile(r"\bTODO\b")
DIAGNOSTICS = ("reliability", "fresh", "mechanism", "transfer", "cost")

_TAG = "tag:yaml.org,2002:"


# --- JSON pointers and the source map ---------------------------------------------------------

def child(pointer: str, key: str | int) -> str:
    return f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"


def pointer_of(path) -> str:
    pointer = ""
    for part in path:
        pointer = child(pointer, part)
    return pointer


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a YAML document starts."""

    file: str
    values: dict[str, tuple[int, int]]
    keys: dict[str, tuple[int, int]]

    def locate(self, pointer: str, at_key: bool = False) -> Location:
        """The location of ``pointer``, or of its nearest ancestor that has one."""
        probe = pointer
        while True:
            mark = (self.keys.get(probe) if at_key else None) or self.values.get(probe)
            if mark is not None:
                return Location(self.file, mark[0], mark[1], pointer)
            if not probe:
                return Location(self.file, None, None, pointer)
            probe = probe.rsplit("/", 1)[0]


# --- safe YAML -------------------------------------------------------------------------------

def _mark(mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def read_text(path: Path, max_bytes: int = MAX_CARD_BYTES) -> tuple[bytes, str]:
    """The card's bytes and text: bounded size, strict UTF-8."""
    location = Location(str(path))
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise AcardsError("card.not-found", f"no card at {path}", "give the path of a card.yaml, or create one with `acards init`", location) from None
    except IsADirectoryError:
        raise AcardsError("card.not-found", f"{path} is a folder", "give the path of the card file itself", location) from None
    except OSError as error:
        raise AcardsError("card.unreadable", f"cannot read {path}: {error.strerror}", "check the file's permissions", location) from None
    if len(raw) > max_bytes:
        raise AcardsError("yaml.too-large", f"the card is larger than {max_bytes} bytes",
                          "a card holds pointers to evidence, not the evidence itself; move data into evidence files", location)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise AcardsError("yaml.encoding", f"the card is not valid UTF-8 (byte {error.start})",
                          "save the card as UTF-8", Location(str(path), line)) from None
    return raw, text.removeprefix("\ufeff")


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Plain JSON-like data from YAML text, refusing anchors, aliases, tags and duplicate keys."""
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(Problem("yaml.tab", "a tab in the indentation", "indent with spaces; YAML does not allow tabs there",
                                    Location(file, number, indent.index("\t") + 1)))
    if problems:
        raise AcardsError.collect(problems)

    yaml = YAML(typ="rt")
    try:
        documents = 0
        aliases: dict[str, list[Location]] = {}  # one problem per anchor name, at its first use
        for event in yaml.parse(text):
            where = Location(file, *_mark(event.start_mark))
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents == 2:
                    problems.append(Problem("yaml.multiple-documents", "the file holds more than one YAML document",
                                            "a card is one document: remove the '---' separators", where))
            elif isinstance(event, AliasEvent):
                uses = aliases.setdefault(event.anchor, [])
                uses.append(where)
            elif isinstance(event, NodeEvent):
                if event.anchor is not None:
                    problems.append(Problem("yaml.anchor", f"anchor &{event.anchor}", "remove the anchor and write values out in full", where))
                if getattr(event, "tag", None) is not None:
                    problems.append(Problem("yaml.tag", f"explicit tag {event.tag}",
                                            "remove the tag; quote a value to make it a string", where))
        for anchor, uses in aliases.items():
            more = f" (and {len(uses) - 1} more uses)" if len(uses) > 1 else ""
            problems.append(Problem("yaml.alias", f"alias *{anchor}{more}",
                                    "write the value out in full; aliases are refused so a small card cannot expand into a huge one", uses[0]))
        if problems:
            problems.sort(key=lambda p: (p.location.line, p.location.column))
            raise AcardsError.collect(problems)
        root = yaml.compose(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Location(file, *_mark(mark)) if mark else Location(file)
        message = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise AcardsError("yaml.syntax", f"YAML syntax error: {message}", "fix the YAML at this position", where) from None
    except YAMLError as error:
        raise AcardsError("yaml.syntax", f"YAML error: {error}", "fix the YAML", Location(file)) from None
    except RecursionError:
        raise AcardsError("yaml.too-deep", "the YAML nests too deeply", f"a card nests at most {MAX_DEPTH} levels", Location(file)) from None

    source = SourceMap(file, {}, {})
    if root is None:
        raise AcardsError("yaml.empty", "the card is empty", "start from `acards init`", Location(file, 1, 1))
    data = _plain(root, "", source, 0, problems)
    if problems:
        raise AcardsError.collect(problems)
    return data, source


def _plain(node, pointer: str, source: SourceMap, depth: int, problems: list[Problem]) -> Any:
    source.values[pointer] = _mark(node.start_mark)
    where = Location(source.file, *_mark(node.start_mark), pointer)
    if depth > MAX_DEPTH:
        problems.append(Problem("yaml.too-deep", "the YAML nests too deeply", f"a card nests at most {MAX_DEPTH} levels", where))
        return None
    if isinstance(node, MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_where = Location(source.file, *_mark(key_node.start_mark), pointer)
            if not isinstance(key_node, ScalarNode) or key_node.tag != _TAG + "str":
                kind = "merge key '<<'" if key_node.tag == _TAG + "merge" else f"key of type {key_node.tag.removeprefix(_TAG)}"
                problems.append(Problem("yaml.key-type", f"a {kind}", "mapping keys are plain strings", key_where))
                continue
            key = key_node.value
            path = child(pointer, key)
            if key in result:
                first = source.keys[path][0]
                problems.append(Problem("yaml.duplicate-key", f"duplicate key '{key}' (first on line {first})",
                                        "keep one of the two; duplicate keys would silently drop a value",
                                        Location(source.file, *_mark(key_node.start_mark), path)))
                continue
            source.keys[path] = _mark(key_node.start_mark)
            result[key] = _plain(value_node, path, source, depth + 1, problems)
        return result
    if isinstance(node, SequenceNode):
        return [_plain(item, child(pointer, index), source, depth + 1, problems) for index, item in enumerate(node.value)]
    return _scalar(node, where, problems)


def _scalar(node: ScalarNode, where: Location, problems: list[Problem]) -> Any:
    tag, text = node.tag.removeprefix(_TAG), node.value
    if tag in ("str", "timestamp"):  # dates stay text: a card has no date fields to interpret
        return text
    if tag == "null":
        return None
    if tag == "bool":
        return text.lower() == "true"
    if tag == "int":
        digits = text.replace("_", "")
        return int(digits, 0) if digits.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") else int(digits)
    if tag == "float":
        lowered = text.lower()
        if lowered.lstrip("+-") in (".inf", ".nan"):
            problems.append(Problem("yaml.non-finite", f"the number {text} is not finite",
                                    "write a finite number; NaN and infinity cannot be compared against thresholds", where))
            return None
        return float(text.replace("_", ""))
    problems.append(Problem("yaml.tag", f"a value of type {tag}", "use strings, numbers, booleans, lists and mappings", where))
    return None


# --- validation ------------------------------------------------------------------------------

def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node and node["$ref"].startswith("#/"):
        target = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_at(pointer: str) -> dict:
    """The card schema's node describing the value at a card JSON pointer ({} if none does)."""
    schema = load_schema(SCHEMA_NAME)
    node = schema
    for part in pointer.split("/")[1:]:
        node = _resolve(schema, node)
        key = part.replace("~1", "/").replace("~0", "~")
        if "items" in node and part.isdigit():
            node = node["items"]
        elif key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return _resolve(schema, node)


def _field_hint(schema: dict, node: dict) -> str:
    node = _resolve(schema, node)
    parts = []
    if node.get("description"):
        parts.append(node["description"].rstrip("."))
    if "enum" in node:
        parts.append("one of: " + ", ".join(map(str, node["enum"])))
    elif node.get("examples"):
        example = node["examples"][0]
        parts.append("e.g. " + (example if isinstance(example, str) else _compact(example)))
    return "; ".join(parts) or "see schema/acard-1.0.schema.json"


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def schema_problems(data: Any, source: SourceMap, skip: set[str]) -> list[Problem]:
    """Every schema violation as a problem; values under a pointer in ``skip`` are not re-reported."""
    schema = load_schema(SCHEMA_NAME)
    validator = Draft202012Validator(schema)
    problems = []
    for error in validator.iter_errors(data):
        pointer = pointer_of(error.absolute_path)
        if any(pointer == s or pointer.startswith(s + "/") for s in skip):
            continue
        problems.extend(_describe(schema, error, pointer, source))
    return sorted(problems, key=lambda p: (p.location.line or 0, p.location.column or 0, p.code))


def _describe(schema: dict, error, pointer: str, source: SourceMap) -> Iterator[Problem]:
    kind = error.validator
    subschema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "required":
        name = re.match(r"'([^']*)'", error.message)
        missing = name.group(1) if name else "?"
        if missing == "justification":
            yield Problem("card.unjustified-override", "a threshold override has no justification",
                          "add `justification:` saying why the default does not fit; it is shown on the rendered card",
                          source.locate(pointer, at_key=True))
            return
        properties = _resolve(schema, subschema).get("properties", {})
        yield Problem("schema.required", f"missing required field '{missing}'",
                      _field_hint(schema, properties.get(missing, {})), source.locate(pointer, at_key=True))
        return
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = set(_resolve(schema, subschema).get("properties", {}))
        for extra in sorted(set(error.instance) - known):
            suggestion = _closest(extra, known)
            hint = f"did you mean '{suggestion}'?" if suggestion else "known fields: " + ", ".join(sorted(known))
            yield Problem("schema.unknown-field", f"unknown field '{extra}'", hint, source.locate(child(pointer, extra), at_key=True))
        return
    message, hint = error.message, _field_hint(schema, subschema)
    if kind == "const" and pointer == "/acard":
        message = f"acard must be the string \"1.0\", not {_compact(error.instance)}"
        hint = 'quote the version: acard: "1.0"'
    yield Problem(f"schema.{_kebab(kind)}", message, hint, source.locate(pointer))


def _closest(word: str, candidates: set[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.7)
    return found[0] if found else None


def _placeholders(data: Any, pointer: str = "") -> Iterator[str]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _placeholders(value, child(pointer, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _placeholders(value, child(pointer, index))
    elif isinstance(data, str) and PLACEHOLDER.search(data):
        yield pointer


def threshold_defaults() -> dict[str, dict[str, Any]]:
    """The standard's default thresholds per diagnostic, read from the schema (one source)."""
    schema = load_schema(SCHEMA_NAME)
    groups = _resolve(schema, schema["$defs"]["thresholdSet"])["properties"]
    defaults = {}
    for group, ref in groups.items():
        properties = _resolve(schema, ref)["properties"]
        defaults[group] = {name: _resolve(schema, spec)["default"] for name, spec in properties.items() if "default" in _resolve(schema, spec)}
    return defaults


def section_defaults(name: str) -> dict[str, Any]:
    """Defaults of a top-level settings object of the card, e.g. "generation" or "scorer"."""
    schema = load_schema(SCHEMA_NAME)
    properties = _resolve(schema, schema["properties"][name]).get("properties", {})
    return {key: _resolve(schema, spec)["default"] for key, spec in properties.items() if "default" in _resolve(schema, spec)}


def semantic_problems(data: dict, source: SourceMap) -> list[Problem]:
    """What the schema cannot express.  Runs on a card that may have schema errors: every access
    is guarded by a type check."""
    problems: list[Problem] = []
    cell_ids = _unique_ids(data.get("cells"), "/cells", "cell", source, problems)
    _unique_ids(data.get("claims"), "/claims", "claim", source, problems)

    defaults = threshold_defaults()
    thresholds = data.get("thresholds")
    if isinstance(thresholds, dict):
        for group, values in thresholds.items():
            if not isinstance(values, dict) or group not in defaults or "justification" in values:
                continue
            changed = [k for k, v in values.items() if k in defaults[group] and _num(v) is not None and v != defaults[group][k]]
            if changed:
                problems.append(Problem(
                    "card.unjustified-override",
                    f"thresholds.{group}: {', '.join(changed)} differ from the default without a justification",
                    f"add `justification:` to thresholds.{group}, or restore the default ({', '.join(f'{k}: {defaults[group][k]}' for k in changed)})",
                    source.locate(f"/thresholds/{group}", at_key=True)))

    estimate_names = _estimate_names()
    for index, claim in enumerate(_list(data.get("claims"))):
        if not isinstance(claim, dict):
            continue
        base = f"/claims/{index}"
        covered = [c for c in _list(claim.get("cells")) if isinstance(c, str)]
        for position, cell in enumerate(_list(claim.get("cells"))):
            if isinstance(cell, str) and cell not in cell_ids:
                problems.append(Problem("card.unknown-cell", f"claim {claim.get('id')!r} names cell {cell!r}, which the card does not define",
                                        "cells defined: " + (", ".join(sorted(cell_ids)) or "none"), source.locate(f"{base}/cells/{position}")))
        reported = claim.get("reported")
        if not isinstance(reported, dict):
            continue
        for name in DIAGNOSTICS:
            block = reported.get(name)
            if not isinstance(block, dict):
                continue
            _check_estimates(block, name, f"{base}/reported/{name}", estimate_names, source, problems)
            numbers = [k for k, v in block.items() if k not in ("outcome", "observed") and _num(v) is not None]
            if len(covered) > 1 and numbers:
                problems.append(Problem("card.ambiguous-report", f"claim {claim.get('id')!r} covers {len(covered)} cells but reports {name} numbers for none in particular",
                                        "move the numbers under reported.cells.<cell id>.{name}; an outcome alone may stay here (it means: in every cell)",
                                        source.locate(f"{base}/reported/{name}", at_key=True)))
        per_cell = reported.get("cells")
        if isinstance(per_cell, dict):
            for cell, blocks in per_cell.items():
                where = child(f"{base}/reported/cells", cell)
                if cell not in covered:
                    problems.append(Problem("card.unknown-cell", f"reported.cells names {cell!r}, which claim {claim.get('id')!r} does not cover",
                                            "report only on the claim's cells: " + ", ".join(covered), source.locate(where, at_key=True)))
                if isinstance(blocks, dict):
                    for name, block in blocks.items():
                        if isinstance(block, dict) and name in DIAGNOSTICS:
                            _check_estimates(block, name, child(where, name), estimate_names, source, problems)

    for json_pointer, path, _sha, _location in _pointers(data, source):
        try:
            check_relative_path(path, source.locate(json_pointer + "/path"))
        except AcardsError as error:
            problems.extend(error.problems)
    return problems


def _check_estimates(block: dict, diagnostic: str, pointer: str, names: dict[str, set[str]], source: SourceMap, problems: list[Problem]) -> None:
    known = names.get(diagnostic)
    if not known:
        return
    for key in block:
        if key not in ("outcome", "observed") and key not in known:
            suggestion = _closest(key, known)
            problems.append(Problem("card.unknown-estimate", f"{diagnostic} has no estimate named '{key}'",
                                    (f"did you mean '{suggestion}'? " if suggestion else "") + "estimates: " + ", ".join(sorted(known)),
                                    source.locate(child(pointer, key), at_key=True)))


def _estimate_names() -> dict[str, set[str]]:
    """Estimate names per diagnostic, from the report schema (the one place they are listed)."""
    try:
        report = load_schema("report-1.0")
    except FileNotFoundError:
        return {}
    estimates = report.get("$defs", {}).get("estimates", {})
    return {name: set(spec.get("properties", {})) for name, spec in estimates.items()}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _unique_ids(items, pointer: str, what: str, source: SourceMap, problems: list[Problem]) -> set[str]:
    seen: dict[str, int] = {}
    for index, item in enumerate(_list(items)):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        ident = item["id"]
        if ident in seen:
            first = source.locate(f"{pointer}/{seen[ident]}/id").line
            problems.append(Problem("card.duplicate-id", f"{what} id {ident!r} is used twice (first on line {first})",
                                    f"give every {what} its own id", source.locate(f"{pointer}/{index}/id")))
        else:
            seen[ident] = index
    return set(seen)


def _pointers(data: dict, source: SourceMap) -> Iterator[tuple[str, str, str, Location]]:
    """(JSON pointer, path, sha256, location) of every evidence pointer in the card."""
    def one(pointer: str, value) -> Iterator[tuple[str, str, str, Location]]:
        if isinstance(value, dict) and isinstance(value.get("path"), str):
            yield pointer, value["path"], value.get("sha256"), source.locate(pointer + "/path")

    evidence = data.get("evidence") if isinstance(data.get("evidence"), dict) else {}
    for index, record in enumerate(_list(evidence.get("records"))):
        yield from one(f"/evidence/records/{index}", record)
    for name in ("prompts", "training_data"):
        yield from one(f"/evidence/{name}", evidence.get(name))
    for index, cell in enumerate(_list(data.get("cells"))):
        checkpoints = cell.get("checkpoints") if isinstance(cell, dict) else None
        if isinstance(checkpoints, dict):
            for name, value in checkpoints.items():
                yield from one(f"/cells/{index}/checkpoints/{name}", value)
    for name in ("scorer", "capability_scorer"):
        scorer = data.get(name)
        if isinstance(scorer, dict):
            yield from one(f"/{name}/model", scorer.get("model"))


# --- the Card --------------------------------------------------------------------------------

@dataclass
class Card:
    """A validated card: its plain data (shaped by the schema), source map, file and digest."""

    path: Path
    data: dict
    source: SourceMap
    sha256: str

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def cells(self) -> list[dict]:
        return self.data["cells"]

    @property
    def claims(self) -> list[dict]:
        return self.data["claims"]

    def cell(self, cell_id: str) -> dict:
        return next(c for c in self.cells if c["id"] == cell_id)

    def pointers(self) -> list[tuple[str, str, str, Location]]:
        return list(_pointers(self.data, self.source))

    def coding_mode(self, cell: dict) -> str:
        return cell.get("coding_mode") or self.data.get("coding_mode") or "strict"

    def thresholds(self, group: str, claim: dict | None = None) -> dict[str, Any]:
        """Defaults, then the card's values, then the claim's: the thresholds in force."""
        merged = dict(threshold_defaults()[group])
        for source in (self.data.get("thresholds") or {}, (claim or {}).get("thresholds") or {}):
            merged.update({k: v for k, v in (source.get(group) or {}).items() if k != "justification"})
        return merged

    def overrides(self) -> list[dict]:
        """Every threshold that differs from its default, where it is set, with its justification."""
        defaults = threshold_defaults()
        found = []
        scopes = [("card", self.data.get("thresholds") or {})]
        scopes += [(f"claim {c['id']}", c.get("thresholds") or {}) for c in self.claims]
        for scope, groups in scopes:
            for group, values in groups.items():
                for key, value in values.items():
                    if key != "justification" and value != defaults[group].get(key):
                        found.append({"scope": scope, "diagnostic": group, "name": key, "value": value,
                                      "default": defaults[group].get(key), "justification": values.get("justification")})
        return found

    def section(self, name: str) -> dict[str, Any]:
        """A settings section (generation, scorer) with the schema's defaults filled in."""
        return {**section_defaults(name), **(self.data.get(name) or {})}


def validate_document(raw: bytes, text: str, path: Path) -> Card:
    """Validate card text; raise every problem found, together."""
    file = str(path)
    data, source = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise AcardsError("schema.type", "a card is a YAML mapping of fields", "start from `acards init`", source.locate(""))
    version = data.get("acard")
    if version is not None and version not in SUPPORTED_CARD_VERSIONS and version != 1.0:
        raise AcardsError("card.unknown-version", f"this card follows version {version!r} of the standard",
                          f"acards {__version__} reads versions: {', '.join(SUPPORTED_CARD_VERSIONS)}; "
                          "upgrade acards or write the card for a supported version", source.locate("/acard"))
    placeholders = list(_placeholders(data))
    problems = [Problem("card.placeholder", "this value is still a TODO placeholder",
                        "replace it with the real value: " + _field_hint(load_schema(SCHEMA_NAME), schema_at(p)),
                        source.locate(p)) for p in placeholders]
    problems += schema_problems(data, source, set(placeholders))
    problems += semantic_problems(data, source)
    if problems:
        problems.sort(key=lambda p: (p.location.line or 0, p.location.column or 0, p.code))
        raise AcardsError.collect(problems)
    return Card(path=path, data=data, source=source, sha256=hashlib.sha256(raw).hexdigest())


def load_card(path: str | Path) -> Card:
    path = Path(path)
    raw, text = read_text(path)
    return validate_document(raw, text, path)


def write_digests(path: str | Path, cache=None) -> int:
    """Set every evidence pointer's sha256 in the card file to the evidence's current digest.

    The card is edited with ruamel's round-trip loader, so comments, key order and quoting stay as
    the author wrote them.  Returns how many digests changed.
    """
    from io import StringIO

    from .evidence import digest_path, resolve_inside
    from .files import atomic_write

    path = Path(path)
    _raw, text = read_text(path)
    data, source = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise AcardsError("schema.type", "a card is a YAML mapping of fields", "start from `acards init`", source.locate(""))
    digests, problems = {}, []
    for json_pointer, relative, _old, location in _pointers(data, source):
        try:
            digests[json_pointer] = digest_path(resolve_inside(path.parent, relative, location), cache, relative)
        except AcardsError as error:
            problems.extend(error.problems)
    if problems:
        raise AcardsError.collect(problems)
    yaml = round_trip_yaml()
    document = yaml.load(text)
    changed = 0
    for json_pointer, value in digests.items():
        node = document
        for part in json_pointer.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part.replace("~1", "/").replace("~0", "~")]
        if node.get("sha256") != value:
            node["sha256"] = value
            changed += 1
    if changed:
        buffer = StringIO()
        yaml.dump(document, buffer)
        atomic_write(path, buffer.getvalue().encode("utf-8"))
    return changed


def round_trip_yaml() -> YAML:
    """A ruamel round-trip YAML set up to re-emit cards as `acards init` lays them out."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml
