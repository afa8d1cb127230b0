"""Agreement between scorers (judges) of the same outputs: Cohen's κ on binarised scores.

Scores are binarised at :data:`THRESHOLD`: a score of at least 0.5 counts as 1, below as 0.  Scores
already in {0, 1} are unchanged by this rule; a score of exactly 0.5 counts as 1.  κ compares two
scorers on the outputs both scored (a record one of them left unscored is left out):

    κ = (p_o − p_e) / (1 − p_e),   p_o = (n₀₀ + n₁₁)/n,   p_e = p₁(a)·p₁(b) + p₀(a)·p₀(b)

with n_jk the number of outputs scored j by the first scorer and k by the second.  When p_e = 1
(both scorers give every output the same single value) κ is undefined and reported as None, with
the observed agreement still given.  Pure numpy, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

THRESHOLD = 0.5


def binarise(scores: np.ndarray) -> np.ndarray:
    """1 where a score is at least :data:`THRESHOLD`, else 0 (NaN stays NaN: unscored)."""
    scores = np.asarray(scores, float)
    return np.where(np.isnan(scores), np.nan, (scores >= THRESHOLD).astype(float))


@dataclass(frozen=True)
class Kappa:
    """Cohen's κ of two scorers over ``n`` outputs both scored, with the 2×2 table it came from."""

    n: int
    table: tuple[tuple[int, int], tuple[int, int]]  # table[j][k]: first scorer said j, second said k
    observed: float | None  # p_o; None when n = 0
    expected: float | None  # p_e
    kappa: float | None  # None when n = 0 or p_e = 1

    def as_json(self, first: str, second: str) -> dict:
        return {"scorers": [first, second], "n": self.n, "kappa": self.kappa, "observed": self.observed,
                "expected": self.expected, "table": [list(row) for row in self.table]}


def cohen_kappa(first: np.ndarray, second: np.ndarray) -> Kappa:
    """κ of two scorers' scores of the same outputs (any values in [0, 1]; NaN: unscored)."""
    a, b = binarise(first), binarise(second)
    both = ~np.isnan(a) & ~np.isnan(b)
    a, b = a[both].astype(np.int64), b[both].astype(np.int64)
    counts = np.bincount(a * 2 + b, minlength=4)
    table = ((int(counts[0]), int(counts[1])), (int(counts[2]), int(counts[3])))
    n = int(both.sum())
    if n == 0:
        return Kappa(0, table, None, None, None)
    observed = (counts[0] + counts[3]) / n
    first_one, second_one = (counts[2] + counts[3]) / n, (counts[1] + counts[3]) / n
    expected = first_one * second_one + (1 - first_one) * (1 - second_one)
    kappa = float((observed - expected) / (1 - expected)) if expected < 1 else None
    return Kappa(n, table, float(observed), float(expected), kappa)


def pairwise(scores: dict[str, np.ndarray]) -> list[dict]:
    """κ of every pair of scorers (in the order given), as the report lists them."""
    return [cohen_kappa(scores[a], scores[b]).as_json(a, b) for a, b in combinations(scores, 2)]
