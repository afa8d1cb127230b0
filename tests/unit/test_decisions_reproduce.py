"""Is what a card reports reproduced? (SPEC §8)

A reported number is reproduced when |reported − recomputed| ≤ max(0.005, 0.25·SE), where SE is
the standard error of the diagnostic it belongs to: SE_tot for reliability/fresh/transfer, the SE
of δ for cost, the paired SE of the control margin for the mechanism's control_* numbers, and
none (so 0.005) for weight-signature numbers.  Outcomes, verdicts and observed classes must match
exactly.  Boundary rows use dyadic numbers (0.25·1/8 = 1/32) or 0 ± 0.005, so |a − b| is exact.
"""

from __future__ import annotations

import math

import pytest
from decision_inputs import as_diagnostic, as_diagnostics, plain

from acards.diagnostics.discrepancies import claim_discrepancies, tolerance


def diag(outcome="pass", name="reliability", **estimates):
    return as_diagnostic(outcome, estimates, name=name)


def mechanism_diag(outcome="pass", observed="projection", **estimates):
    return as_diagnostic(outcome, estimates, name="mechanism", observed=observed)


# Each diagnostic carries several SEs with different values, so the row shows which one is used.
SES = {"se_total": 0.125, "se": 0.25, "se_control_margin": 0.5, "se_cluster": 1.0}

TOLERANCE_ROWS = [
    # id, diagnostic name, field, estimates, tolerance
    ("reliability-uses-se-total", "reliability", "reduction", SES, 0.25 * 0.125),
    ("fresh-uses-se-total", "fresh", "reduction", SES, 0.25 * 0.125),
    ("transfer-uses-se-total", "transfer", "retention", SES, 0.25 * 0.125),
    ("cost-uses-se-of-delta", "cost", "delta", SES, 0.25 * 0.25),
    ("control-numbers-use-the-paired-se", "mechanism", "control_margin", SES, 0.25 * 0.5),
    ("signature-numbers-use-0.005", "mechanism", "alpha_t", SES, 0.005),
    # The absolute floor: 0.25·SE below 0.005 gives 0.005.
    ("floor-when-se-small", "reliability", "reduction", {"se_total": 0.015625}, 0.005),  # 0.25/64 = 0.0039
    ("floor-at-exactly-0.02", "reliability", "reduction", {"se_total": 0.02}, 0.005),  # 0.25·0.02 = 0.005
    ("no-se-reported", "reliability", "reduction", {"se_total": None}, 0.005),
    ("no-se-field", "cost", "delta", {}, 0.005),
    ("control-without-se", "mechanism", "control_margin", {"se_control_margin": None}, 0.005),
]


@pytest.mark.parametrize("row_id, name, field, estimates, tol", TOLERANCE_ROWS, ids=[r[0] for r in TOLERANCE_ROWS])
def test_tolerance(row_id, name, field, estimates, tol):
    assert tolerance(name, field, diag(name=name, **estimates)) == tol


def one_cell(name: str, diagnostic, cell: str = "c1") -> dict:
    return {cell: as_diagnostics(**{name: diagnostic})}


def fields(found: list) -> list[tuple]:
    return [(d.get("cell"), d.get("diagnostic"), d["field"]) for d in plain(found)]


# A reported number exactly at the tolerance is reproduced, one ulp beyond is not.
NUMBER_ROWS = [
    # id, SE_tot, recomputed, reported, reproduced
    ("exact", 0.125, 0.25, 0.25, True),
    ("at-0.25-se-above", 0.125, 0.25, 0.28125, True),  # |Δ| = 1/32 = 0.25·1/8
    ("at-0.25-se-below", 0.125, 0.25, 0.21875, True),
    ("beyond-0.25-se-above", 0.125, 0.25, math.nextafter(0.28125, 1.0), False),
    ("beyond-0.25-se-below", 0.125, 0.25, math.nextafter(0.21875, 0.0), False),
    ("inside-0.25-se", 0.125, 0.25, math.nextafter(0.28125, 0.0), True),
    ("at-0.005-above", 0.015625, 0.0, 0.005, True),  # 0.25·SE = 0.0039 < 0.005: the floor decides
    ("at-0.005-below", 0.015625, 0.0, -0.005, True),
    ("beyond-0.005", 0.015625, 0.0, math.nextafter(0.005, 1.0), False),
    ("beyond-0.005-below", 0.015625, 0.0, math.nextafter(-0.005, -1.0), False),
    ("between-0.25-se-and-0.005", 0.015625, 0.0, 0.0045, True),  # beyond 0.25·SE but within the floor
]


