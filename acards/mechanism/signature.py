"""The weight signature of a defense (SPEC §4 D3): per-module and aggregate α_T, α_A, cosine, norm ratio,
subspace retentions and the SafeLoRA operator residual, then the codebook's class."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from acards.errors import AcardsError
from acards.mechanism import signature_v11
from acards.mechanism.codebook import classify, effective_thresholds
from acards.mechanism.deltas import (
    Delta,
    ReferenceSubspace,
    check_finite,
    inner,
    json_number,
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
        raise _no_updates()
    mismatched = {n: (undefended[n].shape, defended[n].shape) for n in undefended if undefended[n].shape != defended[n].shape}
    if mismatched:
        raise _shapes_differ(mismatched)
    return sorted(undefended)


def _no_updates() -> AcardsError:
    return AcardsError(
        "weights.module-mismatch",
        "the checkpoints hold no weight updates at all",
        "point the cell at the fine-tuned checkpoints, not at the base model",
    )


def _shapes_differ(mismatched: Mapping[str, tuple]) -> AcardsError:
    name = sorted(mismatched)[0]
    return AcardsError(
        "weights.shape-mismatch",
        f"the undefended and defended updates have different shapes in {_listing(mismatched)} "
        f"(e.g. {name}: {mismatched[name][0]} vs {mismatched[name][1]})",
        "both checkpoints must be fine-tunes of the same base model",
    )


def _zero_update() -> AcardsError:
    return AcardsError(
        "weights.zero-update",
        "the undefended update is zero in every module, so nothing can be compared with it",
        "check that the undefended checkpoint is the trained fine-tune (a freshly initialised "
        "LoRA adapter has B = 0)",
    )


def _missing_reference(reference: ReferenceSubspace, missing: list[str]) -> AcardsError:
    return AcardsError(
        "weights.missing-reference-module",
        f"the reference subspace has no entry for {len(missing)} updated module(s): {_listing(missing)}",
        f"add a `<module>.{reference.kind}` tensor for every module the adapters train, named as "
        "in the base model (e.g. model.layers.0.self_attn.q_proj, no base_model.model. prefix)",
    )


def _reference_misfit(reference: ReferenceSubspace, name: str, shape: tuple[int, int]) -> AcardsError | None:
    """The error when the reference entry of module ``name`` does not fit an update of ``shape``."""
    matrix, (d_out, d_in) = reference.matrices[name], shape
    if reference.kind == "V":
        ok, wanted = matrix.shape == (d_out, d_in), f"{d_out}×{d_in} (d_out×d_in)"
    else:
        ok, wanted = matrix.ndim == 2 and matrix.shape[0] == d_out and 1 <= matrix.shape[1] <= d_out, (
            f"{d_out}×k with 1 ≤ k ≤ {d_out}"
        )
    if ok:
        return None
    return AcardsError(
        "weights.shape-mismatch",
        f"reference `{name}.{reference.kind}` has shape {tuple(matrix.shape)}, expected {wanted}",
        "the reference subspace must be computed from the same base model as the adapters",
    )


def _check_reference(reference: ReferenceSubspace, modules: list[str], shapes: Mapping[str, Delta]) -> None:
    missing = [n for n in modules if n not in reference.matrices]
    if missing:
        raise _missing_reference(reference, missing)
    for name in modules:
        misfit = _reference_misfit(reference, name, shapes[name].shape)
        if misfit is not None:
            raise misfit


def _ratio(numerator: float, denominator: float) -> float:
    """numerator/denominator with x/0 = ±inf and 0/0 = nan, instead of raising."""
    if denominator != 0:
        return numerator / denominator
    return math.copysign(math.inf, numerator) if numerator != 0 else math.nan


_json_number = json_number


@dataclass(frozen=True)
class _Subspace:
    """One changed module's share of the subspace statistics."""

    t_in_num: float
    t_in_den: float
    t_out_num: float
    t_out_den: float
    residual: float  # ‖ΔD − C·ΔU‖² (V only)
    dim: int


