"""The weight signature under standard 1.1 (SPEC §10.5–§10.9): storage-noise-corrected α_T and α_A,
signed retentions, the reference rank, the mask / merge / additive-realignment / noise statistics,
and a class per changed module under the same rules.

Every statistic is a sum of per-module terms, so the card-level numbers and each module's own are
one computation over a different set of modules (:func:`_estimates`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from acards.mechanism.codebook import classify_1_1
from acards.mechanism.deltas import (
    Delta,
    Dense,
    LowRank,
    ReferenceSubspace,
    check_finite,
    dense,
    difference,
    inner,
    json_number,
    map_output_side,
    singular_values,
    sq_norm,
    sq_norm_diff,
    top_energy_basis,
)


@dataclass(frozen=True)
class Terms:
    """What one module contributes (noise-corrected where the update is stored full weights)."""

    uu: float  # ‖ΔU‖² less its storage noise (the α_T, α_A denominators)
    uu_raw: float  # ‖ΔU‖² as stored (r, κ, the unchanged and changed tests)
    dd: float  # ‖ΔD‖² as stored
    du: float
    resid: float  # ‖ΔD − α_T,ℓ·ΔU‖² less the storage noise of both updates
    diff: float  # ‖ΔD − ΔU‖² as stored (exactly 0 where the stored bytes agree)
    noise: float  # the storage noise energy of both updates
    changed: bool
    mask: tuple[int, int, int] | None  # (counted, kept, zeroed) entries or rank-1 components
    spike: float  # top singular share of ΔD − ΔU over a Gaussian matrix's of its shape
    subspace: dict | None  # sums for t_in, t_out, e_C, additive, merge, noise vs V


def _noise(x: Delta) -> float:
    return x.noise if isinstance(x, Dense) else 0.0


def _mask_counts(u: Delta, d: Delta) -> tuple[int, int, int] | None:
    """(counted, kept, zeroed): rank-1 components for two adapters of one rank and scaling, else
    entries; counted are those where ΔU or ΔD is non-zero, kept equal ΔU's, zeroed are 0 where ΔU is not."""
    if isinstance(u, LowRank) and isinstance(d, LowRank):
        if u.B.shape != d.B.shape or u.A.shape != d.A.shape or u.scaling != d.scaling:
            return None
        u_on = np.any(u.B != 0, axis=0) & np.any(u.A != 0, axis=1)
        d_on = np.any(d.B != 0, axis=0) & np.any(d.A != 0, axis=1)
        same = np.all(u.B == d.B, axis=0) & np.all(u.A == d.A, axis=1)
        counted = u_on | d_on
        return int(counted.sum()), int((same & u_on).sum()), int((u_on & ~d_on).sum())
    a, b = dense(u), dense(d)
    u_on, d_on = a != 0, b != 0
    return int((u_on | d_on).sum()), int(((a == b) & u_on).sum()), int((u_on & ~d_on).sum())


def _gaussian_top_share(rows: int, cols: int) -> float:
    """σ₁²/‖X‖² of a rows×cols Gaussian matrix, (√rows + √cols)²/(rows·cols), at most 1."""
    return min(1.0, (math.sqrt(rows) + math.sqrt(cols)) ** 2 / (rows * cols))


def _spike(change: Delta) -> float:
    singular = singular_values(change)
    total = float(np.sum(singular**2))
    if not total > 0:
        return math.nan
    d_out, d_in = change.shape
    # a low-rank change is compared with a Gaussian matrix of its own (numerical) rank
    cols = int(np.sum(singular > 1e-9 * singular[0])) if isinstance(change, LowRank) else d_in
    return float(singular[0] ** 2 / total) / _gaussian_top_share(d_out, max(cols, 1))


def _subspace(kind: str, matrix: np.ndarray, rank: int | None, u: Delta, d: Delta, change: Delta, energy: float) -> dict:
    basis = top_energy_basis(matrix, energy, rank) if kind == "V" else matrix
    inside = lambda m: basis.T @ m  # noqa: E731  (coordinates keep inner products)
    outside = lambda m: m - basis @ (basis.T @ m)  # noqa: E731
    pu, pd = map_output_side(u, inside), map_output_side(d, inside)
    qu, qd = map_output_side(u, outside), map_output_side(d, outside)
    sums = {"t_in_num": inner(pd, pu), "t_in_den": sq_norm(pu), "t_out_num": inner(qd, qu), "t_out_den": sq_norm(qu),
            "change_outside": sq_norm(map_output_side(change, outside)), "dim": int(basis.shape[1])}
    if kind == "V":
        v = Dense(matrix)
        norm_v = float(np.linalg.norm(matrix))
        # SafeLoRA's operator C = VVᵀ/‖V‖_F: not a projector, it reweights and rescales.
        sums.update(residual=sq_norm_diff(d, map_output_side(u, lambda m: matrix @ (matrix.T @ m) / norm_v)),
                    uv=inner(u, v), dv=inner(d, v), vv=norm_v**2)
    return sums