@pytest.mark.parametrize("row_id, se, recomputed, reported, reproduced", NUMBER_ROWS, ids=[r[0] for r in NUMBER_ROWS])
def test_number_tolerance_boundary(row_id, se, recomputed, reported, reproduced):
    claim = {"reported": {"reliability": {"reduction": reported}}}
    found = claim_discrepancies(claim, "supported", one_cell("reliability", diag(reduction=recomputed, se_total=se)))
    assert (found == []) is reproduced
    if not reproduced:
        assert fields(found) == [("c1", "reliability", "reduction")]
        assert plain(found)[0]["reported"] == reported and plain(found)[0]["recomputed"] == recomputed


@pytest.mark.parametrize("name, field, estimates, step, reproduced", [
    # Each diagnostic's own SE decides: the same offset 1/16 is reproduced or not.
    ("cost", "delta", {"delta": 0.0, "se": 0.25, "se_total": 0.0}, 0.0625, True),  # tol 1/16
    ("cost", "delta", {"delta": 0.0, "se": 0.125, "se_total": 1.0}, 0.0625, False),  # tol 1/32; SE_tot is not cost's
    ("fresh", "reduction", {"reduction": 0.0, "se_total": 0.25, "se": 0.0}, 0.0625, True),
    ("transfer", "retention", {"retention": 0.0, "se_total": 0.125, "se": 1.0}, 0.0625, False),
    ("mechanism", "control_margin", {"control_margin": 0.0, "se_control_margin": 0.25}, 0.0625, True),
    ("mechanism", "control_margin", {"control_margin": 0.0, "se_control_margin": 0.125}, 0.0625, False),
    ("mechanism", "alpha_t", {"alpha_t": 0.0, "se_control_margin": 1.0}, 0.0625, False),  # signature: 0.005
    ("mechanism", "alpha_t", {"alpha_t": 0.0, "se_control_margin": 1.0}, 0.005, True),
])
def test_each_diagnostic_uses_its_own_se(name, field, estimates, step, reproduced):
    d = mechanism_diag(**estimates) if name == "mechanism" else diag(name=name, **estimates)
    claim = {"reported": {name: {field: step}}}
    assert (claim_discrepancies(claim, "supported", one_cell(name, d)) == []) is reproduced


@pytest.mark.parametrize("recomputed", [None, True, False, "0.25"])
def test_a_number_that_was_not_recomputed_is_a_discrepancy(recomputed):
    # A reported estimate the recomputation lacks (null) or that is not a number cannot be reproduced.
    claim = {"reported": {"reliability": {"reduction": 0.25}}}
    found = claim_discrepancies(claim, "supported", one_cell("reliability", diag(reduction=recomputed, se_total=1.0)))
    assert fields(found) == [("c1", "reliability", "reduction")]


def test_an_unknown_estimate_is_a_discrepancy():
    claim = {"reported": {"reliability": {"no_such_number": 0.25}}}
    found = claim_discrepancies(claim, "supported", one_cell("reliability", diag(se_total=1.0)))
    assert fields(found) == [("c1", "reliability", "no_such_number")]


EXACT_ROWS = [
    # id, reported block, recomputed mechanism (outcome, observed), recomputed verdict, discrepant fields
    ("all-match", {"verdict": "unsupported", "mechanism": {"outcome": "fail", "observed": "shrinkage"}},
     ("fail", "shrinkage"), "unsupported", []),
    ("verdict-differs", {"verdict": "supported"}, ("fail", "shrinkage"), "unsupported", [(None, None, "verdict")]),
    ("verdict-insufficient-is-not-unsupported", {"verdict": "insufficient"}, ("fail", "shrinkage"), "unsupported",
     [(None, None, "verdict")]),
    ("outcome-differs", {"mechanism": {"outcome": "pass"}}, ("fail", "shrinkage"), "unsupported", [("c1", "mechanism", "outcome")]),
    ("observed-differs", {"mechanism": {"observed": "projection"}}, ("fail", "shrinkage"), "unsupported",
     [("c1", "mechanism", "observed")]),
    ("observed-none-recomputed", {"mechanism": {"observed": "shrinkage"}}, ("insufficient", None), "insufficient",
     [("c1", "mechanism", "observed")]),
    ("nothing-reported", {}, ("fail", "shrinkage"), "unsupported", []),
    ("everything-differs", {"verdict": "supported", "mechanism": {"outcome": "pass", "observed": "projection"}},
     ("fail", "shrinkage"), "unsupported", [(None, None, "verdict"), ("c1", "mechanism", "outcome"), ("c1", "mechanism", "observed")]),
]


