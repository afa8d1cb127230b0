"""How numbers shown to people are written: one place for pages, plots, terminal text and the
messages of diagnostics and discrepancies.

Pure (no I/O, no imports beyond math), so the pure diagnostics and the presentation layer can both
use it.  The formats differ on purpose, each with its own precision parameter, and every output
that is checked byte for byte (rendered pages, reports) depends on them staying as they are:

- :func:`format_number`: pages and the forest plot, 3 significant digits; integral values as
  integers, ``—`` for none or a non-finite value, yes/no for booleans (:func:`interval_text`:
  an estimate with its z·SE interval, in that format);
- :func:`significant`: a plain ``g`` format, e.g. 4 significant digits for a recomputed value in
  a discrepancy message, 2 for its tolerance;
- :func:`fixed`: a fixed number of decimals, e.g. 4 for a confidence bound in a diagnostic's
  reason, 3 for a retention ratio.
"""

from __future__ import annotations

import math

SIGNIFICANT = 3  # pages and plots


def significant(value: float, digits: int) -> str:
    """``value`` with ``digits`` significant digits (Python's ``g`` format)."""
    return f"{value:.{digits}g}"


def fixed(value: float, places: int) -> str:
    """``value`` with ``places`` decimals."""
    return f"{value:.{places}f}"


def format_number(value, digits: int = SIGNIFICANT) -> str:
    """A number as text with at most ``digits`` significant digits; ``—`` for none.

    Integral values print as integers whatever their type, so that 2 and 2.0 (which RFC 8785
    canonical JSON does not distinguish) render the same.
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        text = significant(value, digits)
        return "0" if float(text) == 0 else text
    raise TypeError(f"not a number: {value!r}")


def interval_text(estimate, se, z) -> str:
    """``estimate [estimate − z·se, estimate + z·se]``; the estimate alone when se is unknown."""
    if estimate is None:
        return "—"
    if se is None:
        return format_number(estimate)
    return f"{format_number(estimate)} [{format_number(estimate - z * se)}, {format_number(estimate + z * se)}]"
