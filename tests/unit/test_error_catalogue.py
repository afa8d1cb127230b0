"""The error catalogue (acards/errors/codes.py), the source and docs/errors.md stay in step.

- every code the source can raise is declared in the catalogue, and every declared code is raised;
- the schema.<keyword> family (built from the failing JSON Schema keyword) is declared for every
  keyword the card schema can fail on;
- no code is declared twice, and every exit status is one of SPEC §8 (1, 2, 3, 4);
- every declared code is documented in docs/errors.md, in the section its anchor names, with its
  exit status, and the page documents no other code;
- the exit status is the catalogue's, not the prefix's, and no caller matches a code as a string.

These tests read files only.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from acards.errors import AcardsError, Location, Problem, codes
from acards.errors.codes import CATALOGUE, EXIT_STATUSES

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "acards"
CODES_PY = SOURCE / "errors" / "codes.py"
ERRORS_MD = REPO / "docs" / "errors.md"
CARD_SCHEMA = REPO / "schema" / "acard-1.0.schema.json"

# A quoted string of the shape of a code, such as "evidence.digest-mismatch".  File names such as
# "card.yaml" or "registry.json" have the same shape; their second part is a file suffix.
QUOTED = re.compile(r"""["'](?P<code>[a-z]+\.[a-z0-9]+(?:-[a-z0-9]+)*)["']""")
SHAPE = re.compile(r"[a-z]+\.[a-z0-9]+(?:-[a-z0-9]+)*")
FILE_SUFFIXES = {"json", "jsonl", "yaml", "yml", "html", "htm", "md", "txt", "j2", "jinja", "svg", "csv", "pub", "pem",
                 "sqlite", "safetensors", "py", "toml", "lock", "log", "sig", "tmp", "bin", "pt", "js", "css", "model"}
# The families whose codes are built at run time, each from an f-string starting with its prefix.
DYNAMIC_FAMILIES = {"schema."}
# A row of a Markdown table whose first cell is a code in backticks.
ROW = re.compile(r"^\|\s*`(?P<code>[a-z]+\.[a-z0-9-]+)`\s*\|(?P<rest>.*)$")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _python_files() -> list[Path]:
    return [p for p in sorted(SOURCE.rglob("*.py")) if p != CODES_PY]


def source_codes() -> dict[str, list[str]]:
    """Every error code written as a string in the acards source (codes.py aside), with where it occurs."""
    found: dict[str, list[str]] = {}
    areas = {name.split(".", 1)[0] for name in CATALOGUE}
    for path in _python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in QUOTED.finditer(line):
                code = match["code"]
                area, rest = code.split(".", 1)
                if rest in FILE_SUFFIXES or (area not in areas and not _raised_as_code(code)):
                    continue
                found.setdefault(code, []).append(f"{path.relative_to(REPO)}:{number}")
    for code, where in _code_arguments().items():
        if isinstance(code, str):
            found.setdefault(code, []).extend(where)
    constants = _constants()
    for path in _python_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in re.finditer(r"\bcodes\.([A-Z][A-Z_]+)\b", line):
                if match.group(1) in constants:
                    found.setdefault(constants[match.group(1)], []).append(f"{path.relative_to(REPO)}:{number}")
    return found


def _constants() -> dict[str, str]:
    """NAME -> code, for the constants of codes.py (``KEY_BAD_PASSPHRASE = _named("key.bad-passphrase")``)."""
    found = {}
    for node in ast.parse(CODES_PY.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name)
                and node.value.func.id == "_named"):
            found[node.targets[0].id] = node.value.args[0].value
    return found


def _code_takers(trees: dict[Path, ast.Module]) -> set[str]:
    """Problem, AcardsError, and every function or class whose first parameter is ``code``."""
    names = {"Problem", "AcardsError"}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if params and params[0] == "code":
                    names.add(node.name)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        params = [a.arg for a in item.args.args[1:]]
                        if params and params[0] == "code":
                            names.add(node.name)
    return names


_ARGUMENTS: dict | None = None


