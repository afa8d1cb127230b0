"""The rendered card pages (templates/card.md.j2, card.html.j2) and the SVG forest plot.

Golden snapshots live in tests/snapshots/; regenerate them with ACARDS_UPDATE_SNAPSHOTS=1 and
review the diff by eye. Fixture reports come from a live `verify` (B = 200) with floats below 1e-7
set to 0, so that numerical noise (e.g. a t_out of -9e-10) cannot differ between machines.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from acards.canonical import canonical_bytes
from acards.card.model import load_card
from acards.cli import main
from acards.errors import AcardsError
from acards.numbers import format_number, interval_text
from acards.pipeline.verify import verify
from acards.present.forest import forest_svg
from acards.present.render import md_escape, read_report, render_card
from acards.report.model import Report, as_builtins, from_builtins
from acards.report.stored import check_report

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-defense"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
UPDATE = os.environ.get("ACARDS_UPDATE_SNAPSHOTS") == "1"
B = 200

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
SIGNERS = [{"keyid": "b" * 64}, {"keyid": "a" * 64, "name": "A. Author"}]


def _quiet(value):
    """The report with floats below 1e-7 set to 0 (machine-dependent noise)."""
    if isinstance(value, dict):
        return {k: _quiet(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quiet(v) for v in value]
    if isinstance(value, float) and abs(value) < 1e-7:
        return 0.0
    return value


def _verified(card_path: Path) -> tuple[dict, Report]:
    return load_card(card_path).data, from_builtins(_quiet(as_builtins(verify(card_path, bootstrap=B, use_cache=False))))


def _edited(report: Report, edit) -> Report:
    """``report`` with ``edit`` applied to its JSON data, read back unchecked (hostile or odd values)."""
    data = as_builtins(report)
    edit(data)
    return from_builtins(data)


@pytest.fixture(scope="module")
def example() -> tuple[dict, Report]:
    return _verified(EXAMPLE / "card.yaml")


@pytest.fixture(scope="module")
def failing_path(tmp_path_factory) -> Path:
    """The example with a misreported claim, a failing claim, card and claim overrides with
    justifications, a permissive cell and an https paper link."""
    folder = tmp_path_factory.mktemp("failing") / "card"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("build.py"))
    data = load_card(EXAMPLE / "card.yaml").data
    data["title"] = "A subspace-projection defense, misreported (failing variant)"
    data["paper"]["url"] = "https://arxiv.org/abs/2605.10575"
    data["thresholds"] = {"fresh": {"min_retention": 0.4, "justification":
                                    "Only ten fresh subjects exist per cell; a 0.4 floor keeps the retention test's power near 80%."}}
    data["cells"][1]["coding_mode"] = "permissive"
    c1, c2 = data["claims"]
    c1["reported"]["reliability"]["reduction"] = 0.45
    c2["reported"] = {"mechanism": {"outcome": "pass", "observed": "projection"}, "verdict": "supported"}
    data["claims"].append({
        "id": "C3", "statement": "Under a one-standard-error rule the half-scaled recipe passes reliability.",
        "cells": ["shrinkage/half"], "requires": ["reliability", "mechanism"],
        "thresholds": {"reliability": {"z": 1.0, "justification": "A deliberately lenient rule, shown for contrast with the default z = 2."}},
    })
    path = folder / "card.yaml"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def failing(failing_path) -> tuple[dict, Report]:
    return _verified(failing_path)


@pytest.fixture(scope="module")
def xss(example) -> tuple[dict, Report]:
    """Hostile text in every kind of field, built as dicts (the card and report schemas would refuse some)."""
    card, report = copy.deepcopy(example[0]), as_builtins(example[1])
    evil_cell = f"{SCRIPT}/cell"
    card.update(id=IMG, title=SCRIPT, limitations=f"{SCRIPT} {IMG}\n# heading\n- list | pipe",
                paper={"title": IMG, "url": "javascript:alert(1)"})
    card["authors"] = [{"name": IMG, "email": f"{SCRIPT}@x"}]
    card["model"] = {"name": SCRIPT, "revision": IMG}
    card["protocol"] = {"behavior": SCRIPT, "higher_score_means": IMG,
                        "framings": {"audit": "[click](javascript:alert(1))", "deploy": "<https://evil.example>"}}
    old = card["cells"][0]["id"]
    card["cells"][0].update(id=evil_cell, family=SCRIPT, configuration=IMG, task=IMG)
    card["claims"][0].update(statement=f"{SCRIPT} ![x](javascript:alert(1)) *bold* `code` | pipe", cells=[evil_cell])
    card["claims"][0]["thresholds"] = {"fresh": {"min_retention": 0.4, "justification": f"{SCRIPT} {IMG}"}}
    report["card"]["id"] = IMG
    report["cells"][0]["id"] = evil_cell
    report["cells"][0]["diagnostics"]["reliability"]["reasons"] = [{"code": "x", "message": f"{SCRIPT} {IMG}"}]
    report["cells"][0]["diagnostics"]["mechanism"]["declared"] = IMG
    claim = report["claims"][0]
    claim["cells"] = [evil_cell]
    claim["outcomes"] = {evil_cell: claim["outcomes"][old]}
    claim["reproduced"] = False
    claim["discrepancies"] = [{"cell": evil_cell, "diagnostic": SCRIPT, "field": IMG, "reported": SCRIPT,
                               "recomputed": 0.5, "tolerance": None, "message": IMG}]
    report["evidence"][0]["path"] = f"{SCRIPT}.jsonl"
    return card, from_builtins(report)


FIXTURES = ("example", "failing", "xss")


@pytest.fixture
def fixture(request):
    return request.getfixturevalue(request.param)


def pages(card, report, signers=()) -> dict[str, str]:
    return {"md": render_card(card, report, "md", list(signers)), "html": render_card(card, report, "html", list(signers)),
            "svg": forest_svg(report)}


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if UPDATE:
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        return
    assert path.exists(), f"no snapshot {name}: run with ACARDS_UPDATE_SNAPSHOTS=1 and review it"
    expected = path.read_bytes().decode("utf-8")
    if text != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), text.splitlines(True), name, "rendered"))[:80])
        pytest.fail(f"{name} differs from its snapshot (ACARDS_UPDATE_SNAPSHOTS=1 regenerates it):\n{diff}")


class StrictHTML(HTMLParser):
    """Collects tags, attributes and nesting errors; void elements need no end tag."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.attrs = [], [], [], []

    def _record(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value) for name, value in attrs]

    def handle_starttag(self, tag, attrs):
        self._record(tag, attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self._record(tag, attrs)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
        else:
            self.stack.pop()


def parse_html(text: str) -> StrictHTML:
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    assert not parser.errors, parser.errors[:5]
    assert not parser.stack, f"unclosed: {parser.stack}"
    return parser


def md_tables_are_intact(text: str) -> None:
    """Every row of every Markdown table has as many unescaped pipes as its header."""
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            counts = {len(re.findall(r"(?<!\\)\|", row)) for row in block}
            assert len(counts) == 1, f"table rows differ in columns: {block}"
            block = []


# --- golden snapshots -------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES, indirect=True)
@pytest.mark.parametrize("fmt", ["md", "html", "svg"])
def test_snapshot(fixture, fmt, request):
    name = request.node.callspec.params["fixture"]
    card, report = fixture
    signers = SIGNERS if name == "failing" else []
    check_snapshot(f"{name}.{fmt}", pages(card, report, signers)[fmt])


# --- safety -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES, indirect=True)
def test_html_is_well_formed_self_contained_and_scriptless(fixture):
    text = render_card(*fixture, "html")
    parser = parse_html(text)
    assert "<script" not in text.lower()
    assert not {"script", "iframe", "object", "embed", "img", "link", "form", "base"} & set(parser.tags)
    assert parser.tags.count("style") == 1 and parser.tags.count("svg") == 2  # the forest plot and the paired plot
    for tag, name, value in parser.attrs:
        assert not name.startswith("on"), (tag, name, value)
        assert name not in ("src", "srcset", "xlink:href", "action", "formaction"), (tag, name)
        if name == "href":
            assert value.startswith(("https://", "#")), value
    assert "@import" not in text and "url(" not in text


def test_hostile_text_is_inert(xss):
    card, report = xss
    html, md, svg = render_card(card, report, "html"), render_card(card, report, "md"), forest_svg(report)
    for text in (html, md, svg):
        assert "<script" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "javascript:alert(1)" in html and 'href="javascript' not in html  # shown as text, never linked
    assert "not linked: only https links are shown" in html and "not linked: only https links are shown" in md
    # Markdown: no link, image, autolink, heading or list can be made from card text
    assert not re.search(r"(?<!\\)\]\(", md.replace("](<https://", "")) and "<https://evil" not in md
    assert r"\[click\](javascript:alert(1))" in md and r"!\[x\]" in md and r"&lt;https\://evil.example&gt;" in md
    assert r"\# heading - list \| pipe" in md
    md_tables_are_intact(md)
    root = ET.fromstring(svg)
    assert not [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "foreignObject", "a", "image")]