def module_terms(name: str, u: Delta, d: Delta, reference: ReferenceSubspace | None, th: Mapping[str, float]) -> Terms:
    """A module's terms.  The storage noise floor (SPEC §10.7) is taken off the norms α_T and α_A
    read: rounding inflates ‖ΔU‖² and ‖ΔD‖² by about its expected energy and is uncorrelated with
    the other update, so ⟨ΔD, ΔU⟩ needs no correction.  The unchanged, ablation and changed tests
    read the stored norms: subtracting a noise estimate there could turn a real change into none."""
    uu_raw, dd, du = sq_norm(u), sq_norm(d), inner(d, u)
    check_finite(name, uu_raw, dd, du)
    noise_u, noise_d = _noise(u), _noise(d)
    uu, dd_clean = max(uu_raw - noise_u, 0.0), max(dd - noise_d, 0.0)
    alpha_t = du / uu if uu > 0 else 0.0
    resid = max(dd_clean - 2.0 * alpha_t * du + alpha_t * alpha_t * uu, 0.0)
    diff = sq_norm_diff(d, u)
    changed = diff > 0 and math.sqrt(diff) >= th["changed_module_min"] * math.sqrt(uu_raw)
    mask: tuple[int, int, int] | None = None
    spike: float | None = None
    subspace: dict | None = None
    if changed:
        change = difference(d, u)
        mask, spike = _mask_counts(u, d), _spike(change)
        if reference is not None:
            subspace = _subspace(reference.kind, reference.matrices[name], reference.rank, u, d, change,
                                 th["subspace_energy"])
    return Terms(uu, uu_raw, dd, du, resid, diff, noise_u + noise_d, changed, mask, math.nan if spike is None else spike, subspace)


