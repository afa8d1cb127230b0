"""The D3 mechanism codebook (SPEC §4 D3): the first rule that holds wins.

unchanged  ‖ΔD−ΔU‖/‖ΔU‖ < 0.01        ablation  r < 0.01
shrinkage  0 < α_T < 0.99 and α_A ≤ 0.15·α_T
soft-spectral-reweighting  V given and e_C < 0.01
projection  reference given, S ≤ 0.1 and t_in ≥ 0.1
complement-projection  reference given, t_out ≥ 0.1 and t_in ≤ 0.1·t_out
else other.  Rows sit exactly on each default threshold (the same float the code compares with;
products like 0.15·0.5 are exact halvings) and one ulp beside it.
"""

from __future__ import annotations

import math

import pytest

from acards.card.validate import threshold_defaults
from acards.mechanism.codebook import classify

TH = {"unchanged_max": 0.01, "ablation_max_norm_ratio": 0.01, "shrinkage_max_alpha_t": 0.99,
      "shrinkage_max_off_direction": 0.15, "spectral_max_residual": 0.01, "projection_max_selectivity": 0.1,
      "projection_min_t_in": 0.1, "complement_min_t_out": 0.1, "complement_max_ratio": 0.1,
      "changed_module_min": 0.01, "subspace_energy": 0.9}


def up(x: float) -> float:
    return math.nextafter(x, math.inf)


def down(x: float) -> float:
    return math.nextafter(x, -math.inf)


# Satisfies no rule: not unchanged, not ablated, α_T = 1 (no shrinkage), no subspace rule.
NEUTRAL = {"unchanged_ratio": 1.0, "r": 1.0, "alpha_T": 1.0, "alpha_A": 1.0, "e_C": 1.0, "S": 1.0, "t_in": 1.0, "t_out": 0.0}

ROWS = [
    # id, changes to NEUTRAL, reference kind, class
    ("neutral-is-other", {}, "V", "other"),
    ("neutral-no-reference", {}, None, "other"),
    # unchanged: strict <
    ("unchanged-just-below", {"unchanged_ratio": down(0.01)}, None, "unchanged"),
    ("unchanged-at-threshold", {"unchanged_ratio": 0.01}, None, "other"),
    # ablation: strict <
    ("ablation-just-below", {"r": down(0.01)}, None, "ablation"),
    ("ablation-at-threshold", {"r": 0.01}, None, "other"),
    # shrinkage: 0 < α_T < 0.99 (both strict) and α_A ≤ 0.15·α_T (equality holds)
    ("shrinkage-alpha-t-just-below-max", {"alpha_T": down(0.99), "alpha_A": 0.0}, None, "shrinkage"),
    ("shrinkage-alpha-t-at-max", {"alpha_T": 0.99, "alpha_A": 0.0}, None, "other"),
    ("shrinkage-alpha-t-just-above-0", {"alpha_T": 2.0**-30, "alpha_A": 0.0}, None, "shrinkage"),
    ("shrinkage-alpha-t-at-0", {"alpha_T": 0.0, "alpha_A": 0.0}, None, "other"),
    ("shrinkage-alpha-t-negative", {"alpha_T": -0.5, "alpha_A": 0.0}, None, "other"),
    ("shrinkage-off-direction-at-max", {"alpha_T": 0.5, "alpha_A": 0.15 * 0.5}, None, "shrinkage"),
    ("shrinkage-off-direction-just-above", {"alpha_T": 0.5, "alpha_A": up(0.15 * 0.5)}, None, "other"),
    # soft-spectral: needs V, strict <
    ("spectral-just-below", {"e_C": down(0.01)}, "V", "soft-spectral-reweighting"),
    ("spectral-at-threshold", {"e_C": 0.01}, "V", "other"),
    ("spectral-needs-V", {"e_C": 0.0}, "U", "other"),
    ("spectral-needs-a-reference", {"e_C": 0.0}, None, "other"),
    # projection: S ≤ 0.1 and t_in ≥ 0.1 (both inclusive), any reference
    ("projection-on-both-boundaries", {"S": 0.1, "t_in": 0.1}, "U", "projection"),
    ("projection-S-just-above", {"S": up(0.1), "t_in": 0.1}, "U", "other"),
    ("projection-t-in-just-below", {"S": 0.1, "t_in": down(0.1)}, "U", "other"),
    ("projection-with-V", {"S": 0.0, "t_in": 0.5}, "V", "projection"),
    ("projection-needs-a-reference", {"S": 0.0, "t_in": 0.5}, None, "other"),
    # complement-projection: t_out ≥ 0.1 and t_in ≤ 0.1·t_out (both inclusive)
    ("complement-on-both-boundaries", {"t_out": 0.1, "t_in": 0.1 * 0.1}, "U", "complement-projection"),
    ("complement-t-out-just-below", {"t_out": down(0.1), "t_in": 0.0}, "U", "other"),
    ("complement-ratio-at-max", {"t_out": 0.5, "t_in": 0.1 * 0.5}, "U", "complement-projection"),
    ("complement-ratio-just-above", {"t_out": 0.5, "t_in": up(0.1 * 0.5)}, "U", "other"),
    ("complement-needs-a-reference", {"t_out": 0.5, "t_in": 0.0}, None, "other"),
    # nan never satisfies a rule
    ("nan-everywhere", {k: math.nan for k in NEUTRAL}, "V", "other"),
    ("nan-S-blocks-projection", {"S": math.nan, "t_in": 0.5}, "U", "other"),
    # The order decides when several rules hold.
    ("unchanged-before-shrinkage", {"unchanged_ratio": 0.0, "alpha_T": 0.5, "alpha_A": 0.0}, "V", "unchanged"),
    ("ablation-before-shrinkage", {"r": 0.0, "alpha_T": 0.5, "alpha_A": 0.0}, "V", "ablation"),
    ("shrinkage-before-spectral", {"alpha_T": 0.5, "alpha_A": 0.0, "e_C": 0.0}, "V", "shrinkage"),
    ("spectral-before-projection", {"e_C": 0.0, "S": 0.0, "t_in": 0.5}, "V", "soft-spectral-reweighting"),
    ("projection-before-complement", {"S": 0.1, "t_in": 0.1, "t_out": 1.0}, "U", "projection"),
]


@pytest.mark.parametrize("row_id, changes, kind, expected", ROWS, ids=[r[0] for r in ROWS])
def test_codebook(row_id, changes, kind, expected):
    observed, rule = classify({**NEUTRAL, **changes}, kind, TH)
    assert observed == expected
    assert (rule == "no codebook rule held") is (expected == "other")


def test_thresholds_are_the_standard_defaults():
    # mechanism/ is pure: the defaults are the schema's, read by the caller (z is the behavioral control's)
    assert {k: v for k, v in threshold_defaults()["mechanism"].items() if k != "z"} == TH


def test_thresholds_are_read_from_the_argument():
    # α_T = 0.5 is not shrinkage when the card lowers the ceiling to 0.5 (strict <).
    assert classify({**NEUTRAL, "alpha_T": 0.5, "alpha_A": 0.0}, None, {**TH, "shrinkage_max_alpha_t": 0.5})[0] == "other"
    assert classify({**NEUTRAL, "unchanged_ratio": 0.25}, None, {**TH, "unchanged_max": 0.5})[0] == "unchanged"
