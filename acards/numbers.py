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
  reason, 3 for a retention ratio;
- :func:`p_value_text`: a p-value for pages, ``< 1e-6`` below that floor (a p of 2e-144 says no
  more than "very small", and its digits are numerical noise);
- :func:`count`: ``1 cell``, ``2 cells``.
"""

from __future__ import annotations

import math

SIGNIFICANT = 3  # pages and plots
P_FLOOR = 1e-6  # smaller p-values print as "< 1e-6"
CLIPPED = "†"  # after an interval end cut back to the scale's bound


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


REPORTED_DECIMALS = 3  # a number written into a card is off by at most 0.0005, a tenth of the smallest tolerance (0.005)


def number_text(value: float | int) -> str:
    """A number as a card's `reported` block shows it (`acards fill`): integers as integers, other
    numbers rounded to at least REPORTED_DECIMALS decimals and SIGNIFICANT significant digits (so
    small numbers stay readable), without trailing zeros."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(REPORTED_DECIMALS, SIGNIFICANT - 1 - magnitude)
    text = f"{value:.{decimals}f}".rstrip("0")
    text = text + "0" if text.endswith(".") else text
    return "0.0" if text == "-0.0" else text


def count(n: int, word: str) -> str:
    """``n word`` with the plural ``s`` unless n is 1 (n as :func:`format_number`: 2.0 is ``2``)."""
    return f"{format_number(n)} {word}{'' if n == 1 else 's'}"


def p_value_text(value) -> str:
    """A p-value: ``< 1e-6`` below :data:`P_FLOOR`, otherwise as :func:`format_number`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < P_FLOOR:
        return "< 1e-6"  # P_FLOOR, written as people write it (Python writes 1e-06)
    return format_number(value)


def clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float, bool, bool]:
    """An interval cut back to ``bounds`` (none: left as it is), and whether each end was cut."""
    if bounds is None:
        return low, high, False, False
    return max(low, bounds[0]), min(high, bounds[1]), low < bounds[0], high > bounds[1]


def bound_text(low: float, high: float, bounds: tuple[float, float] | None = None) -> str:
    """``[low, high]``, each end cut back to ``bounds`` marked :data:`CLIPPED`."""
    low, high, cut_low, cut_high = clip(low, high, bounds)
    return f"[{format_number(low)}{CLIPPED * cut_low}, {format_number(high)}{CLIPPED * cut_high}]"


def is_clipped(estimate, se, z, bounds: tuple[float, float] | None) -> bool:
    """Whether :func:`interval_text` cuts this interval back to ``bounds``."""
    if estimate is None or se is None:
        return False
    return any(clip(estimate - z * se, estimate + z * se, bounds)[2:])


def interval_text(estimate, se, z, bounds: tuple[float, float] | None = None) -> str:
    """``estimate [estimate − z·se, estimate + z·se]``; the estimate alone when se is unknown.

    ``bounds``: the range the quantity can take (a gap of scores in [0, 1] lies in [−1, 1]); an end
    beyond it is cut back to it and marked :data:`CLIPPED`."""
    if estimate is None:
        return "—"
    if se is None:
        return format_number(estimate)
    return f"{format_number(estimate)} {bound_text(estimate - z * se, estimate + z * se, bounds)}"
