"""Holm's step-down adjustment (acards.stats.holm) and how verify applies it across a card's cells.

The brute force below follows the definition of the procedure, not the closed form the code uses:
at level α, walk the p-values in increasing order and reject H_(j) while p_(j)·(m − j + 1) ≤ α;
the adjusted p-value of H_i is the smallest α at which H_i is rejected (1 if none below 1).
"""

from __future__ import annotations

import numpy as np
import pytest
from decision_inputs import as_diagnostic, plain

from acards.pipeline.recompute import apply_holm
from acards.stats import holm


def rejected_at(p: list[float], alpha: float) -> set[int]:
    """Indices Holm rejects at level alpha (NaN p-values are not tested and do not count)."""
    tested = sorted((v, i) for i, v in enumerate(p) if not np.isnan(v))
    m = len(tested)
    out = set()
    for j, (value, i) in enumerate(tested):  # j = 0 for the smallest p-value
        if value * (m - j) <= alpha:
            out.add(i)
        else:
            break  # step-down: stop at the first acceptance
    return out


def brute_force_holm(p: list[float]) -> list[float]:
    tested = [v for v in p if not np.isnan(v)]
    m = len(tested)
    candidates = sorted({min(1.0, v * k) for v in tested for k in range(1, m + 1)} | {1.0})
    adjusted = []
    for i, v in enumerate(p):
        if np.isnan(v):
            adjusted.append(np.nan)
        else:
            adjusted.append(next(a for a in candidates if i in rejected_at(p, a) or a == 1.0))
    return adjusted


HAND_ROWS = [
    # id, p-values, adjusted by hand (dyadic, so exact)
    ("single", [0.25], [0.25]),
    # sorted 1/32·4 = 1/8, 1/16·3 = 3/16, 1/8·2 = 1/4, 1/4·1 = 1/4
    ("four-sorted-by-hand", [0.125, 0.0625, 0.25, 0.03125], [0.25, 0.1875, 0.25, 0.125]),
    # step-down monotonicity: 1/8·2 = 1/4 > 3/16·1, so the larger p-value inherits 1/4
    ("monotone-max", [0.125, 0.1875], [0.25, 0.25]),
    ("no-monotone-needed", [0.125, 0.375], [0.25, 0.375]),
    # capped at 1
    ("cap-at-one", [0.625, 0.75], [1.0, 1.0]),
    ("cap-one-side", [0.0625, 0.75], [0.125, 0.75]),
    # ties share the adjusted value, whatever their order
    ("ties", [0.125, 0.125], [0.25, 0.25]),
    ("ties-and-a-smaller-one", [0.125, 0.03125, 0.125], [0.25, 0.09375, 0.25]),
    # NaN stays NaN and does not count toward m
    ("nan-not-counted", [np.nan, 0.125, 0.25], [np.nan, 0.25, 0.25]),
    ("all-nan", [np.nan, np.nan], [np.nan, np.nan]),
    ("zeros", [0.0, 0.0, 0.5], [0.0, 0.0, 0.5]),
    ("ones", [1.0, 1.0], [1.0, 1.0]),
    ("empty", [], []),
]


@pytest.mark.parametrize("row_id, p, adjusted", HAND_ROWS, ids=[r[0] for r in HAND_ROWS])
def test_holm_by_hand(row_id, p, adjusted):
    np.testing.assert_array_equal(holm(p), np.array(adjusted, float))
    np.testing.assert_array_equal(np.array(brute_force_holm(p), float), np.array(adjusted, float))  # the oracle agrees


@pytest.mark.parametrize("seed", range(40))
def test_holm_matches_the_brute_force(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 9))
    if seed % 2:  # ties: p-values from a small dyadic grid
        p = rng.integers(0, 17, m) / 16.0
    else:
        p = rng.uniform(0, 0.3, m)
    p[rng.random(m) < 0.15] = np.nan
    np.testing.assert_allclose(holm(p), brute_force_holm(list(p)), rtol=0, atol=1e-15)


def test_holm_keeps_shape_and_refuses_out_of_range():
    out = holm(np.array([[0.125, 0.25], [np.nan, 0.0625]]))
    assert out.shape == (2, 2)
    np.testing.assert_array_equal(out, [[0.25, 0.25], [np.nan, 0.1875]])
    for bad in ([-0.125], [1.0 + 2**-20], [0.5, 2.0]):
        with pytest.raises(ValueError):
            holm(bad)


# --- apply_holm: Holm across the card's cells, written into each reliability's estimates.

def reliabilities(*estimates: dict) -> list:
    return [as_diagnostic("pass", dict(e)) for e in estimates]


APPLY_ROWS = [
    ("two-cells", [{"p_value": 0.125}, {"p_value": 0.03125}], [0.125, 0.0625]),  # 1/32·2 = 1/16; 1/8·1
    ("ties", [{"p_value": 0.125}, {"p_value": 0.125}], [0.25, 0.25]),
    # A cell without a p-value (None: its SE was zero) gets None and does not count toward m.
    ("none-left-none", [{"p_value": 0.125}, {"p_value": None}, {"p_value": 0.25}], [0.25, None, 0.25]),
    # An insufficient cell with no estimates at all gets no p_holm key and does not count either.
    ("no-estimates", [{"p_value": 0.125}, {}], [0.125, "absent"]),
    ("capped", [{"p_value": 0.75}, {"p_value": 0.625}], [1.0, 1.0]),
    ("single-cell", [{"p_value": 0.03125}], [0.03125]),
    ("all-none", [{"p_value": None}, {"p_value": None}], [None, None]),
]


@pytest.mark.parametrize("row_id, estimates, expected", APPLY_ROWS, ids=[r[0] for r in APPLY_ROWS])
def test_apply_holm(row_id, estimates, expected):
    adjusted = plain(apply_holm(reliabilities(*estimates)))
    assert [d["estimates"].get("p_holm", "absent") for d in adjusted] == expected
    for d, e in zip(adjusted, estimates):  # nothing else is touched
        assert {k: v for k, v in d["estimates"].items() if k != "p_holm"} == e
        assert d["outcome"] == "pass"


def test_apply_holm_on_no_cells():
    assert apply_holm([]) == []
