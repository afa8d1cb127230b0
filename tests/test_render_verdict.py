"""Verdict first, behaviour behind the gaps, and plots sized to their labels (issue 13, items 1–3).

The pages of the shipped example, verified for real (tests/test_render.py's fixtures), and edits of
its report for the cases the example does not hold (an unsupported headline, a pre-registration,
a defense that improves the deployed model). The layout in a real browser: tests/test_browser_layout.py.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import msgspec
import pytest
from test_render import _edited, check_snapshot, example, md_tables_are_intact, parse_html  # noqa: F401 — fixtures

from acards.present.forest import MAX_LABEL, forest_svg
from acards.present.paired import AUDIT_SHARE_FLAG, audit_share, audit_side, paired_rows, paired_svg
from acards.present.render import render_card, verdict_summary
from acards.present.svg import text_width
from acards.report.model import Preregistration, Report
from acards.report.stored import check_report
from acards.vocabulary import GAP_SPLITS

SVG = "{http://www.w3.org/2000/svg}"


def _means(a_u: float, p_u: float, a_d: float, p_d: float, lower: float = 0.1) -> dict:
    return {"audit_undefended": a_u, "deploy_undefended": p_u, "audit_defended": a_d, "deploy_defended": p_d,
            "reduction_lower": lower}


# --- the audit-side flag, on both sides of its threshold ---------------------------------------------

def test_the_audit_share_apportions_the_reduction_between_the_two_framings():
    # U: audit 0.8, deploy 0.3 (gap 0.5). D: audit 0.8, deploy 0.7 (gap 0.1): Δ = 0.4, all of it deploy-side.
    assert audit_share(_means(0.8, 0.3, 0.8, 0.7)) == pytest.approx(0.0)
    # D: audit 0.4, deploy 0.3: the same Δ = 0.4, all of it the audit mean falling to the deploy mean.
    assert audit_share(_means(0.8, 0.3, 0.4, 0.3)) == pytest.approx(1.0)
    assert audit_share(_means(0.8, 0.3, 0.6, 0.5)) == pytest.approx(0.5)
    assert audit_share(_means(0.8, 0.3, 0.8, 0.3)) is None  # Δ = 0: nothing to apportion
    assert audit_share(_means(0.8, 0.3, 0.9, 0.2)) is None  # Δ < 0
    assert audit_share({"audit_undefended": 0.8}) is None  # a report without the means


@pytest.mark.parametrize(("a_d", "flagged"), [(0.5 - 2**-10, True), (0.5, False), (0.5 + 2**-10, False)])
def test_the_flag_needs_an_audit_share_above_one_half(a_d, flagged):
    # U: audit 0.75, deploy 0.25; D's gap is 0 (deploy = audit = a_d), so Δ = 0.5 throughout and the
    # audit share is (0.75 − a_d) / 0.5: just above, exactly at and just below one half (exact in binary).
    estimates = _means(0.75, 0.25, a_d, a_d)
    assert audit_share(estimates) == (0.75 - a_d) / 0.5
    assert AUDIT_SHARE_FLAG == 0.5
    assert audit_side(estimates) is flagged


@pytest.mark.parametrize(("lower", "flagged"), [(0.001, True), (0.0, False), (-0.2, False), (None, False)])
def test_the_flag_needs_a_reliable_reduction(lower, flagged):
    assert audit_side(_means(0.8, 0.3, 0.4, 0.3, lower)) is flagged


# --- the means in the report --------------------------------------------------------------------------

def test_the_report_holds_each_framings_mean_behind_every_gap(example):  # noqa: F811
    _, report = example
    check_report(msgspec.to_builtins(report))  # the schema knows the new estimates
    for cell in report.cells:
        for _, name, _ in GAP_SPLITS:
            e = cell.diagnostics.by_name(name).estimates
            for side in ("undefended", "defended"):
                for framing in ("audit", "deploy"):
                    assert 0 <= e[f"{framing}_{side}"] <= 1 and e[f"se_{framing}_{side}"] > 0
            # the same items, so each gap is exactly its audit mean minus its deploy mean
            assert e["audit_undefended"] - e["deploy_undefended"] == pytest.approx(e["gap_undefended"], abs=1e-12)
            assert e["audit_defended"] - e["deploy_defended"] == pytest.approx(e["gap_defended"], abs=1e-12)


def test_the_examples_reduction_is_flagged_as_audit_side(example):  # noqa: F811
    # The example's simulated defense closes the gap by lowering the audit score to the deploy score.
    rows = {(row["cell"], row["split"]): row for row in paired_rows(example[1])}
    held = rows[("projection/top2", "heldout")]
    assert held["flagged"] and held["share"] > 0.9
    assert [c["label"] for c in held["conditions"]] == ["U", "D"]  # no control records in the example
    assert not rows[("shrinkage/half", "heldout")]["flagged"]  # Δ not reliable: no flag, whatever its share


# --- verdict first ------------------------------------------------------------------------------------

def _unsupported_headline(data):
    data["claims"][0]["verdict"] = "unsupported"


def test_the_page_opens_with_the_headline_verdict(example):  # noqa: F811
    card, report = example
    html = render_card(card, report, "html")
    top = html.index('<section id="verdict"')
    assert top < html.index("<dt>Authors</dt>") < html.index('id="claims"')
    verdict = html[top:html.index("</section>", top)]
    assert 'class="verdict verdict-pass"' in verdict and '<span class="verdict-word">supported</span>' in verdict
    assert "headline claim <code>C1</code>" in verdict and "Claim <code>C2</code>: " in verdict
    assert "1 of 2 cells</strong> pass under strict coding" in verdict
    assert ">reproduced<" in verdict and ">not pre-registered<" in verdict and ">unsigned<" in verdict
    assert "Reproduced.</strong>" not in html  # the old green banner is gone
    md = render_card(card, report, "md")
    assert md.splitlines()[4].startswith("> ## ✅ supported · headline claim `C1`")
    md_tables_are_intact(md)


def test_an_unsupported_headline_is_not_green(example):  # noqa: F811
    card, report = example
    edited = _edited(report, _unsupported_headline)
    assert verdict_summary(card, edited)["tone"] == "fail"
    html = render_card(card, edited, "html")
    top = html.index('<section id="verdict"')
    verdict = html[top:html.index("</section>", top)]
    assert 'class="verdict verdict-fail"' in verdict and '<span class="verdict-word">unsupported</span>' in verdict
    assert render_card(card, edited, "md").splitlines()[4].startswith("> ## ❌ unsupported")


def test_pre_registration_and_attestations_show_as_badges(example):  # noqa: F811
    card, report = example
    registered = msgspec.structs.replace(report, preregistration=Preregistration(
        entry="e" * 64, logged_at="2026-01-02T03:04:05Z", matched=True, deviations=[], source="registry", signers=[]))
    assert isinstance(registered, Report)
    html = render_card(card, registered, "html", attestations=[{"signer": "R. Viewer", "assurance": "reproduced", "reproduced": True}])
    assert ">pre-registered on 2026-01-02T03:04:05Z<" in html and ">reproduced by R. Viewer (reproduced)<" in html
    deviated = msgspec.structs.replace(registered, preregistration=msgspec.structs.replace(registered.preregistration, matched=False))
    assert ">deviates from its pre-registration<" in render_card(card, deviated, "html")
    assert "❌ deviates from its pre-registration" in render_card(card, deviated, "md")


# --- numbers people can read ----------------------------------------------------------------------------

def test_every_interval_names_its_kind_in_a_tooltip(example):  # noqa: F811
    card, report = example
    html = render_card(card, report, "html")
    parse_html(html)
    cells = re.findall(r'<td class="n"( title="[^"]*")?>(?:<strong>)?([^<]*\[[^<]*\])', html)
    assert len(cells) > 40 and all(title for title, _ in cells), [text for title, text in cells if not title][:5]
    kinds = set(re.findall(r'<td class="n" title="([^"]*)">(?:<strong>)?[^<]*\[', html))
    assert any(k.startswith("δ ± t·SE") for k in kinds)
    assert any(k.startswith("Δ ± t·SE_tot") for k in kinds) and any(k.startswith("mean ± z·SE") for k in kinds)
    assert any(k.startswith("95% t interval of Δ") for k in kinds)


def _texts(svg: str) -> list[ET.Element]:
    return list(ET.fromstring(svg).iter(f"{SVG}text"))


@pytest.mark.parametrize("plot", [forest_svg, paired_svg])
def test_plots_are_sized_to_their_labels(example, plot):  # noqa: F811
    _, report = example
    long_id = "a-rather-long-cell-name/with-a-configuration_and.more-text"
    assert len(long_id) < MAX_LABEL

    def rename(data):
        data["cells"][0]["id"] = long_id

    narrow, wide = plot(report), plot(_edited(report, rename))
    width = int(ET.fromstring(wide).get("width"))
    assert width > int(ET.fromstring(narrow).get("width"))
    for text in _texts(wide):
        anchor = text.get("text-anchor")
        x = float(text.get("x"))
        size = float(text.get("font-size") or 12)
        w = text_width(text.text or "", size, text.get("font-weight") == "bold")
        left = x - w / 2 if anchor == "middle" else x
        assert left >= 0 and left + w <= width, (text.text, left, w, width)
    assert long_id in wide  # whole, not cut


def test_the_paired_plot_is_xml_with_a_row_per_cell_and_split(example):  # noqa: F811
    _, report = example
    svg = paired_svg(report)
    root = ET.fromstring(svg)
    rows = [g for g in root.iter(f"{SVG}g") if g.get("class") == "row"]
    assert len(rows) == len(report.cells) * len(GAP_SPLITS)
    assert sum(1 for g in rows for t in g.iter(f"{SVG}text") if t.text == "⚑ audit side") == \
        sum(1 for row in paired_rows(report) if row["flagged"])
    assert all(math.isfinite(float(c.get("cx"))) for c in root.iter(f"{SVG}circle"))
    check_snapshot("example-paired.svg", svg)


def test_a_report_without_means_renders_without_the_paired_plot(example):  # noqa: F811
    card, report = example

    def strip(data):
        for cell in data["cells"]:
            for diagnostic in cell["diagnostics"].values():
                for key in [k for k in diagnostic["estimates"] if k.startswith(("audit_", "deploy_", "se_audit_", "se_deploy_"))]:
                    del diagnostic["estimates"][key]

    old = _edited(report, strip)
    html = render_card(card, old, "html")
    assert 'class="paired"' not in html and "predates the framing means" in html
    assert "predates the framing means" in render_card(card, old, "md")


def test_the_controls_means_are_shown_on_the_held_out_row():
    # The golden full-pass case holds control:shrinkage records on the held-out split.
    from test_render import _verified

    card, report = _verified(Path(__file__).resolve().parent / "cases" / "verify" / "full-pass" / "card.yaml")
    m = report.cells[0].diagnostics.mechanism.estimates
    assert 0 <= m["audit_control"] <= 1 and 0 <= m["deploy_control"] <= 1 and m["se_audit_control"] > 0
    rows = paired_rows(report)
    assert [c["label"] for c in rows[0]["conditions"]] == ["U", "D", "C"]  # held-out
    assert [c["label"] for c in rows[1]["conditions"]] == ["U", "D"]  # fresh: no control there
    md = render_card(card, report, "md")
    held = next(line for line in md.splitlines() if line.startswith("| `c1` | held-out | ") and "audit share" not in line
                and line.count("[") >= 6)
    assert held.count("—") <= 1  # six means with intervals, control included
    svg = paired_svg(report)
    assert svg.count('fill="#8250df"') == 1  # the control's audit point, on the held-out row only
