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


def effective_thresholds(thresholds: Mapping[str, object]) -> dict[str, float]:
    """The codebook's thresholds out of the mechanism thresholds in force, as floats; an unknown,
    missing or non-numeric threshold is an error.

    ``z`` belongs to the behavioral control, not to the codebook, and is ignored here."""
    checked: dict[str, float] = {}
    for key, value in thresholds.items():
        if key in ("justification", "z"):  # shown on the card / used by the behavioral control
            continue
        if key not in THRESHOLD_NAMES:
            raise AcardsError(
                "weights.bad-threshold",
                f"unknown mechanism threshold `{key}`",
                f"use one of: {', '.join(sorted(THRESHOLD_NAMES))}",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AcardsError(
                "weights.bad-threshold",
                f"mechanism threshold `{key}` must be a finite number, got {value!r}",
                "write the threshold as a plain number",
            )
        checked[key] = float(value)
    missing = [key for key in THRESHOLD_NAMES if key not in checked]
    if missing:
        raise AcardsError(
            "weights.bad-threshold",
            f"mechanism threshold(s) {', '.join(f'`{key}`' for key in missing)} not given",
            "pass every mechanism threshold in force: the standard's defaults with the card's overrides",
        )
    return {key: checked[key] for key in THRESHOLD_NAMES}


def classify(x: Mapping[str, float], reference_kind: str | None, th: Mapping[str, float]) -> tuple[str, str]:
    """The first codebook rule that holds: (class, the rule as text).  nan never satisfies a rule."""
    rules = [
        ("unchanged", x["unchanged_ratio"] < th["unchanged_max"], f"||dD-dU||/||dU|| < {th['unchanged_max']}"),
        ("ablation", x["r"] < th["ablation_max_norm_ratio"], f"r < {th['ablation_max_norm_ratio']}"),
        (
            "shrinkage",
            0 < x["alpha_T"] < th["shrinkage_max_alpha_t"]
            and x["alpha_A"] <= th["shrinkage_max_off_direction"] * x["alpha_T"],
            f"0 < alpha_T < {th['shrinkage_max_alpha_t']} and "
            f"alpha_A <= {th['shrinkage_max_off_direction']}*alpha_T",
        ),
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
