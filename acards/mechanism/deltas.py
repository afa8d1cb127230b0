"""Weight updates as low-rank (LoRA: scaling·B·A, never materialised) or dense deltas, and the inner
products and norms the signature needs, computed with r×r products."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Union

import numpy as np

from acards.errors import AcardsError


@dataclass(frozen=True, eq=False)
class LowRank:
    """A LoRA update ``scaling · B @ A``: B is d_out×r, A is r×d_in, both float64."""

    B: np.ndarray
    A: np.ndarray
    scaling: float

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])


@dataclass(frozen=True, eq=False)
class Dense:
    """A full d_out×d_in update (fine-tuned minus base weights), float64."""

    matrix: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


Delta = Union[LowRank, Dense]


@dataclass(frozen=True, eq=False)
class ReferenceSubspace:
    """Per module, ``kind == "V"``: aligned − pretrained weights (d_out×d_in); ``kind == "U"``: an
    orthonormal basis of the reference subspace (d_out×k).  Keys are base-model module names."""

    kind: Literal["V", "U"]
    matrices: dict[str, np.ndarray]


def inner(x: Delta, y: Delta) -> float:
    """Frobenius inner product ⟨x, y⟩ without forming a d_out×d_in matrix from a LowRank."""
    if isinstance(x, LowRank) and isinstance(y, LowRank):
        # ⟨B1A1, B2A2⟩ = tr((B1ᵀB2)(A2A1ᵀ)) = Σ (B1ᵀB2) ⊙ (A1A2ᵀ): two r1×r2 products.
        return x.scaling * y.scaling * float(np.sum((x.B.T @ y.B) * (x.A @ y.A.T)))
    if isinstance(x, Dense) and isinstance(y, Dense):
        return float(np.vdot(x.matrix, y.matrix))
    dense, low = (x, y) if isinstance(x, Dense) else (y, x)
    assert isinstance(dense, Dense) and isinstance(low, LowRank)  # one of each, by the two cases above
    # ⟨D, BA⟩ = Σ (BᵀD) ⊙ A: an r×d_in product.
    return low.scaling * float(np.sum((low.B.T @ dense.matrix) * low.A))


def sq_norm(x: Delta) -> float:
    """‖x‖_F²."""
    return inner(x, x)


def sq_norm_diff(x: Delta, y: Delta, c: float = 1.0) -> float:
    """‖x − c·y‖_F², expanded from inner products; rounding negatives are clipped to 0."""
    value = sq_norm(x) - 2.0 * c * inner(x, y) + c * c * sq_norm(y)
    return max(value, 0.0)


def map_output_side(x: Delta, operator: Callable[[np.ndarray], np.ndarray]) -> Delta:
    """``M·x`` for a linear map M acting on the output (row) side, given as ``operator(X) = M @ X``.

    For a LowRank only B (d_out×r) goes through the operator, so ``M`` is never applied to a
    d_out×d_in matrix."""
    if isinstance(x, LowRank):
        return LowRank(operator(x.B), x.A, x.scaling)
    return Dense(operator(x.matrix))


def top_energy_basis(V: np.ndarray, energy: float = 0.90) -> np.ndarray:
    """The top-k left singular vectors of V (d_out×k), k the smallest holding ≥ ``energy`` of ‖V‖²."""
    left, singular, _ = np.linalg.svd(V, full_matrices=False)
    squared = singular**2
    if not squared.sum() > 0:
        raise AcardsError(
            "weights.bad-reference",
            "the reference matrix V is zero, so it spans no subspace",
            "store V = aligned − pretrained weights for every module; a zero V means the module was "
            "not changed by alignment and carries no reference direction",
        )
    share = np.cumsum(squared) / squared.sum()
    k = min(int(np.searchsorted(share, energy)) + 1, len(squared))
    return left[:, :k]
