"""Weight updates as low-rank (LoRA: scaling·B·A, never materialised) or dense deltas, and the inner
products and norms the signature needs, computed with r×r products."""

from __future__ import annotations

import math
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
    """A full d_out×d_in update (fine-tuned minus base weights), float64.

    ``noise`` is the expected ‖rounding error‖² of storing the fine-tuned weights in their dtype
    (:func:`storage_noise`): the noise floor standard 1.1 subtracts (SPEC §10.7); 1.0 ignores it."""

    matrix: np.ndarray
    noise: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


Delta = Union[LowRank, Dense]


@dataclass(frozen=True, eq=False)
class ReferenceSubspace:
    """Per module, ``kind == "V"``: aligned − pretrained weights (d_out×d_in); ``kind == "U"``: an
    orthonormal basis of the reference subspace (d_out×k).  Keys are base-model module names.

    ``rank``: the card's ``reference_subspace.rank`` for a V file (the top-``rank`` left singular
    vectors span the subspace); None keeps the energy rule.  A U basis fixes its own rank."""

    kind: Literal["V", "U"]
    matrices: dict[str, np.ndarray]
    rank: int | None = None


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


def top_energy_basis(V: np.ndarray, energy: float = 0.90, rank: int | None = None) -> np.ndarray:
    """The top-k left singular vectors of V (d_out×k), k the smallest holding ≥ ``energy`` of ‖V‖²,
    or k = ``rank`` when given (capped at V's size)."""
    left, singular, _ = np.linalg.svd(V, full_matrices=False)
    squared = singular**2
    if not squared.sum() > 0:
        raise AcardsError(
            "weights.bad-reference",
            "the reference matrix V is zero, so it spans no subspace",
            "store V = aligned − pretrained weights for every module; a zero V means the module was "
            "not changed by alignment and carries no reference direction",
        )
    if rank is not None:
        return left[:, : min(rank, len(squared))]
    share = np.cumsum(squared) / squared.sum()
    k = min(int(np.searchsorted(share, energy)) + 1, len(squared))
    return left[:, :k]


# Bits dropped by each storage dtype relative to float32 (bf16 keeps float32's exponent, 8 bits of
# significand): its spacing is float32's times 2**16.
_SPACING_FROM_FLOAT32 = {"BF16": 2.0**16}


def storage_noise(stored: np.ndarray, dtype: str) -> float:
    """Expected ‖rounding error‖² of values stored in ``dtype`` ("F64", "F32", "F16", "BF16"):
    Σ spacing(x)²/12, the variance of rounding to the nearest representable value (SPEC §10.7)."""
    if dtype == "F16":
        spacing = np.spacing(np.abs(stored.astype(np.float16))).astype(np.float64)
    elif dtype == "F64":
        spacing = np.spacing(np.abs(stored.astype(np.float64)))
    else:
        spacing = np.spacing(np.abs(stored.astype(np.float32))).astype(np.float64) * _SPACING_FROM_FLOAT32.get(dtype, 1.0)
    return float(np.sum(spacing * spacing) / 12.0)


def singular_values(x: Delta) -> np.ndarray:
    """The singular values of x; for a LowRank from the r×r core of two QR factorisations, so no
    d_out×d_in matrix is formed."""
    if isinstance(x, Dense):
        return np.linalg.svd(x.matrix, compute_uv=False)
    if x.B.shape[1] == 0:
        return np.zeros(0)
    q_left, r_left = np.linalg.qr(x.B)
    q_right, r_right = np.linalg.qr(x.A.T)
    del q_left, q_right  # orthonormal: they keep singular values
    return np.linalg.svd(x.scaling * r_left @ r_right.T, compute_uv=False)


def difference(x: Delta, y: Delta, c: float = 1.0) -> Delta:
    """x − c·y as one update: stacked factors when both are low-rank (rank adds), else dense."""
    if isinstance(x, LowRank) and isinstance(y, LowRank):
        return LowRank(np.hstack([x.scaling * x.B, -c * y.scaling * y.B]), np.vstack([x.A, y.A]), 1.0)
    return Dense(dense(x) - c * dense(y))


def dense(x: Delta) -> np.ndarray:
    """The d_out×d_in matrix of x (only where a rule needs entries: masks, dense differences)."""
    return x.matrix if isinstance(x, Dense) else x.scaling * (x.B @ x.A)


def json_number(value: float) -> float | None:
    """A float for the report; nan and ±inf become null."""
    return float(value) if math.isfinite(value) else None


def check_finite(name: str, uu: float, dd: float, du: float) -> None:
    if not (math.isfinite(uu) and math.isfinite(dd) and math.isfinite(du)):
        # Finite tensors whose products overflow float64 (factors near 1e150): no ratio means anything.
        raise AcardsError("weights.non-finite", f"module {name}: the updates' norms overflow float64 "
                          f"(‖ΔU‖² = {uu}, ‖ΔD‖² = {dd})", "the checkpoint's weights are far outside any trained "
                          "model's range; audit checkpoints with weights of ordinary size")
