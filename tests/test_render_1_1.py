"""The card pages and the forest plot of a standard 1.1 report (SPEC §10.2): intervals use the
report's t critical value (shown with its df), the 95% CI column is the t interval.

The fixture is the golden verify case `full-pass` (records only, no model) made a 1.1 card with a
justified `min_seeds: 2`, verified with B = 200.  Its two seeds give small df (the held-out
reduction's t is about 5.3 on 1.7 df), so the t and z intervals differ a lot and a page drawn
with z would be caught.  Golden snapshots: tests/snapshots/standard-1-1.{md,html,svg}
(ACARDS_UPDATE_SNAPSHOTS=1 regenerates them; review the diff).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_render import check_snapshot  # the one snapshot check (and its update switch)

from acards.card.model import load_card
from acards.numbers import interval_text
from acards.pipeline.verify import verify
from acards.present.forest import GAP_BOUNDS, forest_rows, forest_svg
from acards.present.render import render_card
from acards.report.model import as_builtins, from_builtins

CASE = Path(__file__).resolve().parent / "cases" / "verify" / "full-pass"


def _quiet(value):
    if isinstance(value, dict):
        return {k: _quiet(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_quiet(v) for v in value]
    return 0.0 if isinstance(value, float) and abs(value) < 1e-7 else value


@pytest.fixture(scope="module")
def standard_1_1(tmp_path_factory):
    folder = tmp_path_factory.mktemp("v11") / "case"
    shutil.copytree(CASE, folder)
    path = folder / "card.yaml"
    text = path.read_text().replace('acard: "1.0"', 'acard: "1.1"')
    text = text.replace("evidence:\n", "thresholds:\n  reliability:\n    min_seeds: 2\n"
                        "    justification: Two training runs per condition fit the budget.\nevidence:\n", 1)
    path.write_text(text)
    report = from_builtins(_quiet(as_builtins(verify(path, bootstrap=200, use_cache=False, generate=False, spot_check=0))))
    assert report.settings["standard"] == "1.1"
    return load_card(path).data, report


@pytest.mark.parametrize("fmt", ["md", "html", "svg"])
def test_snapshot(standard_1_1, fmt):
    card, report = standard_1_1
    check_snapshot(f"standard-1-1.{fmt}", forest_svg(report) if fmt == "svg" else render_card(card, report, fmt))


def test_intervals_use_the_t_critical_value_with_its_df(standard_1_1):
    card, report = standard_1_1
    d1 = report.cells[0].diagnostics.reliability
    e = d1.estimates
    assert e["critical_value"] > 4 * d1.thresholds["z"] / 2  # small df: t far above z = 2
    t_bar = interval_text(e["reduction"], e["se_total"], e["critical_value"]) + f" t({e['df']:.1f})={e['critical_value']:.2f}"
    z_bar = interval_text(e["reduction"], e["se_total"], d1.thresholds["z"])
    # G_U's t interval reaches past 1, the most a gap of [0, 1] scores can be: cut back and marked
    gap_bar = interval_text(e["gap_undefended"], e["se_gap_undefended_total"], e["critical_value_gap"], GAP_BOUNDS)
    assert gap_bar.endswith(", 1†]")
    for fmt in ("md", "html"):
        page = render_card(card, report, fmt)
        assert t_bar in page and z_bar not in page
        assert gap_bar in page
        assert "± t·SE" in page and "95% t interval of Δ" in page and "bootstrap 95% CI" not in page.lower()
    svg = forest_svg(report)
    assert t_bar in svg and "Δ ± t·SE_tot" in svg and "z = 2" not in svg


def test_the_ci_column_is_the_t_interval_and_the_bar_spans_t_se(standard_1_1):
    card, report = standard_1_1
    md = render_card(card, report, "md")
    for cell in report.cells:
        for name in ("reliability", "fresh", "transfer"):
            d = cell.diagnostics.by_name(name)
            assert d.details["interval"] == "t"
            e = d.estimates
            assert f"[{interval_text(e['ci_low'], None, 0)}, {interval_text(e['ci_high'], None, 0)}]" in md
    [row] = [r for r in forest_rows(report) if r["split"] == "heldout"]
    e = report.cells[0].diagnostics.reliability.estimates
    assert (row["z"], row["df"]) == (e["critical_value"], e["df"])
    assert row["low"] == pytest.approx(e["reduction"] - e["critical_value"] * e["se_total"])
    # the drawn bar spans Δ ± t·SE_tot on the plot's scale (read from the tick labels 0 and 1), not ± z·SE_tot
    svg = forest_svg(report)
    ticks = {label: float(x) for x, label in re.findall(r'<text x="([\d.]+)" y="[\d.]+">(-?[\d.]+)</text>', svg)}
    scale = ticks["1"] - ticks["0"]
    x0, x1 = map(float, re.search(r'<line x1="([\d.]+)" y1="([\d.]+)" x2="([\d.]+)" y2="\2" stroke="#', svg).group(1, 3))
    assert x1 - x0 == pytest.approx(2 * e["critical_value"] * e["se_total"] * scale, abs=0.2)
    assert x0 == pytest.approx(ticks["0"] + row["low"] * scale, abs=0.1)
