"""D2 fresh semantic generalization (fresh split), with the freshness check."""

from __future__ import annotations

import math
from dataclasses import dataclass

from msgspec.structs import replace

from acards.diagnostics.common import (
    Comparison,
    bootstrap_details,
    critical_symbol,
    has_reason,
    reason,
    reduction_estimates,
    result,
)
from acards.numbers import fixed
from acards.report.model import Diagnostic, Reason


@dataclass
class Freshness:
    """What the freshness check found (SPEC §4 D2)."""

    shared_subjects: list[str]  # fresh subjects also in training or held-out data
    ngram_checked: bool  # the card points at training data and fresh prompts were available
    prompts_sharing: int  # fresh prompts sharing a run of n whitespace tokens with training text
    examples: list[str]  # a few such prompts, shortened


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = text.split()
    return {tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)}


def freshness(fresh_subjects: set[str], other_subjects: set[str], fresh_prompts: list[str] | None,
              training_texts: list[str] | None, n: int) -> Freshness:
    """Subjects must be disjoint; no fresh prompt may share a run of ``n`` whitespace tokens with
    the training data (checked only when the training data and the fresh prompts are known)."""
    shared = sorted(fresh_subjects & other_subjects)
    if training_texts is None or fresh_prompts is None:
        return Freshness(shared, False, 0, [])
    prompts = sorted(set(fresh_prompts))
    per_prompt = [ngrams(p, n) for p in prompts]
    # Runs that most fresh prompts share are the protocol's boilerplate (a framing cue, a
    # template), not content: they are expected in training data too and are not counted.
    counts: dict[tuple[str, ...], int] = {}
    for grams in per_prompt:
        for gram in grams:
            counts[gram] = counts.get(gram, 0) + 1
    boilerplate = {gram for gram, count in counts.items() if len(prompts) >= 4 and count > len(prompts) / 2}
    seen: set[tuple[str, ...]] = set()
    for text in training_texts:
        seen |= ngrams(text, n)
    seen -= boilerplate
    hits = [p for p, grams in zip(prompts, per_prompt) if not grams.isdisjoint(seen)]
    return Freshness(shared, True, len(hits), [h[:80] for h in hits[:3]])


def generalization(name: str, c: Comparison | None, unavailable: list[Reason], heldout_relative: float | None,
                   th: dict, extra_reasons: list[Reason] | None = None, extra_estimates: dict | None = None) -> Diagnostic:
    """Shared by D2 and D4: pass iff Δ − z·SE > 0 and ρ / ρ_heldout ≥ min_retention.  Under standard
    1.1 also at least ``min_seeds`` seeds (the card's reliability value), t critical values for z."""
    z = th["z"]
    if c is None or unavailable or c.n_items == 0:
        return result("insufficient", unavailable or [reason("no-paired-items", f"no {name} item has both framings under U and D")],
                      extra_estimates or {}, th)
    v11 = c.standard == "1.1"
    estimates = reduction_estimates(c, z)
    estimates.update(extra_estimates or {})
    estimates["relative_reduction_heldout"] = heldout_relative
    relative = estimates["relative_reduction"]
    # Retention is a ratio to the held-out relative reduction: undefined unless that is positive.
    held = heldout_relative if heldout_relative is not None and math.isfinite(heldout_relative) and heldout_relative > 0 else None
    retention = relative / held if held is not None and relative is not None and math.isfinite(relative) else None
    estimates["retention"] = retention
    reasons = list(extra_reasons or [])
    details = bootstrap_details(c)
    if v11:
        details["seed_variance_included"] = bool(c.spreads)
        if not c.spreads:
            reasons.append(reason("seed-variance-not-included", "U or D has fewer than 2 seeds: SE_tot is the clustered SE alone"))
    seeds = min(len(c.seeds_a), len(c.seeds_b))
    if c.n_subjects < 2 or (v11 and seeds < th["min_seeds"]):
        if c.n_subjects < 2:
            reasons.append(reason("too-few-subjects", f"{c.n_subjects} {name} subject: a clustered SE needs at least 2"))
        if v11 and seeds < th["min_seeds"]:
            reasons.append(reason("too-few-seeds", f"{seeds} seeds, fewer than min_seeds = {th['min_seeds']}"))
        return result("insufficient", reasons, estimates, th, details)
    failed = has_reason(reasons, "not-fresh")
    if not estimates["reduction_lower"] > 0:
        failed = True
        rule = critical_symbol(estimates["critical_value"], estimates["df"]) if v11 else "z"
        reasons.append(reason("reduction-not-reliable", f"Δ − {rule}·SE = {fixed(estimates['reduction_lower'], 4)} on the {name} split is not above 0"))
    if held is None:
        reasons.append(reason("heldout-relative-undefined", "the held-out relative reduction is undefined (no reliable held-out gap) "
                              "or not positive, so retention cannot be computed"))
        return result("fail" if failed else "insufficient", reasons, estimates, th, details)
    if retention is None:
        reasons.append(reason("no-installed-gap", f"the undefended fine-tune shows no reliable gap on the {name} split, so retention cannot be computed"))
        return result("fail" if failed else "insufficient", reasons, estimates, th, details)
    if not retention >= th["min_retention"]:
        failed = True
        reasons.append(reason("low-retention", f"ρ_{name}/ρ_heldout = {fixed(retention, 3)} is below min_retention = {th['min_retention']}"))
    return result("fail" if failed else "pass", reasons, estimates, th, details)


def fresh(c: Comparison | None, unavailable: list[Reason], heldout_relative: float | None, check: Freshness, th: dict) -> Diagnostic:
    reasons: list[Reason] = []
    if check.shared_subjects:
        reasons.append(reason("not-fresh", f"{len(check.shared_subjects)} fresh subjects also occur in the training or held-out data: "
                              + ", ".join(check.shared_subjects[:5])))
    if check.prompts_sharing:
        reasons.append(reason("not-fresh", f"{check.prompts_sharing} fresh prompts share a run of {th['max_shared_ngram']} tokens with the training data, e.g. {check.examples[0]!r}"))
    if not check.ngram_checked:
        reasons.append(reason("ngram-check-skipped", "the n-gram overlap check needs the card's training_data and the fresh prompts"))
    extra = {"subjects_shared_with_training": len(check.shared_subjects),
             "prompts_sharing_ngram": check.prompts_sharing if check.ngram_checked else None}
    outcome = generalization("fresh", c, unavailable, heldout_relative, th, reasons, extra)
    if outcome.outcome == "insufficient" and has_reason(reasons, "not-fresh"):
        # a failed freshness check is a fail, whatever else is missing
        outcome = replace(outcome, outcome="fail", reasons=reasons + [r for r in outcome.reasons if r not in reasons])
    return outcome
