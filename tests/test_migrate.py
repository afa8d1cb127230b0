"""`acards migrate` on real cards, copied to a temporary folder, through the CLI; and `acards init`
writing a standard 1.1 card.

The card is the golden verify case `full-pass` (two training seeds, scored records, no model needed,
`--no-generate`): valid under 1.0, where every claim is supported; under 1.1 its two seeds are
fewer than min_seeds = 3, so D1, D2 and D4 become insufficient (too-few-seeds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.card.edit import set_standard
from acards.card.model import load_card
from acards.card.yaml import parse_yaml
from acards.cli import main

CASE = Path(__file__).resolve().parent / "cases" / "verify" / "full-pass"
FAST = ["--no-generate", "--bootstrap", "200"]


@pytest.fixture
def card(tmp_path) -> Path:
    shutil.copytree(CASE, tmp_path / "case")
    return tmp_path / "case" / "card.yaml"


def invoke(*args: str):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def only_version_line_differs(before: bytes, after: bytes) -> None:
    old, new = before.split(b"\n"), after.split(b"\n")
    assert len(old) == len(new)
    changed = [(a, b) for a, b in zip(old, new) if a != b]
    assert changed == [(b'acard: "1.0"', b'acard: "1.1"')]


def test_migrate_rewrites_the_version_alone_and_says_which_verdicts_change(card):
    original = card.read_bytes()
    result = invoke("migrate", card, *FAST)
    assert result.exit_code == 0, result.output
    only_version_line_differs(original, card.read_bytes())
    assert load_card(card).standard == "1.1"
    out = result.output
    # plainly: the seeds, the reason, and that nothing is lowered silently
    assert "2 undefended and 2 defended seeds, min_seeds = 3" in out
    assert "migrate never lowers it for you" in out
    assert "claim C1: supported → insufficient" in out
    assert "c1 reliability: pass → insufficient (too-few-seeds)" in out
    assert "update its `reported` block" in out
    assert "2 verdicts change" in out


def test_migrate_json_agrees_with_verify_on_the_migrated_card(card):
    """Same recompute path: the 1.1 verdicts migrate predicts are those verify then finds."""
    result = invoke("migrate", card, "--format", "json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert (document["from"], document["to"], document["written"]) == ("1.0", "1.1", str(card))
    assert document["verdicts_change"] is True
    assert document["too_few_seeds"] == [{"cell": "c1", "seeds_undefended": 2, "seeds_defended": 2, "min_seeds": 3,
                                          "diagnostics": ["reliability", "fresh", "transfer"]}]
    changes = {(c["what"], c["claim"], c["cell"], c["diagnostic"]): c for c in document["changes"]}
    assert changes[("outcome", None, "c1", "reliability")]["reasons"] == ["too-few-seeds"]
    assert changes[("verdict", "C1", None, None)]["after"] == "insufficient"
    verified = invoke("verify", card, "--format", "json", "--spot-check", "0", *FAST)
    assert verified.exit_code == 1  # the card still reports the 1.0 verdicts
    report = json.loads(verified.stdout)
    assert report["settings"]["standard"] == "1.1"
    assert {c["id"]: c["verdict"] for c in report["claims"]} == {c["id"]: c["verdict_after"] for c in document["claims"]}


def test_check_writes_nothing_and_output_writes_elsewhere(card, tmp_path):
    original = card.read_bytes()
    result = invoke("migrate", card, "--check", *FAST)
    assert result.exit_code == 0, result.output
    assert "--check: nothing written" in result.output and "claim C1: supported → insufficient" in result.output
    assert card.read_bytes() == original
    target = tmp_path / "migrated.yaml"
    result = invoke("migrate", card, "-o", target, *FAST)
    assert result.exit_code == 0, result.output
    assert card.read_bytes() == original
    only_version_line_differs(original, target.read_bytes())
    # an existing output is kept unless --force; --check and -o together are refused
    for args, code in ((["-o", target], "usage.exists"), (["--check", "-o", tmp_path / "x.yaml"], "usage.conflict")):
        result = invoke("migrate", card, "--format", "json", *args, *FAST)
        assert result.exit_code == 2
        assert [p["code"] for p in json.loads(result.stdout)["problems"]] == [code]
    assert invoke("migrate", card, "-o", target, "--force", *FAST).exit_code == 0


@pytest.mark.parametrize("version, code", [('"1.1"', "card.already-current"), ('"2.0"', "card.unknown-version")])
def test_a_card_at_1_1_or_an_unknown_version_is_refused_with_a_code(card, version, code):
    card.write_text(card.read_text().replace('acard: "1.0"', f"acard: {version}"))
    before = card.read_bytes()
    result = invoke("migrate", card, "--format", "json", *FAST)
    assert result.exit_code == 2
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["code"] == code and problem["location"]["pointer"] == "/acard"
    assert card.read_bytes() == before


def test_a_threshold_that_restated_the_1_0_default_is_not_lowered_silently(card):
    """`min_seeds: 1` needs no justification under 1.0 (its default) but does under 1.1: refused, unwritten."""
    text = card.read_text().replace("evidence:\n", "thresholds:\n  reliability: {min_seeds: 1}\nevidence:\n", 1)
    card.write_text(text)
    assert load_card(card).standard == "1.0"
    result = invoke("migrate", card, "--format", "json", *FAST)
    assert result.exit_code == 2
    [problem] = json.loads(result.stdout)["problems"]
    assert problem["code"] == "card.unjustified-override"
    assert problem["message"].startswith("under standard 1.1: ")
    assert card.read_text() == text


def test_a_justified_lower_min_seeds_is_kept_and_no_seed_shortfall_is_reported(card):
    text = card.read_text().replace(
        "evidence:\n", "thresholds:\n  reliability:\n    min_seeds: 2\n    justification: two runs fit the budget\nevidence:\n", 1)
    card.write_text(text)
    result = invoke("migrate", card, "--format", "json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["too_few_seeds"] == []
    assert not any("too-few-seeds" in c["reasons"] for c in document["changes"])
    assert load_card(card).thresholds("reliability")["min_seeds"] == 2


def test_comments_bom_and_crlf_survive_an_in_place_migration(card):
    """A card saved on Windows (BOM, CRLF) with comments everywhere, the version line's own included."""
    text = card.read_text().replace('acard: "1.0"', 'acard: "1.0"   # written for 1.0')
    text = text.replace("cells:\n", "# the cells\ncells:  # two comments\n", 1)
    original = b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8")
    card.write_bytes(original)
    mode = 0o640
    card.chmod(mode)
    result = invoke("migrate", card, *FAST)
    assert result.exit_code == 0, result.output
    migrated = card.read_bytes()
    assert migrated == original.replace(b'acard: "1.0"   # written for 1.0', b'acard: "1.1"   # written for 1.0')
    assert card.stat().st_mode & 0o777 == mode
    assert load_card(card).standard == "1.1"


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
@pytest.mark.parametrize("written, expected", [('"1.0"', '"1.1"'), ("'1.0'", "'1.1'")])
def test_set_standard_keeps_every_other_byte(line_end, written, expected):
    """Comments (also on the version's own line), flow style, quoting and line ends stay."""
    lines = ["# a header comment", "id: x  # trailing", f"acard: {written}   # the version, kept", "",
             "thresholds: {reliability: {z: 2.0}}  # flow", "  # an indented comment", "title: 'quoted'"]
    text = line_end.join(lines) + line_end
    _, source = parse_yaml(text, "card.yaml")
    migrated = set_standard(text, source, "1.1")
    assert migrated == text.replace(f"acard: {written}", f"acard: {expected}")
    assert parse_yaml(migrated, "card.yaml")[0]["acard"] == "1.1"


