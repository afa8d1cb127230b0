"""Cohen's κ between scorers (acards.diagnostics.agreement), checked against computations that share
none of its code: hand-computed tables, the closed form on a 2×2 table, and scikit-learn's cohen_kappa_score;
and the verdict of a claim that must hold under every scorer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from acards.diagnostics.agreement import binarise, cohen_kappa, pairwise
from acards.diagnostics.verdict import all_scorers_verdict


def scores_of(table: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Two scorers' binary scores with the 2×2 table ``table[j][k]`` (first said j, second k)."""
    first, second = [], []
    for j in (0, 1):
        for k in (0, 1):
            first += [j] * table[j][k]
            second += [k] * table[j][k]
    return np.array(first, float), np.array(second, float)


def closed_form(a: int, b: int, c: int, d: int) -> float:
    """κ = 2(ad − bc) / ((a+b)(b+d) + (a+c)(c+d)) for the table [[a, b], [c, d]]."""
    return 2 * (a * d - b * c) / ((a + b) * (b + d) + (a + c) * (c + d))


def test_a_hand_computed_table():
    # n = 50; p_o = (20 + 15)/50 = 0.7; first says 1 on 25, second on 20: p_e = 0.5·0.4 + 0.5·0.6 = 0.5
    found = cohen_kappa(*scores_of([[20, 5], [10, 15]]))
    assert found.n == 50
    assert found.table == ((20, 5), (10, 15))
    assert found.observed == pytest.approx(0.7)
    assert found.expected == pytest.approx(0.5)
    assert found.kappa == pytest.approx(0.4)


def test_a_second_hand_computed_table():
    # Fleiss' textbook-style table: n = 100, p_o = 0.85, p_e = 0.6·0.55 + 0.4·0.45 = 0.51, κ = 0.34/0.49
    found = cohen_kappa(*scores_of([[35, 5], [10, 50]]))
    assert found.observed == pytest.approx(0.85)
    assert found.expected == pytest.approx(0.51)
    assert found.kappa == pytest.approx(0.34 / 0.49)


@pytest.mark.parametrize("seed", range(20))
def test_the_closed_form_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    a, b, c, d = (int(x) for x in rng.integers(0, 40, 4) + np.array([1, 0, 0, 1]))
    order = rng.permutation(a + b + c + d)  # the order of outputs does not matter
    first, second = scores_of([[a, b], [c, d]])
    assert cohen_kappa(first[order], second[order]).kappa == pytest.approx(closed_form(a, b, c, d), abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_scikit_learn_agrees(seed):
    metrics = pytest.importorskip("sklearn.metrics")  # in the test extra (through lm-eval)
    rng = np.random.default_rng(100 + seed)
    table = (rng.integers(0, 30, (2, 2)) + np.eye(2, dtype=int)).tolist()
    first, second = scores_of(table)
    expected = metrics.cohen_kappa_score(first.astype(int), second.astype(int))
    assert cohen_kappa(first, second).kappa == pytest.approx(expected, abs=1e-12)


def test_perfect_agreement_and_perfect_disagreement():
    x = np.array([0, 1, 1, 0, 1, 0], float)
    assert cohen_kappa(x, x).kappa == pytest.approx(1.0)
    assert cohen_kappa(x, 1 - x).kappa == pytest.approx(-1.0)


def test_scores_are_binarised_at_one_half():
    assert binarise(np.array([0.0, 0.49, 0.5, 0.51, 1.0])).tolist() == [0, 0, 1, 1, 1]
    assert binarise(np.array([0.0, 1.0])).tolist() == [0.0, 1.0]  # binary scores as they are
    # a 0.7 and a 1.0 agree; a 0.3 and a 0.6 do not
    found = cohen_kappa(np.array([0.7, 0.3, 0.2, 0.9]), np.array([1.0, 0.6, 0.0, 0.8]))
    assert found.table == ((1, 1), (0, 2))


def test_unscored_outputs_are_left_out_of_the_pair():
    first = np.array([1, 0, np.nan, 1, 0], float)
    second = np.array([1, 0, 1, np.nan, 1], float)
    found = cohen_kappa(first, second)
    assert found.n == 3
    assert found.table == ((1, 1), (0, 1))


def test_undefined_kappa_is_none_not_a_number():
    ones = np.ones(5)
    found = cohen_kappa(ones, ones)  # p_e = 1: both always say 1
    assert found.kappa is None and found.observed == 1.0 and found.expected == 1.0
    empty = cohen_kappa(np.array([np.nan]), np.array([1.0]))
    assert (empty.n, empty.kappa, empty.observed) == (0, None, None)
    # one scorer constant, the other not: p_e < 1, κ = 0 (agreement at chance)
    assert cohen_kappa(ones, np.array([1, 0, 1, 0, 1], float)).kappa == pytest.approx(0.0)


def test_pairwise_lists_every_pair_in_order():
    x = np.array([1, 0, 1, 0], float)
    pairs = pairwise({"a": x, "b": x, "c": 1 - x})
    assert [p["scorers"] for p in pairs] == [["a", "b"], ["a", "c"], ["b", "c"]]
    assert [p["kappa"] for p in pairs] == [1.0, -1.0, -1.0]
    assert all(math.isfinite(p["observed"]) for p in pairs)


@pytest.mark.parametrize("verdicts, expected", [
    (["supported", "supported", "supported"], "supported"),
    (["supported", "unsupported", "supported"], "unsupported"),
    (["supported", "insufficient"], "insufficient"),
    (["insufficient", "unsupported"], "unsupported"),
    (["unsupported"], "unsupported"),
])
def test_a_claim_under_every_scorer(verdicts, expected):
    assert all_scorers_verdict(verdicts) == expected
