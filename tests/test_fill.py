"""`acards fill`: recomputed values written into `reported` blocks, and nothing else in the card changed.

The cards are copies of examples/tiny-defense (real PEFT adapter folders, scored records) and of
the golden verify case `misreported` (a claim over two cells, written in JSON-style flow mappings).
Each filled card must then verify with exit 0 (`--no-generate`: the records carry their scores).
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.cli import main
from acards.numbers import number_text

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "examples" / "tiny-defense"
MISREPORTED = REPO / "tests" / "cases" / "verify" / "misreported"
B = "200"


def copy_card(source: Path, tmp_path: Path) -> Path:
    folder = tmp_path / source.name
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py", "expected.json"))
    return folder / "card.yaml"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout


def fill(card: Path, *more: str) -> tuple[int, str]:
    return run("fill", str(card), "--no-generate", "--bootstrap", B, *more)


def verify(card: Path) -> tuple[int, dict]:
    code, out = run("verify", str(card), "--no-generate", "--bootstrap", B, "--spot-check", "0", "--format", "json")
    return code, json.loads(out)


def reported_lines(text: str) -> set[int]:
    """0-based numbers of the lines inside the claims' `reported` blocks (block layout, as in the examples)."""
    lines, inside, indent = text.splitlines(), set(), None
    for number, line in enumerate(lines):
        stripped = line.lstrip(" ")
        if stripped.startswith("reported:"):
            indent, inside = len(line) - len(stripped), inside | {number}
        elif indent is not None and line.strip() and len(line) - len(stripped) > indent:
            inside.add(number)
        else:
            indent = None
    return inside


def changed_lines(before: str, after: str) -> set[int]:
    """0-based numbers of the lines of ``before`` that ``after`` replaced or deleted (same line count)."""
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(), autojunk=False)
    changed = set()
    for tag, a0, a1, b0, b1 in matcher.get_opcodes():
        if tag != "equal":
            assert tag == "replace" and a1 - a0 == b1 - b0, (tag, before.splitlines()[a0:a1], after.splitlines()[b0:b1])
            changed |= set(range(a0, a1))
    return changed


NUMBER = r"-?[0-9.]+(?:e-?[0-9]+)?"
C1_BLOCK = re.compile(r"    reported:\n(?:      .*\n)*?      verdict: supported\n")


def spoil(card: Path) -> str:
    """Replace reported values of tiny-defense by placeholders and wrong numbers; the spoiled text.
    (Written against the example's layout, not its numbers, which change with the standard it follows.)"""
    text = card.read_text()
    for pattern, new in [(rf"reduction: {NUMBER}, relative_reduction: {NUMBER}", "reduction: TODO, relative_reduction: 0.5"),
                         (rf"cost: {{outcome: pass, delta: {NUMBER}}}", "cost: {outcome: TODO, delta: 0.2}"),
                         (r"mechanism: \{outcome: fail, observed: shrinkage\}", "mechanism: {outcome: TODO, observed: TODO}"),
                         (r"      verdict: unsupported", "      verdict: TODO  # the paper's table 2")]:
        text, count = re.subn(pattern, new, text, count=1)
        assert count == 1, pattern
    card.write_text(text)
    return text


def test_filled_card_verifies_and_nothing_outside_reported_changes(tmp_path):
    card = copy_card(TINY, tmp_path)
    before = spoil(card)
    assert verify(card)[0] == 2  # TODO placeholders: the card is refused as it stands
    code, out = fill(card)
    assert code == 0, out
    after = card.read_text()
    assert verify(card)[0] == 0
    changed = changed_lines(before, after)
    assert changed and changed <= reported_lines(before)
    assert "      verdict: unsupported  # the paper's table 2" in after  # a comment on a filled line is kept
    assert re.search(r"reliability: \{outcome: pass, reduction: [0-9]\.[0-9]{1,3}, relative_reduction: [0-9]\.[0-9]{1,3}\}", after)
    assert "mechanism: {outcome: fail, observed: shrinkage}" in after


def test_fill_is_idempotent_and_reports_its_changes_as_json(tmp_path):
    card = copy_card(TINY, tmp_path)
    spoil(card)
    code, out = fill(card, "--format", "json")
    first = json.loads(out)
    assert code == 0 and first["claims"] == ["C1", "C2"]
    by_pointer = {c["pointer"]: c for c in first["changes"]}
    change = by_pointer["/claims/0/reported/reliability/reduction"]
    assert change["old"] == "TODO" and isinstance(change["new"], float) and change["new"] == round(change["new"], 3)
    assert by_pointer["/claims/1/reported/verdict"]["new"] == "unsupported"
    filled = card.read_bytes()
    code, out = fill(card, "--format", "json")
    assert code == 0 and json.loads(out)["changes"] == [] and card.read_bytes() == filled


