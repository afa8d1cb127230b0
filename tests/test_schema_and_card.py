"""The schemas are valid 2020-12 schemas, the fill-in template round-trips, and loading is safe."""

import json
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from acards.card.edit import round_trip_yaml
from acards.card.model import load_card
from acards.card.validate import threshold_defaults
from acards.cli import main
from acards.errors import AcardsError
from acards.present.render import card_template
from acards.resources import data_dir
from acards.schemas import load_schema

SCHEMAS = sorted(p.name.removesuffix(".schema.json") for p in data_dir("schema").glob("*.schema.json"))
VALID = Path(__file__).parent / "cases" / "valid"


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_is_valid_against_its_metaschema(name):
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert name in schema["$id"]
    Draft202012Validator.check_schema(schema)


def walk_fields(schema, node, path="", seen=None):
    """Every property schema in the card schema, with $refs followed once."""
    seen = seen if seen is not None else set()
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return
        seen.add(ref)
        target = schema
        for part in ref[2:].split("/"):
            target = target[part]
        yield from walk_fields(schema, target, path, seen)
        return
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from walk_fields(schema, child, f"{path}.{name}", seen)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from walk_fields(schema, node[key], f"{path}[]", seen)


def test_every_card_field_has_a_description_and_an_example():
    schema = load_schema("acard-1.0")
    for path, field in walk_fields(schema, schema):
        resolved = field
        if "$ref" in field and not field.get("description"):
            target = schema
            for part in field["$ref"][2:].split("/"):
                target = target[part]
            resolved = target
        assert resolved.get("description"), f"{path} has no description"
        if "$ref" not in field and field.get("type") not in ("object", "array"):
            assert "examples" in field or "const" in field or "enum" in field, f"{path} has no example"


def test_the_mechanism_vocabulary_and_requires_are_the_standard_ones():
    schema = load_schema("acard-1.0")
    assert schema["$defs"]["mechanismClass"]["enum"] == [
        "unchanged", "shrinkage", "ablation", "projection", "complement-projection",
        "soft-spectral-reweighting", "additive-realignment", "merge", "mask", "noise", "other"]
    assert schema["$defs"]["diagnosticName"]["enum"] == ["reliability", "fresh", "mechanism", "transfer", "cost"]


def test_threshold_defaults_are_the_standards():
    defaults = threshold_defaults()
    assert defaults["reliability"] == {"z": 2.0, "margin": 0.0, "min_subjects": 10, "min_seeds": 1, "alpha": 0.05}
    assert defaults["fresh"] == {"z": 2.0, "min_retention": 0.5, "max_shared_ngram": 8}
    assert defaults["transfer"] == {"z": 2.0, "min_retention": 0.5}
    assert defaults["cost"] == {"z": 2.0, "margin": 0.02}
    assert defaults["mechanism"]["shrinkage_max_off_direction"] == 0.15


def test_init_writes_a_template_that_validates_once_filled(tmp_path):
    runner = CliRunner()
    card = tmp_path / "card.yaml"
    result = runner.invoke(main, ["init", str(card)])
    assert result.exit_code == 0, result.output
    text = card.read_text()
    assert text.startswith("# yaml-language-server: $schema=/") and text.split("\n", 1)[0].endswith("/acard-1.0.schema.json")  # local: docs/editors.md
    # Unfilled, every TODO is a coded problem: never a silent pass.
    result = runner.invoke(main, ["validate", str(card), "--format", "json"])
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["problems"]
    assert problems and {p["code"] for p in problems} == {"card.placeholder"}
    live_todos = sum(line.count("TODO") for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert len(problems) == live_todos
    # Init refuses to overwrite.
    assert runner.invoke(main, ["init", str(card)]).exit_code == 2


def test_filled_template_validates_and_check_writes_digests_keeping_comments(tmp_path):
    card = tmp_path / "card.yaml"
    CliRunner().invoke(main, ["init", str(card)])
    (tmp_path / "evidence").mkdir()
    (tmp_path / "evidence" / "records.jsonl").write_text("{}\n")
    filled = card.read_text().replace("  - id: TODO", "  - id: c1", 1)
    replacements = {
        "id: TODO": "id: my-card", "title: TODO": "title: My card", "name: TODO": "name: Ada",
        "limitations: TODO": "limitations: Narrow.", "revision: TODO": "revision: abc123",
        "behavior: TODO": "behavior: refusal", "higher_score_means: TODO": "higher_score_means: safer",
        "audit: TODO": "audit: cue", "deploy: TODO": "deploy: none", "declared_mechanism: TODO": "declared_mechanism: projection",
        "family: TODO": "family: projection", "statement: TODO": "statement: It works.", "cells: [TODO]": "cells: [c1]",
        "outcome: TODO, observed: TODO": "outcome: pass, observed: projection", "outcome: TODO": "outcome: pass",
        "verdict: TODO": "verdict: supported",
    }
    for old, new in replacements.items():
        filled = filled.replace(old, new)
    filled = filled.replace("    task: TODO", "    task: qa", 1).replace("      task: TODO", "      task: other", 1)
    filled = filled.replace("  title: TODO", "  title: A paper", 1)
    card.write_text(filled)
    assert [line for line in filled.splitlines() if "TODO" in line and not line.lstrip().startswith("#")] == ["      sha256: TODO"]
    result = CliRunner().invoke(main, ["check", str(card), "--write-digests"])
    assert result.exit_code == 0, result.output
    rewritten = card.read_text()
    # Only the digest line changed: comments, order and layout are the author's.
    before, after = filled.splitlines(), rewritten.splitlines()
    assert len(before) == len(after)
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(changed) == 1 and changed[0][1].strip().startswith("sha256: ")
    assert load_card(card).data["evidence"]["records"][0]["sha256"] == changed[0][1].split()[-1]


@pytest.mark.parametrize("path", [VALID / "card.yaml", "template"])
def test_ruamel_round_trip_keeps_comments_and_key_order(path):
    text = card_template() if path == "template" else Path(path).read_text()
    yaml = round_trip_yaml()
    buffer = StringIO()
    yaml.dump(yaml.load(text), buffer)
    assert buffer.getvalue() == text


def test_load_card_exposes_thresholds_in_force():
    card = load_card(VALID / "card.yaml")
    claim = card.claims[0]
    assert card.thresholds("fresh")["min_retention"] == 0.5
    assert card.thresholds("fresh", claim)["min_retention"] == 0.4
    overrides = card.overrides()
    assert [(o["scope"], o["name"], o["value"], o["default"]) for o in overrides] == [("claim C1", "min_retention", 0.4, 0.5)]
    assert overrides[0]["justification"].startswith("Only eight")


def test_all_problems_are_collected_not_just_the_first(tmp_path):
    text = (VALID / "card.yaml").read_text()
    text = text.replace("version: 1", "version: zero").replace("coding_mode: strict", "coding_mode: loose").replace("cells: [demo/a]", "cells: [nope]")
    card = tmp_path / "card.yaml"
    card.write_text(text)
    with pytest.raises(AcardsError) as caught:
        load_card(card)
    assert {p.code for p in caught.value.problems} == {"schema.type", "schema.enum", "card.unknown-cell"}
    assert caught.value.exit_code == 2


def test_validate_works_from_another_folder_with_installed_resources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["validate", str(VALID / "card.yaml")])
    assert result.exit_code == 0, result.output
