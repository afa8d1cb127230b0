"""acards.schemas: read-only loading, $ref resolution, the one validate() and struct problems."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys

import msgspec
import pytest

from acards import schemas
from acards.errors import Location, Problem
from acards.resources import data_dir


def test_a_loaded_schema_is_cached_and_read_only():
    schema = schemas.load_schema("record-1.0")
    assert schemas.load_schema("record-1.0") is schema
    with pytest.raises(TypeError):
        schema["title"] = "changed"
    with pytest.raises(TypeError):
        schema["properties"]["cell"].update(minLength=0)
    with pytest.raises(TypeError):
        schema["required"].append("other")
    with pytest.raises(TypeError):
        del schema["required"]
    assert "other" not in schemas.load_schema("record-1.0")["required"]


def test_a_loaded_schema_still_behaves_as_plain_json():
    schema = schemas.load_schema("record-1.0")
    with open(data_dir("schema") / "record-1.0.schema.json", encoding="utf-8") as handle:
        assert schema == json.load(handle)
    assert json.loads(json.dumps(schema)) == schema
    thawed = copy.deepcopy(schema)
    thawed["required"].append("other")  # a copy is the caller's to change
    assert type(thawed) is dict and type(thawed["required"]) is list
    assert type(copy.copy(schema)) is dict
    assert pickle.loads(pickle.dumps(schema)) == schema


def test_resolve_follows_local_refs_and_keeps_the_nodes_own_keywords():
    schema = {"$defs": {"a": {"$ref": "#/$defs/b", "description": "a"}, "b": {"type": "integer", "description": "b"}}}
    assert schemas.resolve(schema, {"$ref": "#/$defs/a", "minimum": 0}) == {"type": "integer", "description": "a", "minimum": 0}
    assert schemas.resolve(schema, {"type": "string"}) == {"type": "string"}


@pytest.mark.parametrize("pointer, expected", [
    ("/cells/0/id", "string"),
    ("/thresholds/reliability/z", "number"),
    ("/no-such-field", None),
])
def test_node_at_walks_the_card_schema(pointer, expected):
    node = schemas.node_at("acard-1.0", pointer)
    assert node.get("type") == expected


@pytest.mark.parametrize("path, pointer", [([], ""), (["a", 0, "b"], "/a/0/b"), (["x/y", "m~n"], "/x~1y/m~0n")])
def test_pointer_of_escapes_as_rfc_6901_says(path, pointer):
    assert schemas.pointer_of(path) == pointer


RECORD = {"cell": "c", "condition": "defended", "split": "heldout", "task": "t", "subject": "s", "item": "i",
          "framing": "audit", "seed": 0}


def test_validate_reports_every_error_ordered_by_pointer():
    bad = {**RECORD, "split": "nowhere", "seed": -1, "framing": 3, "extra": True}
    problems = schemas.validate(bad, "record-1.0", code="records.invalid", file="r.jsonl")
    assert [p.location.pointer for p in problems] == ["", "/framing", "/framing", "/seed", "/split"]
    assert all(p.code == "records.invalid" and p.location.file == "r.jsonl" for p in problems)
    assert [p.message.split()[-1] for p in problems[1:3]] == ["'string'", "'deploy']"]  # type and enum: both
    seed = problems[3]
    assert seed.hint == schemas.load_schema("record-1.0")["properties"]["seed"]["description"]
    assert schemas.validate(RECORD, "record-1.0", code="records.invalid") == []
    with pytest.raises(TypeError):
        schemas.validate(RECORD, "record-1.0")


@pytest.mark.parametrize("keyword, code", [("type", "schema.type"), ("additionalProperties", "schema.additional-properties"),
                                           ("minLength", "schema.min-length")])
def test_keyword_codes_are_kebab_case(keyword, code):
    assert schemas.keyword_code(keyword) == code


def test_validate_takes_a_code_hint_and_message_template_or_a_describer():
    bad = {**RECORD, "seed": -1}
    (problem,) = schemas.validate(bad, "record-1.0", code="usage.bad-report", hint="h", message="m: {message} at {at}")
    assert problem.code == "usage.bad-report" and problem.hint == "h"
    assert problem.message.startswith("m: -1 is less than") and problem.message.endswith(" at /seed")
    (root,) = schemas.validate({**RECORD, "extra": 1}, "record-1.0", code="usage.bad-report", message="{at}")
    assert root.message == "/" and root.location.pointer == ""

    def describe(error, pointer):
        yield Problem("records.invalid", error.validator, "h", Location(pointer=pointer))
        yield Problem("records.invalid", "again", "h", Location(pointer=pointer))

    assert [p.message for p in schemas.validate(bad, "record-1.0", describe=describe)] == ["minimum", "again"]


def test_validate_skips_errors_at_or_under_a_pointer():
    bad = {**RECORD, "seed": -1, "split": "nowhere"}
    assert [p.location.pointer for p in schemas.validate(bad, "record-1.0", code="records.invalid", skip={"/seed"})] == ["/split"]
    assert [p.location.pointer for p in schemas.validate(bad, "record-1.0", code="records.invalid", skip={"/se"})] == ["/seed", "/split"]


def test_the_validator_is_built_once():
    assert schemas.validator("report-1.0") is schemas.validator("report-1.0")


@pytest.mark.parametrize("line, pointer, hint_from", [
    ({**RECORD, "seed": -1}, "/seed", "seed"),
    ({**RECORD, "split": "nowhere"}, "/split", "split"),
    ({k: v for k, v in RECORD.items() if k != "subject"}, None, None),
    ({**RECORD, "other": 1}, None, None),
])
def test_struct_problems_carry_the_fields_pointer_and_description(line, pointer, hint_from):
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(json.dumps(line), type=schemas.schema_struct("record-1.0"))
    problem = schemas.struct_problem(caught.value, "record-1.0", "records.invalid", "r.jsonl", 7)
    assert problem.location == Location("r.jsonl", 7, None, pointer)
    assert " - at `$" not in problem.message
    schema = schemas.load_schema("record-1.0")
    if hint_from:
        assert problem.hint == schema["properties"][hint_from]["description"]
    else:
        assert problem.hint.startswith("see schema/record-1.0.schema.json: cell, condition")


def test_a_struct_without_some_patterns_skips_only_those():
    loose = schemas.schema_struct("record-1.0", frozenset({"condition"}))
    assert msgspec.json.decode(json.dumps({**RECORD, "condition": "attacker"}), type=loose).condition == "attacker"
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps({**RECORD, "condition": "attacker"}), type=schemas.schema_struct("record-1.0"))


def test_loading_schemas_does_not_import_jsonschema_or_msgspec():
    code = ("import sys, acards.schemas as s; s.load_schema('acard-1.0'); s.node_at('acard-1.0', '/cells');"
            "assert 'jsonschema' not in sys.modules and 'msgspec' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
