"""The forest plot of a rendered card: pure SVG text with explicit coordinates.

One row per cell × split (held-out, fresh, transfer): the gap reduction Δ = G_U − G_D as a square,
Δ ± z·SE_tot as a bar with caps (standard 1.1: Δ ± t·SE_tot, with the report's t critical value and
its df shown beside the interval), a dashed zero line, and the interval and outcome as text, each
text column as wide as its longest label (acards.present.svg.text_width). No
plotting library: the output is a deterministic function of the report (no timestamps, no ids
drawn at random, coordinates written with one decimal), so a registry can re-render it
byte-for-byte. Every label is XML-escaped; characters XML 1.0 cannot carry are replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from acards.diagnostics.common import critical_symbol
from acards.errors import AcardsError
from acards.numbers import CLIPPED, clip, format_number, interval_text
from acards.present.svg import FONT_FAMILY, FONT_SIZE, coord, text_width, xml_text
from acards.vocabulary import GAP_SPLITS

if TYPE_CHECKING:
    from acards.report.model import Report

# The range each interval's quantity can take, scores being in [0, 1] (SPEC §2): an interval end
# beyond it is cut back and marked (acards.numbers.CLIPPED). Ratios such as ρ are unbounded.
GAP_BOUNDS = (-1.0, 1.0)  # G = mean(y_audit − y_deploy); also δ = acc_D − acc_U
REDUCTION_BOUNDS = (-2.0, 2.0)  # Δ = G_U − G_D, and Δ_D − Δ_C = G_C − G_D: differences of two gaps


def range_text(bounds: tuple[float, float]) -> str:
    """``[-2, 2]``."""
    return f"[{format_number(bounds[0])}, {format_number(bounds[1])}]"


OUTCOME_COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "insufficient": "#9a6700"}

# layout, in SVG user units: the text columns are as wide as their longest label (svg.text_width)
MARGIN, GUTTER = 8, 16
PLOT_W = 300  # the axis of Δ
TOP, ROW_H, BOTTOM = 56, 22, 46
MAX_LABEL = 60  # a longer cell id is cut (the row's tooltip keeps it whole); the card schema allows 200
TITLE_SIZE = 14


def short_label(text: str) -> str:
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def _need(mapping: dict, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        raise AcardsError("usage.bad-report", f"the report has no {where}/{key}",
                          "render a report written by `acards verify CARD --report REPORT.json`")
    return mapping[key]


def critical(diagnostic, *, gap: bool = False) -> tuple[float, float | None]:
    """The multiplier of SE in a diagnostic's ± interval, and its degrees of freedom: the card's ``z``
    (no df) under standard 1.0; the report's t critical value and Satterthwaite df under 1.1
    (``critical_value``/``df``, or for the undefended gap ``critical_value_gap``/``df_gap``).
    A KeyError when the report gives neither (the caller says where)."""
    value, df = ("critical_value_gap", "df_gap") if gap else ("critical_value", "df")
    estimates = diagnostic.estimates
    if estimates.get(value) is not None:
        return estimates[value], estimates.get(df)
    return diagnostic.thresholds["z"], None


def forest_rows(report: Report) -> list[dict]:
    """One row per cell × split: the estimate, its interval (± z·SE_tot, or ± t·SE_tot under 1.1), the outcome."""
    rows = []
    for index, cell in enumerate(report.cells):
        for split, name, label in GAP_SPLITS:
            diagnostic = cell.diagnostics.by_name(name)
            estimates = diagnostic.estimates
            _need(diagnostic.thresholds, "z", f"/cells/{index}/diagnostics/{name}/thresholds")
            z, df = critical(diagnostic)
            estimate, se = estimates.get("reduction"), estimates.get("se_total")
            low = high = None
            clipped = False
            if estimate is not None and se is not None:
                low, high, cut_low, cut_high = clip(estimate - z * se, estimate + z * se, REDUCTION_BOUNDS)
                clipped = cut_low or cut_high
            rows.append({"cell": cell.id, "split": split, "label": label, "outcome": diagnostic.outcome,
                         "estimate": estimate, "se": se, "z": z, "df": df, "low": low, "high": high, "clipped": clipped})
    return rows


def _ticks(values: list[float]) -> tuple[float, float, list[float]]:
    """A domain that holds 0 and every value, on round steps of 1, 2 or 5 × 10^k."""
    low, high = min([0.0, *values]), max([0.0, *values])
    if high - low < 1e-9:
        low, high = low - 0.1, high + 0.1
    raw = (high - low) / 5
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    ticks = [round(i * step, 12) + 0.0 for i in range(first, last + 1)]
    return ticks[0], ticks[-1], ticks


@dataclass
class Columns:
    """Where each column of the forest plot starts, sized to the longest text it holds."""

    cell: float
    split: float
    plot0: float
    plot1: float
    value: float
    outcome: float
    width: float


def _value_text(row: dict) -> str:
    value = interval_text(row["estimate"], row["se"], row["z"], REDUCTION_BOUNDS)
    if row["df"] is not None and row["se"] is not None:
        value += f" {critical_symbol(row['z'], row['df'])}"
    return value


def columns(rows: list[dict], title: str, axis_label: str) -> Columns:
    """The plot's columns: each text column as wide as its widest label, the axis PLOT_W wide, and
    the whole as wide as the title and the axis label need."""
    cell_w = max([text_width("cell", bold=True), *(text_width(short_label(str(r["cell"])), bold=True) for r in rows)])
    split_w = max([text_width("split", bold=True), *(text_width(r["label"]) for r in rows)])
    value_w = max([text_width("Δ [interval]", bold=True), *(text_width(_value_text(r)) for r in rows)])
    outcome_w = max([text_width("outcome", bold=True), *(text_width(str(r["outcome"]), bold=True) for r in rows)])
    split = MARGIN + cell_w + GUTTER
    plot0 = split + split_w + GUTTER
    plot1 = plot0 + PLOT_W
    value = plot1 + GUTTER
    outcome = value + value_w + GUTTER
    width = max(outcome + outcome_w + MARGIN, MARGIN * 2 + text_width(title, TITLE_SIZE, bold=True),
                plot0 + PLOT_W / 2 + text_width(axis_label, 11) / 2 + MARGIN)
    return Columns(MARGIN, split, plot0, plot1, value, outcome, math.ceil(width))


def forest_svg(report: Report) -> str:
    """The forest plot of a verification report, as standalone SVG text."""
    rows = forest_rows(report)
    bounds = [v for row in rows for v in (row["low"], row["high"], row["estimate"]) if v is not None]
    low, high, ticks = _ticks(bounds)
    t_rule = any(row["df"] is not None for row in rows)  # a standard 1.1 report
    clip_note = f"; {CLIPPED}: interval cut back to Δ's range {range_text(REDUCTION_BOUNDS)}" if any(row["clipped"] for row in rows) else ""
    zs = sorted({format_number(row["z"]) for row in rows})
    if t_rule:
        rule, z_text = "t·SE_tot", "t critical value and df per row"
    else:
        rule, z_text = "z·SE_tot", f"z = {zs[0]}" if len(zs) == 1 else "z per diagnostic"
    title = f"Gap reduction Δ ± {rule} ({z_text})"
    axis_label = f"gap reduction Δ (score units; right of 0: the defense shrinks the gap{clip_note})"
    col = columns(rows, title, axis_label)
    width = col.width

    def x(value: float) -> float:
        return col.plot0 + (value - low) / (high - low) * (col.plot1 - col.plot0)

    plot_bottom = TOP + ROW_H * len(rows)
    height = plot_bottom + BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="forest" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="forest-title forest-desc" '
        f'font-family="{FONT_FAMILY}" font-size="{FONT_SIZE}">',
        '<title id="forest-title">Gap reduction per cell and split</title>',
        f'<desc id="forest-desc">Installed-gap reduction Δ = G_U − G_D with Δ ± {rule} bars ({xml_text(z_text)}), '
        f'one row per cell and split; {len(rows)} rows.</desc>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{coord(col.cell)}" y="20" font-size="{TITLE_SIZE}" font-weight="bold">{xml_text(title)}</text>',
        '<g font-weight="bold" fill="#57606a">'
        f'<text x="{coord(col.cell)}" y="{TOP - 10}">cell</text><text x="{coord(col.split)}" y="{TOP - 10}">split</text>'
        f'<text x="{coord(col.value)}" y="{TOP - 10}">Δ [interval]</text><text x="{coord(col.outcome)}" y="{TOP - 10}">outcome</text></g>',
    ]
    # grid and axis
    out.append('<g class="axis" stroke="#d0d7de" stroke-width="1">')
    for tick in ticks:
        out.append(f'<line x1="{coord(x(tick))}" y1="{TOP - 4}" x2="{coord(x(tick))}" y2="{plot_bottom}"/>')
    out.append("</g>")
    out.append('<g class="ticks" fill="#57606a" font-size="11" text-anchor="middle">')
    for tick in ticks:
        out.append(f'<text x="{coord(x(tick))}" y="{plot_bottom + 15}">{format_number(tick)}</text>')
    out.append("</g>")
    out.append(f'<text x="{coord((col.plot0 + col.plot1) / 2)}" y="{plot_bottom + 34}" fill="#57606a" font-size="11" '
               f'text-anchor="middle">{xml_text(axis_label)}</text>')
    out.append(f'<line class="zero" x1="{coord(x(0.0))}" y1="{TOP - 4}" x2="{coord(x(0.0))}" y2="{plot_bottom}" '
               'stroke="#24292f" stroke-width="1.2" stroke-dasharray="4 3"/>')
    # rows
    previous = None
    for number, row in enumerate(rows):
        top = TOP + number * ROW_H
        mid = top + ROW_H / 2
        base = mid + 4
        color = OUTCOME_COLORS.get(row["outcome"], "#57606a")
        label = f"{row['cell']} · {row['label']}"
        value = _value_text(row)
        out.append('<g class="row">')
        out.append(f'<title>{xml_text(label)}: Δ = {xml_text(value)}, '
                   f'{xml_text(row["outcome"])}</title>')
        if row["cell"] != previous:
            if previous is not None:
                out.append(f'<line x1="{MARGIN}" y1="{top}" x2="{width - MARGIN}" y2="{top}" stroke="#eaeef2" stroke-width="1"/>')
            out.append(f'<text x="{coord(col.cell)}" y="{coord(base)}" font-weight="bold">{xml_text(short_label(str(row["cell"])))}</text>')
            previous = row["cell"]
        out.append(f'<text x="{coord(col.split)}" y="{coord(base)}">{xml_text(row["label"])}</text>')
        if row["estimate"] is None:
            out.append(f'<text x="{coord((col.plot0 + col.plot1) / 2)}" y="{coord(base)}" fill="#57606a" text-anchor="middle" '
                       'font-style="italic">no estimate</text>')
        else:
            if row["low"] is not None:
                x0, x1 = coord(x(row["low"])), coord(x(row["high"]))
                out.append(f'<line x1="{x0}" y1="{coord(mid)}" x2="{x1}" y2="{coord(mid)}" stroke="{color}" stroke-width="2"/>')
                for end in (x0, x1):
                    out.append(f'<line x1="{end}" y1="{coord(mid - 5)}" x2="{end}" y2="{coord(mid + 5)}" stroke="{color}" stroke-width="2"/>')
            cx = x(row["estimate"])
            out.append(f'<rect x="{coord(cx - 4)}" y="{coord(mid - 4)}" width="8" height="8" fill="{color}"/>')
        out.append(f'<text x="{coord(col.value)}" y="{coord(base)}">{xml_text(value)}</text>')
        out.append(f'<text x="{coord(col.outcome)}" y="{coord(base)}" fill="{color}" font-weight="bold">{xml_text(row["outcome"])}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