@dataclass(frozen=True)
class _Module:
    """The numbers one module contributes: all the signature keeps of its updates."""

    uu: float
    dd: float
    du: float
    resid: float
    diff: float
    changed: bool
    subspace: _Subspace | None


def _subspace_terms(kind: str, matrix: np.ndarray, u: Delta, d: Delta, energy: float, rank: int | None = None) -> _Subspace:
    basis = top_energy_basis(matrix, energy, rank) if kind == "V" else matrix
    # Coordinates in the basis keep inner products (Uᵀ is an isometry on the subspace) and are
    # k×r instead of d_out×r.
    inside = lambda m: basis.T @ m  # noqa: E731
    outside = lambda m: m - basis @ (basis.T @ m)  # noqa: E731
    pu, pd = map_output_side(u, inside), map_output_side(d, inside)
    qu, qd = map_output_side(u, outside), map_output_side(d, outside)
    residual = 0.0
    if kind == "V":
        # SafeLoRA's operator C = VVᵀ/‖V‖_F: not a projector, it reweights and rescales.
        norm_v = float(np.linalg.norm(matrix))
        residual = sq_norm_diff(d, map_output_side(u, lambda m: matrix @ (matrix.T @ m) / norm_v))
    return _Subspace(inner(pd, pu), sq_norm(pu), inner(qd, qu), sq_norm(qu), residual, int(basis.shape[1]))


def _module_terms(name: str, u: Delta, d: Delta, reference: ReferenceSubspace | None, th: Mapping) -> _Module:
    uu, dd, du = sq_norm(u), sq_norm(d), inner(d, u)
    check_finite(name, uu, dd, du)
    # Where ΔU_ℓ = 0, α_T,ℓ is undefined; taking it as 0 counts all of ΔD_ℓ as added (α_A).
    alpha_t = du / uu if uu > 0 else 0.0
    resid, diff = sq_norm_diff(d, u, alpha_t), sq_norm_diff(d, u, 1.0)
    changed = diff > 0 and math.sqrt(diff) >= th["changed_module_min"] * math.sqrt(uu)
    subspace = None
    if changed and reference is not None:
        subspace = _subspace_terms(reference.kind, reference.matrices[name], u, d, th["subspace_energy"], reference.rank)
    return _Module(uu, dd, du, resid, diff, changed, subspace)


def _subspace_statistics(
    kind: str, terms: Mapping[str, _Module], changed: list[str], notes: list[str]
) -> dict[str, float]:
    """t_in, t_out, S and (V only) e_C over the changed modules, summed in module order."""
    t_in_num = t_in_den = t_out_num = t_out_den = residual = defended_sq = changed_uu = 0.0
    for name in changed:
        module, share = terms[name], terms[name].subspace
        assert share is not None  # computed for every changed module when there is a reference
        t_in_num += share.t_in_num
        t_in_den += share.t_in_den
        t_out_num += share.t_out_num
        t_out_den += share.t_out_den
        changed_uu += module.uu
        if kind == "V":
            residual += share.residual
            defended_sq += module.dd

    stats = {"t_in": math.nan, "t_out": math.nan, "S": math.nan, "e_C": math.nan}
    if not changed:
        notes.append("no module changed: t_in, t_out, S and e_C are undefined")
        return stats
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
    if kind == "V":
        if defended_sq > 0:
            stats["e_C"] = math.sqrt(residual) / math.sqrt(defended_sq)
        else:
            notes.append("e_C is undefined: the defended update is zero on the changed modules")
    else:
        notes.append("e_C needs V; the reference file gives only an orthonormal basis U")
    return stats


def weight_signature(
    undefended: Mapping[str, Delta],
    defended: Mapping[str, Delta],
    reference: ReferenceSubspace | None,
    thresholds: Mapping[str, object],
    standard: str = "1.0",
) -> dict:
    """SPEC §4 D3: per-module and card-level α_T, α_A, κ, r, the subspace statistics, and the
    observed mechanism class with the rule that fired.  Returns plain JSON-ready data.

    ``thresholds`` are the mechanism thresholds in force (the standard's defaults with the card's
    overrides, e.g. ``Card.thresholds("mechanism")``); see codebook.effective_thresholds.
    ``standard`` "1.1" applies SPEC §10.5–§10.9 (acards.mechanism.signature_v11)."""
    modules = _same_modules(undefended, defended)
    if reference is not None:
        _check_reference(reference, modules, undefended)
    return streamed_weight_signature(((n, undefended[n], defended[n]) for n in modules), reference, thresholds, standard)