def test_init_writes_a_1_1_card_whose_comments_give_the_1_1_defaults(tmp_path):
    path = tmp_path / "card.yaml"
    assert invoke("init", path).exit_code == 0
    text = path.read_text()
    assert 'acard: "1.1"' in text.splitlines()
    assert "#   reliability: {z: 2.0, margin: 0.0, min_subjects: 10, min_seeds: 3}" in text
    assert "too-few-seeds" in text
    # unfilled, only placeholders are reported (a TODO mechanism is not also "unobservable")
    result = invoke("validate", path, "--format", "json")
    assert result.exit_code == 2
    assert {p["code"] for p in json.loads(result.stdout)["problems"]} == {"card.placeholder"}
    # filled in, it validates as a 1.1 card, and migrate refuses it
    filled = text.replace("  - id: TODO", "  - id: c1", 1).replace("    task: TODO", "    task: qa", 1)
    filled = filled.replace("      task: TODO", "      task: other", 1).replace("  title: TODO", "  title: A paper", 1)
    for old, new in {"outcome: TODO, observed: TODO": "outcome: pass, observed: shrinkage", "outcome: TODO": "outcome: pass",
                     "sha256: TODO": "sha256: " + "a" * 64, "cells: [TODO]": "cells: [c1]", "verdict: TODO": "verdict: supported",
                     "declared_mechanism: TODO": "declared_mechanism: shrinkage", "id: TODO": "id: my-card",
                     "higher_score_means: TODO": "higher_score_means: safer"}.items():
        filled = filled.replace(old, new)
    filled = "\n".join(line.replace("TODO", "x") if not line.lstrip().startswith("#") else line for line in filled.splitlines())
    path.write_text(filled + "\n")
    result = invoke("validate", path, "--format", "json")
    assert result.exit_code == 0, result.output
    assert load_card(path).standard == "1.1"
    result = invoke("migrate", path, "--format", "json", *FAST)
    assert result.exit_code == 2 and json.loads(result.stdout)["problems"][0]["code"] == "card.already-current"