def test_https_paper_url_is_the_only_link(failing):
    card, report = failing
    html, md = render_card(card, report, "html"), render_card(card, report, "md")
    external = [v for _, name, v in parse_html(html).attrs if name == "href" and not v.startswith("#")]
    assert external == ["https://arxiv.org/abs/2605.10575"]
    assert "](<https://arxiv.org/abs/2605.10575>)" in md


@pytest.mark.parametrize("fixture", FIXTURES, indirect=True)
def test_markdown_tables_keep_their_columns(fixture):
    md_tables_are_intact(render_card(*fixture, "md"))


# --- content ----------------------------------------------------------------------------------

def test_intervals_are_estimate_plus_minus_z_se(example):
    card, report = example
    e = report.cells[0].diagnostics.reliability.estimates
    assert card["acard"] == "1.1" and e["critical_value"] > 2.0  # the t critical value for z = 2 on its df
    expected = interval_text(e["reduction"], e["se_total"], e["critical_value"])
    low, high = e["reduction"] - e["critical_value"] * e["se_total"], e["reduction"] + e["critical_value"] * e["se_total"]
    assert expected == f"0.347 [{format_number(low)}, {format_number(high)}]"
    for fmt in ("md", "html"):
        assert expected in render_card(card, report, fmt)
    assert expected in forest_svg(report)


