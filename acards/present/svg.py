"""What the card pages' SVG plots share: escaping, coordinates, and the width a label will take.

The plots are pure text (no font is opened, no plotting library), so a label's width is estimated
from per-character advance widths.  The table is DejaVu Sans's (the sans-serif a bare Linux
browser falls back to, and wider than Helvetica, Arial or Segoe UI), so a column sized with it
holds its labels in every browser the pages are tested in (tests/test_browser.py measures them).
"""

from __future__ import annotations

import html
import re

FONT_FAMILY = "system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"
FONT_SIZE = 12

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")

# DejaVu Sans advance widths in em, by character class; anything else counts as DEFAULT_EM.
_EM = {
    **dict.fromkeys("il|'!.,:;", 0.28), **dict.fromkeys("fjt ()[]/\\·", 0.4), **dict.fromkeys("-_r", 0.5),
    **dict.fromkeys("0123456789", 0.64), **dict.fromkeys("abcdeghknopqsuvxyz", 0.62), **dict.fromkeys("mw", 0.98),
    **dict.fromkeys("ABCDEFGHIJKLNOPQRSTUVXYZ", 0.75), **dict.fromkeys("MW—", 1.0), "−": 0.84, "†": 0.5,
}
DEFAULT_EM = 0.8
BOLD = 1.12  # DejaVu Sans Bold is this much wider


def text_width(text: str, size: float = FONT_SIZE, bold: bool = False) -> float:
    """An upper estimate of ``text``'s width in SVG user units at ``size``."""
    em = sum(_EM.get(ch, DEFAULT_EM) for ch in str(text))
    return em * size * (BOLD if bold else 1.0)


def xml_text(value) -> str:
    """Text (or an attribute value) safe inside SVG/XML and HTML."""
    return html.escape(_NOT_XML.sub("\ufffd", str(value)), quote=True)


def coord(value: float) -> str:
    """A coordinate, written the same way every time (one decimal, never -0.0)."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text
