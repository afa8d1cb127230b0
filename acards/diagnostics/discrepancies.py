"""Is what a card reports reproduced?  Compare a claim's `reported` block with the recomputation.

Outcomes, verdicts and mechanism classes must match exactly.  A number is reproduced when it lies
within max(0.005, 0.25·SE) of the recomputed value (SPEC §8), where SE is the standard error of
the diagnostic it belongs to: SE_tot of the split for reliability, fresh and transfer numbers, the
SE of δ for cost numbers, the paired SE for the behavioral control's numbers, and none (so the
absolute 0.005) for weight-signature numbers.
"""

from __future__ import annotations

from acards.diagnostics.verdict import combine
from acards.numbers import significant
from acards.report.model import Diagnostic, Diagnostics, Discrepancy, MechanismDiagnostic

ABSOLUTE = 0.005
RELATIVE_SE = 0.25


def tolerance(diagnostic_name: str, field: str, diagnostic: Diagnostic) -> float:
    e = diagnostic.estimates
    se = None
    if diagnostic_name in ("reliability", "fresh", "transfer"):
        se = e.get("se_total")
    elif diagnostic_name == "cost":
        se = e.get("se")
    elif field.startswith("control_"):
        se = e.get("se_control_margin")
    return max(ABSOLUTE, RELATIVE_SE * se) if se is not None else ABSOLUTE


def _discrepancy(field, reported, recomputed, cell=None, diagnostic=None, tol=None, message="") -> Discrepancy:
    return Discrepancy(cell=cell, diagnostic=diagnostic, field=field, reported=reported, recomputed=recomputed,
                       tolerance=tol, message=message)


def _observed(diagnostic: Diagnostic) -> str | None:
    """The observed mechanism class: None for every diagnostic but D3 (and for D3 without one)."""
    return diagnostic.observed if isinstance(diagnostic, MechanismDiagnostic) else None


def _compare_block(block: dict, name: str, diagnostic: Diagnostic, cell: str) -> list[Discrepancy]:
    found = []
    for field, reported in block.items():
        if field == "outcome":
            if reported != diagnostic.outcome:
                found.append(_discrepancy("outcome", reported, diagnostic.outcome, cell, name,
                                          message=f"{name} outcome reported {reported}, recomputed {diagnostic.outcome}"))
        elif field == "observed":
            observed = _observed(diagnostic)
            if reported != observed:
                found.append(_discrepancy("observed", reported, observed, cell, name,
                                          message=f"observed mechanism reported {reported}, recomputed {observed}"))
        else:
            recomputed = diagnostic.estimates.get(field)
            tol = tolerance(name, field, diagnostic)
            if not isinstance(recomputed, (int, float)) or isinstance(recomputed, bool) or abs(recomputed - reported) > tol:
                shown = significant(recomputed, 4) if isinstance(recomputed, float) else recomputed
                found.append(_discrepancy(field, reported, recomputed, cell, name, tol,
                                          f"{name}.{field} reported {reported}, recomputed {shown} (tolerance {significant(tol, 2)})"))
    return found


def claim_discrepancies(claim: dict, verdict: str, per_cell: dict[str, Diagnostics]) -> list[Discrepancy]:
    """Every way the claim's `reported` block differs from the recomputation (empty: reproduced).
    ``verdict`` is the claim's recomputed verdict, ``per_cell`` the diagnostics of its cells."""
    reported = claim.get("reported") or {}
    found = []
    if "verdict" in reported and reported["verdict"] != verdict:
        found.append(_discrepancy("verdict", reported["verdict"], verdict,
                                  message=f"verdict reported {reported['verdict']}, recomputed {verdict}"))
    for name, block in reported.items():
        if name in ("verdict", "cells"):
            continue
        if len(per_cell) == 1:
            (cell, diagnostics), = per_cell.items()
            found += _compare_block(block, name, diagnostics.by_name(name), cell)
        else:  # over several cells an outcome means "in every cell", and an observed class must hold in each
            if "outcome" in block:
                combined = combine([d.by_name(name).outcome for d in per_cell.values()])
                if block["outcome"] != combined:
                    found.append(_discrepancy("outcome", block["outcome"], combined, None, name,
                                              message=f"{name} outcome over the claim's cells reported {block['outcome']}, recomputed {combined}"))
            if "observed" in block:
                for cell, diagnostics in per_cell.items():
                    found += _compare_block({"observed": block["observed"]}, name, diagnostics.by_name(name), cell)
    for cell, blocks in (reported.get("cells") or {}).items():
        for name, block in blocks.items():
            found += _compare_block(block, name, per_cell[cell].by_name(name), cell)
    return found