def test_claims_verdicts_discrepancies_and_overrides_are_shown(failing):
    card, report = failing
    by_id = {c.id: c for c in report.claims}
    assert not by_id["C1"].reproduced and not by_id["C2"].reproduced
    html = render_card(card, report, "html", SIGNERS)
    md = render_card(card, report, "md", SIGNERS)
    assert html.count('<tr class="override">') == 2  # card fresh.min_retention, claim C3 reliability.z
    for text in (html, md):
        assert "Only ten fresh subjects exist per cell" in text and "A deliberately lenient rule" in text
        assert "not reproduced" in text.lower() and "relabel" in text
        assert "A. Author" in text and "a" * 64 in text and "unsigned" not in text
    assert "reliability.reduction reported 0.45" in html


def test_unsigned_when_no_signers(example):
    for fmt in ("md", "html"):
        assert "unsigned" in render_card(*example, fmt)


def test_number_format_is_fixed_and_type_blind():
    assert format_number(2) == format_number(2.0) == "2"
    assert format_number(1000) == format_number(1000.0) == "1000"
    assert format_number(-0.0) == "0" and format_number(None) == "—" and format_number(True) == "yes"
    assert format_number(0.31666666) == "0.317" and format_number(6.293e-09) == "6.29e-09"
    assert md_escape("a|b <c> [d](e) *f* _g_ #h") == r"a\|b &lt;c&gt; \[d\](e) \*f\* \_g\_ \#h"


# --- determinism ------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture", FIXTURES, indirect=True)
def test_rendering_is_deterministic_and_survives_canonical_json(fixture):
    card, report = fixture
    first = pages(card, report, SIGNERS)
    assert pages(card, report, SIGNERS) == first
    # a registry re-renders from RFC 8785 bytes: keys sorted, 2.0 read back as 2
    canonical = [json.loads(canonical_bytes(x)) for x in (card, as_builtins(report))]
    assert pages(canonical[0], from_builtins(canonical[1]), list(reversed(SIGNERS))) == first


