"""The card's badge: one flat SVG saying its full-card verdict, how many others reproduced it and
whether it was pre-registered (docs/badges-and-latex.md).

Pure: :func:`badge_facts` reads what a badge says from a verification report (and from the
registry: its state and the attestations, which the caller passes in); :func:`badge_svg`
writes it.  The SVG is plain text: no script, no external font, image or link, no ``id`` (so any
number of badges can be inlined in one HTML page), every text escaped for XML, control characters
dropped and format characters (bidirectional controls among them) shown as ``[U+XXXX]``.  Text
widths are estimated from a fixed table of Verdana 11px advances, so the output is the same on
every machine.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from msgspec import UNSET

from acards.numbers import format_number

FONT = "Verdana,Geneva,DejaVu Sans,sans-serif"
HEIGHT = 20
PADDING = 6  # on each side of a segment's text
MAX_TEXT = 60  # characters; a longer card id is cut with "…" (the <title> keeps the whole text)

GREY, GREEN, YELLOWGREEN, ORANGE, RED, BLUE, LIGHTGREY = (
    "#555", "#2e7d32", "#8a8c12", "#c65200", "#c62828", "#0063a6", "#767676")  # white text reads on each

# Verdana 11px advance widths (px), by character class; everything else is DEFAULT_WIDTH.
_WIDTHS = {
    **dict.fromkeys(" ijl!|.,:;'`", 3.9),
    **dict.fromkeys("frt()[]{}/\\-", 4.9),
    **dict.fromkeys("mwMW%@", 10.0),
    **dict.fromkeys("ABCDEFGHJKLNOPQRSTUVXYZ", 7.6),
    **dict.fromkeys("0123456789", 7.0),
    "I": 4.6,
}
DEFAULT_WIDTH = 6.6
WIDE_WIDTH = 11.0  # East Asian wide and full-width characters


@dataclass(frozen=True)
class BadgeFacts:
    """What a badge says about one card version."""

    card_id: str
    version: int
    cells: int
    strict_passes: int  # cells passing the full card (D1–D4) under strict coding of D3
    permissive_passes: int
    reproduced: bool  # the report recomputed every number the card reports
    reproductions: int = 0  # attestations by others that reproduced this card (issue 14 item 2)
    preregistration: str | None = None  # None: none named; "matched"; "deviated" (issue 14 item 1)
    state: str = "current"  # in a registry: current | superseded | revoked; "current" outside one


def preregistration_block(report: Any) -> Any:
    """A report's ``preregistration: {entry, logged_at, matched, deviations}`` block (report data or
    the typed report), or None when it names none: the field absent, null, or msgspec's UNSET (the
    typed report's "not given"; it is not None). The one test of "is a pre-registration present"."""
    block = report.get("preregistration") if isinstance(report, dict) else getattr(report, "preregistration", None)
    return None if block is None or block is UNSET else block


def preregistration_state(report: Any) -> str | None:
    """"matched", "deviated" or None (no pre-registration named) from a report's pre-registration
    block, read leniently so that a report written before pre-registration existed badges as not
    pre-registered."""
    block = preregistration_block(report)
    if block is None:
        return None
    matched = block.get("matched") if isinstance(block, dict) else getattr(block, "matched", None)
    return "matched" if matched is True else "deviated"


def badge_facts(report, *, reproductions: int = 0, state: str = "current") -> BadgeFacts:
    """The facts of a :class:`~acards.report.model.Report` (its full-card counts, its reproduced flag,
    its pre-registration); ``reproductions`` and ``state`` come from the registry."""
    return BadgeFacts(
        card_id=report.card.id,
        version=report.card.version,
        cells=len(report.cells),
        strict_passes=sum(1 for cell in report.cells if cell.full_card.strict),
        permissive_passes=sum(1 for cell in report.cells if cell.full_card.permissive),
        reproduced=report.reproduced,
        reproductions=reproductions,
        preregistration=preregistration_state(report),
        state=state,
    )


