"""The D3 weight signature of a defense and the mechanism codebook (SPEC §4).

Pure numpy, no I/O: acards.weights reads checkpoints into the ``LowRank``/``Dense`` updates defined
here.  A LoRA update ``scaling·B·A`` is never materialised as a d_out×d_in matrix: every inner
product between two updates reduces to r×r (or r×d_in) products, and every norm of a difference
``‖X − cY‖²`` is expanded into inner products.  That expansion loses about half the digits when
X ≈ cY (a ratio like ‖ΔD−ΔU‖/‖ΔU‖ bottoms out near 1e-8 instead of 0), far below every threshold.

Undefined or infinite numbers (a zero denominator) are carried as nan/inf while computing, so that
no codebook rule holds on them, and reported as ``None`` with an explanation in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Union

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


def default_thresholds() -> dict[str, float]:
    """The codebook defaults, read from the card schema (the one place they are written down)."""
    from acards.card import threshold_defaults

    return {k: float(v) for k, v in threshold_defaults()["mechanism"].items() if k != "z"}


# A subspace statistic whose denominator holds less than this share of Σ‖ΔU‖² (a norm ratio of
# 1e-6, below float32 storage noise) is reported as undefined rather than as a ratio of noise.
NEGLIGIBLE_SHARE = 1e-12
# Retention below this is float32 storage noise, not a scale.
TINY_RETENTION = 1e-6

MECHANISM_CLASSES = (
    "unchanged",
    "ablation",
    "shrinkage",
    "soft-spectral-reweighting",
    "projection",
    "complement-projection",
    "other",
)


# --- Inner products and norms, low-rank where possible ---------------------------------------


def inner(x: Delta, y: Delta) -> float:
    """Frobenius inner product ⟨x, y⟩ without forming a d_out×d_in matrix from a LowRank."""
    if isinstance(x, LowRank) and isinstance(y, LowRank):
        # ⟨B1A1, B2A2⟩ = tr((B1ᵀB2)(A2A1ᵀ)) = Σ (B1ᵀB2) ⊙ (A1A2ᵀ): two r1×r2 products.
        return x.scaling * y.scaling * float(np.sum((x.B.T @ y.B) * (x.A @ y.A.T)))
    if isinstance(x, Dense) and isinstance(y, Dense):
        return float(np.vdot(x.matrix, y.matrix))
    dense, low = (x, y) if isinstance(x, Dense) else (y, x)
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


# --- Validation ----------------------------------------------------------------------------


def _listing(names, limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" … ({len(names) - limit} more)" if len(names) > limit else "")


def _same_modules(undefended: Mapping[str, Delta], defended: Mapping[str, Delta]) -> list[str]:
    """The shared module names, sorted; an error when the sets or any shapes differ."""
    only_u, only_d = set(undefended) - set(defended), set(defended) - set(undefended)
    if only_u or only_d:
        parts = []
        if only_u:
            parts.append(f"only the undefended update has {_listing(only_u)}")
        if only_d:
            parts.append(f"only the defended update has {_listing(only_d)}")
        raise AcardsError(
            "weights.module-mismatch",
            "the undefended and defended checkpoints name different modules: " + "; ".join(parts),
            "train both adapters with the same target_modules (and rank_pattern), or compare full "
            "weights, where an untouched module counts as a zero update",
        )
    if not undefended:
        raise AcardsError(
            "weights.module-mismatch",
            "the checkpoints hold no weight updates at all",
            "point the cell at the fine-tuned checkpoints, not at the base model",
        )
    mismatched = [n for n in undefended if undefended[n].shape != defended[n].shape]
    if mismatched:
        name = sorted(mismatched)[0]
        raise AcardsError(
            "weights.shape-mismatch",
            f"the undefended and defended updates have different shapes in {_listing(mismatched)} "
            f"(e.g. {name}: {undefended[name].shape} vs {defended[name].shape})",
            "both checkpoints must be fine-tunes of the same base model",
        )
    return sorted(undefended)


def _check_reference(reference: ReferenceSubspace, modules: list[str], shapes: Mapping[str, Delta]) -> None:
    missing = [n for n in modules if n not in reference.matrices]
    if missing:
        raise AcardsError(
            "weights.missing-reference-module",
            f"the reference subspace has no entry for {len(missing)} updated module(s): {_listing(missing)}",
            f"add a `<module>.{reference.kind}` tensor for every module the adapters train, named as "
            "in the base model (e.g. model.layers.0.self_attn.q_proj, no base_model.model. prefix)",
        )
    for name in modules:
        matrix, (d_out, d_in) = reference.matrices[name], shapes[name].shape
        if reference.kind == "V":
            ok, wanted = matrix.shape == (d_out, d_in), f"{d_out}×{d_in} (d_out×d_in)"
        else:
            ok, wanted = matrix.ndim == 2 and matrix.shape[0] == d_out and 1 <= matrix.shape[1] <= d_out, (
                f"{d_out}×k with 1 ≤ k ≤ {d_out}"
            )
        if not ok:
            raise AcardsError(
                "weights.shape-mismatch",
                f"reference `{name}.{reference.kind}` has shape {tuple(matrix.shape)}, expected {wanted}",
                "the reference subspace must be computed from the same base model as the adapters",
            )


def effective_thresholds(overrides: Mapping[str, object] | None = None) -> dict[str, float]:
    """The default thresholds with a card's overrides applied; unknown keys and non-numbers are errors.

    ``z`` belongs to the behavioral control, not to the codebook, and is ignored here."""
    thresholds = default_thresholds()
    for key, value in (overrides or {}).items():
        if key in ("justification", "z"):  # shown on the card / used by the behavioral control
            continue
        if key not in thresholds:
            raise AcardsError(
                "weights.bad-threshold",
                f"unknown mechanism threshold `{key}`",
                f"use one of: {', '.join(sorted(thresholds))}",
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise AcardsError(
                "weights.bad-threshold",
                f"mechanism threshold `{key}` must be a finite number, got {value!r}",
                "write the threshold as a plain number",
            )
        thresholds[key] = float(value)
    return thresholds


# --- The signature -----------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    """numerator/denominator with x/0 = ±inf and 0/0 = nan, instead of raising."""
    if denominator != 0:
        return numerator / denominator
    return math.copysign(math.inf, numerator) if numerator != 0 else math.nan


def _json_number(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _subspace_statistics(
    reference: ReferenceSubspace,
    undefended: Mapping[str, Delta],
    defended: Mapping[str, Delta],
    changed: list[str],
    energy: float,
    notes: list[str],
) -> tuple[dict[str, float], dict[str, int]]:
    """t_in, t_out, S and (V only) e_C over the changed modules; also each module's subspace dim."""
    t_in_num = t_in_den = t_out_num = t_out_den = residual = defended_sq = changed_uu = 0.0
    dims: dict[str, int] = {}
    for name in changed:
        u, d = undefended[name], defended[name]
        matrix = reference.matrices[name]
        basis = top_energy_basis(matrix, energy) if reference.kind == "V" else matrix
        dims[name] = int(basis.shape[1])
        # Coordinates in the basis keep inner products (Uᵀ is an isometry on the subspace) and are
        # k×r instead of d_out×r.
        inside = lambda m: basis.T @ m  # noqa: E731
        outside = lambda m: m - basis @ (basis.T @ m)  # noqa: E731
        pu, pd = map_output_side(u, inside), map_output_side(d, inside)
        qu, qd = map_output_side(u, outside), map_output_side(d, outside)
        t_in_num += inner(pd, pu)
        t_in_den += sq_norm(pu)
        t_out_num += inner(qd, qu)
        t_out_den += sq_norm(qu)
        changed_uu += sq_norm(u)
        if reference.kind == "V":
            # SafeLoRA's operator C = VVᵀ/‖V‖_F: not a projector, it reweights and rescales.
            norm_v = float(np.linalg.norm(matrix))
            cu = map_output_side(u, lambda m: matrix @ (matrix.T @ m) / norm_v)
            residual += sq_norm_diff(d, cu)
            defended_sq += sq_norm(d)

    stats = {"t_in": math.nan, "t_out": math.nan, "S": math.nan, "e_C": math.nan}
    if not changed:
        notes.append("no module changed: t_in, t_out, S and e_C are undefined")
        return stats, dims
    if t_in_den > NEGLIGIBLE_SHARE * changed_uu:
        stats["t_in"] = t_in_num / t_in_den
    else:
        notes.append("t_in is undefined: on the changed modules ΔU has no component inside the reference subspace")
    if t_out_den > NEGLIGIBLE_SHARE * changed_uu:
        stats["t_out"] = t_out_num / t_out_den
    else:
        notes.append("t_out is undefined: on the changed modules ΔU lies entirely inside the reference subspace")
    # A t_in that is rounding noise (float32 storage) would make S an arbitrary huge number of
    # either sign: treat it as 0, so S is reported as undefined (infinite) instead.
    t_in_for_ratio = 0.0 if abs(stats["t_in"]) < TINY_RETENTION else stats["t_in"]
    stats["S"] = _ratio(stats["t_out"], t_in_for_ratio)
    if math.isinf(stats["S"]):
        notes.append("S = t_out/t_in is infinite (t_in = 0); reported as null")
    elif math.isnan(stats["S"]) and not (math.isnan(stats["t_in"]) or math.isnan(stats["t_out"])):
        notes.append("S = t_out/t_in is undefined (both are 0)")
    if reference.kind == "V":
        if defended_sq > 0:
            stats["e_C"] = math.sqrt(residual) / math.sqrt(defended_sq)
        else:
            notes.append("e_C is undefined: the defended update is zero on the changed modules")
    else:
        notes.append("e_C needs V; the reference file gives only an orthonormal basis U")
    return stats, dims


