"""Hand-made inputs for the decision tests: a Comparison with chosen numbers, no records.

Every number the decision tables use is a dyadic rational (0.5, 0.25, 0.125, 2**-10, ...), so
``Δ − z·SE`` and friends are computed exactly in binary floating point and a row can sit *exactly*
on a threshold.  ``JUST`` is the step used for the rows just on either side of a boundary.

The diagnostics return the report's types (acards.report.model); the tests read them as plain
JSON data (``plain``) and build the typed inputs of the verdict and reproduction code from plain
dicts (``as_diagnostic``, ``as_diagnostics``, ``as_cell``), so the tables stay readable.
"""

from __future__ import annotations

import msgspec

from acards.diagnostics.common import Comparison, reason
from acards.report import model

JUST = 2.0**-10  # one step either side of a boundary, exact in binary


def comparison(*, difference: float = 0.25, se_cluster: float = 0.0625, seed_term: float | None = None,
               mean_a: float = 0.5, se_a: float = 0.0625, n_subjects: int = 12, n_items: int = 48,
               seeds_a=(0,), seeds_b=(0,), per_seed=None) -> Comparison:
    """A paired comparison a − b with the given summary numbers (mean_b follows from the difference)."""
    return Comparison(
        n_items=n_items, n_subjects=n_subjects, seeds_a=list(seeds_a), seeds_b=list(seeds_b),
        mean_a=mean_a, se_a=se_a, mean_b=mean_a - difference, se_b=0.0625,
        difference=difference, se_cluster=se_cluster, seed_term=seed_term,
        per_seed=per_seed, ci=None,
    )


def plain(value):
    """A result (diagnostic, discrepancy, summary, or a list of them) as plain JSON data."""
    return msgspec.to_builtins(value)


def codes(diagnostic) -> set[str]:
    return {r["code"] for r in plain(diagnostic)["reasons"]}


def missing(code: str = "missing-condition", message: str = "no defended records") -> list:
    """The `unavailable` argument of a diagnostic: why its comparison could not be made."""
    return [reason(code, message)]


_KINDS = {"mechanism": model.MechanismDiagnostic, "cost": model.CostDiagnostic}
_DEFAULTS = {
    "mechanism": {"observed": None, "declared": None, "strict": "insufficient", "permissive": "insufficient", "relabel": None},
    "cost": {"measurable_cost": None},
}


def as_diagnostic(outcome: str = "pass", estimates: dict | None = None, thresholds: dict | None = None, *,
                  name: str = "reliability", **extra) -> model.Diagnostic:
    """The diagnostic called ``name`` with these fields (the kind's own fields default as when insufficient)."""
    data = {"outcome": outcome, "reasons": [], "estimates": estimates or {}, "thresholds": thresholds or {}, "details": {},
            **_DEFAULTS.get(name, {}), **extra}
    return msgspec.convert(data, _KINDS.get(name, model.Diagnostic))


def as_diagnostics(**by_name) -> model.Diagnostics:
    """A cell's five diagnostics; each given as a typed diagnostic or an outcome; missing ones insufficient."""
    five = {}
    for name in ("reliability", "fresh", "mechanism", "transfer", "cost"):
        value = by_name.get(name, "insufficient")
        five[name] = value if isinstance(value, model.Diagnostic) else as_diagnostic(value, name=name)
    return model.Diagnostics(**five)


def as_cell(cell_id: str, diagnostics: model.Diagnostics, *, strict: bool = False, permissive: bool = False,
            headline: bool = False, coding_mode: str = "strict") -> model.Cell:
    return model.Cell(id=cell_id, coding_mode=coding_mode, diagnostics=diagnostics,
                      full_card=model.FullCard(strict=strict, permissive=permissive, headline=headline))