@pytest.mark.parametrize("row_id, reported, recomputed, verdict, discrepant", EXACT_ROWS, ids=[r[0] for r in EXACT_ROWS])
def test_exact_matches(row_id, reported, recomputed, verdict, discrepant):
    outcome, observed = recomputed
    found = claim_discrepancies({"reported": reported}, verdict, one_cell("mechanism", mechanism_diag(outcome, observed)))
    assert fields(found) == discrepant


def test_no_reported_block():
    assert claim_discrepancies({}, "supported", one_cell("reliability", diag())) == []
    assert claim_discrepancies({"reported": None}, "supported", one_cell("reliability", diag())) == []


# --- Claims over several cells.

TWO_CELLS = {
    "a": as_diagnostics(reliability=diag("pass", reduction=0.25, se_total=0.125), mechanism=mechanism_diag("pass", "projection")),
    "b": as_diagnostics(reliability=diag("fail", reduction=0.0, se_total=0.125), mechanism=mechanism_diag("fail", "shrinkage")),
}

MULTI_ROWS = [
    # id, reported, discrepant fields
    # An outcome over several cells means "in every cell": combined as a claim verdict is.
    ("combined-outcome-fail-matches", {"reliability": {"outcome": "fail"}}, []),
    ("combined-outcome-pass-differs", {"reliability": {"outcome": "pass"}}, [(None, "reliability", "outcome")]),
    # An observed class must hold in each cell: reported once per cell that differs.
    ("observed-checked-per-cell", {"mechanism": {"observed": "projection"}}, [("b", "mechanism", "observed")]),
    # Numbers over several cells are ambiguous: they belong under `cells` and are not compared at the top.
    ("top-level-number-not-compared", {"reliability": {"reduction": 0.875}}, []),
    # Per-cell blocks are compared cell by cell, with each cell's SE.
    ("per-cell-within-tolerance", {"cells": {"a": {"reliability": {"reduction": 0.28125}}, "b": {"reliability": {"reduction": -0.03125}}}}, []),
    ("per-cell-beyond-tolerance", {"cells": {"a": {"reliability": {"reduction": 0.25}}, "b": {"reliability": {"reduction": 0.0625}}}},
     [("b", "reliability", "reduction")]),
    ("per-cell-outcome", {"cells": {"a": {"reliability": {"outcome": "fail"}}}}, [("a", "reliability", "outcome")]),
    ("per-cell-observed", {"cells": {"b": {"mechanism": {"observed": "shrinkage", "outcome": "fail"}}}}, []),
]


@pytest.mark.parametrize("row_id, reported, discrepant", MULTI_ROWS, ids=[r[0] for r in MULTI_ROWS])
def test_multi_cell_claims(row_id, reported, discrepant):
    assert fields(claim_discrepancies({"reported": reported}, "unsupported", TWO_CELLS)) == discrepant


def test_combined_insufficient_outcome():
    cells = {"a": as_diagnostics(fresh=diag("pass")), "b": as_diagnostics(fresh=diag("insufficient"))}
    assert claim_discrepancies({"reported": {"fresh": {"outcome": "insufficient"}}}, "insufficient", cells) == []
    assert fields(claim_discrepancies({"reported": {"fresh": {"outcome": "pass"}}}, "insufficient", cells)) == [
        (None, "fresh", "outcome")]


def test_discrepancy_record():
    claim = {"reported": {"cost": {"delta": 0.5}}}
    (found,) = plain(claim_discrepancies(claim, "supported", one_cell("cost", diag(name="cost", delta=0.0, se=0.125))))
    assert found["tolerance"] == 0.03125
    assert found["message"].startswith("cost.delta reported 0.5, recomputed 0")
