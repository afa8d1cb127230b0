"""`acards badge` (acards/present/badge.py) and `acards render --format latex` (acards/present/latex.py).

Golden snapshots in tests/snapshots/ (ACARDS_UPDATE_SNAPSHOTS=1 regenerates them; review the diff).
The LaTeX appendix is compiled with pdflatex where it is installed.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.card.model import load_card
from acards.cli import main
from acards.pipeline.verify import verify
from acards.present.badge import BadgeFacts, badge_facts, badge_svg, preregistration_state, segments, text_width
from acards.present.latex import latex_escape, render_latex
from acards.report.model import as_builtins, from_builtins

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-defense"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("ACARDS_UPDATE_SNAPSHOTS") == "1"
SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>\"' &amp; \u202eevil\u202c \x07 ]]> {\\input{/etc/passwd}} $x^2$ 100% #1 ~_ --"


def _quiet(value):
    """Floats below 1e-7 as 0 (machine-dependent noise), as tests/test_render.py does."""
    if isinstance(value, dict):
        return {k: _quiet(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quiet(v) for v in value]
    return 0.0 if isinstance(value, float) and abs(value) < 1e-7 else value


@pytest.fixture(scope="module")
def example():
    card = EXAMPLE / "card.yaml"
    report = from_builtins(_quiet(as_builtins(verify(card, bootstrap=200, use_cache=False, generate=False, spot_check=0))))
    return load_card(card).data, report


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        path.write_bytes(text.encode("utf-8"))
        return
    assert path.exists(), f"no snapshot {name}: run with ACARDS_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_bytes().decode("utf-8")
    if text != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), name, "rendered"))[:60])
        pytest.fail(f"{name} differs from its snapshot:\n{diff}")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], env={"ACARDS_KEY_PASSPHRASE": None})


# --- the badge ------------------------------------------------------------------------------------


FACTS = BadgeFacts(card_id="tiny-defense", version=1, cells=2, strict_passes=1, permissive_passes=1, reproduced=True)


def test_badge_snapshot(example):
    facts = badge_facts(example[1])
    assert facts == FACTS  # the example: one of two cells passes the full card, no attestation, no pre-registration
    check_snapshot("badge.svg", badge_svg(facts))


@pytest.mark.parametrize(("change", "words", "colour"), [
    ({}, ["full card 1/2 strict · 1/2 permissive", "reproduced by 0", "not pre-registered"], "#c65200"),
    ({"strict_passes": 2, "permissive_passes": 2}, ["full card 2/2 strict"], "#2e7d32"),
    ({"strict_passes": 1, "permissive_passes": 2}, ["full card 1/2 strict · 2/2 permissive"], "#8a8c12"),
    ({"strict_passes": 0, "permissive_passes": 0}, ["full card 0/2 strict"], "#c62828"),
    ({"reproduced": False}, ["numbers not reproduced"], "#c62828"),
    ({"reproductions": 3}, ["reproduced by 3"], "#0063a6"),
    ({"preregistration": "matched"}, ["pre-registered"], "#0063a6"),
    ({"preregistration": "deviated"}, ["deviates from its pre-registration"], "#c62828"),
    ({"state": "superseded"}, ["superseded"], "#767676"),
])
def test_badge_says_the_verdict_reproductions_and_preregistration(change, words, colour):
    svg = badge_svg(replace(FACTS, **change))
    root = ET.fromstring(svg)
    shown = [t.text for t in root.iter(f"{SVG}text")][1::2]
    for word in words:
        assert any(word in text for text in shown), (word, shown)
    assert colour in [r.get("fill") for r in root.iter(f"{SVG}rect")]


def test_preregistration_state_reads_report_data_and_typed_reports(example):
    assert preregistration_state(example[1]) is None  # the example names no pre-registration (the field is UNSET)
    assert preregistration_state(as_builtins(example[1])) is None
    block = {"entry": "e" * 64, "logged_at": None, "matched": True, "deviations": [], "source": "card folder", "signers": []}
    assert preregistration_state({"preregistration": block}) == "matched"
    assert preregistration_state({"preregistration": {**block, "matched": False}}) == "deviated"
    typed = from_builtins({**as_builtins(example[1]), "preregistration": {**block, "matched": False}})
    assert preregistration_state(typed) == "deviated"


def test_a_report_with_no_preregistration_badges_as_not_pre_registered(example):
    """msgspec's UNSET (the typed report's "not given") is not a deviation: it reads as no
    pre-registration, as does report data without the field or with null."""
    from msgspec import UNSET

    from acards.present.badge import preregistration_block

    report = example[1]
    assert report.preregistration is UNSET
    data = as_builtins(report)
    for given in (report, data, {**data, "preregistration": None}):
        assert preregistration_block(given) is None and preregistration_state(given) is None
    facts = badge_facts(report)
    assert facts.preregistration is None
    shown = [text for text, _ in segments(facts)]
    assert "not pre-registered" in shown and not any("deviates" in text for text in shown), shown
    assert "not pre-registered" in badge_svg(facts)


def test_a_revoked_card_says_only_revoked():
    shown = [text for text, _ in segments(replace(FACTS, state="revoked", reproductions=5, preregistration="matched"))]
    assert shown == ["acceptance card tiny-defense v1", "revoked"]


def test_badge_escapes_a_hostile_card_id_and_stays_one_plain_svg():
    svg = badge_svg(replace(FACTS, card_id=HOSTILE))
    root = ET.fromstring(svg)  # well-formed XML: nothing the id holds closed an element or a CDATA section
    tags = {element.tag.removeprefix(SVG) for element in root.iter()}
    assert tags <= {"svg", "title", "g", "rect", "text"}
    assert "<script" not in svg and "\x07" not in svg and "\u202e" not in svg
    assert not re.search(r"\b(href|on\w+|style)=", svg) and "url(" not in svg and "@import" not in svg
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert texts[0].startswith("acceptance card <script>alert(1)</script>\"' &amp; [U+202E]")
    assert texts[0].endswith("…") and len(texts[0]) == 60  # a long id is cut; the title keeps it
    assert "{\\input{/etc/passwd}}" in root.find(f"{SVG}title").text


def test_badge_width_follows_its_text():
    short, long = badge_svg(FACTS), badge_svg(replace(FACTS, card_id="a-much-longer-card-identifier"))
    width = lambda svg: float(ET.fromstring(svg).get("width"))  # noqa: E731
    assert width(long) - width(short) == pytest.approx(text_width("a-much-longer-card-identifier") - text_width("tiny-defense"), abs=0.2)
    assert text_width("mmm") > text_width("iii")


def test_badge_cli_from_a_card_and_its_report(example, tmp_path):
    report = tmp_path / "report.json"
    assert invoke("verify", EXAMPLE / "card.yaml", "--no-generate", "--bootstrap", 200, "--report", report).exit_code == 0
    result = invoke("badge", EXAMPLE / "card.yaml", "--report", report, "-o", tmp_path / "out" / "card.svg")
    assert result.exit_code == 0, result.output
    from_report = (tmp_path / "out" / "card.svg").read_text()
    assert "full card 1/2 strict" in from_report
    verified_now = invoke("badge", EXAMPLE / "card.yaml")  # no --report: verified now, without generating
    assert verified_now.exit_code == 0, verified_now.output
    assert verified_now.output == from_report
    conflict = invoke("badge", "0" * 64, "--report", report, "--registry", tmp_path)
    assert conflict.exit_code == 2 and "usage.conflict" in conflict.output


def test_badge_cli_from_a_registry_entry_shows_revocation(tmp_path):
    def ok(*args):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        return result.output

    ok("key", "new", "--out", tmp_path / "author.key", "--no-passphrase")
    ok("key", "new", "--out", tmp_path / "registry.key", "--no-passphrase")
    registry = tmp_path / "registry"
    ok("registry", "init", registry, "--origin", "badge.test/r", "--key", tmp_path / "registry.key")
    ok("registry", "trust", registry, tmp_path / "author.key.pub")
    folder = tmp_path / "card"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.envelope.json", "__pycache__"))
    ok("verify", folder / "card.yaml", "--bootstrap", 200, "--no-generate", "--report", tmp_path / "report.json")
    ok("sign", folder / "card.yaml", "--key", tmp_path / "author.key", "--report", tmp_path / "report.json")
    published = ok("publish", folder / "card.envelope.json", "--registry", registry, "--key", tmp_path / "registry.key")
    digest = re.search(r"digest ([0-9a-f]{64})", published)[1]
    current = ok("badge", digest, "--registry", registry)
    assert "full card 1/2 strict" in current and "reproduced by 0" in current
    # A reviewer recomputes the signed card and logs a `reproduced` attestation: the badge counts it.
    ok("key", "new", "--out", tmp_path / "reviewer.key", "--no-passphrase")
    ok("registry", "trust", registry, tmp_path / "reviewer.key.pub")
    envelope = folder / "card.envelope.json"
    ok("verify", folder / "card.yaml", "--bootstrap", 200, "--no-generate", "--envelope", envelope,
       "--trusted-key", tmp_path / "author.key.pub", "--report", tmp_path / "reviewed.json")
    ok("attest", envelope, "--report", tmp_path / "reviewed.json", "--key", tmp_path / "reviewer.key",
       "--trusted-key", tmp_path / "author.key.pub", "-o", tmp_path / "card.attestation.intoto.jsonl")
    ok("publish", tmp_path / "card.attestation.intoto.jsonl", "--registry", registry, "--key", tmp_path / "registry.key",
       "--report", tmp_path / "reviewed.json")
    assert "reproduced by 1" in ok("badge", digest, "--registry", registry)
    ok("registry", "revoke", registry, digest, "--reason", "wrong split", "--key", tmp_path / "registry.key")
    revoked = ok("badge", digest, "--registry", registry)
    assert ">revoked</text>" in revoked and "full card" not in revoked
    unknown = invoke("badge", "f" * 64, "--registry", registry)
    assert unknown.exit_code == 2 and "registry.unknown-digest" in unknown.output


# --- the LaTeX appendix ---------------------------------------------------------------------------


def test_latex_snapshot(example):
    check_snapshot("example.tex", render_latex(*example))


def test_latex_explains_the_clipped_mark_exactly_when_it_prints_one(example):
    """† after an interval end is explained, in the HTML and Markdown pages' words (one home:
    acards.present.render.clip_note), and only when a Δ interval is cut back."""
    from acards.present.render import clip_note

    note = latex_escape(clip_note())
    plain = render_latex(*example)
    assert r"\dag{}" not in plain and note not in plain  # the example clips nothing
    data = as_builtins(example[1])
    data["cells"][0]["diagnostics"]["transfer"]["estimates"]["se_total"] = 10.0  # Δ ± z·10 runs past [−1, 1]
    clipped = render_latex(example[0], from_builtins(data))
    assert clipped.count(r"\dag{}") >= 2 and note in clipped
    assert clipped.index(r"\dag{}") < clipped.index(note)  # the mark in the table, its note in the caption
    assert "reduction (scores lie in [0, 1])." in clip_note()


def test_latex_escape_leaves_no_command_and_no_unknown_character():
    text = latex_escape(HOSTILE + " Müller Δ ± 中文 \u200b")
    assert "\\input" not in text.replace("\\textbackslash{}input", "")
    assert "\\{" in text and "\\$" in text and "\\%" in text and "\\#" in text and "\\_" in text
    assert "Müller" in text and r"$\Delta$" in text and r"$\pm$" in text
    assert "[U+202E]" in text and "[U+4E2D]" in text and "[U+200B]" in text and "\x07" not in text
    assert "-{}-" in text and "\n" not in latex_escape("two\nlines")
    # Every backslash the escaping writes starts a command it chose.
    assert set(re.findall(r"\\([A-Za-z]+)", text)) <= {"textless", "textgreater", "textbackslash", "textquotedbl",
                                                        "textquotesingle", "texttt", "textasciicircum", "textasciitilde",
                                                        "Delta", "pm"}


def test_render_cli_writes_latex_for_a_tex_suffix(tmp_path):
    report = tmp_path / "report.json"
    assert invoke("verify", EXAMPLE / "card.yaml", "--no-generate", "--bootstrap", 200, "--report", report).exit_code == 0
    result = invoke("render", EXAMPLE / "card.yaml", "--report", report, "-o", tmp_path / "appendix.tex")
    assert result.exit_code == 0, result.output
    text = (tmp_path / "appendix.tex").read_text()
    assert text.startswith("% Acceptance Card tiny-defense version 1") and "\\begin{tabular}" in text


def _hostile(example):
    card, report = json.loads(json.dumps(example[0])), as_builtins(example[1])
    card.update(title=HOSTILE + " Müller 中文", limitations=HOSTILE)
    card["authors"] = [{"name": HOSTILE}]
    card["claims"][0]["statement"] = HOSTILE + "\n\\end{document}"
    card["cells"][0]["id"] = report["cells"][0]["id"] = "cell_&_%"
    return card, from_builtins(report)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed (Debian: texlive-latex-base)")
@pytest.mark.parametrize("hostile", [False, True])
def test_latex_compiles_with_pdflatex(example, tmp_path, hostile):
    card, report = _hostile(example) if hostile else example
    (tmp_path / "card.tex").write_text(render_latex(card, report), encoding="utf-8")
    (tmp_path / "paper.tex").write_text("\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\begin{document}\n"
                                        "\\section{Appendix}\n\\input{card.tex}\n\\end{document}\n", encoding="utf-8")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "paper.tex"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert "Missing character" not in log and "undefined" not in log.lower()
    if not hostile:  # the tables fit an article's text width
        assert "Overfull \\hbox" not in log
