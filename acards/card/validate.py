"""Validation: the schema (schema/acard-1.0.schema.json, the one description of a card's fields) and the
rules a schema cannot say (unique ids, claims naming real cells, justified overrides, safe evidence
paths, unfilled placeholders), every finding a coded problem with a location."""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import replace
from typing import Any, Iterator

from acards import SUPPORTED_CARD_VERSIONS
from acards.card.yaml import SourceMap, child
from acards.errors import AcardsError, Location, Problem
from acards.evidence.paths import check_relative_path
from acards.evidence.seeds import duplicate_seeds, has_pair
from acards.patterns import check_pattern
from acards.schemas import keyword_code, load_schema, node_at, resolve, validate
from acards.vocabulary import DIAGNOSTICS

SCHEMA_NAME = "acard-1.0"

PLACEHOLDER = re.compile(r"\bTODO\b")


def schema_at(pointer: str) -> dict:
    """The card schema's node describing the value at a card JSON pointer ({} if none does)."""
    return node_at(SCHEMA_NAME, pointer)


def _field_hint(schema: dict, node: dict) -> str:
    node = resolve(schema, node)
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
    problems = validate(data, SCHEMA_NAME, skip=skip, describe=lambda error, pointer: _describe(schema, error, pointer, source))
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
        properties = resolve(schema, subschema).get("properties", {})
        yield Problem("schema.required", f"missing required field '{missing}'",
                      _field_hint(schema, properties.get(missing, {})), source.locate(pointer, at_key=True))
        return
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        known = set(resolve(schema, subschema).get("properties", {}))
        for extra in sorted(set(error.instance) - known):
            suggestion = _closest(extra, known)
            hint = f"did you mean '{suggestion}'?" if suggestion else "known fields: " + ", ".join(sorted(known))
            yield Problem("schema.unknown-field", f"unknown field '{extra}'", hint, source.locate(child(pointer, extra), at_key=True))
        return
    message, hint = error.message, _field_hint(schema, subschema)
    if kind in ("const", "enum") and pointer == "/acard":
        # only a number that reads as a known version gets this far (acards.card.model refuses others)
        versions = " or ".join(f'"{v}"' for v in SUPPORTED_CARD_VERSIONS)
        message = f"acard must be the string {versions}, not {_compact(error.instance)}"
        quoted = f"{float(error.instance)}" if isinstance(error.instance, (int, float)) else SUPPORTED_CARD_VERSIONS[-1]
        hint = f'quote the version: acard: "{quoted}"'
        kind = "const"  # one fixed value per version: the code a misquoted version has always had
    yield Problem(keyword_code(kind), message, hint, source.locate(pointer))


