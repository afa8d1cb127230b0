"""D1 reliability and the Holm gate, pinned row by row (SPEC §4 D1).

Pass iff (a) G_U − z·SE(G_U) > 0 and (b) Δ − z·SE_tot > margin, both strict; with fewer than
min_subjects subjects or min_seeds seeds (on either side) the outcome is insufficient, whatever
(a) and (b) say.  Every row below sits exactly on a boundary or one dyadic step (JUST) beside it.
"""

from __future__ import annotations

import math

import pytest
from decision_inputs import JUST, as_diagnostic, codes, comparison, missing, plain
from scipy.stats import norm

from acards.diagnostics.reliability import holm_gate, reliability

TH = {"z": 2.0, "margin": 0.0, "min_subjects": 10, "min_seeds": 1, "alpha": 0.05}

# Both rules clearly hold in the base comparison: G_U − 2·SE = 0.5 − 0.125 = 0.375 and
# Δ − 2·SE_tot = 0.25 − 0.125 = 0.125.  Each row moves one number onto or beside one boundary.
ROWS = [
    # id, comparison(...) overrides, threshold overrides, outcome, reason codes that must appear
    ("base-passes", {}, {}, "pass", set()),
    # (a) the installed gap: G_U − z·SE(G_U) > 0, strict.
    ("gap-lower-just-above-0", {"se_a": 0.25 - JUST / 2}, {}, "pass", set()),  # 0.5 − 2·se_a = 2**-10
    ("gap-lower-exactly-0", {"se_a": 0.25}, {}, "fail", {"no-installed-gap"}),  # 0 is not > 0
    ("gap-lower-just-below-0", {"se_a": 0.25 + JUST / 2}, {}, "fail", {"no-installed-gap"}),
    # (b) the reduction with margin 0: Δ − z·SE_tot > 0, strict.
    ("reduction-lower-just-above-0", {"difference": 0.25 + JUST, "se_cluster": 0.125}, {}, "pass", set()),
    ("reduction-lower-exactly-0", {"difference": 0.25, "se_cluster": 0.125}, {}, "fail", {"reduction-not-reliable"}),
    ("reduction-lower-just-below-0", {"difference": 0.25 - JUST, "se_cluster": 0.125}, {}, "fail", {"reduction-not-reliable"}),
    # (b) with a non-zero margin: the bound is compared with the margin, not with 0.
    ("reduction-lower-just-above-margin", {"difference": 0.375 + JUST, "se_cluster": 0.125}, {"margin": 0.125}, "pass", set()),
    ("reduction-lower-equals-margin", {"difference": 0.375, "se_cluster": 0.125}, {"margin": 0.125}, "fail", {"reduction-not-reliable"}),
    ("reduction-above-0-below-margin", {"difference": 0.25 + JUST, "se_cluster": 0.125}, {"margin": 0.125}, "fail", {"reduction-not-reliable"}),
    # z is the card's: with z = 1 the same numbers pass that fail with z = 2.
    ("z-is-read-from-thresholds", {"difference": 0.25, "se_cluster": 0.125}, {"z": 1.0}, "pass", set()),
    # SE_tot includes the seed term: sqrt((3/32)² + 7/1024) = 1/8, so Δ − 2·SE_tot = 0 fails
    # (with the clustered SE alone it would be 0.25 − 0.1875 > 0 and pass).
    ("seed-term-enters-se-total", {"difference": 0.25, "se_cluster": 3 / 32, "seed_term": 7 / 1024,
                                   "seeds_a": (0, 1), "seeds_b": (0, 1)}, {}, "fail", {"reduction-not-reliable"}),
    ("seed-term-just-passes", {"difference": 0.25 + JUST, "se_cluster": 3 / 32, "seed_term": 7 / 1024,
                               "seeds_a": (0, 1), "seeds_b": (0, 1)}, {}, "pass", set()),
    # Both rules failing report both reasons.
    ("both-rules-fail", {"se_a": 0.25, "difference": 0.25, "se_cluster": 0.125}, {}, "fail",
     {"no-installed-gap", "reduction-not-reliable"}),
    # (c) counts: n_subjects == min_subjects is enough; one fewer is insufficient.
    ("subjects-equal-min", {"n_subjects": 10}, {}, "pass", set()),
    ("subjects-one-below-min", {"n_subjects": 9}, {}, "insufficient", {"too-few-subjects"}),
    ("subjects-min-from-thresholds", {"n_subjects": 12}, {"min_subjects": 13}, "insufficient", {"too-few-subjects"}),
    # seeds = min over U and D: equal to min_seeds passes; either side short is insufficient.
    ("seeds-equal-min", {"seeds_a": (0, 1), "seeds_b": (0, 1), "seed_term": 0.0}, {"min_seeds": 2}, "pass", set()),
    ("seeds-defended-short", {"seeds_a": (0, 1), "seeds_b": (0,)}, {"min_seeds": 2}, "insufficient", {"too-few-seeds"}),
    ("seeds-undefended-short", {"seeds_a": (0,), "seeds_b": (0, 1)}, {"min_seeds": 2}, "insufficient", {"too-few-seeds"}),
    ("subjects-and-seeds-short", {"n_subjects": 9}, {"min_seeds": 2}, "insufficient", {"too-few-subjects", "too-few-seeds"}),
    # Too little evidence wins over a failing rule: insufficient, never fail.
    ("insufficient-beats-fail", {"n_subjects": 9, "se_a": 0.25, "difference": 0.0}, {}, "insufficient", {"too-few-subjects"}),
]