def test_a_claim_without_reported_gets_a_block_and_only_lines_are_added(tmp_path):
    card = copy_card(TINY, tmp_path)
    before = C1_BLOCK.sub("", card.read_text(), count=1)
    assert before != card.read_text()
    card.write_text(before)
    code, _ = fill(card, "--claim", "C1")
    assert code == 0
    after = card.read_text()
    added = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:2] in ("+ ", "- ")]
    assert added == ["+     reported:", "+       reliability: {outcome: pass}", "+       fresh: {outcome: pass}",
                     "+       mechanism: {outcome: pass, observed: projection}", "+       transfer: {outcome: pass}",
                     "+       cost: {outcome: pass}", "+       verdict: supported"]
    assert verify(card)[0] == 0


def test_claim_option_fills_only_that_claim(tmp_path):
    card = copy_card(TINY, tmp_path)
    spoil(card)
    code, _ = fill(card, "--claim", "C2")
    assert code == 0
    after = card.read_text()
    assert "reduction: TODO, relative_reduction: 0.5" in after  # C1 untouched
    assert "mechanism: {outcome: fail, observed: shrinkage}" in after and "verdict: unsupported" in after


def test_unknown_claim_is_refused_and_nothing_is_written(tmp_path):
    card = copy_card(TINY, tmp_path)
    before = spoil(card)
    code, out = fill(card, "--claim", "C9", "--format", "json")
    problems = json.loads(out)["problems"]
    assert code == 2 and [p["code"] for p in problems] == ["fill.unknown-claim"]
    assert "C1, C2" in problems[0]["hint"] and card.read_text() == before


def test_multi_cell_claim_in_flow_style_keeps_its_quoting_and_then_verifies(tmp_path):
    card = copy_card(MISREPORTED, tmp_path)
    before = card.read_text()
    assert verify(card)[0] == 1  # as shipped, the case misreports
    code, _ = fill(card)
    assert code == 0
    after = card.read_text()
    assert verify(card)[0] == 0
    assert changed_lines(before, after) <= reported_lines(before)
    line = next(line for line in after.splitlines() if line.startswith('    reported: {"fresh"'))
    assert line.startswith('    reported: {"fresh": {"outcome": "pass"}, "verdict": "supported"')


def test_a_key_without_a_recomputed_value_is_refused_before_writing(tmp_path):
    card = copy_card(MISREPORTED, tmp_path)  # no checkpoints: the mechanism diagnostic computes no t_in
    text = card.read_text().replace('reported: {"reliability": {"outcome": "pass", "reduction": 0.396}',
                                    'reported: {"mechanism": {"outcome": "TODO", "t_in": 0.5}, '
                                    '"reliability": {"outcome": "pass", "reduction": 0.396}')
    card.write_text(text)
    code, out = fill(card, "--format", "json")
    problems = json.loads(out)["problems"]
    assert code == 2 and [p["code"] for p in problems] == ["fill.no-value"]
    assert problems[0]["location"]["pointer"] == "/claims/1/reported/mechanism/t_in"
    assert card.read_text() == text


def test_other_problems_of_the_card_still_stop_fill(tmp_path):
    card = copy_card(TINY, tmp_path)
    spoil(card)
    card.write_text(card.read_text().replace("title: A subspace", "title: TODO A subspace"))
    code, out = fill(card, "--format", "json")
    assert code == 2 and [p["code"] for p in json.loads(out)["problems"]] == ["card.placeholder"]


def test_crlf_line_ends_and_a_byte_order_mark_are_kept(tmp_path):
    card = copy_card(TINY, tmp_path)
    spoil(card)
    card.write_bytes(b"\xef\xbb\xbf" + card.read_bytes().replace(b"\n", b"\r\n"))
    code, _ = fill(card)
    assert code == 0
    raw = card.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\n") == raw.count(b"\r\n")
    assert b"reduction: TODO" not in raw and b"      verdict: unsupported  # the paper's table 2\r\n" in raw
    assert verify(card)[0] == 0


@pytest.mark.parametrize("value, text", [
    (0.31666666666666665, "0.317"), (-0.0025, "-0.0025"), (0.04375, "0.0437"), (2.0, "2"), (7, "7"),
    (0.000123456, "0.000123"), (-0.0, "0"), (123.45678, "123.457"), (0.5, "0.5"), (1e-12, "0.000000000001"),
])
def test_number_text(value, text):
    assert number_text(value) == text


@pytest.mark.parametrize("value", [0.0004999, 0.31666, -2.71828, 1234.56789, 1e-9, 0.999999])
def test_written_numbers_are_well_within_the_reproduction_tolerance(value):
    assert abs(float(number_text(value)) - value) <= 0.0005


@pytest.mark.parametrize("block, code", [("reported: {}", "fill.empty-block"), ("reported: TODO", "fill.empty-block"),
                                         ("reported:", "schema.type")])  # null is not a block: the schema says so
def test_a_reported_block_without_keys_is_refused(tmp_path, block, code):
    card = copy_card(TINY, tmp_path)
    card.write_text(C1_BLOCK.sub(f"    {block}\n", card.read_text(), count=1))
    status, out = fill(card, "--format", "json")
    problems = json.loads(out)["problems"]
    assert status == 2 and [p["code"] for p in problems] == [code]
    assert problems[0]["location"]["pointer"] == "/claims/0/reported"