def _code_arguments() -> dict[object, list[str]]:
    """The first argument of every call of a code taker: a code (str) or, for a code built at run
    time, ("f", leading literal) — each with where it occurs."""
    global _ARGUMENTS
    if _ARGUMENTS is None:
        trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in _python_files()}
        takers = _code_takers(trees) - {"__init__"}
        found: dict[object, list[str]] = {}
        for path, tree in trees.items():
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and node.args):
                    continue
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
                if name not in takers:
                    continue
                first = node.args[0]
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    if SHAPE.fullmatch(first.value):  # reason("not-fresh") and the like are not error codes
                        found.setdefault(first.value, []).append(where)
                elif isinstance(first, ast.JoinedStr):
                    head = first.values[0].value if first.values and isinstance(first.values[0], ast.Constant) else ""
                    found.setdefault(("f", head), []).append(where)
        # A code built by joining a prefix such as "schema." with a name (acards.schemas.keyword_code).
        areas = {name.split(".", 1)[0] for name in CATALOGUE}
        for path, tree in trees.items():
            pieces = {id(part) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for part in node.values}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in pieces
                        and re.fullmatch(r"[a-z]+\.", node.value) and node.value[:-1] in areas):
                    found.setdefault(("f", node.value), []).append(f"{path.relative_to(REPO)}:{node.lineno}")
        _ARGUMENTS = found
    return _ARGUMENTS


def _raised_as_code(text: str) -> bool:
    return text in _code_arguments()


def kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


# JSON Schema keywords that never fail by themselves (annotations, structure, applicators whose
# failures are reported by the keyword inside them).
NON_FAILING = {"$schema", "$id", "$ref", "$defs", "title", "description", "examples", "default", "properties",
               "items", "allOf", "anyOf", "oneOf", "if", "then", "else", "propertyNames"}
# Keywords whose values are data, not subschemas: their keys are not keywords.
ANNOTATION_VALUES = {"examples", "default", "enum", "const", "description", "title", "required", "$ref", "$schema", "$id"}


def schema_keyword_codes() -> set[str]:
    """The schema.<keyword> codes validation can produce for the card schema (see acards/card/validate.py)."""
    schema = json.loads(CARD_SCHEMA.read_text(encoding="utf-8"))
    keywords: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("properties", "$defs"):
                    for child in value.values():
                        walk(child)
                    continue
                keywords.add(key)
                if key not in ANNOTATION_VALUES:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    codes_ = {"schema." + kebab(k) for k in keywords - NON_FAILING if k != "additionalProperties"}
    return codes_ | {"schema.unknown-field", "schema.type"}


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def documented() -> dict[str, list[tuple[str, str]]]:
    """Code -> [(anchor of the section its row is in, exit cell)], for every code row of docs/errors.md."""
    rows: dict[str, list[tuple[str, str]]] = {}
    anchor = ""
    in_fence = False
    for line in ERRORS_MD.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        heading = None if in_fence else HEADING.match(line)
        if heading:
            anchor = slug(heading.group(1))
            continue
        row = ROW.match(line)
        if row:
            cells = [cell.strip() for cell in row["rest"].split("|")]
            rows.setdefault(row["code"], []).append((anchor, cells[0] if cells else ""))
    return rows