def segments(facts: BadgeFacts, label: bool = True) -> list[tuple[str, str]]:
    """The badge's (text, colour) segments, left to right. A revoked card says only that.
    ``label``: start with the card's id and version (a row that already names the card leaves it out)."""
    parts = [(f"acceptance card {facts.card_id} v{facts.version}", GREY)] if label else []
    if facts.state == "revoked":
        return parts + [("revoked", RED)]
    if not facts.reproduced:
        parts.append(("numbers not reproduced", RED))
    elif facts.cells == 0:
        parts.append(("no cells", LIGHTGREY))
    else:
        n = facts.cells
        verdict = f"full card {facts.strict_passes}/{n} strict · {facts.permissive_passes}/{n} permissive"
        if facts.strict_passes == n:
            colour = GREEN
        elif facts.permissive_passes == n:
            colour = YELLOWGREEN
        elif facts.permissive_passes or facts.strict_passes:
            colour = ORANGE
        else:
            colour = RED
        parts.append((verdict, colour))
    k = facts.reproductions
    parts.append((f"reproduced by {format_number(k)}", BLUE if k else LIGHTGREY))
    parts.append({"matched": ("pre-registered", BLUE), "deviated": ("deviates from its pre-registration", RED)}
                 .get(facts.preregistration or "", ("not pre-registered", LIGHTGREY)))
    if facts.state == "superseded":
        parts.append(("superseded", LIGHTGREY))
    return parts


def summary(facts: BadgeFacts) -> str:
    """The badge as one line of text (its <title> and aria-label), always naming the card."""
    return "; ".join(text for text, _ in segments(facts))


def clean(text: str) -> str:
    """Text as a badge shows it: format characters (bidirectional controls, zero-width joiners) shown
    as ``[U+XXXX]`` as on the card pages, other controls, surrogates and unassigned code points
    dropped (XML 1.0 forbids most), whitespace runs as one space."""
    shown = []
    for ch in " ".join(str(text).split()):
        category = unicodedata.category(ch)
        if category == "Cf":
            shown.append(f"[U+{ord(ch):04X}]")
        elif category not in ("Cc", "Cs", "Co", "Cn"):
            shown.append(ch)
    return "".join(shown)


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """XML text and attribute escaping."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def text_width(text: str) -> float:
    """The estimated width in px of ``text`` in Verdana 11px."""
    total = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            total += WIDE_WIDTH
        else:
            total += _WIDTHS.get(ch, DEFAULT_WIDTH)
    return total


def _px(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def badge_svg(facts: BadgeFacts, label: bool = True) -> str:
    """The badge as a standalone SVG document (flat, square corners, 20 px high); ``label``: see :func:`segments`."""
    shown = [(shorten(clean(text)), colour) for text, colour in segments(facts, label)]
    widths = [round(text_width(text) + 2 * PADDING, 1) for text, _ in shown]
    total = round(sum(widths), 1)
    title = escape(clean(summary(facts)))
    rects, texts = [], []
    x = 0.0
    for (text, colour), width in zip(shown, widths):
        rects.append(f'<rect x="{_px(x)}" width="{_px(width)}" height="{HEIGHT}" fill="{colour}"/>')
        middle = _px(x + width / 2)
        fit = f'textLength="{_px(width - 2 * PADDING)}" lengthAdjust="spacingAndGlyphs"'  # the estimate, enforced
        texts.append(f'<text x="{middle}" y="15" {fit} fill="#010101" fill-opacity=".3">{escape(text)}</text>')
        texts.append(f'<text x="{middle}" y="14" {fit}>{escape(text)}</text>')
        x = round(x + width, 1)
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_px(total)}" height="{HEIGHT}" '
        f'viewBox="0 0 {_px(total)} {HEIGHT}" role="img" aria-label="{title}">',
        f"<title>{title}</title>",
        "<g shape-rendering=\"crispEdges\">", *rects, "</g>",
        f'<g fill="#fff" text-anchor="middle" font-family="{FONT}" font-size="11">', *texts, "</g>",
        "</svg>",
    ]) + "\n"