def _classify(x: Mapping[str, float], reference_kind: str | None, th: Mapping[str, float]) -> tuple[str, str]:
    """The first codebook rule that holds: (class, the rule as text).  nan never satisfies a rule."""
    rules = [
        ("unchanged", x["unchanged_ratio"] < th["unchanged_max"], f"||dD-dU||/||dU|| < {th['unchanged_max']}"),
        ("ablation", x["r"] < th["ablation_max_norm_ratio"], f"r < {th['ablation_max_norm_ratio']}"),
        (
            "shrinkage",
            0 < x["alpha_T"] < th["shrinkage_max_alpha_t"]
            and x["alpha_A"] <= th["shrinkage_max_off_direction"] * x["alpha_T"],
            f"0 < alpha_T < {th['shrinkage_max_alpha_t']} and "
            f"alpha_A <= {th['shrinkage_max_off_direction']}*alpha_T",
        ),
        (
            "soft-spectral-reweighting",
            reference_kind == "V" and x["e_C"] < th["spectral_max_residual"],
            f"V given and e_C < {th['spectral_max_residual']}",
        ),
        (
            "projection",
            reference_kind is not None
            and x["S"] <= th["projection_max_selectivity"]
            and x["t_in"] >= th["projection_min_t_in"],
            f"reference given, S <= {th['projection_max_selectivity']} and t_in >= {th['projection_min_t_in']}",
        ),
        (
            "complement-projection",
            reference_kind is not None
            and x["t_out"] >= th["complement_min_t_out"]
            and x["t_in"] <= th["complement_max_ratio"] * x["t_out"],
            f"t_out >= {th['complement_min_t_out']} and t_in <= {th['complement_max_ratio']}*t_out",
        ),
    ]
    for mechanism, holds, condition in rules:
        if holds:
            return mechanism, condition
    return "other", "no codebook rule held"


