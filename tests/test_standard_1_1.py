"""`acard: "1.1"` end to end (SPEC §10.1, §10.2, §10.10): the card version selects the rules, 1.0
cards keep theirs, and the report says which ran.  Real cards and records (tests/simulate.py), the
real verify path and the report schema; no model is needed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from simulate import CellSpec, build_card

from acards.card.model import load_card
from acards.cli import main
from acards.errors import AcardsError
from acards.pipeline.verify import verify
from acards.report.model import as_builtins
from acards.schemas import validator

NEW = {"df", "critical_value", "seed_spread", "seed_noise", "seed_variance", "se_gap_undefended_total", "df_gap",
       "critical_value_gap"}


def report_of(card, **kwargs):
    report = as_builtins(verify(card, bootstrap=200, generate=False, use_cache=False, **kwargs))
    validator("report-1.0").validate(json.loads(json.dumps(report)))
    return report


def test_a_1_1_card_runs_the_1_1_rules_and_says_so(tmp_path):
    card = build_card(tmp_path, [CellSpec(id="a", seeds=(0, 1, 2))], acard="1.1")
    report = report_of(card)
    assert report["settings"]["standard"] == "1.1"
    d = report["cells"][0]["diagnostics"]
    for name in ("reliability", "fresh", "transfer"):
        assert NEW <= set(d[name]["estimates"]), name
        assert d[name]["thresholds"]["min_seeds"] == 3
        assert d[name]["details"]["interval"] == "t" and "low" in d[name]["details"]["bootstrap"]
        assert d[name]["estimates"]["ci_mc_error"] is None
    assert d["reliability"]["outcome"] == "pass"
    assert {"df", "critical_value", "se_cluster"} <= set(d["cost"]["estimates"])


def test_the_same_evidence_as_a_1_0_card_verifies_as_before(tmp_path):
    card = build_card(tmp_path, [CellSpec(id="a", seeds=(0, 1, 2))])
    report = report_of(card)
    assert "standard" not in report["settings"]
    d = report["cells"][0]["diagnostics"]
    assert not NEW & set(d["reliability"]["estimates"])
    assert "min_seeds" not in d["fresh"]["thresholds"] and d["reliability"]["thresholds"]["min_seeds"] == 1
    assert "interval" not in d["reliability"]["details"]


def test_one_seed_is_too_few_under_1_1_and_a_justified_claim_may_lower_it(tmp_path):
    claims = [{"id": "C1", "statement": "It works.", "cells": ["a"]},
              {"id": "C2", "statement": "It works on one seed.", "cells": ["a"],
               "thresholds": {"reliability": {"min_seeds": 1, "justification": "one training run is all we could afford"}}}]
    card = build_card(tmp_path, [CellSpec(id="a", seeds=(0,))], claims=claims, acard="1.1")
    report = report_of(card)
    d = report["cells"][0]["diagnostics"]
    for name in ("reliability", "fresh", "transfer"):
        assert d[name]["outcome"] == "insufficient"
        assert "too-few-seeds" in {r["code"] for r in d[name]["reasons"]}
    c1, c2 = report["claims"]
    assert c1["verdict"] == "insufficient"
    assert c2["outcomes"]["a"]["reliability"] == "pass"  # the claim's own thresholds
    assert c2["thresholds"]["fresh"]["min_seeds"] == 1  # one setting for D1, D2 and D4
    assert c2["outcomes"]["a"]["fresh"] == "pass" and c2["outcomes"]["a"]["transfer"] == "pass"


def test_min_seeds_defaults_follow_the_card_version(tmp_path):
    for version, default in (("1.0", 1), ("1.1", 3)):
        card = load_card(build_card(tmp_path / version, [CellSpec(id="a")], acard=version))
        assert card.standard == version
        assert card.thresholds("reliability")["min_seeds"] == default


def test_lowering_min_seeds_needs_a_justification_only_where_it_is_an_override(tmp_path):
    th = {"reliability": {"min_seeds": 1}}
    assert load_card(build_card(tmp_path / "a", [CellSpec(id="a")], thresholds=th)).overrides() == []  # 1 is 1.0's default
    with pytest.raises(AcardsError) as error:
        load_card(build_card(tmp_path / "b", [CellSpec(id="a")], thresholds=th, acard="1.1"))
    assert [p.code for p in error.value.problems] == ["card.unjustified-override"]
    justified = {"reliability": {"min_seeds": 1, "justification": "single-seed pilot"}}
    card = load_card(build_card(tmp_path / "c", [CellSpec(id="a")], thresholds=justified, acard="1.1"))
    assert [(o["name"], o["value"], o["default"]) for o in card.overrides()] == [("min_seeds", 1, 3)]


def test_an_unquoted_1_1_is_refused_with_the_quoting_hint(tmp_path):
    path = build_card(tmp_path, [CellSpec(id="a")])
    path.write_text(path.read_text().replace('"acard": "1.0"', '"acard": 1.1'))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "schema.const" in result.output and 'acard: "1.1"' in result.output
    path.write_text(path.read_text().replace('"acard": 1.1', '"acard": "1.2"'))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "card.unknown-version" in result.output
