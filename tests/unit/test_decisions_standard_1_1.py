"""The 1.1 rules of D1, D2, D4, the cost guard and the control, row by row (SPEC §10.1, §10.2, §10.4).

The same hand-made comparisons as the 1.0 decision tables, marked ``standard="1.1"`` and given
seed spreads: t critical values replace z (a row that passes on z fails on t), at least min_seeds
seeds (3 by default) for D1, D2 and D4, the MDE on the same critical value plus the margin.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from decision_inputs import codes, comparison, plain
from scipy import stats as sps

from acards.diagnostics.cost import cost
from acards.diagnostics.fresh import Freshness, fresh
from acards.diagnostics.mechanism import mechanism
from acards.diagnostics.reliability import reliability
from acards.diagnostics.transfer import transfer
from acards.stats import SeedSpread

D1 = {"z": 2.0, "margin": 0.0, "min_subjects": 10, "min_seeds": 3, "alpha": 0.05}
D2 = {"z": 2.0, "min_retention": 0.5, "max_shared_ngram": 8, "min_seeds": 3}
D4 = {"z": 2.0, "min_retention": 0.5, "min_seeds": 3}
CLEAN = Freshness(shared_subjects=[], ngram_checked=True, prompts_sharing=0, examples=[])
NO_SEED_COMPONENT = SeedSpread(3, spread=0.0, noise=0.0)  # seeds agree exactly: SE_tot = SE_cl on C − 1 df


def v11(seeds=3, spreads=None, **numbers):
    """A 1.1 comparison over ``seeds`` paired seeds; no seed component unless ``spreads`` says so."""
    seed_ids = tuple(range(seeds))
    base = comparison(seeds_a=seed_ids, seeds_b=seed_ids, **numbers)
    if spreads is None:
        spreads = [NO_SEED_COMPONENT] if seeds >= 2 else []
    return replace(base, standard="1.1", spreads=spreads, spread_a=spreads[0] if spreads else None)


def t_crit(df, z=2.0):
    return sps.t.ppf(sps.norm.cdf(z), df)


def test_t_replaces_z_a_row_that_passes_on_z_fails_on_t():
    # 12 subjects, no seed component: df 11, t = 2.255.  Δ = 0.22, SE 0.1: 0.22 − 2·0.1 > 0 passes
    # on z (1.0), 0.22 − 2.255·0.1 < 0 fails on t (1.1).
    numbers = {"difference": 0.22, "se_cluster": 0.1, "se_a": 0.0625}
    old = plain(reliability(replace(v11(**numbers), standard="1.0", seed_term=0.0), [], {**D1, "min_seeds": 1}))
    assert old["outcome"] == "pass"
    new = plain(reliability(v11(**numbers), [], D1))
    assert new["outcome"] == "fail" and "reduction-not-reliable" in codes(new)
    e = new["estimates"]
    assert e["df"] == pytest.approx(11) and e["critical_value"] == pytest.approx(t_crit(11))
    assert e["reduction_lower"] == pytest.approx(0.22 - t_crit(11) * 0.1)
    assert "Δ − t(11.0)=2.25·SE_tot" in new["reasons"][0]["message"]
    assert plain(reliability(v11(difference=0.23, se_cluster=0.1, se_a=0.0625), [], D1))["outcome"] == "pass"


@pytest.mark.parametrize("seeds, outcome", [(2, "insufficient"), (3, "pass"), (5, "pass")])
def test_min_seeds_defaults_to_3_for_d1_d2_d4(seeds, outcome):
    c = v11(seeds=seeds)
    results = [plain(reliability(c, [], D1)), plain(fresh(c, [], 0.5, CLEAN, D2)),
               plain(transfer(c, [], 0.5, D4, "t", ["format"]))]
    for result in results:
        assert result["outcome"] == outcome
        assert ("too-few-seeds" in codes(result)) == (seeds < 3)


def test_a_lowered_min_seeds_runs_and_says_seed_variance_is_not_included():
    c = v11(seeds=1)
    for result in (plain(reliability(c, [], {**D1, "min_seeds": 1})), plain(fresh(c, [], 0.5, CLEAN, {**D2, "min_seeds": 1})),
                   plain(transfer(c, [], 0.5, {**D4, "min_seeds": 1}, "t", ["format"]))):
        assert result["outcome"] == "pass"
        assert "seed-variance-not-included" in codes(result)
        assert result["details"]["seed_variance_included"] is False
        assert result["estimates"]["se_seed"] is None and result["estimates"]["df"] == 11


def test_the_seed_component_enters_se_total_once():
    spread = SeedSpread(3, spread=0.012, noise=0.003)  # component 0.009
    e = plain(reliability(v11(spreads=[spread], se_cluster=0.0625), [], D1))["estimates"]
    assert e["se_total"] == pytest.approx(math.sqrt(0.0625**2 + 0.009 / 3))
    assert e["seed_spread"] == 0.012 and e["seed_noise"] == 0.003 and e["seed_variance"] == pytest.approx(0.009)
    assert e["se_seed"] == pytest.approx(math.sqrt(0.003))
    assert 2 <= e["df"] < 11


def test_mde_uses_the_same_critical_value_and_the_margin():
    e = plain(reliability(v11(difference=0.5, se_cluster=0.0625), [], {**D1, "margin": 0.125}))["estimates"]
    # The margin adds; the rest, δ·SE_tot/c4, is the reduction the rule detects 80% of the time when SE_tot
    # is estimated on 11 df: at noncentrality δ scipy's noncentral t clears t_crit with probability 0.8.
    c4 = sps.chi(11).mean() / math.sqrt(11)
    assert sps.nct.sf(t_crit(11), 11, (e["mde"] - 0.125) * c4 / 0.0625) == pytest.approx(0.8, abs=0.005)
    assert e["p_value"] == pytest.approx(2 * sps.t.sf((0.5 - 0.125) / 0.0625, 11))
    assert (e["ci_low"], e["ci_high"]) == pytest.approx(sps.t.interval(0.95, 11, loc=0.5, scale=0.0625))
    assert e["ci_mc_error"] is None


def test_the_gap_rule_uses_its_own_critical_value():
    # G_U = 0.5 with SE 0.24: 0.5 − 2·0.24 > 0 on z, 0.5 − 2.255·0.24 < 0 on t
    result = plain(reliability(v11(se_a=0.24), [], D1))
    assert result["outcome"] == "fail" and "no-installed-gap" in codes(result)
    assert result["estimates"]["gap_undefended_lower"] == pytest.approx(0.5 - t_crit(11) * 0.24)
    assert result["estimates"]["relative_reduction"] is None


def test_cost_guard_uses_the_critical_value():
    c = replace(v11(difference=-0.01, se_cluster=0.01), mean_a=0.7)
    e = plain(cost(c, [], {"z": 2.0, "margin": 0.02}))
    assert e["estimates"]["critical_value"] == pytest.approx(t_crit(11))
    assert e["estimates"]["delta_lower"] == pytest.approx(-0.01 - t_crit(11) * 0.01)
    assert e["outcome"] == "fail"  # −0.01 − 0.0225 < −0.02
    assert plain(cost(replace(c, difference=0.005), [], {"z": 2.0, "margin": 0.02}))["outcome"] == "pass"  # −0.0175


def test_control_rule_uses_the_critical_value():
    # margin 0.22 with SE 0.1: beats the control on z (0.02 > 0) but not on t (0.22 − 0.2255 < 0)
    control = v11(difference=0.22, se_cluster=0.1)
    result = plain(mechanism(None, control, [], 0.1, "projection", "strict", {"z": 2.0}))
    assert result["observed"] == "shrinkage" and "control-not-beaten" in codes(result)
    assert result["estimates"]["control_margin_lower"] == pytest.approx(0.22 - t_crit(11) * 0.1)


def test_compare_builds_one_spread_for_paired_seeds_two_for_unpaired_none_for_a_single_seed():
    import numpy as np

    from acards.diagnostics.common import compare

    rng = np.random.default_rng(2)
    subjects = np.repeat(np.arange(12), 3)
    a, b = rng.normal(0.4, 0.3, (3, 36)), rng.normal(0.1, 0.3, (3, 36))
    paired = compare(a, b, subjects, [0, 1, 2], [0, 1, 2], None, 0, "1.1")
    assert len(paired.spreads) == 1 and paired.spreads[0].n_seeds == 3 and paired.spread_a.n_seeds == 3
    unpaired = compare(a, b[:2], subjects, [0, 1, 2], [7, 8], None, 0, "1.1")
    assert [s.n_seeds for s in unpaired.spreads] == [3, 2]
    single = compare(a, b[:1], subjects, [0, 1, 2], [7], None, 0, "1.1")
    assert single.spreads == [] and single.df == 11
    assert plain(reliability(single, [], {**D1, "min_seeds": 1}))["details"]["seed_variance_included"] is False
    old = compare(a, b, subjects, [0, 1, 2], [0, 1, 2], None, 0)
    assert old.standard == "1.0" and old.spreads == [] and old.critical(2.0) == 2.0 and old.df == math.inf
