"""D3 mechanism alignment: how the observed class is decided and coded (SPEC §4 D3).

The weight signature gives a class; the behavioral control overrules it with `shrinkage` unless
the defense beats the control: (Δ_D − Δ_C) − z·SE > 0, strict.  strict coding passes iff observed
== declared; permissive also passes observed == shrinkage and records the relabel.  Neither a
signature nor an informative control: insufficient.
"""

from __future__ import annotations

import math

import pytest
from decision_inputs import JUST, codes, comparison, missing, plain

from acards.diagnostics.mechanism import mechanism

TH = {"z": 2.0, "unchanged_max": 0.01, "ablation_max_norm_ratio": 0.01, "shrinkage_max_alpha_t": 0.99,
      "shrinkage_max_off_direction": 0.15, "spectral_max_residual": 0.01, "projection_max_selectivity": 0.1,
      "projection_min_t_in": 0.1, "complement_min_t_out": 0.1, "complement_max_ratio": 0.1,
      "changed_module_min": 0.01, "subspace_energy": 0.9}


def signature(observed: str) -> dict:
    """Shaped like acards.signature.weight_signature's return value."""
    return {
        "observed": observed,
        "rule": f"the {observed} rule",
        "estimates": {"unchanged_ratio": 0.75, "alpha_T": 0.5, "alpha_A": 0.25, "kappa": 0.875, "r": 0.625,
                      "t_in": 0.5, "t_out": 0.03125, "S": 0.0625, "e_C": None, "projection_scale": 0.5,
                      "n_modules": 4, "changed_modules": ["layers.0.q_proj", "layers.1.q_proj"], "changed_share": 0.75},
        "reference": "U",
        "modules": {"layers.0.q_proj": {"alpha_T": 0.5}},
        "thresholds": {},
        "notes": ["a note"],
    }


def control(margin: float, se: float = 0.125, **kw):
    """The control comparison: difference = Δ_D − Δ_C = G_C − G_D."""
    return comparison(difference=margin, se_cluster=se, **kw)


BEATEN = control(0.5)  # 0.5 − 2·0.125 = 0.25 > 0
NOT_BEATEN = control(0.25)  # exactly 0: not > 0


def run(sig=None, ctrl=None, declared="projection", mode="strict", unavailable=(), control_reduction=0.125, th=None):
    return plain(mechanism(sig, ctrl, list(unavailable), control_reduction, declared, mode, {**TH, **(th or {})}))


# The control rule on its own: with a `projection` signature declared `projection`, the defense
# keeps its class only when it beats the control.
CONTROL_ROWS = [
    # id, control comparison, expected observed class
    ("margin-lower-just-above-0", control(0.25 + JUST), "projection"),
    ("margin-lower-exactly-0", control(0.25), "shrinkage"),  # equal: not beaten → shrinkage
    ("margin-lower-just-below-0", control(0.25 - JUST), "shrinkage"),
    ("margin-negative", control(-0.25), "shrinkage"),
    # The SE is SE_tot, seed term included: sqrt((3/32)² + 7/1024) = 1/8 → 0.25 − 2/8 = 0, not beaten
    # (with the clustered SE alone it would be 0.25 − 3/16 > 0 and beaten).
    ("seed-term-enters-se", control(0.25, se=3 / 32, seed_term=7 / 1024), "shrinkage"),
    # An SE that is not finite (one subject) leaves the signature's class alone.
    ("control-without-se", control(0.0, se=math.nan, n_subjects=1), "projection"),
    ("control-with-no-items", control(0.0, n_items=0), "projection"),
    ("no-control", None, "projection"),
]


@pytest.mark.parametrize("row_id, ctrl, observed", CONTROL_ROWS, ids=[r[0] for r in CONTROL_ROWS])
def test_control_rule(row_id, ctrl, observed):
    d = run(signature("projection"), ctrl)
    assert d["observed"] == observed
    assert ("control-not-beaten" in codes(d)) is (observed == "shrinkage")
    assert ("control-too-small" in codes(d)) is (row_id == "control-without-se")


def test_control_z_is_read_from_thresholds():
    # 0.25 − 1·0.125 > 0 with z = 1: beaten; the same numbers are not beaten with z = 2.
    assert run(signature("projection"), NOT_BEATEN, th={"z": 1.0})["observed"] == "projection"


def test_unavailable_control_is_reported_and_ignored():
    unavailable = missing("missing-condition", "no control:shrinkage records")
    d = run(signature("projection"), NOT_BEATEN, unavailable=unavailable)
    assert d["observed"] == "projection"  # the control is not used
    assert plain(unavailable)[0] in d["reasons"]


