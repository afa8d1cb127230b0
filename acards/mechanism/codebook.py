"""The mechanism codebook (SPEC §4 D3): the declarable classes, the thresholds its rules read, and
the ordered rules that turn a weight signature into a class.

Pure: the thresholds' default values are the standard's (the card schema); the caller reads them and
passes the thresholds in force (defaults with the card's and claim's overrides, as
``Card.thresholds("mechanism")`` gives them).
"""

from __future__ import annotations

import math
from typing import Mapping

from acards.errors import AcardsError

MECHANISM_CLASSES = (
    "unchanged",
    "ablation",
    "shrinkage",
    "soft-spectral-reweighting",
    "projection",
    "complement-projection",
    "other",
)

# Standard 1.1 observes every declarable class (SPEC §10.8): the 1.0 classes and these four.
MECHANISM_CLASSES_1_1 = MECHANISM_CLASSES[:-1] + ("mask", "merge", "additive-realignment", "noise", "other")

# The classes whose 1.1 rule reads the reference subspace (``V`` only, or either kind).
NEEDS_REFERENCE = {"soft-spectral-reweighting": "V", "merge": "V", "projection": "V or U",
                   "complement-projection": "V or U", "additive-realignment": "V or U"}


def unobservable(declared: str, standard: str, has_checkpoints: bool, has_reference: bool) -> str | None:
    """Why the 1.1 codebook can never observe ``declared`` in a cell (SPEC §10.8), or None.

    A class no rule codes is refused; so is a class whose rule needs a reference subspace in a cell
    whose weights are given without one (the weights could never be coded that class)."""
    if standard != "1.1":
        return None  # 1.0 keeps its vocabulary, including classes no 1.0 rule observes
    if declared not in MECHANISM_CLASSES_1_1:
        return f"no rule of the standard 1.1 codebook codes `{declared}`"
    if declared in NEEDS_REFERENCE and has_checkpoints and not has_reference:
        return (f"the rule for `{declared}` needs a reference subspace ({NEEDS_REFERENCE[declared]}), and the cell "
                "gives its checkpoints without one")
    return None


# The thresholds of the codebook and of the signature (the schema's mechanism thresholds but `z`,
# which belongs to the behavioral control).
THRESHOLD_NAMES = (
    "unchanged_max",
    "ablation_max_norm_ratio",
    "shrinkage_max_alpha_t",
    "shrinkage_max_off_direction",
    "spectral_max_residual",
    "projection_max_selectivity",
    "projection_min_t_in",
    "complement_min_t_out",
    "complement_max_ratio",
    "changed_module_min",
    "subspace_energy",
)

# The thresholds standard 1.1 adds (SPEC §10.5, §10.8); a 1.0 card's signature never reads them.
THRESHOLD_NAMES_1_1 = THRESHOLD_NAMES + (
    "reflection_max_negative",
    "mask_min_share",
    "mask_min_zeroed",
    "merge_max_residual",
    "merge_min_weight",
    "additive_max_outside",
    "noise_max_cosine",
    "noise_max_spike",
)