@pytest.mark.parametrize("fixture", FIXTURES, indirect=True)
def test_svg_is_xml_with_one_row_per_cell_and_split(fixture):
    _, report = fixture
    root = ET.fromstring(forest_svg(report))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == ns + "svg"
    rows = [g for g in root.iter(ns + "g") if g.get("class") == "row"]
    assert len(rows) == 3 * len(report.cells)
    assert len([e for e in root.iter(ns + "line") if e.get("class") == "zero"]) == 1


def test_cells_without_estimates_get_an_empty_row(example):
    report = _edited(example[1], lambda data: data["cells"][0]["diagnostics"]["fresh"].update(estimates={}))
    svg = forest_svg(report)
    assert svg.count('<g class="row">') == 6 and "no estimate" in svg


# --- errors -----------------------------------------------------------------------------------

def test_a_missing_report_field_is_a_clear_error(example):
    # A Report always has its required fields: a report without one is refused when it is read.
    data = as_builtins(example[1])
    del data["cells"][1]["full_card"]
    with pytest.raises(AcardsError) as caught:
        check_report(data)
    assert caught.value.code == "usage.bad-report"
    assert "full_card" in str(caught.value) and "/cells/1" in str(caught.value)


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_a_missing_field_the_page_needs_is_a_clear_error(example, fmt):
    # The schema leaves a diagnostic's thresholds open; without its critical value (a 1.0 report's
    # cost has none) the cost table needs z (the forest plot does not).
    def edit(data):
        data["cells"][1]["diagnostics"]["cost"]["estimates"].pop("critical_value", None)
        data["cells"][1]["diagnostics"]["cost"]["thresholds"].pop("z")

    card, report = example[0], _edited(example[1], edit)
    with pytest.raises(AcardsError) as caught:
        render_card(card, report, fmt)
    assert caught.value.code == "usage.bad-report"
    assert "'z'" in str(caught.value) and f"card.{fmt}.j2 line" in str(caught.value)


def test_a_field_the_report_leaves_out_reads_as_undefined(example):
    # An optional field (UNSET) is absent, as a missing key of a dict: `|default` and `is defined` see it.
    card, report = example
    first, *others = report.claims
    bare = msgspec.structs.replace(report, claims=[msgspec.structs.replace(first, requires=msgspec.UNSET, outcomes=msgspec.UNSET), *others])
    for fmt in ("md", "html"):
        assert "UNSET" not in render_card(card, bare, fmt)


def test_a_missing_card_field_is_a_clear_error(example):
    card, report = copy.deepcopy(example)
    del card["protocol"]["framings"]
    with pytest.raises(AcardsError, match="framings"):
        render_card(card, report, "html")


def test_a_report_for_another_card_is_refused(example, failing):
    with pytest.raises(AcardsError) as caught:
        render_card(example[0], msgspec.structs.replace(failing[1], card=msgspec.structs.replace(failing[1].card, version=2)), "md")
    assert caught.value.code == "usage.report-mismatch"


def test_forest_svg_names_a_missing_field(example):
    report = _edited(example[1], lambda data: data["cells"][0]["diagnostics"]["transfer"]["thresholds"].pop("z"))
    with pytest.raises(AcardsError, match="/cells/0/diagnostics/transfer/thresholds"):
        forest_svg(report)


# --- the command ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report_file(tmp_path_factory, failing_path) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.json"
    path.write_text(json.dumps(as_builtins(verify(failing_path, bootstrap=B, use_cache=False))), encoding="utf-8")
    return path


