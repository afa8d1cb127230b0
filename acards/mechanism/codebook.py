"""The mechanism codebook (SPEC §4 D3): the declarable classes, the default thresholds, and the ordered
rules that turn a weight signature into a class."""

from __future__ import annotations

import math
from typing import Mapping

from acards.errors import AcardsError


def default_thresholds() -> dict[str, float]:
    """The codebook defaults, read from the card schema (the one place they are written down)."""
    from acards.card.validate import threshold_defaults

    return {k: float(v) for k, v in threshold_defaults()["mechanism"].items() if k != "z"}


MECHANISM_CLASSES = (
    "unchanged",
    "ablation",
    "shrinkage",
    "soft-spectral-reweighting",
    "projection",
    "complement-projection",
    "other",
)


def effective_thresholds(overrides: Mapping[str, object] | None = None) -> dict[str, float]:
    """The default thresholds with a card's overrides applied; unknown keys and non-numbers are errors.

    ``z`` belongs to the behavioral control, not to the codebook, and is ignored here."""
    thresholds = default_thresholds()
    for key, value in (overrides or {}).items():
        if key in ("justification", "z"):  # shown on the card / used by the behavioral control
            continue
        if key not in thresholds:
            raise AcardsError(
                "weights.bad-threshold",
                f"unknown mechanism threshold `{key}`",
                f"use one of: {', '.join(sorted(thresholds))}",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AcardsError(
                "weights.bad-threshold",
                f"mechanism threshold `{key}` must be a finite number, got {value!r}",
                "write the threshold as a plain number",
            )
        thresholds[key] = float(value)
    return thresholds


def _classify(x: Mapping[str, float], reference_kind: str | None, th: Mapping[str, float]) -> tuple[str, str]:
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