def effective_thresholds(thresholds: Mapping[str, object], standard: str = "1.0") -> dict[str, float]:
    """The codebook's thresholds out of the mechanism thresholds in force, as floats; an unknown,
    missing or non-numeric threshold is an error.

    ``z`` belongs to the behavioral control, not to the codebook, and is ignored here.  Under 1.0 the
    thresholds 1.1 adds are ignored too (a 1.0 card keeps its 1.0 signature)."""
    names = THRESHOLD_NAMES_1_1 if standard == "1.1" else THRESHOLD_NAMES
    checked: dict[str, float] = {}
    for key, value in thresholds.items():
        if key in ("justification", "z") or (key in THRESHOLD_NAMES_1_1 and key not in names):
            continue  # shown on the card / used by the behavioral control / a 1.1 threshold on a 1.0 card
        if key not in names:
            raise AcardsError(
                "weights.bad-threshold",
                f"unknown mechanism threshold `{key}`",
                f"use one of: {', '.join(sorted(names))}",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AcardsError(
                "weights.bad-threshold",
                f"mechanism threshold `{key}` must be a finite number, got {value!r}",
                "write the threshold as a plain number",
            )
        checked[key] = float(value)
    missing = [key for key in names if key not in checked]
    if missing:
        raise AcardsError(
            "weights.bad-threshold",
            f"mechanism threshold(s) {', '.join(f'`{key}`' for key in missing)} not given",
            "pass every mechanism threshold in force: the standard's defaults with the card's overrides",
        )
    return {key: checked[key] for key in names}


def _first_rules(x: Mapping[str, float], th: Mapping[str, float]) -> list[tuple[str, bool, str]]:
    """The rules both standards try first, in order: unchanged, ablation, shrinkage."""
    return [
        ("unchanged", x["unchanged_ratio"] < th["unchanged_max"], f"||dD-dU||/||dU|| < {th['unchanged_max']}"),
        ("ablation", x["r"] < th["ablation_max_norm_ratio"], f"r < {th['ablation_max_norm_ratio']}"),
        (
            "shrinkage",
            0 < x["alpha_T"] < th["shrinkage_max_alpha_t"]
            and x["alpha_A"] <= th["shrinkage_max_off_direction"] * x["alpha_T"],
            f"0 < alpha_T < {th['shrinkage_max_alpha_t']} and alpha_A <= {th['shrinkage_max_off_direction']}*alpha_T",
        ),
    ]


def classify(x: Mapping[str, float], reference_kind: str | None, th: Mapping[str, float]) -> tuple[str, str]:
    """The first codebook rule that holds: (class, the rule as text).  nan never satisfies a rule."""
    rules = [
        *_first_rules(x, th),
        (
            "soft-spectral-reweighting",
            reference_kind == "V" and x["e_C"] < th["spectral_max_residual"],
            f"V given and e_C < {th['spectral_max_residual']}",
        ),
        (
            "projection",
            reference_kind is not None
            and x["S"] <= th["projection_max_selectivity"]
            and x["t_in"] >= th["projection_min_t_in"],
            f"reference given, S <= {th['projection_max_selectivity']} and t_in >= {th['projection_min_t_in']}",
        ),
        (
            "complement-projection",
            reference_kind is not None
            and x["t_out"] >= th["complement_min_t_out"]
            and x["t_in"] <= th["complement_max_ratio"] * x["t_out"],
            f"t_out >= {th['complement_min_t_out']} and t_in <= {th['complement_max_ratio']}*t_out",
        ),
    ]
    for mechanism, holds, condition in rules:
        if holds:
            return mechanism, condition
    return "other", "no codebook rule held"


def classify_1_1(x: Mapping[str, float], reference_kind: str | None, th: Mapping[str, float]) -> tuple[str, str]:
    """Standard 1.1's codebook (SPEC §10.5–§10.8): the first rule that holds; nan never satisfies one.

    The 1.0 rules with signed retentions (a retention below −reflection_max_negative is a reflection,
    never a projection class), then mask, additive-realignment, merge and noise."""
    neg = -th["reflection_max_negative"]
    has_ref, has_v = reference_kind is not None, reference_kind == "V"
    rules = [
        *_first_rules(x, th),
        (
            "mask",
            x["mask_share"] >= th["mask_min_share"] and x["mask_zeroed"] >= th["mask_min_zeroed"],
            f"share of dD's entries/components equal to dU's or zero >= {th['mask_min_share']} "
            f"and share zeroed >= {th['mask_min_zeroed']}",
        ),
        ("soft-spectral-reweighting", has_v and x["e_C"] < th["spectral_max_residual"],
         f"V given and e_C < {th['spectral_max_residual']}"),
        (
            "projection",
            has_ref and x["t_in"] >= th["projection_min_t_in"] and x["t_out"] >= neg
            and x["t_out"] <= th["projection_max_selectivity"] * x["t_in"],
            f"reference given, t_in >= {th['projection_min_t_in']}, {neg} <= t_out <= "
            f"{th['projection_max_selectivity']}*t_in (no reflection)",
        ),
        (
            "complement-projection",
            has_ref and x["t_out"] >= th["complement_min_t_out"] and x["t_in"] >= neg
            and x["t_in"] <= th["complement_max_ratio"] * x["t_out"],
            f"t_out >= {th['complement_min_t_out']} and {neg} <= t_in <= {th['complement_max_ratio']}*t_out (no reflection)",
        ),
        ("additive-realignment", has_ref and x["additive_outside"] <= th["additive_max_outside"],
         f"||(1-P)(dD-dU)||/||dD-dU|| <= {th['additive_max_outside']} (the change lies in the reference span)"),
        (
            "merge",
            has_v and x["merge_residual"] < th["merge_max_residual"] and x["merge_weight"] >= th["merge_min_weight"],
            f"||dD - lambda*dU - mu*V||/||dD|| < {th['merge_max_residual']} and |mu|*||V||/||dD|| >= {th['merge_min_weight']}",
        ),
        (
            "noise",
            abs(x["noise_cos_u"]) <= th["noise_max_cosine"]
            and (not has_v or abs(x["noise_cos_v"]) <= th["noise_max_cosine"])
            and x["noise_spike"] <= th["noise_max_spike"],
            f"|cos(dD-dU, dU)| <= {th['noise_max_cosine']}" + (f", |cos(dD-dU, V)| <= {th['noise_max_cosine']}" if has_v else "")
            + f" and top singular share of dD-dU <= {th['noise_max_spike']}x a Gaussian matrix's",
        ),
    ]
    for mechanism, holds, condition in rules:
        if holds:
            return mechanism, condition
    return "other", "no codebook rule held"