def streamed_weight_signature(
    pairs: Iterable[tuple[str, Delta, Delta]],
    reference: ReferenceSubspace | None,
    thresholds: Mapping[str, object],
    standard: str = "1.0",
) -> dict:
    """:func:`weight_signature` from (module, ΔU, ΔD) triples taken one at a time, each module once,
    in any order: only a few numbers per module are kept, so a reader can stream checkpoints module
    by module (acards.evidence.checkpoints.read_signature).  The checks of weight_signature apply to
    the modules seen (reported after the last one); sums run in module-name order, so the result is
    the same whatever order the modules come in."""
    th = effective_thresholds(thresholds, standard)
    module_terms = signature_v11.module_terms if standard == "1.1" else _module_terms
    terms: dict = {}
    shapes_differ: dict[str, tuple] = {}
    missing: list[str] = []
    misfits: list[AcardsError] = []
    for name, u, d in pairs:
        if u.shape != d.shape:
            shapes_differ[name] = (u.shape, d.shape)
            continue
        if reference is not None:
            if name not in reference.matrices:
                missing.append(name)
                continue
            misfit = _reference_misfit(reference, name, u.shape)
            if misfit is not None:
                misfits.append(misfit)
                continue
        terms[name] = module_terms(name, u, d, reference, th)
    if shapes_differ:
        raise _shapes_differ(shapes_differ)
    if reference is not None and missing:
        raise _missing_reference(reference, missing)
    if misfits:
        raise misfits[0]
    if not terms:
        raise _no_updates()
    if standard == "1.1":
        if not sum(t.uu_raw for t in terms.values()) > 0:
            raise _zero_update()
        return signature_v11.signature_1_1(terms, reference, th, [])
    return _signature(terms, reference, th)


def _signature(terms: Mapping[str, _Module], reference: ReferenceSubspace | None, th: dict) -> dict:
    notes: list[str] = []
    per_module: dict[str, dict] = {}
    total_uu = total_dd = total_du = total_resid = total_diff = 0.0
    changed: list[str] = []
    zero_u: list[str] = []
    for name in sorted(terms):
        module = terms[name]
        uu, dd, du, resid, diff = module.uu, module.dd, module.du, module.resid, module.diff
        if module.changed:
            changed.append(name)
        if uu == 0:
            zero_u.append(name)
        total_uu, total_dd, total_du = total_uu + uu, total_dd + dd, total_du + du
        total_resid, total_diff = total_resid + resid, total_diff + diff
        per_module[name] = {
            "alpha_T": _json_number(du / uu if uu > 0 else math.nan),
            "alpha_A": _json_number(_ratio(math.sqrt(resid), math.sqrt(uu))),
            "kappa": _json_number(_ratio(du, math.sqrt(uu * dd))),
            "r": _json_number(_ratio(math.sqrt(dd), math.sqrt(uu))),
            "unchanged_ratio": _json_number(_ratio(math.sqrt(diff), math.sqrt(uu))),
            "changed": module.changed,
            "sq_norm_undefended": uu,
            "sq_norm_defended": dd,
        }
    if not total_uu > 0:
        raise _zero_update()
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
        estimates.update(_subspace_statistics(reference.kind, terms, changed, notes))
        for name in changed:
            subspace = terms[name].subspace
            assert subspace is not None
            per_module[name]["subspace_dim"] = subspace.dim
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
            "n_modules": len(terms),
            "changed_modules": changed,
            "changed_share": changed_uu / total_uu,
        },
        "reference": reference.kind if reference else None,
        "modules": per_module,
        "thresholds": th,
        "notes": notes,
    }
