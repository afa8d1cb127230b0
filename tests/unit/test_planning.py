"""acards.diagnostics.planning: the expected numbers follow verify's formulas, the design search finds
the boundary, pilots give back the components they were drawn from, the simulated D2/D4 apply the
real retention rule, and D1's `powerless` reason fires exactly when the MDE exceeds the claim."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from acards.card.validate import threshold_defaults
from acards.diagnostics import planning
from acards.diagnostics.common import compare
from acards.diagnostics.reliability import claimed_reduction, reliability
from acards.errors import AcardsError


def thresholds(**reliability) -> dict:
    found = threshold_defaults("1.1")
    out = {name: dict(found[name]) for name in ("reliability", "fresh", "transfer")}
    out["reliability"].update(reliability)
    return out


CONTINUOUS = planning.Components(gap_undefended=0.5, subject_sd=0.1, seed_sd=0.0, item_sd=0.05, noise_sd=0.4)


def test_expected_numbers_without_seed_variance_are_the_t_rule_on_the_satterthwaite_df():
    design = planning.Design(subjects=20, items_per_subject=5, seeds=3)
    e = planning.expected(CONTINUOUS, design, thresholds()["reliability"], 0.2)
    se = math.sqrt((0.1**2 + (0.05**2 + 0.4**2 / 3) / 5) / 20)
    assert e.se_cluster == pytest.approx(se) and e.se_total == pytest.approx(se)
    # no seed variance: the three seeds' spread is their noise alone, yet SE_tot leans on it (2 df)
    seeds_part = 0.4**2 / (3 * 20 * 5)
    subjects_part = se**2 - seeds_part
    df = se**4 / ((subjects_part**2 + se**4) / (2 * 19) + seeds_part**2 / 2)
    assert e.df == pytest.approx(df) and 2 < e.df < 19
    crit = scipy_stats.t.ppf(scipy_stats.norm.cdf(2.0), df)
    assert e.critical_value == pytest.approx(crit)
    c4 = scipy_stats.chi(df).mean() / math.sqrt(df)
    assert scipy_stats.nct.sf(crit, df, e.mde * c4 / se) == pytest.approx(0.8, abs=0.015)  # 80% power at the mean MDE
    with_margin = planning.expected(CONTINUOUS, design, thresholds(margin=0.05)["reliability"], 0.2)
    assert with_margin.mde == pytest.approx(e.mde + 0.05)


def test_seed_variance_enters_once_and_lowers_the_df():
    noisy = planning.Components(**{**CONTINUOUS.__dict__, "seed_sd": 0.1})
    design = planning.Design(subjects=20, items_per_subject=5, seeds=3)
    quiet = planning.expected(CONTINUOUS, design, thresholds()["reliability"], 0.2)
    loud = planning.expected(noisy, design, thresholds()["reliability"], 0.2)
    assert loud.se_total == pytest.approx(math.sqrt(quiet.se_total**2 + 0.1**2 / 3))
    assert 2 <= loud.df < 19 and loud.mde > quiet.mde


def test_the_design_search_stops_at_the_boundary():
    th = thresholds()["reliability"]
    design = planning.smallest_design(CONTINUOUS, planning.Design(10, 4, 3), th, 0.15, 0.15)
    assert design is not None and design.subjects > 10
    at = planning.expected(CONTINUOUS, design, th, 0.15).mde
    before = planning.expected(CONTINUOUS, planning.Design(design.subjects - 1, 4, 3), th, 0.15).mde
    assert at <= 0.15 < before


def test_an_unreachable_target_names_the_seeds_that_would_reach_it():
    noisy = planning.Components(**{**CONTINUOUS.__dict__, "seed_sd": 0.1})
    with pytest.raises(AcardsError) as caught:
        planning.plan(noisy, thresholds(), planning.Design(0, 4, 3), 0.2, planning.Setting(0.2), cells=10)
    assert caught.value.code == "plan.unreachable"
    assert "--seeds" in caught.value.problems[0].hint


@pytest.mark.parametrize("components, design, target, code", [
    (planning.Components(gap_undefended=0.5, subject_sd=-0.1, noise_sd=0.3), planning.Design(0, 4, 3), 0.2, "plan.bad-components"),
    (planning.Components(gap_undefended=0.5, subject_sd=0.1), planning.Design(0, 4, 3), 0.2, "plan.bad-components"),
    (planning.Components(gap_undefended=0.9, base_rate=0.2), planning.Design(0, 4, 3), 0.2, "plan.bad-components"),
    (CONTINUOUS, planning.Design(0, 4, 2), 0.2, "plan.bad-design"),  # fewer seeds than min_seeds = 3
    (CONTINUOUS, planning.Design(0, 4, 3), 0.0, "plan.bad-design"),  # not above the margin
])
def test_bad_input_is_a_coded_error(components, design, target, code):
    with pytest.raises(AcardsError) as caught:
        planning.plan(components, thresholds(), design, target, planning.Setting(0.2), cells=10)
    assert caught.value.code == code and caught.value.problems[0].hint


def test_a_pilot_gives_back_the_components_it_was_drawn_from():
    truth = planning.Components(gap_undefended=0.5, subject_sd=0.12, seed_sd=0.08, item_sd=0.1, noise_sd=0.3)
    design = planning.Design(subjects=400, items_per_subject=6, seeds=8)
    rng = np.random.default_rng(5)
    found = []
    for _ in range(6):
        a, b, subjects = planning.simulate_split(rng, truth, design, truth.gap_undefended, 0.2)
        found.append(planning.components_from_pilot(a, b, subjects, None, 1.0))
    mean = {name: np.mean([getattr(f, name) for f in found]) for name in ("subject_sd", "seed_sd", "item_sd", "noise_sd", "gap_undefended")}
    assert mean["subject_sd"] == pytest.approx(0.12, abs=0.01)
    assert mean["item_sd"] == pytest.approx(0.1, abs=0.01)
    assert mean["noise_sd"] == pytest.approx(0.3, abs=0.01)
    assert mean["seed_sd"] == pytest.approx(0.08, abs=0.025)  # 7 df per pilot
    assert mean["gap_undefended"] == pytest.approx(0.5, abs=0.03)


def test_a_one_seed_pilot_needs_a_stated_seed_sd():
    rng = np.random.default_rng(1)
    a, b, subjects = planning.simulate_split(rng, CONTINUOUS, planning.Design(20, 4, 1), 0.5, 0.2)
    with pytest.raises(AcardsError) as caught:
        planning.components_from_pilot(a, b, subjects, None, 1.0)
    assert caught.value.code == "plan.pilot-too-small"
    assert planning.components_from_pilot(a, b, subjects, None, 1.0, seed_sd=0.05).seed_sd == 0.05


def test_simulated_d2_and_d4_apply_the_retention_rule():
    design = planning.Design(subjects=40, items_per_subject=6, seeds=3)
    kept = planning.simulate(CONTINUOUS, design, planning.Setting(0.3), thresholds(), 150, 3)[0]
    lost = planning.simulate(CONTINUOUS, design, planning.Setting(0.3, fresh_retention=0.2, transfer_retention=0.2), thresholds(), 150, 3)[0]
    assert kept["reliability"].value > 0.9 and kept["fresh"].value > 0.8 and kept["transfer"].value > 0.8
    assert lost["fresh"].value < 0.1 and lost["transfer"].value < 0.1
    assert lost["reliability"].value == kept["reliability"].value  # its own stream: D1 does not move


def test_the_simulation_is_seeded():
    design = planning.Design(subjects=12, items_per_subject=3, seeds=3)
    first = planning.simulate(CONTINUOUS, design, planning.Setting(0.1), thresholds(), 40, 11)
    again = planning.simulate(CONTINUOUS, design, planning.Setting(0.1), thresholds(), 40, 11)
    assert first == again


# --- powerless ----------------------------------------------------------------------------------

def weak_comparison():
    """A 1.1 held-out comparison whose reduction (about 0.02) fails D1, with an MDE of about 0.2."""
    rng = np.random.default_rng(3)
    a, b, subjects = planning.simulate_split(rng, CONTINUOUS, planning.Design(12, 4, 3), 0.5, 0.02)
    return compare(a, b, subjects, [0, 1, 2], [0, 1, 2], None, 0, "1.1")


def claim(reported: dict, cells=("c1",)) -> dict:
    return {"id": "C1", "cells": list(cells), "reported": reported}


def test_powerless_when_the_mde_exceeds_the_claimed_reduction():
    c = weak_comparison()
    th = thresholds()["reliability"]
    plain = reliability(c, [], th)
    mde = plain.estimates["mde"]
    assert plain.outcome == "fail" and 0.1 < mde < 0.5
    below = reliability(c, [], th, [claim({"reliability": {"reduction": mde - 0.01}})], "c1")
    above = reliability(c, [], th, [claim({"reliability": {"reduction": mde + 0.01}})], "c1")
    assert "powerless" in [r.code for r in below.reasons]
    assert "powerless" not in [r.code for r in above.reasons] + [r.code for r in plain.reasons]
    assert below.outcome == above.outcome == "fail"


def test_the_claimed_reduction_is_what_the_card_reports_for_the_cell():
    assert claimed_reduction([claim({"reliability": {"reduction": 0.3}})], "c1") == 0.3
    assert claimed_reduction([claim({"reliability": {"reduction": 0.3}}, cells=("c1", "c2"))], "c1") is None
    assert claimed_reduction([claim({"cells": {"c1": {"reliability": {"reduction": 0.2}}}}, cells=("c1", "c2"))], "c1") == 0.2
    assert claimed_reduction([claim({"reliability": {"relative_reduction": 0.5}})], "c1", 0.4) == pytest.approx(0.2)
    both = [claim({"reliability": {"reduction": 0.3}}), claim({"reliability": {"reduction": 0.1}})]
    assert claimed_reduction(both, "c1") == 0.1
    assert claimed_reduction([claim({"reliability": {"outcome": "pass"}})], "c1") is None
