"""Step 4 of the pipeline: judge every claim of the card.

A claim is judged under its own thresholds (the card's, overridden by the claim's): its cells are
diagnosed again when those differ, the reliability p-values are Holm-adjusted across all the card's
cells under the claim's reliability thresholds, the Holm gate applies when the claim asks for it
(``family_correction: holm``), and the verdict is the intersection–union over the claim's cells
(SPEC §4).  What the authors report is then compared with what was recomputed (SPEC §8).
"""

from __future__ import annotations

from acards.card.model import Card
from acards.diagnostics.discrepancies import claim_discrepancies
from acards.diagnostics.reliability import holm_gate, reliability
from acards.diagnostics.verdict import claim_verdict
from acards.pipeline.recompute import Recomputed, apply_holm, diagnose_cell, thresholds_for
from acards.vocabulary import FOUR


def claim_holm(card: Card, recomputed: Recomputed, reliability_th: dict) -> dict[str, float | None]:
    """Holm over all the card's cells, with p-values under these reliability thresholds."""
    if reliability_th == recomputed.thresholds["reliability"]:
        return {c["id"]: c["diagnostics"]["reliability"]["estimates"].get("p_holm") for c in recomputed.cells}
    rows = []
    for cell in card.cells:
        evidence = recomputed.evidence[cell["id"]]
        rows.append({"diagnostics": {"reliability": reliability(evidence.comparisons["heldout"], evidence.unavailable["heldout"],
                                                                reliability_th)}})
    apply_holm(rows)
    return {cell["id"]: row["diagnostics"]["reliability"]["estimates"].get("p_holm") for cell, row in zip(card.cells, rows)}


def claim_diagnostics(card: Card, recomputed: Recomputed, claim: dict, thresholds: dict[str, dict]) -> dict[str, dict]:
    """The diagnostics of each of the claim's cells under the claim's thresholds, Holm gate applied."""
    if thresholds == recomputed.thresholds:
        by_id = {c["id"]: c["diagnostics"] for c in recomputed.cells}
        per_cell = {cell_id: by_id[cell_id] for cell_id in claim["cells"]}
    else:
        holm_values = claim_holm(card, recomputed, thresholds["reliability"])
        per_cell = {}
        for cell_id in claim["cells"]:
            diagnostics = diagnose_cell(card, recomputed.evidence[cell_id], thresholds, recomputed.training,
                                        recomputed.file_prompts)
            diagnostics["reliability"]["estimates"]["p_holm"] = holm_values[cell_id]
            per_cell[cell_id] = diagnostics
    if claim.get("family_correction") == "holm":
        alpha = thresholds["reliability"]["alpha"]
        per_cell = {cell_id: dict(d, reliability=holm_gate(d["reliability"], alpha)) for cell_id, d in per_cell.items()}
    return per_cell


def judge_claim(card: Card, recomputed: Recomputed, claim: dict) -> dict:
    """The report's entry for one claim: verdict, outcomes, the thresholds it overrides, discrepancies."""
    thresholds = thresholds_for(card, claim)
    requires = claim.get("requires") or list(FOUR)
    per_cell = claim_diagnostics(card, recomputed, claim, thresholds)
    outcomes = {cell_id: {name: per_cell[cell_id][name]["outcome"] for name in requires} for cell_id in claim["cells"]}
    result = {
        "id": claim["id"], "statement": claim["statement"], "cells": claim["cells"], "requires": requires,
        "verdict": claim_verdict(outcomes), "outcomes": outcomes,
        "thresholds": {name: th for name, th in thresholds.items() if th != recomputed.thresholds[name]},
    }
    result["discrepancies"] = claim_discrepancies(claim, result, per_cell)
    result["reproduced"] = not result["discrepancies"]
    return result


def judge_claims(card: Card, recomputed: Recomputed) -> list[dict]:
    """Every claim of the card, in the card's order."""
    return [judge_claim(card, recomputed, claim) for claim in card.claims]
