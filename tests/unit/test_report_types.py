"""The report's types (acards/report/model.py) and schema/report-1.0.schema.json cannot drift apart.

- Both ways, recursively: every property of a schema node is a field of its Struct and every field
  is a property; a property the schema requires is a field without a default, an optional one has a
  default (``UNSET``: absent); and each field's Python type allows exactly the schema's JSON types.
- A round trip: reports the CLI writes for the shipped examples, read back through the one checked
  reader into ``Report`` and written again, are byte-identical (field order is key order).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
import typing
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from acards.cli import main
from acards.present.render import read_report
from acards.present.text import report_json
from acards.report.model import Audit, AuditCell, Report, as_builtins, from_builtins
from acards.report.stored import check_report
from acards.schemas import load_schema, resolve

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
SCHEMA = load_schema("report-1.0")

# Struct nodes whose schema allows properties it does not name: reading such a report drops them
# (the types cannot keep what they do not declare).  Pinned, so that opening another node is seen.
OPEN_NODES = {"/audit", "/audit/full_card", "/audit/near_misses[]"}


# --- the schema and the types, both ways ------------------------------------------------------------

def _members(annotation) -> list:
    """The alternatives of a field's type (``A | B | None`` → [A, B, NoneType])."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _json_types(annotation) -> set[str] | None:
    """The JSON types a field's Python type allows; None for Any (the schema's ``{}``)."""
    found = set()
    for member in _members(annotation):
        origin = typing.get_origin(member) or member
        if member is typing.Any:
            return None
        if member is msgspec.UnsetType:
            continue  # absent, not a JSON value
        if member is type(None):
            found.add("null")
        elif origin is bool:
            found.add("boolean")
        elif origin is str:
            found.add("string")
        elif origin is int:
            found.add("integer")
        elif origin is float:
            found.add("number")
        elif origin is list:
            found.add("array")
        elif origin is dict or (isinstance(origin, type) and issubclass(origin, msgspec.Struct)):
            found.add("object")
        else:
            raise AssertionError(f"unexpected type {member!r}")
    if {"integer", "number"} <= found:
        found.discard("integer")  # int | float is a JSON number
    return found


def _schema_types(node: dict) -> set[str] | None:
    declared = node.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _structs_inside(annotation) -> list[tuple[type, bool]]:
    """(Struct type, is the list's item) for every Struct a field holds directly or as list items."""
    found = []
    for member in _members(annotation):
        origin = typing.get_origin(member)
        if origin is list:
            (item,) = typing.get_args(member)
            found += [(struct, True) for struct, _ in _structs_inside(item)]
        elif isinstance(member, type) and issubclass(member, msgspec.Struct):
            found.append((member, False))
    return found


def _walk(struct: type, node: dict, where: str, seen: list[str], open_nodes: set[str]) -> None:
    node = resolve(SCHEMA, node)
    seen.append(where or "/")
    assert "object" in _schema_types(node), where
    properties = node.get("properties", {})
    required = set(node.get("required", []))
    fields = {f.encode_name: f for f in msgspec.structs.fields(struct)}
    assert set(fields) == set(properties), (where, "fields without a property:", set(fields) - set(properties),
                                            "properties without a field:", set(properties) - set(fields))
    if node.get("additionalProperties") is not False:
        open_nodes.add(where)
    for name, field in fields.items():
        path = f"{where}/{name}"
        assert field.required is (name in required), (path, "required in the schema" if name in required else "optional in the schema")
        if not field.required:
            assert field.default is msgspec.UNSET, (path, "an optional property defaults to UNSET (absent), not", field.default)
        prop = resolve(SCHEMA, properties[name])
        assert _json_types(field.type) == _schema_types(prop), (path, _json_types(field.type), _schema_types(prop))
        for inner, is_item in _structs_inside(field.type):
            _walk(inner, prop["items"] if is_item else prop, path + ("[]" if is_item else ""), seen, open_nodes)


def test_every_struct_matches_its_schema_node():
    seen: list[str] = []
    open_nodes: set[str] = set()
    _walk(Report, SCHEMA, "", seen, open_nodes)
    # The walk reached every typed node (a Struct left out of the walk would not be checked).
    assert {"/card", "/evidence[]", "/cells[]", "/cells[]/diagnostics/mechanism/relabel", "/cells[]/full_card",
            "/claims[]/discrepancies[]", "/audit/near_misses[]", "/envelope"} <= set(seen)
    assert open_nodes == OPEN_NODES


def test_the_walk_catches_a_drift():
    class Drifted(msgspec.Struct, kw_only=True):
        id: str
        version: int | float  # the schema says integer
        sha256: str

    with pytest.raises(AssertionError):
        _walk(Drifted, SCHEMA["properties"]["card"], "/card", [], set())  # also lacks `title`


def test_the_audit_cell_is_a_report_cell_and_its_card():
    assert [f.name for f in msgspec.structs.fields(AuditCell)] == ["id", "coding_mode", "diagnostics", "full_card", "judges", "card"]
    assert [f.name for f in msgspec.structs.fields(Audit)] == ["acards_version", "cells", "summary"]


