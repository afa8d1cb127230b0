"""The deployment-cost guard (SPEC §4): δ = acc_D − acc_U with its clustered SE.

pass (non-inferior) iff δ − z·SE ≥ −margin (equality passes); a *measurable cost* iff
δ + z·SE < 0 (equality is not measurable).  The two are independent: a cost can be measurable and
still inside the margin.  Fewer than 2 capability subjects: insufficient.
"""

from __future__ import annotations

import pytest
from decision_inputs import JUST, codes, comparison, missing, plain

from acards.diagnostics.cost import cost

TH = {"z": 2.0, "margin": 0.125}

ROWS = [
    # id, δ, SE (clustered), threshold overrides, outcome, measurable cost
    ("clearly-no-cost", 0.0, 0.03125, {}, "pass", False),
    # Non-inferiority: δ − 2·SE ≥ −margin.  δ = 0, SE = 1/16 → −0.125 = −margin exactly.
    ("lower-equals-minus-margin", 0.0, 0.0625, {}, "pass", False),
    ("lower-just-above-minus-margin", JUST, 0.0625, {}, "pass", False),
    ("lower-just-below-minus-margin", -JUST, 0.0625, {}, "fail", False),  # δ + 2·SE = 0.125 − 2**-10 ≥ 0: not measurable
    ("margin-from-thresholds", 0.0, 0.0625, {"margin": 0.125 - JUST}, "fail", False),
    ("z-from-thresholds", -JUST, 0.0625, {"z": 1.0}, "pass", False),
    # The standard's default margin 0.02: 0 − 2·0.01 is exactly −0.02 in binary too (doubling is exact).
    ("default-margin-boundary", 0.0, 0.01, {"margin": 0.02}, "pass", False),
    ("default-margin-just-below", -JUST, 0.01, {"margin": 0.02}, "fail", False),
    # Measurable cost: δ + 2·SE < 0.  δ = −1/8, SE = 1/16 → exactly 0: not measurable (margin 1/2 keeps it non-inferior).
    ("upper-exactly-0", -0.125, 0.0625, {"margin": 0.5}, "pass", False),
    ("upper-just-below-0", -0.125 - JUST, 0.0625, {"margin": 0.5}, "pass", True),  # measurable yet non-inferior
    ("upper-just-above-0", -0.125 + JUST, 0.0625, {"margin": 0.5}, "pass", False),
    ("measurable-and-inferior", -0.25, 0.0625, {}, "fail", True),
    ("a-gain-is-not-a-cost", 0.25, 0.0625, {}, "pass", False),
]


@pytest.mark.parametrize("row_id, delta, se, th, outcome, measurable", ROWS, ids=[r[0] for r in ROWS])
def test_cost_rules(row_id, delta, se, th, outcome, measurable):
    d = plain(cost(comparison(difference=delta, se_cluster=se, mean_a=0.75), [], {**TH, **th}))
    assert d["outcome"] == outcome
    assert d["measurable_cost"] is measurable
    assert ("not-non-inferior" in codes(d)) is (outcome == "fail")
    assert ("measurable-cost" in codes(d)) is measurable


def test_cost_uses_the_clustered_se_not_se_total():
    # SE_cl = 1/16, seed term 3/256 → SE_tot = 1/8.  With SE_cl: 0 − 2/16 = −margin → pass;
    # with SE_tot it would be −0.25 < −0.125 → fail.
    d = plain(cost(comparison(difference=0.0, se_cluster=0.0625, seed_term=3 / 256, seeds_a=(0, 1), seeds_b=(0, 1)), [], TH))
    assert d["outcome"] == "pass"
    assert d["estimates"]["se"] == 0.0625


def test_cost_estimates():
    # a = D, b = U: δ = acc_D − acc_U.
    d = plain(cost(comparison(difference=-0.125, se_cluster=0.0625, mean_a=0.5), [], TH))
    e = d["estimates"]
    assert (e["accuracy_defended"], e["accuracy_undefended"], e["delta"]) == (0.5, 0.625, -0.125)
    assert (e["delta_lower"], e["delta_upper"]) == (-0.25, 0.0)


@pytest.mark.parametrize("n_subjects, outcome", [(1, "insufficient"), (2, "pass"), (0, "insufficient")])
def test_too_few_subjects(n_subjects, outcome):
    d = plain(cost(comparison(difference=0.0, se_cluster=0.03125, n_subjects=n_subjects), [], TH))
    assert d["outcome"] == outcome
    if outcome == "insufficient":
        assert codes(d) == {"too-few-subjects"} and d["measurable_cost"] is None


def test_too_few_subjects_even_with_a_large_cost():
    d = plain(cost(comparison(difference=-0.5, se_cluster=0.03125, n_subjects=1), [], TH))
    assert (d["outcome"], d["measurable_cost"]) == ("insufficient", None)


@pytest.mark.parametrize("c, unavailable, reason", [
    (None, [], "no-paired-items"),
    (comparison(n_items=0), [], "no-paired-items"),
    (comparison(), missing("missing-condition", "no defended capability records"), "missing-condition"),
])
def test_no_comparison_is_insufficient(c, unavailable, reason):
    d = plain(cost(c, unavailable, TH))
    assert (d["outcome"], d["measurable_cost"]) == ("insufficient", None)
    assert codes(d) == {reason}