def _closest(word: str, candidates: set[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.7)
    return found[0] if found else None


def placeholders(data: Any, pointer: str = "") -> Iterator[str]:
    """The JSON pointer of every TODO placeholder string in ``data`` (a card or a part of one)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from placeholders(value, child(pointer, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from placeholders(value, child(pointer, index))
    elif isinstance(data, str) and PLACEHOLDER.search(data):
        yield pointer


# The defaults a later version of the standard changes; the schema holds 1.0's (SPEC §10.1).
STANDARD_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {"1.1": {
    "reliability": {"min_seeds": 3},
    # the codebook rules 1.1 adds (SPEC §10.5, §10.8); acards.mechanism.codebook.THRESHOLD_NAMES_1_1
    "mechanism": {"reflection_max_negative": 0.01, "mask_min_share": 0.9, "mask_min_zeroed": 0.01,
                  "merge_max_residual": 0.01, "merge_min_weight": 0.01, "additive_max_outside": 0.1,
                  "noise_max_cosine": 0.1, "noise_max_spike": 2.0},
}}


def threshold_defaults(standard: str = "1.0") -> dict[str, dict[str, Any]]:
    """The default thresholds per diagnostic under a version of the standard: the schema's defaults
    (one source), with the changes of :data:`STANDARD_DEFAULTS` for that version."""
    schema = load_schema(SCHEMA_NAME)
    groups = resolve(schema, schema["$defs"]["thresholdSet"])["properties"]
    defaults = {}
    for group, ref in groups.items():
        properties = resolve(schema, ref)["properties"]
        defaults[group] = {name: resolve(schema, spec)["default"] for name, spec in properties.items() if "default" in resolve(schema, spec)}
        defaults[group].update(STANDARD_DEFAULTS.get(standard, {}).get(group, {}))
    return defaults


def card_standard(data: Any) -> str:
    """The version of the standard whose rules a card's data follows ("1.0" when it names none we read)."""
    version = data.get("acard") if isinstance(data, dict) else None
    return version if version in SUPPORTED_CARD_VERSIONS else "1.0"


def section_defaults(name: str) -> dict[str, Any]:
    """Defaults of a top-level settings object of the card, e.g. "generation" or "scorer"."""
    schema = load_schema(SCHEMA_NAME)
    properties = resolve(schema, schema["properties"][name]).get("properties", {})
    return {key: resolve(schema, spec)["default"] for key, spec in properties.items() if "default" in resolve(schema, spec)}


_NOT_FREE_TEXT = ("enum", "pattern", "const", "format")


def comment_in_text_warnings(source: SourceMap) -> list[Problem]:
    """A ``yaml.comment-in-text`` warning (recorded, never fatal) for each free-text field (a schema
    string with no pattern, enum or format) whose unquoted value a same-line ` #` comment follows:
    YAML drops everything from the ` #` on, so the text may have been cut there."""
    from acards.evidence.cachekey import record_warning

    warnings = []
    for pointer, (line, column) in source.comment_after.items():
        node = schema_at(pointer)
        if node.get("type") != "string" or any(word in node for word in _NOT_FREE_TEXT):
            continue
        field = pointer.rsplit("/", 1)[-1].replace("~1", "/").replace("~0", "~")
        warnings.append(record_warning(Problem(
            "yaml.comment-in-text", f"the unquoted text of {field} ends at ' #': YAML reads the rest of "
            "the line as a comment, so the text is cut there",
            "if the ' #' belongs to the text, put the value in double quotes (or use a block scalar `|`); "
            "if it is a comment, ignore this warning", Location(source.file, line, column, pointer))))
    return warnings


def semantic_problems(data: dict, source: SourceMap) -> list[Problem]:
    """What the schema cannot express.  Runs on a card that may have schema errors: every access
    is guarded by a type check."""
    problems: list[Problem] = []
    cell_ids = _unique_ids(data.get("cells"), "/cells", "cell", source, problems)
    _unique_ids(data.get("claims"), "/claims", "claim", source, problems)

    defaults = threshold_defaults(card_standard(data))
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

    for json_pointer, path, _sha, _location in evidence_pointers(data, source):
        try:
            check_relative_path(path, source.locate(json_pointer + "/path"))
        except AcardsError as error:
            problems.extend(error.problems)
    _check_records_pointers(data, source, problems)
    _check_scorer_pattern(data, source, problems)
    _check_observable(data, source, problems)
    _check_seeds(data, source, problems)
    _check_judges(data, source, problems)
    return problems


def _check_judges(data: dict, source: SourceMap, problems: list[Problem]) -> None:
    """The primary scorer is not among the others; a claim asking for every scorer needs `judges`."""
    judges = data.get("judges")
    if isinstance(judges, dict) and judges.get("primary") in _list(judges.get("others")):
        position = _list(judges.get("others")).index(judges["primary"])
        problems.append(Problem("card.bad-judges", f"the primary scorer {judges['primary']!r} is also listed among the others",
                                "list only the other scorers under judges.others", source.locate(f"/judges/others/{position}")))
    for index, claim in enumerate(_list(data.get("claims"))):
        if isinstance(claim, dict) and claim.get("require_all_scorers") is True and not isinstance(judges, dict):
            problems.append(Problem("card.bad-judges", f"claim {claim.get('id')!r} requires every scorer, but the card declares no judges",
                                    "name the scorers under `judges` (primary and others), or drop require_all_scorers",
                                    source.locate(f"/claims/{index}/require_all_scorers")))


def _check_seeds(data: dict, source: SourceMap, problems: list[Problem]) -> None:
    """A training seed's checkpoints are pinned once (checkpoints.seed and checkpoints.seeds)."""
    for index, cell in enumerate(_list(data.get("cells"))):
        for first, repeat in duplicate_seeds(cell):
            line = source.locate(f"/cells/{index}/checkpoints{first.at}").line
            problems.append(Problem("card.duplicate-seed", f"the checkpoints of training seed {repeat.seed} are pinned twice "
                                    f"(first on line {line})", "pin each seed's undefended and defended checkpoints once "
                                    "(the top-level ones are those of checkpoints.seed)",
                                    source.locate(f"/cells/{index}/checkpoints{repeat.at}" + ("/seed" if repeat.at else ""))))


def _check_observable(data: dict, source: SourceMap, problems: list[Problem]) -> None:
    """Standard 1.1 refuses a declared mechanism the codebook could never observe (SPEC §10.8)."""
    from acards.mechanism.codebook import unobservable

    for index, cell in enumerate(_list(data.get("cells"))):
        if not isinstance(cell, dict) or not isinstance(cell.get("declared_mechanism"), str) \
                or PLACEHOLDER.search(cell["declared_mechanism"]):  # a TODO is a placeholder problem alone
            continue
        checkpoints = cell.get("checkpoints") if isinstance(cell.get("checkpoints"), dict) else {}
        why = unobservable(cell["declared_mechanism"], card_standard(data), has_pair(cell),
                           "reference_subspace" in checkpoints)
        if why:
            problems.append(Problem("card.unobservable-mechanism", f"declared_mechanism {cell['declared_mechanism']!r}: {why}",
                                    "add the reference subspace (checkpoints.reference_subspace) the rule needs, or declare "
                                    "the class the weights can show (see docs/diagnostics.md, D3 under 1.1)",
                                    source.locate(f"/cells/{index}/declared_mechanism")))


def _check_scorer_pattern(data: dict, source: SourceMap, problems: list[Problem]) -> None:
    """A regex scorer's pattern is checked here too, so `acards validate` finds an unsafe one before
    any evidence is read (acards.patterns; the scorer checks it again before it runs)."""
    scorer = data.get("scorer")
    if not isinstance(scorer, dict) or scorer.get("kind") != "regex" or not isinstance(scorer.get("pattern"), str):
        return
    try:
        check_pattern(scorer["pattern"])
    except AcardsError as error:
        problems.extend(replace(p, location=source.locate("/scorer/pattern")) for p in error.problems)


MAX_RECORDS_FILES = 1000  # each is hashed and parsed: a card cannot make verify read without end


def _check_records_pointers(data: dict, source: SourceMap, problems: list[Problem]) -> None:
    """Each records file listed once (a repeat would be parsed again, and every record twice),
    and at most MAX_RECORDS_FILES of them."""
    evidence = data.get("evidence") if isinstance(data.get("evidence"), dict) else {}
    records = _list(evidence.get("records"))
    if len(records) > MAX_RECORDS_FILES:
        problems.append(Problem("card.too-many-records-files", f"evidence.records lists {len(records):,} files, more than {MAX_RECORDS_FILES:,}",
                                "merge records files: one file may hold the records of many cells",
                                source.locate("/evidence/records", at_key=True)))
    seen: dict[str, int] = {}
    repeats = 0
    for index, pointer in enumerate(records):
        path = pointer.get("path") if isinstance(pointer, dict) else None
        if not isinstance(path, str):
            continue
        if path in seen:
            problems.append(Problem("card.duplicate-pointer",
                                    f"/evidence/records/{index} repeats {path!r} of /evidence/records/{seen[path]}",
                                    "list each records file once", source.locate(f"/evidence/records/{index}/path")))
            repeats += 1
            if repeats >= 20:
                return
        else:
            seen[path] = index


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


def evidence_pointers(data: dict, source: SourceMap) -> Iterator[tuple[str, str, str, Location]]:
    """(JSON pointer, path, sha256, location) of every evidence pointer in the card."""
    def one(pointer: str, value) -> Iterator[tuple[str, str, str, Location]]:
        if isinstance(value, dict) and isinstance(value.get("path"), str):
            yield pointer, value["path"], value.get("sha256"), source.locate(pointer + "/path")

    evidence = data.get("evidence") if isinstance(data.get("evidence"), dict) else {}
    for index, record in enumerate(_list(evidence.get("records"))):
        yield from one(f"/evidence/records/{index}", record)
    for name in ("prompts", "training_data"):
        yield from one(f"/evidence/{name}", evidence.get(name))
    for index, value in enumerate(_list(evidence.get("sources"))):  # the raw logs records were imported from
        yield from one(f"/evidence/sources/{index}", value)
    for index, cell in enumerate(_list(data.get("cells"))):
        checkpoints = cell.get("checkpoints") if isinstance(cell, dict) else None
        if isinstance(checkpoints, dict):
            for name, value in checkpoints.items():
                yield from one(f"/cells/{index}/checkpoints/{name}", value)
            for at, entry in enumerate(_list(checkpoints.get("seeds"))):  # the checkpoints of further seeds
                for name in ("undefended", "defended", "reference_subspace"):
                    yield from one(f"/cells/{index}/checkpoints/seeds/{at}/{name}", entry.get(name) if isinstance(entry, dict) else None)
    for name in ("scorer", "capability_scorer"):
        scorer = data.get(name)
        if isinstance(scorer, dict):
            yield from one(f"/{name}/model", scorer.get("model"))