def test_render_command_writes_each_format(failing_path, report_file, tmp_path):
    card = load_card(failing_path).data
    report = read_report(report_file)
    runner = CliRunner()
    md = render_card(card, report, "md", forest_file="card.forest.svg", paired_file="card.paired.svg")
    for name, expected in (("card.html", render_card(card, report, "html")), ("card.md", md),
                           ("forest.svg", forest_svg(report))):
        out = tmp_path / "site" / name
        result = runner.invoke(main, ["render", str(failing_path), "--report", str(report_file), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_text(encoding="utf-8") == expected
    result = runner.invoke(main, ["render", str(failing_path), "--report", str(report_file), "--format", "md"])
    assert result.exit_code == 0 and result.stdout == render_card(card, report, "md")


def test_a_markdown_page_gets_the_plots_it_links_beside_it(failing_path, report_file, tmp_path):
    """`render --format md -o` writes the plots the page links, named after the page, in its folder;
    it replaces its own plots on a re-render but never a file acards did not write (nor a link)."""
    from acards.present.paired import has_means, paired_svg

    report = read_report(report_file)
    assert has_means(report)
    page = tmp_path / "out" / "my page.md"

    def render():
        return CliRunner().invoke(main, ["render", str(failing_path), "--report", str(report_file), "-o", str(page)])

    result = render()
    assert result.exit_code == 0, result.output
    plots = {"forest": tmp_path / "out" / "my-page.forest.svg", "paired": tmp_path / "out" / "my-page.paired.svg"}
    assert sorted(p.name for p in page.parent.iterdir()) == sorted([page.name, *(p.name for p in plots.values())])
    assert plots["forest"].read_text(encoding="utf-8") == forest_svg(report)
    assert plots["paired"].read_text(encoding="utf-8") == paired_svg(report)
    text = page.read_text(encoding="utf-8")
    assert "](my-page.forest.svg)" in text and "](my-page.paired.svg)" in text
    plots["forest"].write_text(forest_svg(report) + "<!-- stale -->", encoding="utf-8")
    assert render().exit_code == 0 and plots["forest"].read_text(encoding="utf-8") == forest_svg(report)
    mine = "<svg xmlns='http://www.w3.org/2000/svg'><!-- my own drawing --></svg>"
    plots["paired"].write_text(mine, encoding="utf-8")
    page.unlink()
    result = render()
    assert result.exit_code == 2 and "usage.exists" in result.output and "my-page.paired.svg" in result.output
    assert plots["paired"].read_text(encoding="utf-8") == mine and not page.exists()  # nothing written
    plots["paired"].unlink()
    plots["paired"].symlink_to(tmp_path / "elsewhere.svg")
    assert "usage.exists" in render().output and not (tmp_path / "elsewhere.svg").exists()


@pytest.mark.parametrize("content, message", [
    ('{"cells": [', "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"acards_version": "0.1.0"}', "does not match report-1.0"),
    ("NaN", "not valid JSON"),
])
def test_render_command_refuses_a_bad_report(failing_path, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = CliRunner().invoke(main, ["render", str(failing_path), "--report", str(bad)])
    assert result.exit_code == 2, result.output
    assert "usage.bad-report" in result.output and message in result.output and "Traceback" not in result.output


def test_render_command_refuses_the_report_of_another_card(report_file):
    result = CliRunner().invoke(main, ["render", str(EXAMPLE / "card.yaml"), "--report", str(report_file)])
    assert result.exit_code == 2 and "usage.report-mismatch" in result.output


# --- per-seed mechanism classes, p-values, plurals, clipped intervals ---------------------------

def _seed_classes(data, classes, decided):
    details = data["cells"][1]["diagnostics"]["mechanism"]["details"]
    details["per_seed"] = [{"seed": seed, "observed": observed, "rule": "r"} for seed, observed in enumerate(classes)]
    details["seeds_agree"] = len(set(classes)) == 1
    details["decided_by_seed"] = decided


def test_each_pinned_seeds_class_is_shown_and_agreement_noted(example):
    card, report = example
    assert report.cells[0].diagnostics.mechanism.details["seeds_agree"] is True  # tiny-defense pins 3 seeds
    for fmt in ("md", "html"):
        page = render_card(card, report, fmt)
        assert "seed 0: projection · seed 1: projection · seed 2: projection" in page
        assert "seeds agree" in page and "seeds disagree" not in page and "(decides)" not in page


def test_disagreeing_seeds_are_flagged_with_the_deciding_seed(example):
    card, report = example
    edited = _edited(report, lambda data: _seed_classes(data, ["complement-projection", "projection", "shrinkage"], 2))
    html = render_card(card, edited, "html")
    assert ('<span class="flag">⚑ seeds disagree:</span> seed 0: complement-projection · seed 1: projection · '
            "seed 2: shrinkage <strong>(decides)</strong>") in html
    md = render_card(card, edited, "md")
    assert "⚑ **seeds disagree**: seed 0: complement-projection · seed 1: projection · seed 2: shrinkage **(decides)**" in md
    md_tables_are_intact(md)


def test_one_seed_shows_no_per_seed_line(example):
    card, report = example

    def one_seed(data):
        for cell in data["cells"]:
            for key in ("per_seed", "seeds_agree", "decided_by_seed"):
                cell["diagnostics"]["mechanism"]["details"].pop(key)
    for fmt in ("md", "html"):
        assert "seed 0:" not in render_card(card, _edited(report, one_seed), fmt)


def test_tiny_p_values_print_as_below_the_floor():
    from acards.numbers import p_value_text

    assert p_value_text(2e-144) == p_value_text(0.0) == p_value_text(9.99e-7) == "< 1e-6"
    assert p_value_text(1e-6) == "1e-06" and p_value_text(0.00412) == "0.00412" and p_value_text(None) == "—"


def test_pages_print_a_tiny_p_value_as_below_the_floor(example):
    card, report = example

    def tiny(data):
        data["cells"][0]["diagnostics"]["reliability"]["estimates"].update(p_value=2e-144, p_holm=4e-144)
    for fmt in ("md", "html"):
        page = render_card(card, _edited(report, tiny), fmt)
        assert "e-144" not in page and page.count("&lt; 1e-6") == 2


def test_counts_take_the_right_plural(example):
    from acards.numbers import count

    assert count(1, "cell") == count(1.0, "cell") == "1 cell" and count(2, "cell") == count(2.0, "cell") == "2 cells"
    assert count(0, "cell") == "0 cells"
    card, report = example
    assert report.audit.cells == 2
    for fmt in ("md", "html"):
        assert "of 2 cells." in render_card(card, report, fmt)
        page = render_card(card, _edited(report, lambda data: data["audit"].update(cells=1)), fmt)
        assert "of 1 cell." in page and "of 1 cells" not in page


def test_intervals_are_clipped_to_the_quantitys_range_with_a_mark():
    assert interval_text(0.646, 0.4, 2.2, (-1.0, 1.0)) == "0.646 [-0.234, 1†]"
    assert interval_text(-0.9, 0.2, 2.0, (-1.0, 1.0)) == "-0.9 [-1†, -0.5]"
    assert interval_text(0.646, 0.4, 2.2) == "0.646 [-0.234, 1.53]"  # unbounded (e.g. ρ): as computed
    assert interval_text(0.5, 0.1, 2.0, (-1.0, 1.0)) == "0.5 [0.3, 0.7]"


def test_pages_clip_gaps_and_reductions_and_say_so(example):
    card, report = example
    page = render_card(card, report, "html")
    assert "†" not in page  # nothing reaches a bound in the example
    assert "†" not in forest_svg(report)

    def wide(data):
        estimates = data["cells"][0]["diagnostics"]["reliability"]["estimates"]
        estimates.update(gap_undefended=0.9, reduction=1.8, se_total=0.5, ci_low=0.9, ci_high=2.4)
    edited = _edited(report, wide)
    for fmt in ("md", "html"):
        page = render_card(card, edited, fmt)
        assert "0.9 [" in page and ", 1†]" in page  # G_U: a gap lies in [-1, 1]
        assert "1.8 [" in page and ", 2†]" in page  # Δ: a difference of two gaps lies in [-2, 2]
        assert "[0.9, 2†]" in page  # the CI column, too
        assert "† marks an interval end cut back" in page
    svg = forest_svg(edited)
    assert "2†]" in svg and "interval cut back to Δ&#x27;s range [-2, 2]" in svg  # every label is XML-escaped
    ET.fromstring(svg)
