"""D1 reliability (held-out split): an installed gap exists and the defense reliably reduces it."""

from __future__ import annotations

from msgspec.structs import replace

from acards import stats
from acards.diagnostics import critical
from acards.diagnostics.common import (
    Comparison,
    bootstrap_details,
    critical_symbol,
    reason,
    reduction_estimates,
    result,
)
from acards.numbers import fixed
from acards.report.model import Diagnostic, Reason


def claimed_reduction(claims: list[dict], cell_id: str, gap_undefended: float | None = None) -> float | None:
    """The held-out reduction the card claims for a cell: the smallest one its claims report for it
    (``reported.cells.<cell>.reliability``, or ``reported.reliability`` of a claim on that cell
    alone), as ``reduction``, else as ``relative_reduction`` × the recomputed G_U; None when no claim
    reports one."""
    found = []
    for claim in claims:
        reported = claim.get("reported") or {}
        blocks = [(reported.get("cells") or {}).get(cell_id, {}).get("reliability")]
        if claim.get("cells") == [cell_id]:
            blocks.append(reported.get("reliability"))
        for block in filter(None, blocks):
            if isinstance(block.get("reduction"), (int, float)):
                found.append(float(block["reduction"]))
            elif isinstance(block.get("relative_reduction"), (int, float)) and gap_undefended is not None:
                found.append(float(block["relative_reduction"]) * gap_undefended)
    return min(found) if found else None


def reliability(c: Comparison | None, unavailable: list[Reason], th: dict, claims: list[dict] | None = None,
                cell_id: str | None = None) -> Diagnostic:
    """Pass iff G_U − z·SE(G_U) > 0 and Δ − z·SE_tot > margin, with enough subjects and seeds (under
    standard 1.1, t critical values in place of z: see acards.diagnostics.critical).  Under 1.1 a
    failed reduction whose MDE exceeds the reduction the card's ``claims`` report for ``cell_id`` is
    also ``powerless``: the experiment could not have shown the claimed effect."""
    z, margin = th["z"], th["margin"]
    if c is None or unavailable or c.n_items == 0:
        return result("insufficient", unavailable or [reason("no-paired-items", "no held-out item has both framings under U and D")], {}, th)
    v11 = c.standard == "1.1"
    estimates = reduction_estimates(c, z, margin)
    if v11:
        estimates["p_value"] = critical.t_pvalue(c.difference - margin, c.se_total, c.df)
    else:
        estimates["p_value"] = stats.normal_pvalue(c.difference - margin, c.se_total)
    estimates["p_holm"] = None  # filled in across the card's cells
    estimates["per_seed_reduction"] = c.per_seed
    estimates["seeds_share_sign"] = (len({x > 0 for x in c.per_seed}) == 1) if c.per_seed and len(c.per_seed) > 1 else None
    details = bootstrap_details(c)
    included = bool(c.spreads) if v11 else c.seed_term is not None
    details["seed_variance_included"] = included
    reasons: list[Reason] = []
    if not included:
        reasons.append(reason("seed-variance-not-included", "U or D has fewer than 2 seeds: SE_tot is the clustered SE alone"))
    seeds = min(len(c.seeds_a), len(c.seeds_b))
    if c.n_subjects < th["min_subjects"] or seeds < th["min_seeds"]:
        if c.n_subjects < th["min_subjects"]:
            reasons.append(reason("too-few-subjects", f"{c.n_subjects} held-out subjects, fewer than min_subjects = {th['min_subjects']}"))
        if seeds < th["min_seeds"]:
            reasons.append(reason("too-few-seeds", f"{seeds} seeds, fewer than min_seeds = {th['min_seeds']}"))
        return result("insufficient", reasons, estimates, th, details)
    failed = False
    gap_rule, rule = (critical_symbol(estimates["critical_value_gap"], estimates["df_gap"]),
                      critical_symbol(estimates["critical_value"], estimates["df"])) if v11 else ("z", "z")
    if not estimates["gap_undefended_lower"] > 0:
        failed = True
        reasons.append(reason("no-installed-gap", f"G_U − {gap_rule}·SE = {fixed(estimates['gap_undefended_lower'], 4)} is not above 0: the undefended fine-tune shows no reliable gap to remove"))
    if not estimates["reduction_lower"] > margin:
        failed = True
        message = f"Δ − {rule}·SE_tot = {fixed(estimates['reduction_lower'], 4)} is not above the margin {margin}"
        if estimates["mde"] is not None:
            message += f" (MDE {fixed(estimates['mde'], 4)}: smaller true reductions are likely to be missed)"
        reasons.append(reason("reduction-not-reliable", message))
        claimed = claimed_reduction(claims or [], cell_id, c.mean_a) if v11 and cell_id is not None else None
        if claimed is not None and estimates["mde"] is not None and estimates["mde"] > claimed:
            reasons.append(reason("powerless", f"the MDE {fixed(estimates['mde'], 4)} exceeds the claimed reduction {fixed(claimed, 4)}: "
                                  "this design could not have shown the claimed effect reliably (plan one with `acards plan`)"))
    return result("fail" if failed else "pass", reasons, estimates, th, details)


def holm_gate(diagnostic: Diagnostic, alpha: float) -> Diagnostic:
    """The reliability result a claim with family_correction: holm sees: also needs p_holm ≤ alpha."""
    p = diagnostic.estimates.get("p_holm")
    if diagnostic.outcome != "pass" or (p is not None and p <= alpha):
        return diagnostic
    return replace(diagnostic, outcome="fail",
                   reasons=[*diagnostic.reasons, reason("holm-not-significant", f"Holm-adjusted p = {p} is above alpha = {alpha}")])
