"""Does a report hold together, and does it say what its card reports?  What `acards sign` checks.

A signed report is what a registry shows, so a report that was edited by hand (a claim turned
from unsupported to supported, a cell's outcome changed) must not be signed.  Without evidence
and models this cannot recompute any number; it checks what follows from the report itself and
from the card:

- every claim of the card is in the report, once, in the card's order, and nothing else is;
- each claim's outcomes are its cells' diagnostics and its verdict follows from them (for a claim
  whose thresholds are the card's: the report's cells were computed under exactly those);
- each claim is reproduced: its ``reported`` block in the card matches the report (SPEC §8), and
  the report's ``reproduced`` flags agree with its discrepancies.

The numbers themselves are recomputed only by `acards verify`; a reader of a registry runs it.
"""

from __future__ import annotations

from acards.diagnostics.discrepancies import claim_discrepancies
from acards.diagnostics.verdict import claim_verdict
from acards.report.model import Report


def inconsistencies(card_claims: list[dict], report: Report) -> list[str]:
    """Every way ``report`` contradicts itself or the card's claims (empty: consistent)."""
    found: list[str] = []
    card_ids = [claim["id"] for claim in card_claims]
    report_ids = [claim.id for claim in report.claims]
    if report_ids != card_ids:
        return [f"the report's claims {report_ids} are not the card's claims {card_ids}"]
    cells = {cell.id: cell for cell in report.cells}
    for source, claim in zip(card_claims, report.claims):
        where = f"claim {claim.id}"
        missing = [cell_id for cell_id in source["cells"] if cell_id not in cells]
        if missing:
            found.append(f"{where} covers cells the report does not have: {', '.join(missing)}")
            continue
        requires = list(claim.requires) if claim.requires else None
        if not claim.thresholds and requires:
            # Under the card's thresholds the claim's outcomes are its cells' own.
            outcomes = {cell_id: {name: cells[cell_id].diagnostics.by_name(name).outcome for name in requires}
                        for cell_id in source["cells"]}
            if claim.outcomes and claim.outcomes != outcomes:
                found.append(f"{where}: its outcomes are not those of its cells' diagnostics")
            if claim_verdict(outcomes) != claim.verdict:
                found.append(f"{where}: verdict {claim.verdict} does not follow from its cells' outcomes")
            per_cell = {cell_id: cells[cell_id].diagnostics for cell_id in source["cells"]}
            if claim_discrepancies(source, claim.verdict, per_cell):
                found.append(f"{where}: what the card reports is not what the report says")
        elif claim.outcomes and claim_verdict(claim.outcomes) != claim.verdict:
            found.append(f"{where}: verdict {claim.verdict} does not follow from its outcomes")
        reported_verdict = (source.get("reported") or {}).get("verdict")
        if reported_verdict is not None and reported_verdict != claim.verdict:
            found.append(f"{where}: the card reports {reported_verdict}, the report says {claim.verdict}")
        if claim.reproduced != (not claim.discrepancies):
            found.append(f"{where}: reproduced is {claim.reproduced} but it lists {len(claim.discrepancies)} discrepancies")
    if report.reproduced != all(claim.reproduced for claim in report.claims):
        found.append(f"the report says reproduced is {report.reproduced}, its claims say otherwise")
    return found
