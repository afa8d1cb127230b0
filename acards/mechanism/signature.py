"""The weight signature of a defense (SPEC §4 D3): per-module and aggregate α_T, α_A, cosine, norm ratio,
subspace retentions and the SafeLoRA operator residual, then the codebook's class."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from acards.errors import AcardsError
from acards.mechanism.codebook import classify, effective_thresholds
from acards.mechanism.deltas import (
    Delta,
    ReferenceSubspace,
    inner,
    map_output_side,
    sq_norm,
    sq_norm_diff,
    top_energy_basis,
)

# A subspace statistic whose denominator holds less than this share of Σ‖ΔU‖² (a norm ratio of
# 1e-6, below float32 storage noise) is reported as undefined rather than as a ratio of noise.
NEGLIGIBLE_SHARE = 1e-12

# Retention below this is float32 storage noise, not a scale.
TINY_RETENTION = 1e-6


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


def weight_signature(
    undefended: Mapping[str, Delta],
    defended: Mapping[str, Delta],
    reference: ReferenceSubspace | None,
    thresholds: Mapping[str, object],
) -> dict:
    """SPEC §4 D3: per-module and card-level α_T, α_A, κ, r, the subspace statistics, and the
    observed mechanism class with the rule that fired.  Returns plain JSON-ready data.

    ``thresholds`` are the mechanism thresholds in force (the standard's defaults with the card's
    overrides, e.g. ``Card.thresholds("mechanism")``); see codebook.effective_thresholds."""
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
        if not (math.isfinite(uu) and math.isfinite(dd) and math.isfinite(du)):
            # Finite tensors whose products overflow float64 (factors near 1e150): no ratio means anything.
            raise AcardsError("weights.non-finite", f"module {name}: the updates' norms overflow float64 "
                              f"(‖ΔU‖² = {uu}, ‖ΔD‖² = {dd})", "the checkpoint's weights are far outside any trained "
                              "model's range; audit checkpoints with weights of ordinary size")
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

    mechanism, rule = classify(estimates, reference.kind if reference else None, th)
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