def _div(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def _root(value: float) -> float:
    """√value with rounding negatives (a squared norm from inner products) taken as 0; nan stays nan."""
    return math.sqrt(max(value, 0.0)) if not math.isnan(value) else math.nan


def _estimates(terms: Mapping[str, Terms], names: list[str], changed: list[str], kind: str | None) -> dict[str, float]:
    """The statistics over ``names`` (α_T, α_A, r, …) and, for subspace, mask, merge and noise, over
    ``changed`` (the modules the defense changed among them)."""
    uu = sum(terms[n].uu for n in names)
    uu_raw = sum(terms[n].uu_raw for n in names)
    dd = sum(terms[n].dd for n in names)
    du = sum(terms[n].du for n in names)
    x = {
        "unchanged_ratio": _root(_div(sum(terms[n].diff for n in names), uu_raw)),
        "alpha_T": _div(du, uu),
        "alpha_A": _root(_div(sum(terms[n].resid for n in names), uu)),
        "kappa": _div(du, math.sqrt(uu_raw * dd)),
        "r": _root(_div(dd, uu_raw)),
        "noise_floor": _root(_div(sum(terms[n].noise for n in names), uu_raw)),
    }
    masks = [mask for mask in (terms[n].mask for n in changed) if mask is not None]
    counted = sum(m[0] for m in masks)
    x["mask_share"] = _div(sum(m[1] + m[2] for m in masks), counted)
    x["mask_zeroed"] = _div(sum(m[2] for m in masks), counted)
    spikes = [terms[n].spike for n in changed]
    x["noise_spike"] = max(spikes) if spikes and all(math.isfinite(s) for s in spikes) else math.nan
    c_uu = sum(terms[n].uu_raw for n in changed)
    c_diff = sum(terms[n].diff for n in changed)
    x["noise_cos_u"] = _div(sum(terms[n].du - terms[n].uu_raw for n in changed), math.sqrt(c_diff * c_uu))
    for key in ("t_in", "t_out", "S", "e_C", "additive_outside", "merge_residual", "merge_weight", "noise_cos_v"):
        x[key] = math.nan
    shares = [share for share in (terms[n].subspace for n in changed) if share is not None]
    if kind is not None and shares:
        s = {key: sum(share[key] for share in shares) for key in shares[0] if key != "dim"}
        x["t_in"] = _div(s["t_in_num"], s["t_in_den"]) if s["t_in_den"] > 1e-12 * c_uu else math.nan
        x["t_out"] = _div(s["t_out_num"], s["t_out_den"]) if s["t_out_den"] > 1e-12 * c_uu else math.nan
        x["S"] = x["t_out"] / x["t_in"] if abs(x["t_in"]) >= 1e-6 else math.nan
        x["additive_outside"] = _root(_div(s["change_outside"], c_diff))
        if kind == "V":
            c_dd = sum(terms[n].dd for n in changed)
            x["e_C"] = _root(_div(s["residual"], c_dd))
            x["noise_cos_v"] = _div(s["dv"] - s["uv"], math.sqrt(c_diff * s["vv"]))
            x["merge_residual"], x["merge_weight"] = _merge(c_uu, c_dd, sum(terms[n].du for n in changed), s)
    return x


def _merge(uu: float, dd: float, du: float, s: Mapping[str, float]) -> tuple[float, float]:
    """The least-squares fit ΔD ≈ λ·ΔU + μ·V: (‖ΔD − λΔU − μV‖/‖ΔD‖, |μ|·‖V‖/‖ΔD‖)."""
    gram = np.array([[uu, s["uv"]], [s["uv"], s["vv"]]])
    if not dd > 0 or np.linalg.cond(gram) > 1e12:
        return math.nan, math.nan  # ΔU ∝ V: λ and μ are not separable
    lam, mu = np.linalg.solve(gram, np.array([du, s["dv"]]))
    residual = dd - 2 * lam * du - 2 * mu * s["dv"] + lam * lam * uu + 2 * lam * mu * s["uv"] + mu * mu * s["vv"]
    return math.sqrt(max(residual, 0.0) / dd), abs(mu) * math.sqrt(s["vv"] / dd)


def signature_1_1(terms: Mapping[str, Terms], reference: ReferenceSubspace | None, th: dict, notes: list[str]) -> dict:
    """The card-level signature, its class and rule, and each changed module's own (SPEC §10.9)."""
    kind = reference.kind if reference else None
    names = sorted(terms)
    changed = [n for n in names if terms[n].changed]
    estimates = _estimates(terms, names, changed, kind)
    mechanism, rule = classify_1_1(estimates, kind, th)
    modules: dict[str, dict[str, object]] = {}
    for name in names:
        own = _estimates(terms, [name], [name] if terms[name].changed else [], kind)
        entry: dict[str, object] = {key: json_number(own[key]) for key in ("alpha_T", "alpha_A", "kappa", "r", "unchanged_ratio")}
        entry.update(changed=terms[name].changed, sq_norm_undefended=terms[name].uu_raw, sq_norm_defended=terms[name].dd)
        if terms[name].changed:
            entry["observed"], entry["rule"] = classify_1_1(own, kind, th)
            entry.update({key: json_number(own[key]) for key in ("t_in", "t_out", "e_C", "mask_share", "merge_residual")})
            share = terms[name].subspace
            if share is not None:
                entry["subspace_dim"] = share["dim"]
        modules[name] = entry
    total_uu = sum(terms[n].uu_raw for n in names)
    selective = bool(changed) and len(changed) < len(names)
    if selective:
        notes.append(f"layer-selective: the defense changed {len(changed)} of {len(names)} modules")
    if not estimates["noise_floor"] < 1e-6:
        notes.append(f"storage noise floor {estimates['noise_floor']:.3g}·‖ΔU‖ taken off the norms (SPEC §10.7)")
    if reference is not None and reference.rank is not None:
        notes.append(f"reference subspace rank {reference.rank} from the card (reference_subspace.rank)")
    return {
        "observed": mechanism,
        "rule": rule,
        "estimates": {
            **{key: json_number(value) for key, value in estimates.items()},
            "projection_scale": json_number(estimates["t_in"]) if mechanism == "projection" else None,
            "n_modules": len(names),
            "changed_modules": changed,
            "changed_share": sum(terms[n].uu_raw for n in changed) / total_uu if total_uu > 0 else None,
            "layer_selective": selective,
            "module_classes": {n: modules[n]["observed"] for n in changed},
        },
        "reference": kind,
        "modules": modules,
        "thresholds": th,
        "notes": notes,
        "standard": "1.1",
    }
