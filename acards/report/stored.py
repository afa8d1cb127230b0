"""The one reader of a report that was stored or signed: JSON data → report-1.0 → :class:`Report`.

`acards render --report` (acards.present.render.read_report), `acards sign --report` and the
registry's renderer (acards.site.renderer) all read a report through :func:`check_report`, after
parsing the JSON their own way.  Writing goes the other way through ``as_builtins`` and
acards.present.text.report_json.
"""

from __future__ import annotations

from typing import Any

import msgspec

from acards.errors import AcardsError, Location
from acards.report.model import Report, from_builtins
from acards.schemas import validate

HINT = "pass the JSON file `acards verify CARD --report REPORT.json` wrote for this card"


def check_report(data: Any, *, code: str = "usage.bad-report", hint: str = HINT, file: str | None = None,
                 message: str = "the report does not match report-1.0: {message}") -> Report:
    """``data`` (parsed JSON) as a Report, once it is shown to match schema/report-1.0.schema.json;
    every mismatch is collected into one AcardsError with ``code`` (``message`` words each one)."""
    problems = validate(data, "report-1.0", code=code, hint=hint, file=file, message=message)
    if problems:
        raise AcardsError.collect(problems)
    try:
        return from_builtins(data)
    except msgspec.ValidationError as error:  # the schema allows what the types do not (e.g. 1.0 for an integer)
        raise AcardsError(code, f"the report does not fit report-1.0's types: {error}", hint, Location(file)) from None