# --- the round trip ------------------------------------------------------------------------------

def _cli(env: dict, *args) -> int:
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """Reports `acards verify --report` writes: both shipped examples, and one verified against a signed envelope."""
    root = tmp_path_factory.mktemp("reports")
    env = {"ACARDS_CACHE_DIR": str(root / "cache")}
    reports = {}
    for name in ("tiny-defense", "tiny-regenerated"):
        reports[name] = root / f"{name}.report.json"
        code = _cli(env, "verify", EXAMPLES / name / "card.yaml", "--no-generate", "--bootstrap", 500, "--report", reports[name])
        assert code in (0, 1)  # tiny-regenerated without regeneration is not reproduced; its report is still written
    card = root / "signed" / "card.yaml"
    shutil.copytree(EXAMPLES / "tiny-defense", card.parent, ignore=shutil.ignore_patterns("*.envelope.json", "__pycache__"))
    assert _cli(env, "key", "new", "--out", root / "author.key", "--no-passphrase") == 0
    assert _cli(env, "sign", card, "--key", root / "author.key", "--report", reports["tiny-defense"], "--out", root / "card.envelope.json") == 0
    reports["signed"] = root / "signed.report.json"
    assert _cli(env, "verify", card, "--no-generate", "--bootstrap", 500, "--envelope", root / "card.envelope.json",
                "--trusted-key", root / "author.key.pub", "--report", reports["signed"]) == 0
    return reports


@pytest.mark.parametrize("name", ["tiny-defense", "tiny-regenerated", "signed"])
def test_a_stored_report_reads_back_and_writes_byte_identically(written, name):
    data = written[name].read_bytes()
    report = read_report(written[name])
    assert isinstance(report, Report)
    assert (report_json(report) + "\n").encode("utf-8") == data
    assert (name == "signed") is (report.envelope is not msgspec.UNSET)


@pytest.mark.parametrize("name", ["tiny-defense", "tiny-regenerated", "signed"])
def test_optional_fields_left_out_stay_left_out(written, name):
    # Drop every optional key the report has (where the schema allows it): read back and written,
    # nothing is invented, and what is there keeps its place.
    data = json.loads(written[name].read_bytes())
    del data["card"]["title"]
    for cell in data["cells"]:
        del cell["full_card"]["headline"]
        for diagnostic in cell["diagnostics"].values():
            del diagnostic["details"]
    for claim in data["claims"]:
        for key in ("statement", "cells", "requires", "outcomes", "thresholds"):
            del claim[key]
    report = check_report(data)
    assert report.card.title is msgspec.UNSET and report.claims[0].statement is msgspec.UNSET
    assert as_builtins(report) == data
    assert json.dumps(as_builtins(report)) == json.dumps(data)  # the same keys in the same order


def test_numbers_keep_their_json_type(written):
    # Canonical JSON writes 2.0 as 2: read back, an int stays an int (re-signing changes no byte).
    data = json.loads(written["tiny-defense"].read_bytes())
    claim = data["claims"][0]
    claim["discrepancies"] = [{"cell": None, "diagnostic": None, "field": "verdict", "reported": 1, "recomputed": 2.0,
                               "tolerance": 1, "message": "x"}]
    data["audit"]["near_misses"] = [{"cell": "c", "passed": 3, "failed": ["fresh"], "shortfall": 0}]
    again = as_builtins(check_report(data))
    assert json.dumps(again) == json.dumps(data)
    assert type(again["claims"][0]["discrepancies"][0]["tolerance"]) is int
    assert type(again["audit"]["near_misses"][0]["shortfall"]) is int


def test_the_checked_reader_refuses_what_is_not_a_report(written):
    from acards.errors import AcardsError

    data = json.loads(written["tiny-defense"].read_bytes())
    data["cells"][0]["diagnostics"]["mechanism"]["observed"] = "teleportation"  # not a class of the codebook
    with pytest.raises(AcardsError) as caught:
        check_report(data)
    assert caught.value.code == "usage.bad-report" and "/cells/0/diagnostics/mechanism/observed" in str(caught.value)
    # The unchecked conversion holds the types only: it is for data acards made itself.
    assert from_builtins(data).cells[0].diagnostics.mechanism.observed == "teleportation"


def test_the_report_types_are_pure():
    """The diagnostics return these types: importing them (and the diagnostics) loads no I/O layer."""
    script = ("import sys\n"
              "import acards.report.model, acards.diagnostics.verdict, acards.diagnostics.discrepancies\n"
              "import acards.diagnostics.reliability, acards.diagnostics.fresh, acards.diagnostics.transfer\n"
              "import acards.diagnostics.mechanism, acards.diagnostics.cost\n"
              "io = ('acards.schemas', 'acards.resources', 'acards.settings', 'acards.card', 'acards.evidence',\n"
              "      'acards.present', 'acards.pipeline', 'acards.cli', 'acards.report.stored', 'jsonschema', 'click')\n"
              "print(sorted(m for m in sys.modules if m.startswith(io)))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