@pytest.mark.parametrize("row_id, overrides, th_overrides, outcome, reasons", ROWS, ids=[r[0] for r in ROWS])
def test_reliability_rules(row_id, overrides, th_overrides, outcome, reasons):
    d = plain(reliability(comparison(**overrides), [], {**TH, **th_overrides}))
    assert d["outcome"] == outcome
    assert reasons <= codes(d)
    if outcome == "pass":
        assert not codes(d) & {"no-installed-gap", "reduction-not-reliable", "too-few-subjects", "too-few-seeds"}
    if outcome == "insufficient":  # insufficient never also claims a failed rule
        assert not codes(d) & {"no-installed-gap", "reduction-not-reliable"}


def test_estimates_are_the_bounds_the_rules_used():
    # Δ = 0.375, SE_tot = 1/8, G_U = 0.5, SE(G_U) = 1/16, margin 1/8.
    th = {**TH, "margin": 0.125}
    d = plain(reliability(comparison(difference=0.375, se_cluster=0.125), [], th))
    e = d["estimates"]
    assert e["gap_undefended_lower"] == 0.5 - 2 * 0.0625
    assert e["reduction_lower"] == 0.375 - 2 * 0.125
    assert e["relative_reduction"] == 0.375 / 0.5
    assert e["se_total"] == 0.125
    # p-value of (Δ − margin)/SE_tot = 2: two-sided normal, computed here with scipy.
    assert e["p_value"] == pytest.approx(2 * norm.sf(2.0), rel=1e-12)
    assert e["p_holm"] is None  # filled in later, across the card's cells
    assert d["thresholds"] == th


def test_relative_reduction_only_with_an_installed_gap():
    # G_U − 2·SE = 0: ρ is not reported (null), though Δ itself is.
    e = plain(reliability(comparison(se_a=0.25), [], TH))["estimates"]
    assert e["relative_reduction"] is None
    assert e["reduction"] == 0.25


@pytest.mark.parametrize("per_seed, share", [([0.25, 0.125], True), ([-0.25, -0.125], True), ([0.25, -0.125], False),
                                             ([0.25, 0.0], False), ([0.25], None), (None, None)])
def test_seeds_share_sign(per_seed, share):
    # 0.0 is not > 0, so a zero seed does not share the sign of a positive one.
    assert plain(reliability(comparison(per_seed=per_seed), [], TH))["estimates"]["seeds_share_sign"] is share


def test_seed_variance_reason():
    assert "seed-variance-not-included" in codes(reliability(comparison(seed_term=None), [], TH))
    assert "seed-variance-not-included" not in codes(reliability(comparison(seed_term=0.0, seeds_a=(0, 1), seeds_b=(0, 1)), [], TH))


@pytest.mark.parametrize("c, unavailable, reason", [
    (None, [], "no-paired-items"),
    (comparison(n_items=0), [], "no-paired-items"),
    (comparison(), missing("missing-condition"), "missing-condition"),
])
def test_no_comparison_is_insufficient(c, unavailable, reason):
    d = plain(reliability(c, unavailable, TH))
    assert d["outcome"] == "insufficient"
    assert codes(d) == {reason}


# --- The Holm gate: a passing reliability also needs p_holm ≤ alpha (claims with family_correction: holm).

def diagnostic(outcome: str, p_holm):
    return as_diagnostic(outcome, {"p_holm": p_holm})


ALPHA = 0.05
GATE_ROWS = [
    ("p-equals-alpha-passes", "pass", ALPHA, "pass"),  # ≤, so equality passes
    ("p-just-below-alpha-passes", "pass", math.nextafter(ALPHA, 0.0), "pass"),
    ("p-just-above-alpha-fails", "pass", math.nextafter(ALPHA, 1.0), "fail"),
    ("p-zero-passes", "pass", 0.0, "pass"),
    ("p-missing-fails", "pass", None, "fail"),  # no adjusted p-value: significance is not shown
    ("fail-stays-fail", "fail", 0.0, "fail"),
    ("insufficient-stays-insufficient", "insufficient", 1.0, "insufficient"),
    ("insufficient-without-p", "insufficient", None, "insufficient"),
]


@pytest.mark.parametrize("row_id, outcome, p_holm, gated", GATE_ROWS, ids=[r[0] for r in GATE_ROWS])
def test_holm_gate(row_id, outcome, p_holm, gated):
    original = diagnostic(outcome, p_holm)
    out = holm_gate(original, ALPHA)
    assert plain(out)["outcome"] == gated
    if outcome != "pass" or gated == "pass":
        assert out is original  # returned untouched
    else:
        assert codes(out) == {"holm-not-significant"}
        assert plain(original)["outcome"] == "pass" and plain(original)["reasons"] == []  # the input is not changed