def weight_signature(
    undefended: Mapping[str, Delta],
    defended: Mapping[str, Delta],
    reference: ReferenceSubspace | None = None,
    thresholds: Mapping[str, object] | None = None,
) -> dict:
    """SPEC §4 D3: per-module and card-level α_T, α_A, κ, r, the subspace statistics, and the
    observed mechanism class with the rule that fired.  Returns plain JSON-ready data."""
    th = effective_thresholds(thresholds)
    modules = _same_modules(undefended, defended)
    if reference is not None:
        _check_reference(reference, modules, undefended)
    notes: list[str] = []

    per_module: dict[str, dict] = {}
    total_uu = total_dd = total_du = total_resid = total_diff = 0.0
    changed: list[str] = []
    zero_u: list[str] = []
    for name in modules:
        u, d = undefended[name], defended[name]
        uu, dd, du = sq_norm(u), sq_norm(d), inner(d, u)
        # Where ΔU_ℓ = 0, α_T,ℓ is undefined; taking it as 0 counts all of ΔD_ℓ as added (α_A).
        alpha_t = du / uu if uu > 0 else 0.0
        resid = sq_norm_diff(d, u, alpha_t)
        diff = sq_norm_diff(d, u, 1.0)
        is_changed = diff > 0 and math.sqrt(diff) >= th["changed_module_min"] * math.sqrt(uu)
        if is_changed:
            changed.append(name)
        if uu == 0:
            zero_u.append(name)
        total_uu, total_dd, total_du = total_uu + uu, total_dd + dd, total_du + du
        total_resid, total_diff = total_resid + resid, total_diff + diff
        per_module[name] = {
            "alpha_T": _json_number(alpha_t if uu > 0 else math.nan),
            "alpha_A": _json_number(_ratio(math.sqrt(resid), math.sqrt(uu))),
            "kappa": _json_number(_ratio(du, math.sqrt(uu * dd))),
            "r": _json_number(_ratio(math.sqrt(dd), math.sqrt(uu))),
            "unchanged_ratio": _json_number(_ratio(math.sqrt(diff), math.sqrt(uu))),
            "changed": is_changed,
            "sq_norm_undefended": uu,
            "sq_norm_defended": dd,
        }
    if not total_uu > 0:
        raise AcardsError(
            "weights.zero-update",
            "the undefended update is zero in every module, so nothing can be compared with it",
            "check that the undefended checkpoint is the trained fine-tune (a freshly initialised "
            "LoRA adapter has B = 0)",
        )
    if zero_u:
        notes.append(
            f"ΔU is zero in {_listing(zero_u)}: per-module alpha_T, alpha_A, r and unchanged_ratio "
            "are null there; α_T,ℓ is taken as 0 in the card-level α_A"
        )

    estimates = {
        "unchanged_ratio": math.sqrt(total_diff / total_uu),
        "alpha_T": total_du / total_uu,
        "alpha_A": math.sqrt(total_resid) / math.sqrt(total_uu),
        "kappa": _ratio(total_du, math.sqrt(total_dd * total_uu)),
        "r": math.sqrt(total_dd / total_uu),
        "t_in": math.nan,
        "t_out": math.nan,
        "S": math.nan,
        "e_C": math.nan,
    }
    if reference is not None:
        stats, dims = _subspace_statistics(
            reference, undefended, defended, changed, th["subspace_energy"], notes
        )
        estimates.update(stats)
        for name, dim in dims.items():
            per_module[name]["subspace_dim"] = dim
    if math.isnan(estimates["kappa"]):
        notes.append("kappa is undefined: the defended update is zero")

    mechanism, rule = _classify(estimates, reference.kind if reference else None, th)
    changed_uu = sum(per_module[n]["sq_norm_undefended"] for n in changed)
    return {
        "observed": mechanism,
        "rule": rule,
        "estimates": {
            **{key: _json_number(value) for key, value in estimates.items()},
            "projection_scale": _json_number(estimates["t_in"]) if mechanism == "projection" else None,
            "n_modules": len(modules),
            "changed_modules": changed,
            "changed_share": changed_uu / total_uu,
        },
        "reference": reference.kind if reference else None,
        "modules": per_module,
        "thresholds": th,
        "notes": notes,
    }


def control_scales(undefended: Mapping[str, Delta], defended: Mapping[str, Delta]) -> dict[str, float]:
    """Per module ‖ΔD_ℓ‖/‖ΔU_ℓ‖: the factor that gives U's B matrix D's norm (control:shrinkage, §5.3)."""
    scales = {}
    for name in _same_modules(undefended, defended):
        uu, dd = sq_norm(undefended[name]), sq_norm(defended[name])
        if uu == 0 and dd > 0:
            raise AcardsError(
                "weights.zero-update",
                f"module {name}: the undefended update is zero but the defended one is not, so no "
                "scaling of the undefended adapter can match its norm",
                "the shrinkage control needs an undefended update in every module the defense changes",
            )
        scales[name] = math.sqrt(dd / uu) if uu > 0 else 1.0
    return scales
