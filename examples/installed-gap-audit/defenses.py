"""The weight-space defenses of the installed-gap audit, on LoRA factors (numpy, float64).

Everything here acts on one adapter's per-module factors ``A`` (r x d_in) and ``B`` (d_out x r);
the update is ``ΔW = scaling · B A``.  No torch: tests/test_example_audit.py checks these functions
against closed forms on small random matrices.

SafeLoRA (Hsu et al., 2024, "Safe LoRA: the silver lining of reducing safety risks when finetuning
large language models"), as its public implementation does it:

- per module, ``V = W_aligned − W_pre`` and ``C = V Vᵀ / ‖V‖_F`` (Frobenius norm; C is not a
  projector: it reweights V's left singular directions by σᵢ²/‖V‖_F and scales everything else to 0);
- the similarity of a module is the cosine between the flattened ``C B A`` and ``B A`` (the LoRA
  scaling cancels), rounded to 5 decimals as the implementation rounds it;
- a module is projected (``B ← C B``; A is kept) when its similarity is ``<=`` the threshold.
  Threshold mode uses the configured threshold (published default 0.5); number mode takes the
  ``num_proj_layers``-th lowest similarity as the threshold (published default 10), so ties at that
  value project more than ``num_proj_layers`` modules, as in the implementation.
"""

from __future__ import annotations

import numpy as np

SAFELORA_THRESHOLD = 0.5  # SafeLoRAConfig.threshold, the published default
SAFELORA_NUM_PROJ_LAYERS = 10  # SafeLoRAConfig.num_proj_layers, the published default


def safelora_operator(v: np.ndarray) -> np.ndarray:
    """C = V Vᵀ / ‖V‖_F (d_out x d_out)."""
    v = np.asarray(v, dtype=np.float64)
    return v @ v.T / np.linalg.norm(v)


def safelora_similarity(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """cos(flatten(C B A), flatten(B A)), rounded to 5 decimals."""
    update = np.asarray(b, dtype=np.float64) @ np.asarray(a, dtype=np.float64)
    projected = c @ update
    cosine = float(np.sum(projected * update) / (np.linalg.norm(projected) * np.linalg.norm(update)))
    return round(cosine, 5)


def safelora_threshold(similarities: dict[str, float], mode: str, threshold: float = SAFELORA_THRESHOLD,
                       num_proj_layers: int = SAFELORA_NUM_PROJ_LAYERS) -> float:
    """The cosine threshold in force: the configured one, or the num_proj_layers-th lowest similarity."""
    if mode == "threshold":
        return threshold
    if mode == "number":
        ordered = sorted(similarities.values())
        return ordered[:num_proj_layers][-1]
    raise ValueError(f"unknown SafeLoRA selection mode {mode!r} (threshold or number)")


def safelora(factors: dict[str, tuple[np.ndarray, np.ndarray]], deltas: dict[str, np.ndarray], mode: str,
             threshold: float = SAFELORA_THRESHOLD, num_proj_layers: int = SAFELORA_NUM_PROJ_LAYERS) -> dict:
    """Apply SafeLoRA to one adapter.

    ``factors``: module -> (A, B); ``deltas``: module -> V = W_aligned − W_pre.  Returns
    ``{"B": module -> new B, "similarity": module -> cosine, "threshold": float, "projected": sorted
    module names}``.
    """
    operators = {name: safelora_operator(deltas[name]) for name in factors}
    similarity = {name: safelora_similarity(operators[name], a, b) for name, (a, b) in factors.items()}
    cut = safelora_threshold(similarity, mode, threshold, num_proj_layers)
    projected = sorted(name for name, value in similarity.items() if value <= cut)
    new_b = {name: (operators[name] @ np.asarray(b, dtype=np.float64) if name in projected else np.asarray(b, dtype=np.float64))
             for name, (_, b) in factors.items()}
    return {"B": new_b, "similarity": similarity, "threshold": cut, "projected": projected}


def energy_basis(v: np.ndarray, energy: float = 0.9) -> np.ndarray:
    """The top-k left singular vectors of V, k the smallest holding ``energy`` of ‖V‖_F² (acards'
    default subspace rule for a V reference, so the card's reference describes this subspace)."""
    u, s, _ = np.linalg.svd(np.asarray(v, dtype=np.float64), full_matrices=False)
    share = np.cumsum(s ** 2) / np.sum(s ** 2)
    k = int(np.searchsorted(share, energy - 1e-12) + 1)
    return u[:, :k]


def project_onto(b: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Q Qᵀ B: the orthogonal projection of B's columns onto span(Q)."""
    return basis @ (basis.T @ np.asarray(b, dtype=np.float64))
