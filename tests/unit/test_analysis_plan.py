"""The analysis plan of a card and the deviations from it (acards.card.analysis_plan): pure, so
each kind of deviation is checked on card data directly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from acards.canonical import canonical_bytes
from acards.card.analysis_plan import analysis_plan, deviations, subjects_digest
from acards.card.model import load_card

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tiny-defense" / "card.yaml"
SUBJECTS = {"heldout": ["s-01", "s-02", "s-03"], "fresh": ["f-01", "f-02"]}


@pytest.fixture(scope="module")
def card_data() -> dict:
    return load_card(EXAMPLE).data


def kinds(planned: dict, actual: dict) -> list[tuple[str, str, object, object]]:
    return [(d.kind, d.pointer, d.planned, d.actual) for d in deviations(planned, actual)]


def test_the_plan_is_canonical_json_and_the_same_for_the_same_card(card_data):
    first = analysis_plan(card_data, SUBJECTS)
    again = analysis_plan(copy.deepcopy(card_data), {k: list(reversed(v)) for k, v in SUBJECTS.items()})
    assert canonical_bytes(first) == canonical_bytes(again)
    assert first["card"] == {"id": "tiny-defense", "standard": "1.1"}
    assert first["claims"]["C1"]["requires"] == sorted(["reliability", "fresh", "mechanism", "transfer", "cost"])
    assert first["claims"]["C2"]["thresholds"]["reliability"]["z"] == 2.0  # the default in force
    assert first["cells"]["projection/top2"]["seeds"] == [0, 1, 2]
    assert first["splits"]["heldout"] == {"count": 3, "sha256": subjects_digest(SUBJECTS["heldout"]),
                                          "subjects": SUBJECTS["heldout"]}
    assert deviations(first, again) == []


def test_evidence_and_reported_numbers_are_not_in_the_plan(card_data):
    """What only exists once the experiment ran changes nothing."""
    later = copy.deepcopy(card_data)
    later["evidence"]["records"][0]["sha256"] = "0" * 64
    later["cells"][0]["checkpoints"]["seeds"][0]["defended"]["sha256"] = "1" * 64
    later["claims"][0]["reported"]["reliability"]["reduction"] = 0.5
    later["title"], later["version"] = "Another title", 7
    assert deviations(analysis_plan(card_data, SUBJECTS), analysis_plan(later, SUBJECTS)) == []


def test_a_moved_threshold_names_both_values(card_data):
    later = copy.deepcopy(card_data)
    later["claims"][0]["thresholds"] = {"reliability": {"z": 2.5, "justification": "tighter"}}
    found = kinds(analysis_plan(card_data), analysis_plan(later))
    assert found == [("threshold-moved", "/claims/C1/thresholds/reliability/z", 2.0, 2.5)]


def test_a_card_wide_threshold_moves_it_for_every_claim(card_data):
    later = copy.deepcopy(card_data)
    later["thresholds"] = {"fresh": {"min_retention": 0.4, "justification": "looser"}}
    found = kinds(analysis_plan(card_data), analysis_plan(later))
    assert [(kind, pointer) for kind, pointer, _, _ in found] == [
        ("threshold-moved", "/claims/C1/thresholds/fresh/min_retention"),
        ("threshold-moved", "/claims/C2/thresholds/fresh/min_retention")]


def test_a_subject_added_and_one_dropped(card_data):
    later = {"heldout": ["s-01", "s-02", "s-04"], "fresh": SUBJECTS["fresh"]}
    found = kinds(analysis_plan(card_data, SUBJECTS), analysis_plan(card_data, later))
    assert found == [("subject-added", "/splits/heldout/subjects", None, "s-04"),
                     ("subject-dropped", "/splits/heldout/subjects", "s-03", None)]


def test_private_subjects_are_compared_by_digest_and_count(card_data):
    planned = analysis_plan(card_data, SUBJECTS, private_subjects=True)
    assert "subjects" not in planned["splits"]["heldout"]
    assert deviations(planned, analysis_plan(card_data, SUBJECTS)) == []  # the card's own subjects are hidden to compare
    later = {"heldout": ["s-01", "s-02", "s-03", "s-04"], "fresh": SUBJECTS["fresh"]}
    found = kinds(planned, analysis_plan(card_data, later))
    assert [kind for kind, *_ in found] == ["subjects-changed", "subjects-changed"]  # count and digest
    assert found[0][2:] == (3, 4)


def test_a_split_added(card_data):
    later = {**SUBJECTS, "transfer": ["t-01"]}
    found = kinds(analysis_plan(card_data, SUBJECTS), analysis_plan(card_data, later))
    assert [(kind, pointer) for kind, pointer, _, _ in found] == [("split-added", "/splits/transfer")]


def test_a_claim_added_and_a_claim_dropped(card_data):
    later = copy.deepcopy(card_data)
    dropped = later["claims"].pop(1)
    later["claims"].append({**dropped, "id": "C3"})
    found = kinds(analysis_plan(card_data), analysis_plan(later))
    assert [(kind, pointer) for kind, pointer, _, _ in found] == [("claim-dropped", "/claims/C2"), ("claim-added", "/claims/C3")]
    assert found[0][2]["statement"] == dropped["statement"] and found[0][3] is None
    assert found[1][2] is None and found[1][3]["cells"] == ["shrinkage/half"]


def test_a_claim_that_now_requires_less_or_says_more(card_data):
    later = copy.deepcopy(card_data)
    later["claims"][0]["requires"] = ["reliability"]
    later["claims"][1]["statement"] = "Something else."
    found = kinds(analysis_plan(card_data), analysis_plan(later))
    assert [(kind, pointer) for kind, pointer, _, _ in found] == [
        ("diagnostics-changed", "/claims/C1/requires"), ("claim-changed", "/claims/C2/statement")]


def test_a_seed_changed(card_data):
    later = copy.deepcopy(card_data)
    later["cells"][0]["checkpoints"]["seeds"][2]["seed"] = 7
    found = kinds(analysis_plan(card_data), analysis_plan(later))
    assert found == [("seed-changed", "/cells/projection~1top2/seeds", [0, 1, 2], [0, 1, 7])]


def test_a_scorer_changed(card_data):
    later = copy.deepcopy(card_data)
    later["scorer"] = {"kind": "regex", "pattern": "(?i)cannot"}
    found = kinds(analysis_plan(card_data), analysis_plan(later))
    assert ("scorer-changed", "/scorers/scorer/kind", "refusal-keywords", "regex") in found
    assert {kind for kind, *_ in found} == {"scorer-changed"}


def test_the_prompts_digest_changed(card_data):
    planned = copy.deepcopy(card_data)
    planned["evidence"]["prompts"] = {"path": "evidence/prompts.jsonl", "sha256": "a" * 64}
    later = copy.deepcopy(planned)
    later["evidence"]["prompts"]["sha256"] = "b" * 64
    found = kinds(analysis_plan(planned), analysis_plan(later))
    assert found == [("prompts-changed", "/prompts/sha256", "a" * 64, "b" * 64)]


def test_mechanism_coding_mode_cell_and_card_changes(card_data):
    later = copy.deepcopy(card_data)
    later["cells"][1]["declared_mechanism"] = "shrinkage"
    later["coding_mode"] = "permissive"
    later["id"] = "another-card"
    later["cells"].append({**copy.deepcopy(later["cells"][0]), "id": "new/cell"})
    found = {(kind, pointer) for kind, pointer, _, _ in kinds(analysis_plan(card_data), analysis_plan(later))}
    assert {("mechanism-changed", "/cells/shrinkage~1half/declared_mechanism"), ("coding-mode-changed", "/coding_mode"),
            ("card-changed", "/card/id"), ("cell-added", "/cells/new~1cell")} <= found
    assert ("coding-mode-changed", "/cells/projection~1top2/coding_mode") in found  # the mode in force per cell too
