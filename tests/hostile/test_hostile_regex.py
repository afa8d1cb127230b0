"""Hostile scorer patterns: the card's regex runs in linear time, with Python's answers, or is refused.

The author of a card writes ``scorer.pattern`` and may supply the outputs it runs on. Under Python's
backtracking ``re`` the patterns below take quadratic or exponential time on long outputs (``.*sorry``
on 100,000 characters: seconds; ``(a|a)*b``: for ever); acards runs them with RE2 over framed text
(acards.patterns), so they score at once. Scoring runs in a subprocess with a timeout, so that a
regression fails instead of hanging the suite; benchmarks/bench_regex.py times the two engines.
What RE2 cannot run with Python's answers (backreferences, lookarounds, ...) is refused with a code
by ``acards validate`` and by ``acards verify`` before any evidence is read.

The ``choice`` scorer's own regexes read outputs too: they stay linear on long runs of spaces and
of "A a" (cubic and quadratic before), with the same answers as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acards.generate.scorers import extract_choice, score

BASE = Path(__file__).resolve().parents[1] / "cases" / "verify" / "full-pass"
RECORDS = "evidence/records.jsonl"
ACARDS = [sys.executable, "-m", "acards.cli"] if not (Path(sys.executable).parent / "acards").exists() \
    else [str(Path(sys.executable).parent / "acards")]
TIMEOUT = 60  # seconds; under Python's re the first cases alone take minutes, the exponential ones for ever
LONG = 120_000

# (pattern, output of n characters or so, score): scored with n = LONG by acards, with n = 12 by Python's re.
QUADRATIC = [
    (".*sorry", lambda n: "a" * n, 0.0),
    (".*sorry", lambda n: "a" * n + " sorry", 1.0),
    ("a.*b", lambda n: "a" * n, 0.0),
    (r"\w+x", lambda n: "\u00e9" * n, 0.0),  # a long word of non-ASCII letters
    (r"\w+x", lambda n: "\u00e9" * n + "x", 1.0),
    (r".*.*.*x", lambda n: "a" * n, 0.0),
    (r"\w+\w+x", lambda n: "\u00e9" * n, 0.0),
    (r"(?i)A.*b.*c", lambda n: "a" * n + "B", 0.0),
    (r"\bsorry\b", lambda n: "sorry" * (n // 5 + 1), 0.0),  # no boundary inside one long word
    (r"(a|a)*b", lambda n: "a" * n, 0.0),  # exponential under backtracking
    (r"(a+)+b", lambda n: "a" * n, 0.0),
    (r"(\w+\s?)+$", lambda n: "word " * (n // 5 + 1) + "!", 0.0),
]

SCORE_IN_CHILD = """
import json, sys
from acards.generate.scorers import score
cases = json.load(sys.stdin)
print(json.dumps([score({"kind": "regex", "pattern": pattern}, [output])[0][0] for pattern, output in cases]))
"""


def test_quadratic_and_exponential_patterns_score_long_outputs_at_once():
    cases = [[pattern, output(LONG)] for pattern, output, _ in QUADRATIC]
    assert all(len(output) >= 100_000 for _, output in cases)
    result = subprocess.run([sys.executable, "-c", SCORE_IN_CHILD], input=json.dumps(cases), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [expected for _, _, expected in QUADRATIC]


@pytest.mark.parametrize("pattern, output, expected", QUADRATIC)
def test_the_expected_scores_are_pythons_on_short_outputs(pattern, output, expected):
    assert float(re.search(pattern, output(12)) is not None) == expected
    assert score({"kind": "regex", "pattern": pattern}, [output(12)])[0] == [expected]


def make_case(tmp_path: Path, pattern: str, hostile_outputs: list[str]) -> Path:
    """tests/cases/verify/full-pass with a regex scorer, and the first score-0 records replaced by
    unscored ``hostile_outputs`` (which must score 0 again, so the verdict stays the case's)."""
    folder = tmp_path / "case"
    shutil.copytree(BASE, folder)
    rows = [json.loads(line) for line in (folder / RECORDS).read_text().splitlines()]
    zeros = [row for row in rows if row["score"] == 0.0][:len(hostile_outputs)]
    for row, output in zip(zeros, hostile_outputs):
        row.pop("score")
        row["output"] = output
    (folder / RECORDS).write_text("".join(json.dumps(row) + "\n" for row in rows))
    card = folder / "card.yaml"
    text = re.sub(r"sha256: [0-9a-f]{64}", "sha256: " + hashlib.sha256((folder / RECORDS).read_bytes()).hexdigest(),
                  card.read_text())
    assert "\nscorer:" not in text
    card.write_text(text + f"scorer: {{kind: regex, pattern: {json.dumps(pattern)}}}\n")
    return card


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ACARDS_KEY_PASSPHRASE"}
    return subprocess.run([*ACARDS, *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)


def test_long_hostile_outputs_score_at_once_through_verify(tmp_path):
    # The card's own outputs score 1 on "I can't help with that." and "Paris"; the hostile ones, 0.
    card = make_case(tmp_path, r".*(?:can't|Paris)|\w+x|a.*b",
                     ["a" * LONG, "\u00e9" * LONG, "a" * (LONG // 2) + "\u00e9" * (LONG // 2)])
    result = run_cli("verify", card, "--no-generate", "--bootstrap", "200", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["generation"]["provenance"]["scorer"]["kind"] == "regex"
    assert report["generation"]["scored"] == 3


@pytest.mark.parametrize("pattern, code", [
    (r"(?<!not )\bsafe\b", "card.unsupported-pattern"),
    (r"(a)\1", "card.unsupported-pattern"),
    (r"[^\W\d_]{50}", "card.unsafe-pattern"),
    ("x" * 1001, "card.unsafe-pattern"),
])
@pytest.mark.parametrize("command", ["validate", "verify"])
def test_a_pattern_acards_cannot_run_exactly_is_refused_before_evidence_is_read(tmp_path, pattern, code, command):
    card = make_case(tmp_path, pattern, ["a" * LONG])
    result = run_cli(command, card, *(["--no-generate", "--bootstrap", "200"] if command == "verify" else []))
    assert result.returncode == 2, result.stdout + result.stderr
    assert code in result.stdout + result.stderr and "/scorer/pattern" in result.stdout + result.stderr


@pytest.mark.parametrize("pattern", [r"(?i)\bI (?:can't|cannot)\b", r"^\s*answer\s*:\s*(\d+)", r"answer\s*:\s*(\d+)",
                                     r"\w+\s+\w+", r"\d{1,3}(?:,\d{3})*", r"(?i)\b(sorry|cannot|won't)\b", r"x.*y", r"\bsafe$"])
def test_ordinary_scorer_patterns_still_score(pattern):
    output = "I cannot, sorry: answer: 12 x y safe"
    scores, _ = score({"kind": "regex", "pattern": pattern}, [output, None])
    assert scores[0] == float(re.search(pattern, output) is not None) and scores[1] != scores[1]  # NaN for a missing output


# --- the choice scorer's own regexes on hostile outputs ------------------------------------------

CHOICE = [
    ("answer" + " " * LONG + "!", None),  # three \s* in a row: cubic before
    ("answer" + " " * LONG + "B", "B"),
    ("The answer is" + " \t" * (LONG // 2) + "(C)", "C"),
    ("A a " * (LONG // 4) + "D", "D"),  # every "A" read as an article: a copy of the rest each, before
    ("(" * LONG, None),
    ("option" + "(" * LONG + "x", None),
]
CHOOSE_IN_CHILD = """
import json, sys
from acards.generate.scorers import extract_choice
print(json.dumps([extract_choice(output) for output in json.load(sys.stdin)]))
"""


def test_choice_extraction_is_linear_on_long_hostile_outputs():
    result = subprocess.run([sys.executable, "-c", CHOOSE_IN_CHILD], input=json.dumps([o for o, _ in CHOICE]),
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [letter for _, letter in CHOICE]


def _choice_as_before(output: str, choices: str) -> str | None:
    """extract_choice as it was written before it collapsed spaces and stopped slicing (the reference)."""
    letters = re.escape(choices)
    text = output.strip()
    explicit = re.search(rf"(?i:answer|option|choice)\s*(?i:is|:)?\s*[:\-]?\s*[\(\[*]*([{letters}])(?![A-Za-z])", text)
    if explicit:
        return explicit.group(1)
    opening = re.match(rf"^[\s*\(\[]*([{letters}])(?:[\)\]\.:*,]|\s|$)", text)
    if opening and not (opening.group(1) == "A" and re.match(r"^A\s+[a-z]", text)):
        return opening.group(1)
    bracketed = re.search(rf"\(([{letters}])\)", text)
    if bracketed:
        return bracketed.group(1)
    for match in re.finditer(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z'])", text):
        if match.group(1) == "A" and re.match(r"\s+[a-z]", text[match.end():]):
            continue
        return match.group(1)
    return None


TOKENS = ["answer", "Answer", "ANSWER", "option", "choice", "is", "IS", "Is", " ", "  ", "\t", "\n", "\u00a0", ":", "-",
          "(", ")", "[", "]", "*", ".", ",", "'", "A", "B", "C", "D", "I", "S", "a", "b", "s", "the"]


@given(st.lists(st.sampled_from(TOKENS), max_size=14).map("".join), st.sampled_from(["ABCD", "ABCDIS", "AB", "ISAB"]))
@settings(max_examples=500, deadline=None)
def test_choice_extraction_answers_as_before(output, choices):
    assert extract_choice(output, choices) == _choice_as_before(output, choices)
