"""The standard 1.1 codebook (SPEC §10.5, §10.8): the first rule that holds wins.

unchanged, ablation, shrinkage as in 1.0; then
mask        mask_share ≥ 0.9 and mask_zeroed ≥ 0.01
soft-spectral-reweighting  V given and e_C < 0.01
projection  reference, t_in ≥ 0.1, −0.01 ≤ t_out ≤ 0.1·t_in            (no reflection)
complement-projection  reference, t_out ≥ 0.1, −0.01 ≤ t_in ≤ 0.1·t_out (no reflection)
additive-realignment   reference, additive_outside ≤ 0.1
merge       V, merge_residual < 0.01 and merge_weight ≥ 0.01
noise       |noise_cos_u| ≤ 0.1, with V |noise_cos_v| ≤ 0.1, noise_spike ≤ 2
else other.  Rows sit on each default threshold and one ulp beside it.
"""

from __future__ import annotations

import math

import pytest

from acards.card.validate import threshold_defaults
from acards.errors import AcardsError
from acards.mechanism.codebook import (
    MECHANISM_CLASSES_1_1,
    THRESHOLD_NAMES,
    THRESHOLD_NAMES_1_1,
    classify_1_1,
    effective_thresholds,
    unobservable,
)

TH = effective_thresholds(threshold_defaults("1.1")["mechanism"], "1.1")


def up(x: float) -> float:
    return math.nextafter(x, math.inf)


def down(x: float) -> float:
    return math.nextafter(x, -math.inf)


# Satisfies no rule.
NEUTRAL = {"unchanged_ratio": 1.0, "r": 1.0, "alpha_T": 1.0, "alpha_A": 1.0, "e_C": 1.0, "S": 1.0, "t_in": 1.0,
           "t_out": 1.0, "mask_share": 0.0, "mask_zeroed": 0.0, "additive_outside": 1.0, "merge_residual": 1.0,
           "merge_weight": 1.0, "noise_cos_u": 1.0, "noise_cos_v": 1.0, "noise_spike": 10.0}

