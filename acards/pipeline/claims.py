"""Step 4 of the pipeline: judge every claim of the card.

A claim is judged under its own thresholds (the card's, overridden by the claim's): its cells are
diagnosed again when those differ, the reliability p-values are Holm-adjusted across all the card's
cells under the claim's reliability thresholds, the Holm gate applies when the claim asks for it
(``family_correction: holm``), and the verdict is the intersection–union over the claim's cells
(SPEC §4).  What the authors report is then compared with what was recomputed (SPEC §8).
"""

from __future__ import annotations

from msgspec import UNSET
from msgspec.structs import replace

from acards.card.model import Card
from acards.diagnostics.discrepancies import claim_discrepancies
from acards.diagnostics.reliability import holm_gate, reliability
from acards.diagnostics.verdict import all_scorers_verdict, claim_verdict
from acards.pipeline.recompute import Recomputed, apply_holm, diagnose_cell, thresholds_for, with_p_holm
from acards.report.model import Claim, Diagnostics
from acards.vocabulary import FOUR


def claim_holm(card: Card, recomputed: Recomputed, reliability_th: dict) -> dict[str, float | None]:
    """Holm over all the card's cells, with p-values under these reliability thresholds."""
    if reliability_th == recomputed.thresholds["reliability"]:
        return {c.id: c.diagnostics.reliability.estimates.get("p_holm") for c in recomputed.cells}
    rows = []
    for cell in card.cells:
        evidence = recomputed.evidence[cell["id"]]
        rows.append(reliability(evidence.comparisons["heldout"], evidence.unavailable["heldout"], reliability_th))
    return {cell["id"]: row.estimates.get("p_holm") for cell, row in zip(card.cells, apply_holm(rows))}


def claim_diagnostics(card: Card, recomputed: Recomputed, claim: dict, thresholds: dict[str, dict]) -> dict[str, Diagnostics]:
    """The diagnostics of each of the claim's cells under the claim's thresholds, Holm gate applied."""
    if thresholds == recomputed.thresholds:
        by_id = {c.id: c.diagnostics for c in recomputed.cells}
        per_cell = {cell_id: by_id[cell_id] for cell_id in claim["cells"]}
    else:
        holm_values = claim_holm(card, recomputed, thresholds["reliability"])
        per_cell = {}
        for cell_id in claim["cells"]:
            diagnostics = diagnose_cell(card, recomputed.evidence[cell_id], thresholds, recomputed.training,
                                        recomputed.file_prompts)
            per_cell[cell_id] = replace(diagnostics, reliability=with_p_holm(diagnostics.reliability, holm_values[cell_id]))
    if claim.get("family_correction") == "holm":
        alpha = thresholds["reliability"]["alpha"]
        per_cell = {cell_id: replace(d, reliability=holm_gate(d.reliability, alpha)) for cell_id, d in per_cell.items()}
    return per_cell


def _outcomes(card: Card, recomputed: Recomputed, claim: dict, thresholds: dict[str, dict],
              requires: list[str]) -> tuple[dict[str, Diagnostics], dict[str, dict[str, str]]]:
    per_cell = claim_diagnostics(card, recomputed, claim, thresholds)
    return per_cell, {cell_id: {name: per_cell[cell_id].by_name(name).outcome for name in requires} for cell_id in claim["cells"]}


def judge_claim(card: Card, recomputed: Recomputed, claim: dict, scorers: dict[str, Recomputed] | None = None) -> Claim:
    """The report's entry for one claim: verdict, outcomes, the thresholds it overrides, discrepancies.
    With ``require_all_scorers`` and ``scorers`` (each scorer's recomputation, acards.pipeline.judges),
    the verdict is the claim's under every scorer combined; outcomes stay the primary's."""
    thresholds = thresholds_for(card, claim)
    requires = claim.get("requires") or list(FOUR)
    per_cell, outcomes = _outcomes(card, recomputed, claim, thresholds, requires)
    verdict = claim_verdict(outcomes)
    under: dict[str, str] = {}
    if claim.get("require_all_scorers") and scorers:
        under = {name: verdict if found is recomputed else claim_verdict(_outcomes(card, found, claim, thresholds, requires)[1])
                 for name, found in scorers.items()}
        verdict = all_scorers_verdict(list(under.values()))
    discrepancies = claim_discrepancies(claim, verdict, per_cell)
    return Claim(
        id=claim["id"], statement=claim["statement"], cells=claim["cells"], requires=requires,
        verdict=verdict, outcomes=outcomes,
        scorers=under or UNSET, broken_by=[name for name, v in under.items() if v != "supported"] if under else UNSET,
        thresholds={name: th for name, th in thresholds.items() if th != recomputed.thresholds[name]},
        discrepancies=discrepancies, reproduced=not discrepancies,
    )


def judge_claims(card: Card, recomputed: Recomputed, scorers: dict[str, Recomputed] | None = None) -> list[Claim]:
    """Every claim of the card, in the card's order (``scorers``: see :func:`judge_claim`)."""
    return [judge_claim(card, recomputed, claim, scorers) for claim in card.claims]