def anchors() -> set[str]:
    text = re.sub(r"^```.*?^```", "", ERRORS_MD.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {slug(m.group(1)) for m in map(HEADING.match, text.splitlines()) if m}


# --- the source and the catalogue -----------------------------------------------------------------

def test_the_scan_finds_codes_and_skips_file_names():
    found = source_codes()
    assert {"yaml.tab", "evidence.digest-mismatch", "path.escape", "records.duplicate", "internal.error",
            "key.bad-passphrase", "weights.bad-threshold", "model.not-found", "registry.bad-proof"} <= set(found)
    assert "card.yaml" not in found and "registry.json" not in found
    assert ("f", "schema.") in _code_arguments(), "the schema.<keyword> family is no longer found"


def test_every_code_in_the_source_is_declared():
    missing = {code: where[0] for code, where in source_codes().items() if code not in CATALOGUE}
    assert not missing, "error codes used in the source but not declared in acards/errors/codes.py:\n" + "\n".join(
        f"  {code} (first used at {where})" for code, where in sorted(missing.items()))


def test_codes_built_at_run_time_belong_to_a_declared_family():
    built = {key[1]: where for key, where in _code_arguments().items() if isinstance(key, tuple)}
    unknown = {head: where for head, where in built.items() if head not in DYNAMIC_FAMILIES}
    assert not unknown, f"codes built from f-strings outside the known families {sorted(DYNAMIC_FAMILIES)}: {unknown}"
    missing = sorted(schema_keyword_codes() - set(CATALOGUE))
    assert not missing, f"acards/errors/codes.py lacks these schema.<keyword> codes of the card schema: {missing}"


def test_every_declared_code_is_used():
    used = set(source_codes()) | schema_keyword_codes()
    stale = sorted(set(CATALOGUE) - used)
    assert not stale, f"acards/errors/codes.py declares codes the source never raises: {stale}"


def test_no_code_is_declared_twice():
    tree = ast.parse(CODES_PY.read_text(encoding="utf-8"))
    declared = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_declare":
            names = node.args[2]
            text = names.value if isinstance(names, ast.Constant) else "".join(
                part.value for part in ast.walk(names) if isinstance(part, ast.Constant) and isinstance(part.value, str))
            declared += text.split()
    assert len(declared) == len(CATALOGUE) >= 150
    twice = sorted(code for code, n in Counter(declared).items() if n > 1)
    assert not twice, f"declared more than once: {twice}"


def test_every_exit_status_is_one_of_spec_8():
    assert EXIT_STATUSES == (1, 2, 3, 4)
    odd = {code.name: code.exit_status for code in CATALOGUE.values() if code.exit_status not in EXIT_STATUSES}
    assert not odd
    assert {code.exit_status for code in CATALOGUE.values()} == {1, 2, 3, 4}


def test_every_code_has_a_well_formed_name():
    bad = [name for name in CATALOGUE if not SHAPE.fullmatch(name)]
    assert not bad


# --- the catalogue and docs/errors.md -----------------------------------------------------------

def test_every_code_is_documented_under_its_anchor_with_its_exit_status():
    rows = documented()
    headings = anchors()
    problems = []
    for name, code in CATALOGUE.items():
        if code.anchor not in headings:
            problems.append(f"{name}: docs/errors.md has no heading #{code.anchor}")
        found = rows.get(name)
        if not found:
            problems.append(f"{name}: not documented in docs/errors.md")
            continue
        if len(found) > 1:
            problems.append(f"{name}: documented {len(found)} times")
        anchor, exit_cell = found[0]
        if anchor != code.anchor:
            problems.append(f"{name}: documented under #{anchor}, the catalogue says #{code.anchor}")
        if exit_cell != str(code.exit_status):
            problems.append(f"{name}: documented exit {exit_cell!r}, acards exits {code.exit_status}")
    assert not problems, "\n".join(problems)


def test_docs_document_no_other_code():
    stale = sorted(set(documented()) - set(CATALOGUE))
    assert not stale, f"docs/errors.md documents codes acards does not declare: {stale}"


def test_docs_explain_every_exit_status():
    text = ERRORS_MD.read_text(encoding="utf-8")
    for status in EXIT_STATUSES:
        assert re.search(rf"^\|\s*{status}\s*\|", text, re.MULTILINE), f"docs/errors.md does not explain exit {status}"


# --- Problem and AcardsError read the catalogue ---------------------------------------------------

@pytest.mark.parametrize("name, status", [
    ("reproduce.not-reproduced", 1),
    ("yaml.tab", 2),
    ("weights.bad-threshold", 2),  # a card problem, though its area is weights (was 3)
    ("key.bad-passphrase", 2),  # an input named on the command line (was 4)
    ("registry.wrong-key", 2),  # the --key given (was 3)
    ("generate.no-reference", 3),  # the prompts file lacks reference answers (was 4)
    ("weights.not-found", 3),
    ("registry.io-error", 4),  # could not read or write (was 3)
    ("internal.error", 4),
])
def test_exit_status_is_the_catalogues(name, status):
    assert Problem(name, "m", "h").exit_code == status == CATALOGUE[name].exit_status
    assert AcardsError(name, "m", "h").exit_code == status


def test_several_problems_exit_with_the_lowest_status():
    problems = [Problem("evidence.missing", "m", "h"), Problem("weights.bad-threshold", "m", "h", Location(file="c"))]
    error = AcardsError.collect(problems)
    assert error.code == "evidence.missing" and error.exit_code == 2


def test_an_undeclared_code_is_refused_where_it_is_made():
    with pytest.raises(ValueError, match="unknown error code 'weights.no-such-code'"):
        Problem("weights.no-such-code", "m", "h")
    with pytest.raises(ValueError):
        AcardsError("nonsense", "m", "h")


def test_constants_name_declared_codes():
    assert codes.KEY_BAD_PASSPHRASE == "key.bad-passphrase" and codes.EVIDENCE_MISSING == "evidence.missing"
    for name in ("EVIDENCE_MISSING", "KEY_BAD_PASSPHRASE", "KEY_NO_PASSPHRASE", "INTERNAL_ERROR"):
        assert getattr(codes, name) in CATALOGUE
    assert CATALOGUE["weights.bad-threshold"].docs == "docs/errors.md#weights"


def test_no_caller_matches_a_code_as_a_string():
    compare = re.compile(r"""\.code\s*(==|!=|\bin\b)\s*[("'\[{]|["']\s*(==|!=)\s*\w+\.code\b""")
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path in _python_files()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if compare.search(line)]
    assert not found, "compare with a constant of acards.errors.codes instead:\n" + "\n".join(found)
