"""What changes between two reports of the same card and evidence: `acards migrate` compares the
report under the card's old standard with the report under the new one.

Pure: it reads two :class:`~acards.report.model.Report` values and returns the changes, in the
card's order (claims first, then cells); the command prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acards.report.model import Claim, Diagnostic, Report
from acards.vocabulary import DIAGNOSTICS

TOO_FEW_SEEDS = "too-few-seeds"
# The diagnostics a 1.1 card's min_seeds gates (SPEC §10.1).
SEED_GATED = ("reliability", "fresh", "transfer")


@dataclass(frozen=True)
class Change:
    """One result that differs.  ``what``: ``verdict`` or ``reproduced`` (of a claim), ``outcome``
    (of a claim's cell × diagnostic, or of a cell's diagnostic under the card's thresholds),
    ``observed`` (the mechanism class a cell's weights show), ``full-card`` (a cell's strict or
    permissive full-card pass).  ``reasons``: the codes of the new result's reasons that the old
    one did not give (why it changed, e.g. ``too-few-seeds``)."""

    what: str
    before: Any
    after: Any
    claim: str | None = None
    cell: str | None = None
    diagnostic: str | None = None
    reasons: tuple[str, ...] = ()

    def as_json(self) -> dict:
        return {"what": self.what, "claim": self.claim, "cell": self.cell, "diagnostic": self.diagnostic,
                "before": self.before, "after": self.after, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class SeedShortfall:
    """A cell whose U or D has fewer seeds than the new report's ``min_seeds`` demands."""

    cell: str
    seeds_undefended: int | None
    seeds_defended: int | None
    min_seeds: int
    diagnostics: tuple[str, ...]  # the diagnostics it leaves insufficient

    def as_json(self) -> dict:
        return {"cell": self.cell, "seeds_undefended": self.seeds_undefended, "seeds_defended": self.seeds_defended,
                "min_seeds": self.min_seeds, "diagnostics": list(self.diagnostics)}


@dataclass
class ReportDiff:
    changes: list[Change] = field(default_factory=list)
    seed_shortfalls: list[SeedShortfall] = field(default_factory=list)

    @property
    def verdicts_change(self) -> bool:
        return any(change.what == "verdict" for change in self.changes)


def _new_reasons(before: Diagnostic | None, after: Diagnostic | None) -> tuple[str, ...]:
    if after is None:
        return ()
    old = {reason.code for reason in before.reasons} if before is not None else set()
    return tuple(dict.fromkeys(reason.code for reason in after.reasons if reason.code not in old))


def _claim_changes(before: Claim, after: Claim, cells_after: dict, cells_before: dict) -> list[Change]:
    found = []
    if before.verdict != after.verdict:
        found.append(Change("verdict", before.verdict, after.verdict, claim=after.id))
    # A claim with its own thresholds was diagnosed under them: the cell's reasons (card thresholds) may not apply.
    own_thresholds = bool(after.thresholds)
    old_outcomes = before.outcomes or {}
    for cell_id, outcomes in (after.outcomes or {}).items():
        for name, outcome in outcomes.items():
            previous = old_outcomes.get(cell_id, {}).get(name)
            if previous == outcome:
                continue
            reasons: tuple[str, ...] = ()
            if not own_thresholds and cell_id in cells_after:
                reasons = _new_reasons(cells_before[cell_id].diagnostics.by_name(name) if cell_id in cells_before else None,
                                       cells_after[cell_id].diagnostics.by_name(name))
            found.append(Change("outcome", previous, outcome, claim=after.id, cell=cell_id, diagnostic=name, reasons=reasons))
    if before.reproduced != after.reproduced:
        found.append(Change("reproduced", before.reproduced, after.reproduced, claim=after.id,
                            reasons=tuple(dict.fromkeys(d.field for d in after.discrepancies))))
    return found


def _cell_changes(before, after) -> list[Change]:
    found = []
    for name in DIAGNOSTICS:
        old, new = before.diagnostics.by_name(name), after.diagnostics.by_name(name)
        if old.outcome != new.outcome:
            found.append(Change("outcome", old.outcome, new.outcome, cell=after.id, diagnostic=name,
                                reasons=_new_reasons(old, new)))
    old_m, new_m = before.diagnostics.mechanism, after.diagnostics.mechanism
    if old_m.observed != new_m.observed:
        found.append(Change("observed", old_m.observed, new_m.observed, cell=after.id, diagnostic="mechanism"))
    for coding in ("strict", "permissive"):
        old_pass, new_pass = getattr(before.full_card, coding), getattr(after.full_card, coding)
        if old_pass != new_pass:
            found.append(Change("full-card", old_pass, new_pass, cell=after.id, diagnostic=coding))
    return found


def seed_shortfalls(report: Report) -> list[SeedShortfall]:
    """The cells where ``report`` (under the card's thresholds) says too-few-seeds, with the seed counts."""
    found = []
    for cell in report.cells:
        gated = tuple(name for name in SEED_GATED
                      if any(r.code == TOO_FEW_SEEDS for r in cell.diagnostics.by_name(name).reasons))
        if not gated:
            continue
        reliability = cell.diagnostics.reliability
        estimates = reliability.estimates
        found.append(SeedShortfall(cell.id, estimates.get("n_seeds_undefended"), estimates.get("n_seeds_defended"),
                                   reliability.thresholds.get("min_seeds", 0), gated))
    return found


def diff_reports(before: Report, after: Report) -> ReportDiff:
    """Every claim verdict, claim outcome, cell outcome, observed class and full-card pass that
    differs between two reports of the same card (same claims and cells, in the same order)."""
    cells_before = {cell.id: cell for cell in before.cells}
    cells_after = {cell.id: cell for cell in after.cells}
    claims_before = {claim.id: claim for claim in before.claims}
    changes: list[Change] = []
    for claim in after.claims:
        if claim.id in claims_before:
            changes += _claim_changes(claims_before[claim.id], claim, cells_after, cells_before)
    for cell in after.cells:
        if cell.id in cells_before:
            changes += _cell_changes(cells_before[cell.id], cell)
    return ReportDiff(changes, seed_shortfalls(after))

