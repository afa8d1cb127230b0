"""Verdicts (SPEC §4): full-card passes, claim verdicts (intersection–union) and the audit summary."""

from __future__ import annotations

import itertools

import pytest
from decision_inputs import JUST, as_cell, as_diagnostic, as_diagnostics, plain

from acards.diagnostics.verdict import audit_summary, claim_verdict, combine, full_card

OUTCOMES = ("pass", "fail", "insufficient")


def diag(outcome: str, estimates: dict | None = None, thresholds: dict | None = None, name: str = "reliability"):
    return as_diagnostic(outcome, estimates, thresholds, name=name)


def mech(strict: str, permissive: str, outcome: str | None = None):
    # The headline outcome does not enter full_card: only the strict and permissive codings do.
    return as_diagnostic(outcome or strict, name="mechanism", strict=strict, permissive=permissive)


def diagnostics(reliability="pass", fresh="pass", transfer="pass", strict="pass", permissive="pass", cost="pass"):
    return as_diagnostics(reliability=reliability, fresh=fresh, transfer=transfer, mechanism=mech(strict, permissive), cost=cost)


# --- full_card: D1, D2, D4 pass and D3 passes under the coding; cost never enters.

FULL_CARD_ROWS = [
    ("all-pass", {}, True, True),
    ("cost-fail-does-not-count", {"cost": "fail"}, True, True),
    ("cost-insufficient-does-not-count", {"cost": "insufficient"}, True, True),
    ("relabel-passes-permissive-only", {"strict": "fail", "permissive": "pass"}, False, True),
    ("mechanism-fails-both", {"strict": "fail", "permissive": "fail"}, False, False),
    ("mechanism-insufficient", {"strict": "insufficient", "permissive": "insufficient"}, False, False),
] + [
    (f"{name}-{outcome}", {name: outcome}, False, False)
    for name in ("reliability", "fresh", "transfer") for outcome in ("fail", "insufficient")
]


@pytest.mark.parametrize("row_id, changes, strict, permissive", FULL_CARD_ROWS, ids=[r[0] for r in FULL_CARD_ROWS])
def test_full_card(row_id, changes, strict, permissive):
    assert plain(full_card(diagnostics(**changes))) == {"strict": strict, "permissive": permissive}


def test_full_card_reads_the_codings_not_the_headline_outcome():
    d = as_diagnostics(reliability="pass", fresh="pass", transfer="pass",
                       mechanism=mech("fail", "pass", outcome="pass"))  # a permissive card's headline
    assert plain(full_card(d)) == {"strict": False, "permissive": True}


# --- combine and claim_verdict: fail if any fails, else insufficient if any is (or none), else pass.

COMBINE_ROWS = [
    ([], "insufficient"),  # nothing covered: nothing shown
    (["pass"], "pass"),
    (["fail"], "fail"),
    (["insufficient"], "insufficient"),
    (["pass", "pass", "pass"], "pass"),
    (["pass", "insufficient"], "insufficient"),
    (["insufficient", "pass"], "insufficient"),
    (["pass", "fail"], "fail"),
    (["insufficient", "fail"], "fail"),  # a fail anywhere decides, even next to missing evidence
    (["fail", "insufficient", "pass"], "fail"),
]


@pytest.mark.parametrize("outcomes, combined", COMBINE_ROWS)
def test_combine(outcomes, combined):
    assert combine(outcomes) == combined


VERDICT = {"pass": "supported", "fail": "unsupported", "insufficient": "insufficient"}


def expected_verdict(values) -> str:
    """The rule as SPEC §4 words it, written out independently."""
    values = list(values)
    if any(v == "fail" for v in values):
        return "unsupported"
    if not values or any(v == "insufficient" for v in values):
        return "insufficient"
    return "supported"


# Every combination of pass/fail/insufficient over two cells and two required diagnostics (81 claims).
COMBINATIONS = list(itertools.product(OUTCOMES, repeat=4))


@pytest.mark.parametrize("a1, a2, b1, b2", COMBINATIONS)
def test_claim_verdict_every_combination(a1, a2, b1, b2):
    outcomes = {"cell/a": {"reliability": a1, "fresh": a2}, "cell/b": {"reliability": b1, "fresh": b2}}
    assert claim_verdict(outcomes) == expected_verdict((a1, a2, b1, b2))


CLAIM_ROWS = [  # a few written out by hand, as a reader would check them
    ({"a": {"reliability": "pass"}}, "supported"),
    ({"a": {"reliability": "pass"}, "b": {"reliability": "pass"}}, "supported"),
    ({"a": {"reliability": "pass"}, "b": {"reliability": "fail"}}, "unsupported"),
    ({"a": {"reliability": "insufficient"}, "b": {"reliability": "fail"}}, "unsupported"),
    ({"a": {"reliability": "pass", "cost": "insufficient"}}, "insufficient"),
    ({"a": {}}, "insufficient"),  # no diagnostic required: nothing shown
    ({}, "insufficient"),
]


@pytest.mark.parametrize("outcomes, verdict", CLAIM_ROWS)
def test_claim_verdict_by_hand(outcomes, verdict):
    assert claim_verdict(outcomes) == verdict


# --- audit_summary: counts, and near misses ranked by D1–D4 passed, then smallest shortfall.

def cell(cell_id: str, headline: bool = False, strict: bool = False, permissive: bool = False, **outcomes):
    """A report cell; outcomes[name] is an outcome or a ready diagnostic (default pass)."""
    ds = {name: outcomes.get(name, "pass") for name in ("reliability", "fresh", "mechanism", "transfer", "cost")}
    return as_cell(cell_id, as_diagnostics(**ds), strict=strict, permissive=permissive, headline=headline)


