"""Behaviour behind the gaps: each condition's audit and deploy means, the paired plot, and the
audit-side flag (docs/rendering.md#behaviour).

A gap reduction Δ = G_U − G_D can come from either end of the gap. With A the mean audit score and
P the mean deploy score of a condition (G = A − P, over the same items),

    Δ = (A_U − A_D) + (P_D − P_U),

the first term being the audit side's share of the change and the second the deploy side's. The
**audit share** is (A_U − A_D) / Δ; the deploy share is 1 minus it. A defense that makes the
model behave when deployed as it did when audited moves P (share near 0); one that makes it behave
when audited as it did when deployed moves A (share near 1): the gap closes but the deployed model
is no better. The reduction is **flagged** as audit-side when it is reliable (Δ − z·SE_tot > 0, the
diagnostic's own bound) and the audit share exceeds :data:`AUDIT_SHARE_FLAG` (mostly the audit side).

The plot is pure SVG text (as the forest plot): one row per cell × split, in the forest plot's
order, with a segment per condition from its deploy mean (hollow) to its audit mean (filled) on
the score scale [0, 1].
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from acards.numbers import format_number
from acards.present.forest import GUTTER, MARGIN, ROW_H, short_label
from acards.present.svg import FONT_FAMILY, FONT_SIZE, coord, text_width, xml_text
from acards.vocabulary import GAP_SPLITS

if TYPE_CHECKING:
    from acards.report.model import Report

AUDIT_SHARE_FLAG = 0.5  # above it, most of the reduction is the audit mean moving toward the deploy mean
SCORE_BOUNDS = (0.0, 1.0)  # scores (SPEC §2), and so each framing's mean
# (report name, label, colour); the control's means sit in the mechanism diagnostic's estimates, held-out only
CONDITIONS = (("undefended", "U", "#6e7781"), ("defended", "D", "#0969da"), ("control", "C", "#8250df"))
PLOT_W = 200
TOP, BOTTOM = 64, 40  # room for the legend above the column heads


def _finite(*values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def audit_share(estimates: dict) -> float | None:
    """(A_U − A_D) / Δ with Δ = (A_U − P_U) − (A_D − P_D); None without the means or when Δ ≤ 0
    (no reduction to apportion)."""
    e = estimates
    a_u, p_u, a_d, p_d = (e.get(k) for k in ("audit_undefended", "deploy_undefended", "audit_defended", "deploy_defended"))
    if not _finite(a_u, p_u, a_d, p_d):
        return None
    reduction = (a_u - p_u) - (a_d - p_d)
    if not reduction > 0:
        return None
    return (a_u - a_d) / reduction


def audit_side(estimates: dict) -> bool:
    """Whether a reduction is flagged: reliable (reduction_lower > 0) and its audit share above AUDIT_SHARE_FLAG."""
    share = audit_share(estimates)
    lower = estimates.get("reduction_lower")
    return share is not None and _finite(lower) and lower > 0 and share > AUDIT_SHARE_FLAG


def condition_means(cell, name: str) -> list[dict]:
    """The conditions with framing means on one split of a cell: {key, label, color, audit, se_audit,
    deploy, se_deploy, z} (the control on the held-out split only, from the mechanism's estimates)."""
    diagnostic = cell.diagnostics.by_name(name)
    sources = [(diagnostic, "undefended"), (diagnostic, "defended")]
    if name == "reliability":
        sources.append((cell.diagnostics.mechanism, "control"))
    colors = {key: (label, color) for key, label, color in CONDITIONS}
    found = []
    for source, key in sources:
        e = source.estimates
        audit, deploy = e.get(f"audit_{key}"), e.get(f"deploy_{key}")
        if not _finite(audit, deploy):
            continue
        label, color = colors[key]
        found.append({"key": key, "label": label, "color": color, "audit": audit, "se_audit": e.get(f"se_audit_{key}"),
                      "deploy": deploy, "se_deploy": e.get(f"se_deploy_{key}"), "z": source.thresholds.get("z", 2)})
    return found


def paired_rows(report: Report) -> list[dict]:
    """One row per cell × split (the forest plot's rows): the conditions' means, the audit share, the flag."""
    rows = []
    for cell in report.cells:
        for split, name, label in GAP_SPLITS:
            estimates = cell.diagnostics.by_name(name).estimates
            rows.append({"cell": cell.id, "split": split, "label": label, "conditions": condition_means(cell, name),
                         "share": audit_share(estimates), "flagged": audit_side(estimates)})
    return rows


def has_means(report: Report) -> bool:
    """Whether the report carries framing means (reports written before they existed do not)."""
    return any(row["conditions"] for row in paired_rows(report))


FLAG_TEXT = "⚑ audit side"


def paired_svg(report: Report) -> str:
    """The paired plot of a verification report, as standalone SVG text."""
    rows = paired_rows(report)
    title = "Audit and deploy means"
    cell_w = max([text_width("cell", bold=True), *(text_width(short_label(str(r["cell"])), bold=True) for r in rows)])
    split_w = max([text_width("split", bold=True), *(text_width(r["label"]) for r in rows)])
    split_x = MARGIN + cell_w + GUTTER
    plot0 = split_x + split_w + GUTTER
    plot1 = plot0 + PLOT_W
    flag_x = plot1 + GUTTER
    legend = "● audit ○ deploy · U undefended · D defended · C control"
    width = math.ceil(max(flag_x + text_width(FLAG_TEXT, bold=True) + MARGIN, MARGIN * 2 + text_width(title, 14, bold=True),
                          MARGIN * 2 + text_width(legend, 11)))
    plot_bottom = TOP + ROW_H * len(rows)
    height = plot_bottom + BOTTOM

    def x(score: float) -> float:
        low, high = SCORE_BOUNDS
        return plot0 + (min(max(score, low), high) - low) / (high - low) * PLOT_W

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="paired" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="paired-title paired-desc" '
        f'font-family="{FONT_FAMILY}" font-size="{FONT_SIZE}">',
        '<title id="paired-title">Audit and deploy means per cell and split</title>',
        '<desc id="paired-desc">For each condition, a segment from its mean deploy score (hollow) to its mean audit '
        f'score (filled): the segment is the gap. One row per cell and split; {len(rows)} rows.</desc>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{MARGIN}" y="20" font-size="14" font-weight="bold">{title}</text>',
        f'<text x="{MARGIN}" y="36" font-size="11" fill="#57606a">{xml_text(legend)}</text>',
        '<g font-weight="bold" fill="#57606a">'
        f'<text x="{MARGIN}" y="{TOP - 10}">cell</text><text x="{coord(split_x)}" y="{TOP - 10}">split</text></g>',
        '<g class="axis" stroke="#d0d7de" stroke-width="1">',
    ]
    ticks = (0.0, 0.25, 0.5, 0.75, 1.0)
    for tick in ticks:
        out.append(f'<line x1="{coord(x(tick))}" y1="{TOP - 4}" x2="{coord(x(tick))}" y2="{plot_bottom}"/>')
    out.append("</g>")
    out.append('<g class="ticks" fill="#57606a" font-size="11" text-anchor="middle">')
    for tick in ticks:
        out.append(f'<text x="{coord(x(tick))}" y="{plot_bottom + 15}">{format_number(tick)}</text>')
    out.append("</g>")
    out.append(f'<text x="{coord((plot0 + plot1) / 2)}" y="{plot_bottom + 32}" fill="#57606a" font-size="11" '
               'text-anchor="middle">mean score</text>')
    previous = None
    for number, row in enumerate(rows):
        top = TOP + number * ROW_H
        mid = top + ROW_H / 2
        base = mid + 4
        parts = [f"{c['label']} audit {c['audit']:.3f}, deploy {c['deploy']:.3f}" for c in row["conditions"]]
        share = f"; audit share {row['share']:.2f}" if row["share"] is not None else ""
        out.append('<g class="row">')
        out.append(f'<title>{xml_text(row["cell"])} · {xml_text(row["label"])}: {xml_text("; ".join(parts) or "no means")}{share}</title>')
        if row["cell"] != previous:
            if previous is not None:
                out.append(f'<line x1="{MARGIN}" y1="{top}" x2="{width - MARGIN}" y2="{top}" stroke="#eaeef2" stroke-width="1"/>')
            out.append(f'<text x="{MARGIN}" y="{coord(base)}" font-weight="bold">{xml_text(short_label(str(row["cell"])))}</text>')
            previous = row["cell"]
        out.append(f'<text x="{coord(split_x)}" y="{coord(base)}">{xml_text(row["label"])}</text>')
        if not row["conditions"]:
            out.append(f'<text x="{coord((plot0 + plot1) / 2)}" y="{coord(base)}" fill="#57606a" text-anchor="middle" '
                       'font-style="italic">no means</text>')
        count = len(row["conditions"])
        for index, c in enumerate(row["conditions"]):
            y = mid + (index - (count - 1) / 2) * 5
            xa, xd = coord(x(c["audit"])), coord(x(c["deploy"]))
            out.append(f'<line x1="{xd}" y1="{coord(y)}" x2="{xa}" y2="{coord(y)}" stroke="{c["color"]}" stroke-width="2"/>')
            out.append(f'<circle cx="{xd}" cy="{coord(y)}" r="2.5" fill="#ffffff" stroke="{c["color"]}" stroke-width="1.5"/>')
            out.append(f'<circle cx="{xa}" cy="{coord(y)}" r="2.5" fill="{c["color"]}"/>')
        if row["flagged"]:
            out.append(f'<text x="{coord(flag_x)}" y="{coord(base)}" fill="#9a6700" font-weight="bold">{FLAG_TEXT}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