ROWS = [
    ("neutral-is-other", {}, "V", "other"),
    ("shrinkage-as-in-1.0", {"alpha_T": 0.5, "alpha_A": 0.15 * 0.5}, None, "shrinkage"),
    # mask: both inclusive
    ("mask-on-both-boundaries", {"mask_share": 0.9, "mask_zeroed": 0.01}, None, "mask"),
    ("mask-share-just-below", {"mask_share": down(0.9), "mask_zeroed": 0.5}, None, "other"),
    ("mask-zeroed-just-below", {"mask_share": 1.0, "mask_zeroed": down(0.01)}, None, "other"),
    ("shrinkage-before-mask", {"alpha_T": 0.5, "alpha_A": 0.0, "mask_share": 1.0, "mask_zeroed": 0.5}, None, "shrinkage"),
    ("mask-before-spectral", {"mask_share": 1.0, "mask_zeroed": 0.5, "e_C": 0.0}, "V", "mask"),
    # projection with signed retentions: t_out ≥ −0.01 inclusive, t_out ≤ 0.1·t_in inclusive
    ("projection-t-out-at-reflection-bound", {"t_in": 1.0, "t_out": -0.01}, "U", "projection"),
    ("projection-reflected-just-beyond", {"t_in": 1.0, "t_out": down(-0.01)}, "U", "other"),
    ("projection-full-reflection", {"t_in": 1.0, "t_out": -1.0, "S": -1.0}, "U", "other"),
    ("projection-on-selectivity-bound", {"t_in": 0.5, "t_out": 0.1 * 0.5}, "U", "projection"),
    ("projection-selectivity-just-above", {"t_in": 0.5, "t_out": up(0.1 * 0.5)}, "U", "other"),
    ("projection-t-in-just-below", {"t_in": down(0.1), "t_out": 0.0}, "U", "other"),
    ("projection-needs-a-reference", {"t_in": 1.0, "t_out": 0.0}, None, "other"),
    # complement-projection, same for t_in
    ("complement-t-in-at-reflection-bound", {"t_out": 1.0, "t_in": -0.01}, "U", "complement-projection"),
    ("complement-reflected-just-beyond", {"t_out": 1.0, "t_in": down(-0.01)}, "U", "other"),
    ("complement-full-reflection", {"t_out": 1.0, "t_in": -1.0}, "V", "other"),
    ("complement-t-out-just-below", {"t_out": down(0.1), "t_in": 0.0}, "U", "other"),
    # additive-realignment: inclusive, any reference
    ("additive-at-bound", {"additive_outside": 0.1}, "U", "additive-realignment"),
    ("additive-just-above", {"additive_outside": up(0.1)}, "V", "other"),
    ("additive-needs-a-reference", {"additive_outside": 0.0}, None, "other"),
    ("complement-before-additive", {"t_out": 1.0, "t_in": 0.0, "additive_outside": 0.0}, "U", "complement-projection"),
    # merge: strict < on the residual, inclusive weight, V only
    ("merge-just-below", {"merge_residual": down(0.01), "merge_weight": 0.01}, "V", "merge"),
    ("merge-residual-at-bound", {"merge_residual": 0.01, "merge_weight": 0.5}, "V", "other"),
    ("merge-weight-just-below", {"merge_residual": 0.0, "merge_weight": down(0.01)}, "V", "other"),
    ("merge-needs-V", {"merge_residual": 0.0, "merge_weight": 0.5}, "U", "other"),
    ("additive-before-merge", {"additive_outside": 0.0, "merge_residual": 0.0, "merge_weight": 0.5}, "V", "additive-realignment"),
    # noise: inclusive bounds, either sign of the cosines
    ("noise-on-boundaries", {"noise_cos_u": -0.1, "noise_cos_v": 0.1, "noise_spike": 2.0}, "V", "noise"),
    ("noise-cos-u-just-above", {"noise_cos_u": up(0.1), "noise_cos_v": 0.0, "noise_spike": 1.0}, "V", "other"),
    ("noise-cos-v-just-above", {"noise_cos_u": 0.0, "noise_cos_v": up(0.1), "noise_spike": 1.0}, "V", "other"),
    ("noise-spike-just-above", {"noise_cos_u": 0.0, "noise_cos_v": 0.0, "noise_spike": up(2.0)}, "V", "other"),
    ("noise-without-V-ignores-cos-v", {"noise_cos_u": 0.0, "noise_cos_v": math.nan, "noise_spike": 1.0}, None, "noise"),
    ("noise-nan-cos-v-with-V", {"noise_cos_u": 0.0, "noise_cos_v": math.nan, "noise_spike": 1.0}, "V", "other"),
    ("nan-everywhere", {k: math.nan for k in NEUTRAL}, "V", "other"),
]


@pytest.mark.parametrize("row_id, changes, kind, expected", ROWS, ids=[r[0] for r in ROWS])
def test_codebook_1_1(row_id, changes, kind, expected):
    observed, rule = classify_1_1({**NEUTRAL, **changes}, kind, TH)
    assert observed == expected
    assert (rule == "no codebook rule held") is (expected == "other")


def test_every_declarable_class_has_a_rule():
    import json
    from pathlib import Path

    schema = json.loads((Path(__file__).resolve().parents[2] / "schema" / "acard-1.0.schema.json").read_text("utf-8"))
    assert set(schema["$defs"]["mechanismClass"]["enum"]) == set(MECHANISM_CLASSES_1_1)


def test_1_1_thresholds_are_defaults_of_1_1_only():
    assert set(threshold_defaults("1.1")["mechanism"]) - {"z"} == set(THRESHOLD_NAMES_1_1)
    assert set(threshold_defaults("1.0")["mechanism"]) - {"z"} == set(THRESHOLD_NAMES)
    # a 1.0 signature ignores the thresholds 1.1 adds
    assert list(effective_thresholds(threshold_defaults("1.1")["mechanism"], "1.0")) == list(THRESHOLD_NAMES)
    with pytest.raises(AcardsError):
        effective_thresholds(threshold_defaults("1.0")["mechanism"], "1.1")  # the 1.1 thresholds are missing


def test_unobservable_declarations():
    assert unobservable("projection", "1.1", True, False) is not None
    assert unobservable("merge", "1.1", True, False) is not None
    assert unobservable("projection", "1.1", True, True) is None
    assert unobservable("projection", "1.1", False, False) is None  # judged by the control alone
    assert unobservable("noise", "1.1", True, False) is None
    assert unobservable("magic", "1.1", False, False) is not None
    assert unobservable("projection", "1.0", True, False) is None  # 1.0 keeps its vocabulary