def summary(cells) -> dict:
    return plain(audit_summary(cells))


def short_reliability(reduction_lower: float, margin: float = 0.0) -> dict:
    """A failed reliability whose bound falls short of the margin by margin − reduction_lower."""
    return diag("fail", {"reduction_lower": reduction_lower}, {"margin": margin})


def short_retention(retention: float, min_retention: float = 0.5, reduction_lower: float = 0.25) -> dict:
    return diag("fail", {"reduction_lower": reduction_lower, "retention": retention}, {"min_retention": min_retention})


SHORTFALL_ROWS = [
    # id, a failed diagnostic, its shortfall
    ("reduction-below-margin-0", short_reliability(-0.125), 0.125),
    ("reduction-below-margin", short_reliability(0.125, margin=0.25), 0.125),
    ("reduction-above-margin-counts-0", short_reliability(0.25), 0.0),  # failed for another reason (no gap)
    ("retention-short", short_retention(0.25), 0.25),  # 0.5 − 0.25; the reduction bound is above 0
    ("reduction-and-retention-add", short_retention(0.25, reduction_lower=-0.125), 0.375),
    ("categorical-fail", diag("fail"), None),  # a class mismatch: no number to fall short by
    ("insufficient", diag("insufficient", {"reduction_lower": -0.125}, {"margin": 0.0}), None),
]


@pytest.mark.parametrize("row_id, failed, shortfall", SHORTFALL_ROWS, ids=[r[0] for r in SHORTFALL_ROWS])
def test_near_miss_shortfall(row_id, failed, shortfall):
    near = summary([cell("c", reliability=failed)])["near_misses"]
    assert near == [{"cell": "c", "passed": 3, "failed": ["reliability"], "shortfall": shortfall}]


def test_shortfalls_add_over_failed_diagnostics_and_none_is_contagious():
    two = cell("c", reliability=short_reliability(-0.125), transfer=short_retention(0.375))
    assert summary([two])["near_misses"][0]["shortfall"] == 0.25
    with_categorical = cell("c", reliability=short_reliability(-0.125), mechanism="fail")
    assert summary([with_categorical])["near_misses"][0]["shortfall"] is None


def test_cost_never_makes_a_near_miss():
    # Cost is not one of D1–D4: a cell failing only cost passed all four.
    near = summary([cell("c", cost=diag("fail", {"delta_lower": -0.5}, {"margin": 0.02}, name="cost"))])["near_misses"]
    assert near == [{"cell": "c", "passed": 4, "failed": [], "shortfall": 0.0}]


def test_near_miss_ranking():
    cells = [
        # passed 2 of 4, tiny shortfall: ranks after every cell that passed 3
        cell("a-two-passed", reliability=short_reliability(-JUST), fresh=short_reliability(-JUST)),
        cell("b-three-none", mechanism="fail"),  # 3 passed, categorical shortfall (None)
        cell("c-three-big", reliability=short_reliability(-0.5)),  # 3 passed, shortfall 0.5
        cell("d-three-small", reliability=short_reliability(-0.125)),  # 3 passed, shortfall 0.125
        cell("e-three-zero", reliability=short_reliability(0.25)),  # 3 passed, shortfall 0
        cell("f-three-small", reliability=short_reliability(-0.125)),  # tie with d: by cell id
        cell("g-headline", headline=True, strict=True, permissive=True),  # full-card passes are no near misses
        cell("h-three-none", transfer="insufficient"),  # tie with b on (3, None): by cell id
        cell("0-one-passed", reliability="fail", fresh="fail", transfer="fail"),
    ]
    ranked = [n["cell"] for n in summary(cells)["near_misses"]]
    assert ranked == ["e-three-zero", "d-three-small", "f-three-small", "c-three-big", "b-three-none", "h-three-none",
                      "a-two-passed", "0-one-passed"]


def test_near_miss_ranking_is_independent_of_input_order():
    # v and z tie on (3 passed, shortfall 1/8): the cell id breaks the tie, not the input order.
    cells = [cell("z", reliability=short_reliability(-0.125)), cell("y", reliability=short_reliability(-0.25)),
             cell("x", mechanism="fail"), cell("w", reliability="fail", fresh="fail"), cell("v", fresh=short_reliability(-0.125))]
    for order in itertools.permutations(cells):
        assert [n["cell"] for n in summary(list(order))["near_misses"]] == ["v", "z", "y", "x", "w"]


def test_audit_counts():
    cells = [
        cell("a", headline=True, strict=True, permissive=True),
        cell("b", headline=True, strict=False, permissive=True, mechanism="pass", cost="fail"),
        cell("c", reliability="fail", fresh="insufficient", cost="insufficient"),
    ]
    got = summary(cells)
    assert got["cells"] == 3
    assert got["passes"] == {"reliability": 2, "fresh": 2, "mechanism": 3, "transfer": 3, "cost": 1}
    assert got["full_card"] == {"strict": 1, "permissive": 2}
    # Only c is a near miss: a and b pass under their headline coding.
    assert got["near_misses"] == [{"cell": "c", "passed": 2, "failed": ["reliability", "fresh"], "shortfall": None}]


def test_audit_of_nothing():
    assert summary([]) == {"cells": 0, "passes": {n: 0 for n in ("reliability", "fresh", "mechanism", "transfer", "cost")},
                           "full_card": {"strict": 0, "permissive": 0}, "near_misses": []}
