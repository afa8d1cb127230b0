"""D3 mechanism alignment: the observed mechanism class (weights, behavioral control) vs the declared one."""

from __future__ import annotations

import math

from acards.diagnostics.common import Comparison, framing_estimates, number, reason, result
from acards.numbers import fixed
from acards.report.model import MechanismDiagnostic, Reason, Relabel, extend

# acards.mechanism.signature speaks the paper's symbols; the report uses plain names.
REPORT_NAMES = {"alpha_T": "alpha_t", "alpha_A": "alpha_a", "kappa": "cosine", "r": "norm_ratio",
                "unchanged_ratio": "change_ratio", "t_in": "t_in", "t_out": "t_out", "S": "selectivity",
                "e_C": "e_c", "changed_share": "changed_share", "n_modules": "n_modules"}
# The estimates a standard 1.1 signature adds (SPEC §10.7–§10.9), under the same names.
REPORT_NAMES_1_1 = ("noise_floor", "mask_share", "mask_zeroed", "merge_residual", "merge_weight", "additive_outside",
                    "noise_cos_u", "noise_cos_v", "noise_spike", "layer_selective")


# For a cell whose checkpoints would let acards build the shrinkage control but whose records hold none.
NO_CONTROL = reason("no-control", "no control:shrinkage records: the mechanism is judged on the weights alone (run "
                    "`acards verify` with the generate extra and the card's prompts, without --no-generate, to build "
                    "the shrinkage control)")

def _per_module_view(signature: dict, estimates: dict, details: dict, reasons: list[Reason]) -> None:
    """SPEC §10.9: each changed module's own class, and a layer-selective action flagged."""
    for name in REPORT_NAMES_1_1:
        estimates[name] = signature["estimates"].get(name)
    classes = signature["estimates"]["module_classes"]
    details.update(aggregate_rule=signature["rule"], module_classes=classes)
    if signature["estimates"]["layer_selective"]:
        counts: dict[str, int] = {}
        for observed in classes.values():
            counts[observed] = counts.get(observed, 0) + 1
        kinds = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
        reasons.append(reason("layer-selective", f"the defense changed {len(classes)} of {signature['estimates']['n_modules']} "
                              f"modules ({kinds}); the aggregate rule is {signature['rule']}"))


def _rank(observed: str, declared: str) -> int:
    """How far a seed's class is from passing: 0 the declared class, 1 shrinkage, 2 any other."""
    return 0 if observed == declared else 1 if observed == "shrinkage" else 2


def across_seeds(seeds: list[tuple[int, dict]], declared: str, details: dict, reasons: list[Reason]) -> dict:
    """The signature that decides a cell with several pinned seeds: the first (in the card's order)
    of the seeds whose class is furthest from the declared one, so strict D3 passes only when every
    seed shows the declared class and permissive D3 only when every seed shows it or shrinkage.
    The per-seed classes and whether they agree go into ``details``; a disagreement is a reason."""
    classes = [{"seed": seed, "observed": sig["observed"], "rule": sig["rule"]} for seed, sig in seeds]
    worst = max(_rank(sig["observed"], declared) for _, sig in seeds)
    seed, deciding = next((seed, sig) for seed, sig in seeds if _rank(sig["observed"], declared) == worst)
    agrees = len({entry["observed"] for entry in classes}) == 1
    details.update(per_seed=classes, seeds_agree=agrees, decided_by_seed=seed)
    if not agrees:
        listed = ", ".join(f"seed {entry['seed']} {entry['observed']}" for entry in classes)
        reasons.append(reason("seeds-disagree", f"the weights of the {len(classes)} pinned seeds code different classes "
                              f"({listed}); the cell is coded as seed {seed}'s"))
    return deciding


def mechanism(signature: dict | None, control: Comparison | None, control_unavailable: list[Reason],
              control_reduction: float | None, declared: str, coding_mode: str, th: dict, *,
              seeds: list[tuple[int, dict]] | None = None, unpinned: list[int] | None = None) -> MechanismDiagnostic:
    """Observe a class from the weight signature, let the shrinkage control overrule it, and code
    the result strictly (observed == declared) and permissively (shrinkage also passes).

    ``seeds``: the signature of every pinned training seed, which replaces ``signature``: one seed
    decides alone, several are combined by :func:`across_seeds`.  ``unpinned``: seeds whose records
    exist but whose checkpoints are not pinned (named in a reason)."""
    estimates: dict = {}
    details: dict = {}
    reasons: list[Reason] = []
    observed = None
    if seeds:
        signature = seeds[0][1] if len(seeds) == 1 else across_seeds(seeds, declared, details, reasons)
    if signature is not None and unpinned:
        judged = ", ".join(str(seed) for seed, _ in seeds or [])
        reasons.append(reason("unpinned-seeds", f"records hold fine-tuned outputs of seed(s) {', '.join(map(str, unpinned))}, "
                              f"whose checkpoints the card does not pin: the weights are judged on seed(s) {judged} only"))
    if signature is not None:
        observed = signature["observed"]
        for key, name in REPORT_NAMES.items():
            estimates[name] = signature["estimates"].get(key)
        estimates["n_changed_modules"] = len(signature["estimates"]["changed_modules"])
        details.update(rule=signature["rule"], changed_modules=signature["estimates"]["changed_modules"],
                       modules=signature["modules"], reference=signature["reference"], notes=signature["notes"])
        reasons.append(reason("weight-signature", f"weights coded {observed} ({signature['rule']})"))
        if signature.get("standard") == "1.1":
            _per_module_view(signature, estimates, details, reasons)
    else:
        reasons.append(reason("no-weight-signature", "the cell gives no undefended and defended checkpoints"))

    if control is not None and not control_unavailable and control.n_items and not math.isfinite(control.se_total):
        reasons.append(reason("control-too-small", "the shrinkage control's margin has no standard error (fewer than 2 subjects)"))
    elif control is not None and not control_unavailable and control.n_items:
        z = control.critical(th["z"])  # z itself under 1.0; the t critical value under 1.1
        margin, se = control.difference, control.se_total
        estimates.update(control_reduction=number(control_reduction), control_margin=number(margin),
                         se_control_margin=number(se), control_margin_lower=number(margin - z * se))
        estimates.update(framing_estimates(control.means_a, "control"))  # the control's own audit and deploy means
        if not margin - z * se > 0:
            reasons.append(reason("control-not-beaten", f"(Δ_D − Δ_C) − z·SE = {fixed(margin - z * se, 4)} ≤ 0: the defense does not beat "
                                  "the shrinkage control, so it is coded shrinkage whatever the weights say"))
            observed = "shrinkage"
        elif observed is None:
            reasons.append(reason("control-beaten", "the defense beats the shrinkage control, but without checkpoints no class can be observed"))
    elif control_unavailable:
        reasons.extend(control_unavailable)

    if observed is None:
        return extend(result("insufficient", reasons, estimates, th, details), MechanismDiagnostic,
                      observed=None, declared=declared, strict="insufficient", permissive="insufficient", relabel=None)
    strict = "pass" if observed == declared else "fail"
    relabel = None
    permissive = strict
    if strict == "fail" and observed == "shrinkage":
        permissive = "pass"
        relabel = Relabel(declared=declared, observed="shrinkage")
    if strict == "fail":
        reasons.append(reason("mechanism-mismatch", f"declared {declared}, observed {observed}"))
    return extend(result(strict if coding_mode == "strict" else permissive, reasons, estimates, th, details), MechanismDiagnostic,
                  observed=observed, declared=declared, strict=strict, permissive=permissive, relabel=relabel)
