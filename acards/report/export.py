"""The per-cell estimates of a verification report as a flat table: one row per cell and diagnostic.

Pure: a Report in, rows of text out (``estimate_rows``), and the CSV text of those rows
(``estimates_csv``, Python's csv module). `acards export csv` is the command; docs/importing.md
describes the columns.

Column names are the report's own estimate names (docs/report.md), so a column means what that
estimate means; a diagnostic that lacks an estimate (the cost guard has no ``reduction``, an
insufficient result has few numbers) leaves the cell empty. Numbers are written as Python's
``repr`` writes them, which reads back to the same float.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from acards.report.model import Report
from acards.vocabulary import DIAGNOSTICS

# The estimates a reader of a card compares across cells, in this order (docs/report.md#estimates).
ESTIMATE_COLUMNS = (
    "reduction", "reduction_lower", "se_total", "ci_low", "ci_high", "df", "critical_value", "mde",
    "relative_reduction", "retention", "alpha_t", "alpha_a", "delta", "se", "delta_lower", "n_items", "n_subjects",
)
COLUMNS = ("cell", "diagnostic", "outcome", *ESTIMATE_COLUMNS, "observed_mechanism", "reasons")


def _text(value: Any) -> str:
    """A report value as a CSV field: empty when absent or null, JSON's words for booleans."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def estimate_rows(report: Report) -> list[dict[str, str]]:
    """One row per cell × diagnostic, in the report's cell order and the standard's diagnostic order."""
    rows = []
    for cell in report.cells:
        for name in DIAGNOSTICS:
            diagnostic = cell.diagnostics.by_name(name)
            row = {"cell": cell.id, "diagnostic": name, "outcome": diagnostic.outcome}
            row.update({column: _text(diagnostic.estimates.get(column)) for column in ESTIMATE_COLUMNS})
            row["observed_mechanism"] = _text(getattr(diagnostic, "observed", None))
            row["reasons"] = "; ".join(reason.code for reason in diagnostic.reasons)
            rows.append(row)
    return rows


def estimates_csv(report: Report) -> str:
    """The rows of :func:`estimate_rows` as CSV text with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(estimate_rows(report))
    return buffer.getvalue()