def test_control_estimates():
    e = run(signature("projection"), control(0.375), control_reduction=0.0625)["estimates"]
    assert (e["control_margin"], e["se_control_margin"], e["control_margin_lower"], e["control_reduction"]) == (0.375, 0.125, 0.125, 0.0625)


# Coding: (signature class, control, declared, coding mode) → outcome, strict, permissive, relabel.
CODING_ROWS = [
    ("declared-observed-strict", "projection", None, "projection", "strict", "pass", "pass", "pass", False),
    ("declared-observed-permissive", "projection", None, "projection", "permissive", "pass", "pass", "pass", False),
    ("shrinkage-strict-fails", "shrinkage", None, "projection", "strict", "fail", "fail", "pass", True),
    ("shrinkage-permissive-relabels", "shrinkage", None, "projection", "permissive", "pass", "fail", "pass", True),
    # The relabel is for shrinkage only: any other mismatch fails both codings.
    ("ablation-strict", "ablation", None, "projection", "strict", "fail", "fail", "fail", False),
    ("ablation-permissive", "ablation", None, "projection", "permissive", "fail", "fail", "fail", False),
    ("other-permissive", "other", None, "complement-projection", "permissive", "fail", "fail", "fail", False),
    # Declared shrinkage and observed shrinkage is a plain strict pass: nothing to relabel.
    ("declared-shrinkage", "shrinkage", None, "shrinkage", "strict", "pass", "pass", "pass", False),
    # Declared shrinkage but the weights say projection: a mismatch like any other.
    ("declared-shrinkage-observed-projection", "projection", None, "shrinkage", "permissive", "fail", "fail", "fail", False),
    # The control overrules the weights, and the overruled class is then coded like observed shrinkage.
    ("control-overrules-strict", "projection", NOT_BEATEN, "projection", "strict", "fail", "fail", "pass", True),
    ("control-overrules-permissive", "projection", NOT_BEATEN, "projection", "permissive", "pass", "fail", "pass", True),
    ("control-beaten-keeps-class", "projection", BEATEN, "projection", "strict", "pass", "pass", "pass", False),
    # Without checkpoints, a control that is not beaten is enough to observe shrinkage.
    ("no-signature-not-beaten-declared-shrinkage", None, NOT_BEATEN, "shrinkage", "strict", "pass", "pass", "pass", False),
    ("no-signature-not-beaten-permissive", None, NOT_BEATEN, "projection", "permissive", "pass", "fail", "pass", True),
    ("no-signature-not-beaten-strict", None, NOT_BEATEN, "projection", "strict", "fail", "fail", "pass", True),
    # ... but a beaten control says only "not shrinkage": no class, insufficient.
    ("no-signature-control-beaten", None, BEATEN, "projection", "strict", "insufficient", "insufficient", "insufficient", False),
    ("no-signature-no-control", None, None, "projection", "permissive", "insufficient", "insufficient", "insufficient", False),
    ("no-signature-control-without-se", None, control(0.0, se=math.nan, n_subjects=1), "shrinkage", "strict",
     "insufficient", "insufficient", "insufficient", False),
]


@pytest.mark.parametrize("row_id, sig_class, ctrl, declared, mode, outcome, strict, permissive, relabel", CODING_ROWS,
                         ids=[r[0] for r in CODING_ROWS])
def test_coding(row_id, sig_class, ctrl, declared, mode, outcome, strict, permissive, relabel):
    d = run(signature(sig_class) if sig_class else None, ctrl, declared=declared, mode=mode)
    assert (d["outcome"], d["strict"], d["permissive"]) == (outcome, strict, permissive)
    assert d["declared"] == declared
    assert d["relabel"] == ({"declared": declared, "observed": "shrinkage"} if relabel else None)
    if outcome == "insufficient":
        assert d["observed"] is None
    assert ("mechanism-mismatch" in codes(d)) is (strict == "fail")


def test_insufficient_reasons():
    assert codes(run()) == {"no-weight-signature"}
    assert codes(run(None, BEATEN)) == {"no-weight-signature", "control-beaten"}


def test_signature_numbers_are_reported_under_plain_names():
    d = run(signature("projection"))
    e = d["estimates"]
    assert (e["alpha_t"], e["alpha_a"], e["cosine"], e["norm_ratio"], e["change_ratio"]) == (0.5, 0.25, 0.875, 0.625, 0.75)
    assert (e["t_in"], e["t_out"], e["selectivity"], e["e_c"], e["changed_share"], e["n_modules"]) == (0.5, 0.03125, 0.0625, None, 0.75, 4)
    assert e["n_changed_modules"] == 2
    assert d["details"]["changed_modules"] == ["layers.0.q_proj", "layers.1.q_proj"]
    assert d["details"]["reference"] == "U" and d["details"]["rule"] == "the projection rule"
    assert "weight-signature" in codes(d)
