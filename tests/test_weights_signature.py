"""acards.evidence.{adapters,checkpoints} and acards.mechanism.signature (SPEC §4 D3) on a real tiny Llama with real PEFT adapters.

Every defended adapter below is built the way its defense would build it (scaling B, SafeLoRA's
operator C = VVᵀ/‖V‖_F on B, a projection P·B …) by editing the saved safetensors, and must be
coded as SPEC §4's codebook says.  Numbers are cross-checked against a dense numpy
re-implementation that materialises the (small) d_out×d_in matrices.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from builders import (  # noqa: E402
    SCALING,
    TARGETS,
    edit_adapter,
    make_adapter,
    module_of,
    orthonormal,
    randomise_lora,
    tiny_llama,
    write_reference,
)
from safetensors.numpy import load_file, save_file  # noqa: E402

from acards.card.validate import threshold_defaults  # noqa: E402
from acards.errors import AcardsError  # noqa: E402
from acards.evidence.adapters import check_adapter, read_adapter, write_control_shrinkage  # noqa: E402
from acards.evidence.checkpoints import Pinned, read_deltas, read_reference, read_signature, read_update_pair  # noqa: E402
from acards.evidence.digests import digest_path  # noqa: E402
from acards.mechanism.codebook import THRESHOLD_NAMES  # noqa: E402
from acards.mechanism.controls import control_scales  # noqa: E402
from acards.mechanism.deltas import (  # noqa: E402
    Dense,
    LowRank,
    ReferenceSubspace,
    inner,
    map_output_side,
    sq_norm,
    sq_norm_diff,
    top_energy_basis,
)
from acards.mechanism.signature import weight_signature  # noqa: E402

# The mechanism thresholds in force on a card that overrides none (mechanism/ never reads the schema).
MECHANISM_DEFAULTS = threshold_defaults()["mechanism"]


def signature(undefended, defended, reference=None, thresholds=None) -> dict:
    """weight_signature under the standard's thresholds, ``thresholds`` overriding some as a card does."""
    return weight_signature(undefended, defended, reference, {**MECHANISM_DEFAULTS, **(thresholds or {})})


def dense_updates(folder: Path, scaling: float = SCALING) -> dict[str, np.ndarray]:
    """The adapter's updates materialised, read independently of acards."""
    factors: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(folder / "adapter_model.safetensors").items():
        module, factor = module_of(key)
        factors.setdefault(module, {})[factor] = value.astype(np.float64)
    return {m: scaling * f["B"] @ f["A"] for m, f in factors.items()}


def stored(matrix: np.ndarray) -> np.ndarray:
    """What a reference matrix reads back as after float32 storage."""
    return np.asarray(matrix, dtype=np.float32).astype(np.float64)


def signature_of(world, defended: Path, reference: Path | None = None, **kwargs) -> dict:
    undefended, defended_updates = read_update_pair(world.undefended, defended)
    result = signature(
        undefended, defended_updates, read_reference(reference) if reference else None, **kwargs
    )
    json.dumps(result, allow_nan=False)  # JSON-ready: no numpy scalars, no nan/inf
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("d3")
    tiny_llama().save_pretrained(root / "base")
    undefended = make_adapter(root / "undefended", seed=1)
    updates = dense_updates(undefended)
    return SimpleNamespace(
        root=root,
        base=root / "base",
        undefended=undefended,
        updates=updates,
        factors={m: (u.shape[0], u.shape[1]) for m, u in updates.items()},
        b_factors={
            module_of(k)[0]: v.astype(np.float64)
            for k, v in load_file(undefended / "adapter_model.safetensors").items()
            if k.endswith("lora_B.weight")
        },
        modules=sorted(updates),
    )


# --- Reading adapters --------------------------------------------------------------------------


def test_adapter_module_names_and_layout(world):
    updates = read_adapter(world.undefended)
    assert sorted(updates) == world.modules
    assert "model.layers.0.self_attn.q_proj" in updates and len(updates) == 2 * len(TARGETS)
    for name, update in updates.items():
        assert isinstance(update, LowRank) and update.scaling == SCALING
        assert update.B.dtype == np.float64 and update.A.shape[0] == 4
        np.testing.assert_allclose(
            update.scaling * update.B @ update.A, world.updates[name], rtol=1e-12
        )
    # checked against the base model's weights and shapes when base is given
    assert sorted(read_deltas(world.undefended, world.base)) == world.modules


def test_adapter_name_infix_is_stripped(world, tmp_path):
    # keys as a model with a named adapter holds them: `….lora_A.default.weight`
    target = tmp_path / "infix"
    target.mkdir()
    shutil.copy(world.undefended / "adapter_config.json", target)
    tensors = load_file(world.undefended / "adapter_model.safetensors")
    renamed = {k.replace(".weight", ".default.weight"): v for k, v in tensors.items()}
    save_file(renamed, target / "adapter_model.safetensors")
    assert sorted(read_adapter(target)) == world.modules


@pytest.mark.parametrize(
    "options",
    [
        {
            "rank_pattern": {"v_proj": 2, "model.layers.1.mlp.down_proj": 6},
            "alpha_pattern": {"o_proj": 3},
        },
        {"use_rslora": True, "lora_alpha": 5},
        {"target_modules": ["q_proj", "v_proj"], "init_lora_weights": "gaussian"},
    ],
    ids=["rank-alpha-patterns", "rslora", "gaussian-init"],
)
def test_adapter_scaling_matches_peft(tmp_path, options):
    model = peft.get_peft_model(
        tiny_llama(),
        peft.LoraConfig(**{"r": 4, "lora_alpha": 8, "target_modules": TARGETS, **options}),
    )
    randomise_lora(model, seed=7)
    model.save_pretrained(tmp_path / "adapter")
    updates = read_adapter(tmp_path / "adapter")
    checked = 0
    for name, layer in model.base_model.model.named_modules():
        if isinstance(layer, peft.tuners.lora.LoraLayer):
            expected = layer.get_delta_weight("default").detach().double().numpy()
            got = updates[name]
            # peft computes in float32; acards in float64
            np.testing.assert_allclose(
                got.scaling * got.B @ got.A, expected, atol=1e-6 * np.abs(expected).max()
            )
            checked += 1
    assert checked == len(updates) > 0


def test_fan_in_fan_out_adapter_is_in_base_layout(tmp_path):
    config = transformers.GPT2Config(vocab_size=384, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    torch.manual_seed(0)
    base = transformers.GPT2LMHeadModel(config)
    base.save_pretrained(tmp_path / "base")
    model = peft.get_peft_model(
        base, peft.LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True)
    )
    randomise_lora(model, seed=3)
    model.save_pretrained(tmp_path / "adapter")
    updates = read_deltas(
        tmp_path / "adapter", tmp_path / "base"
    )  # shapes checked against Conv1D (d_in×d_out)
    layer = model.base_model.model.transformer.h[0].attn.c_attn
    got = updates["transformer.h.0.attn.c_attn"]
    assert got.shape == tuple(layer.base_layer.weight.shape) == (32, 96)
    np.testing.assert_allclose(
        got.scaling * got.B @ got.A,
        layer.get_delta_weight("default").detach().double().numpy(),
        atol=1e-8,
    )


def test_bf16_adapter_decodes_exactly(world, tmp_path):
    from safetensors.torch import load_file as load_torch
    from safetensors.torch import save_file as save_torch

    target = tmp_path / "bf16"
    target.mkdir()
    shutil.copy(world.undefended / "adapter_config.json", target)
    tensors = {
        k: v.to(torch.bfloat16)
        for k, v in load_torch(world.undefended / "adapter_model.safetensors").items()
    }
    save_torch(tensors, target / "adapter_model.safetensors")
    updates = read_adapter(target)
    for key, value in tensors.items():
        module, factor = module_of(key)
        got = updates[module].B if factor == "B" else updates[module].A
        np.testing.assert_array_equal(got, value.float().numpy().astype(np.float64))


# --- Low-rank algebra against dense numpy ------------------------------------------------------


def test_low_rank_algebra_matches_dense():
    rng = np.random.default_rng(0)
    d_out, d_in = 12, 9
    low_a = LowRank(rng.standard_normal((d_out, 3)), rng.standard_normal((3, d_in)), 0.7)
    low_b = LowRank(rng.standard_normal((d_out, 2)), rng.standard_normal((2, d_in)), 1.9)
    dense = Dense(rng.standard_normal((d_out, d_in)))
    materialise = lambda x: (
        x.scaling * x.B @ x.A if isinstance(x, LowRank) else x.matrix
    )  # noqa: E731

    def close(got, expected, scale):
        assert abs(got - expected) <= 1e-10 * scale

    updates = [low_a, low_b, dense]
    for x in updates:
        for y in updates:
            X, Y = materialise(x), materialise(y)
            scale = np.linalg.norm(X) * np.linalg.norm(Y)
            close(inner(x, y), float(np.sum(X * Y)), scale)
            close(
                sq_norm_diff(x, y, 0.3),
                float(np.linalg.norm(X - 0.3 * Y) ** 2),
                scale + np.linalg.norm(X) ** 2,
            )
        close(
            sq_norm(x),
            float(np.linalg.norm(materialise(x)) ** 2),
            np.linalg.norm(materialise(x)) ** 2,
        )
        M = rng.standard_normal((5, d_out))
        np.testing.assert_allclose(
            materialise(map_output_side(x, lambda m: M @ m)), M @ materialise(x), rtol=1e-12
        )
    assert sq_norm_diff(low_a, low_a) == 0.0  # identical updates: exactly 0, never negative

    V = rng.standard_normal((d_out, d_in))
    basis = top_energy_basis(V, 0.9)
    singular = np.linalg.svd(V, compute_uv=False) ** 2
    k = basis.shape[1]
    assert singular[:k].sum() >= 0.9 * singular.sum() > singular[: k - 1].sum()
    np.testing.assert_allclose(basis.T @ basis, np.eye(k), atol=1e-12)


def dense_signature(
    U: dict, D: dict, reference: np.ndarray | None, kind: str | None, energy=0.9, changed_thr=0.01
):
    """SPEC §4 D3 straight from the formulas, on materialised matrices."""
    sums = dict(uu=0.0, dd=0.0, du=0.0, resid=0.0, diff=0.0)
    changed = []
    for name in U:
        u, d = U[name], D[name]
        uu, dd, du = np.sum(u * u), np.sum(d * d), np.sum(d * u)
        sums["uu"] += uu
        sums["dd"] += dd
        sums["du"] += du
        sums["resid"] += np.linalg.norm(d - du / uu * u) ** 2
        sums["diff"] += np.linalg.norm(d - u) ** 2
        if np.linalg.norm(d - u) >= changed_thr * np.linalg.norm(u):
            changed.append(name)
    out = {
        "alpha_T": sums["du"] / sums["uu"],
        "alpha_A": math.sqrt(sums["resid"] / sums["uu"]),
        "r": math.sqrt(sums["dd"] / sums["uu"]),
        "unchanged_ratio": math.sqrt(sums["diff"] / sums["uu"]),
        "changed_modules": sorted(changed),
    }
    if reference is not None:
        t = dict(in_num=0.0, in_den=0.0, out_num=0.0, out_den=0.0, res=0.0, dd=0.0)
        for name in changed:
            u, d, m = U[name], D[name], reference[name]
            if kind == "V":
                left, s, _ = np.linalg.svd(m)
                k = int(np.argmax(np.cumsum(s**2) / np.sum(s**2) >= energy)) + 1
                basis = left[:, :k]
            else:
                basis = m
            P = basis @ basis.T
            Q = np.eye(P.shape[0]) - P
            t["in_num"] += np.sum((P @ d) * (P @ u))
            t["in_den"] += np.sum((P @ u) ** 2)
            t["out_num"] += np.sum((Q @ d) * (Q @ u))
            t["out_den"] += np.sum((Q @ u) ** 2)
            if kind == "V":
                C = m @ m.T / np.linalg.norm(m)
                t["res"] += np.linalg.norm(d - C @ u) ** 2
                t["dd"] += np.sum(d * d)
        out["t_in"] = t["in_num"] / t["in_den"]
        out["t_out"] = t["out_num"] / t["out_den"]
        out["S"] = out["t_out"] / out["t_in"]
        if kind == "V":
            out["e_C"] = math.sqrt(t["res"] / t["dd"])
    return out


# --- Defended adapters, built the way each defense builds them -----------------------------------


def safelora_references(world, rng):
    """A random V per module (SafeLoRA's aligned − base delta) and its operator C = VVᵀ/‖V‖_F."""
    V = {m: stored(rng.standard_normal(world.factors[m])) for m in world.modules}
    C = {m: v @ v.T / np.linalg.norm(v) for m, v in V.items()}
    return V, C


def test_unchanged(world, tmp_path):
    result = signature_of(
        world, edit_adapter(world.undefended, tmp_path / "same", lambda m, f, x: x)
    )
    assert result["observed"] == "unchanged"
    assert (
        result["estimates"]["unchanged_ratio"] == 0.0
        and result["estimates"]["changed_modules"] == []
    )
    assert result["estimates"]["alpha_T"] == pytest.approx(1.0, abs=1e-12)


def test_ablation(world, tmp_path):
    result = signature_of(
        world,
        edit_adapter(world.undefended, tmp_path / "zero", lambda m, f, x: 0 * x if f == "B" else x),
    )
    assert result["observed"] == "ablation" and result["estimates"]["r"] == 0.0
    assert result["estimates"]["kappa"] is None and any("kappa" in note for note in result["notes"])


def test_scalar_shrinkage(world, tmp_path):
    result = signature_of(
        world,
        edit_adapter(
            world.undefended, tmp_path / "half", lambda m, f, x: 0.5 * x if f == "B" else x
        ),
    )
    estimates = result["estimates"]
    assert result["observed"] == "shrinkage" and result["rule"].startswith("0 < alpha_T")
    assert estimates["alpha_T"] == pytest.approx(0.5, abs=1e-12) and estimates[
        "r"
    ] == pytest.approx(0.5, abs=1e-12)
    assert estimates["alpha_A"] < 1e-6 and estimates["changed_share"] == pytest.approx(1.0)
    for module in result["modules"].values():
        assert module["kappa"] == pytest.approx(1.0, abs=1e-9) and module["r"] == pytest.approx(
            0.5, abs=1e-12
        )


def test_layer_selective_shrinkage(world, tmp_path):
    def edit(module, factor, x):
        return 0.5 * x if factor == "B" and module.startswith("model.layers.0.") else x

    result = signature_of(world, edit_adapter(world.undefended, tmp_path / "layer0", edit))
    estimates = result["estimates"]
    layer0 = [m for m in world.modules if m.startswith("model.layers.0.")]
    share = sum(np.sum(world.updates[m] ** 2) for m in layer0) / sum(
        np.sum(u**2) for u in world.updates.values()
    )
    assert result["observed"] == "shrinkage" and estimates["changed_modules"] == layer0
    assert estimates["changed_share"] == pytest.approx(share, rel=1e-10)
    assert (
        estimates["alpha_T"] == pytest.approx(1 - 0.5 * share, rel=1e-9)
        and estimates["alpha_A"] < 1e-6
    )


def test_safelora_operator_is_soft_spectral_reweighting(world, tmp_path):
    rng = np.random.default_rng(11)
    V, C = safelora_references(world, rng)
    # SafeLoRA projects the layers whose update is least aligned with C·ΔU: here the lower half.
    cosine = {
        m: np.sum(world.updates[m] * (C[m] @ world.updates[m]))
        / (np.linalg.norm(world.updates[m]) * np.linalg.norm(C[m] @ world.updates[m]))
        for m in world.modules
    }
    projected = sorted(world.modules, key=cosine.get)[: len(world.modules) // 2]
    defended = edit_adapter(
        world.undefended,
        tmp_path / "safelora",
        lambda m, f, x: C[m] @ x if f == "B" and m in projected else x,
    )
    reference = write_reference(tmp_path / "alignment.safetensors", "V", V)
    result = signature_of(world, defended, reference)
    estimates = result["estimates"]
    assert result["observed"] == "soft-spectral-reweighting", result
    assert estimates["changed_modules"] == sorted(projected)
    assert estimates["e_C"] < 1e-6
    assert result["reference"] == "V" and all(
        "subspace_dim" in result["modules"][m] for m in projected
    )

    # every number agrees with the dense formulas
    expected = dense_signature(world.updates, dense_updates(defended), V, "V")
    for key in ("alpha_T", "alpha_A", "r", "unchanged_ratio", "t_in", "t_out", "S"):
        assert estimates[key] == pytest.approx(expected[key], rel=1e-10), key
    assert expected["e_C"] < 1e-6  # both are the square root of float32 storage rounding
    assert estimates["changed_modules"] == expected["changed_modules"]
    for m in world.modules:
        u, d = world.updates[m], dense_updates(defended)[m]
        assert result["modules"][m]["kappa"] == pytest.approx(
            np.sum(u * d) / np.linalg.norm(u) / np.linalg.norm(d), rel=1e-10
        )


def test_safelora_operator_acting_as_a_scalar_is_shrinkage(world, tmp_path):
    rng = np.random.default_rng(5)
    target_scale = 0.5
    V = {}
    for m in world.modules:
        d_out, d_in = world.factors[m]
        B = world.b_factors[m]
        r, width = B.shape[1], min(d_out, d_in)
        left = np.linalg.qr(np.hstack([B, rng.standard_normal((d_out, d_out))]))[0][
            :, :width
        ]  # span(B) first
        others = rng.uniform(0.3, 1.5, width - r) ** 2
        # C = VVᵀ/‖V‖_F equals target_scale on span(B) when σ0²/sqrt(r·σ0² + Σothers) = target_scale.
        c2 = target_scale**2
        s0 = (c2 * r + math.sqrt(c2 * c2 * r * r + 4 * c2 * others.sum())) / 2
        squared = np.concatenate([np.full(r, s0), others])
        V[m] = stored(left @ np.diag(np.sqrt(squared)) @ orthonormal(rng, d_in, width).T)
    layer1 = [m for m in world.modules if m.startswith("model.layers.1.")]

    def edit(module, factor, x):
        if factor == "B" and module in layer1:
            return V[module] @ (V[module].T @ x) / np.linalg.norm(V[module])
        return x

    defended = edit_adapter(world.undefended, tmp_path / "safelora-scalar", edit)
    result = signature_of(world, defended, write_reference(tmp_path / "v.safetensors", "V", V))
    assert result["observed"] == "shrinkage", result
    assert result["estimates"]["changed_modules"] == layer1
    assert result["estimates"]["e_C"] < 1e-5  # the operator fits too, but shrinkage comes first
    for m in layer1:
        assert result["modules"][m]["alpha_T"] == pytest.approx(target_scale, rel=1e-5)


def projection_case(world, tmp_path, scale: float, complement: bool):
    rng = np.random.default_rng(3)
    bases = {
        m: stored(orthonormal(rng, world.factors[m][0], world.factors[m][0] // 2))
        for m in world.modules
    }

    def edit(module, factor, x):
        if factor != "B":
            return x
        P = bases[module] @ bases[module].T
        return scale * ((np.eye(len(P)) - P) @ x if complement else P @ x)

    name = f"{'complement' if complement else 'projection'}-{scale}"
    defended = edit_adapter(world.undefended, tmp_path / name, edit)
    reference = write_reference(tmp_path / f"{name}.safetensors", "U", bases)
    return defended, reference, bases


@pytest.mark.parametrize("scale", [1.0, 0.6])
def test_projection_onto_subspace(world, tmp_path, scale):
    defended, reference, bases = projection_case(world, tmp_path, scale, complement=False)
    result = signature_of(world, defended, reference)
    estimates = result["estimates"]
    assert result["observed"] == "projection", result
    assert estimates["t_in"] == pytest.approx(scale, rel=1e-6)
    assert estimates["projection_scale"] == estimates["t_in"]
    assert abs(estimates["S"]) < 1e-5 and estimates["e_C"] is None
    assert any("e_C needs V" in note for note in result["notes"])
    expected = dense_signature(world.updates, dense_updates(defended), bases, "U")
    for key in ("alpha_T", "alpha_A", "r", "t_in"):
        assert estimates[key] == pytest.approx(expected[key], rel=1e-10), key
    assert estimates["t_out"] == pytest.approx(expected["t_out"], abs=1e-10)


def test_projection_onto_complement(world, tmp_path):
    defended, reference, _ = projection_case(world, tmp_path, 1.0, complement=True)
    result = signature_of(world, defended, reference)
    assert result["observed"] == "complement-projection", result
    assert result["estimates"]["t_out"] == pytest.approx(1.0, rel=1e-6)
    assert abs(result["estimates"]["t_in"]) < 1e-5


def test_unrelated_adapter_is_other(world, tmp_path):
    rng = np.random.default_rng(99)
    defended = edit_adapter(
        world.undefended, tmp_path / "random", lambda m, f, x: 0.05 * rng.standard_normal(x.shape)
    )
    assert signature_of(world, defended)["observed"] == "other"
    _, reference, _ = projection_case(world, tmp_path, 1.0, complement=False)
    result = signature_of(world, defended, reference)
    assert result["observed"] == "other" and result["rule"] == "no codebook rule held"

    # with SafeLoRA's V: e_C is far from 0 here, so it is cross-checked tightly too
    V, _ = safelora_references(world, np.random.default_rng(11))
    result = signature_of(world, defended, write_reference(tmp_path / "v.safetensors", "V", V))
    assert result["observed"] == "other"
    expected = dense_signature(world.updates, dense_updates(defended), V, "V")
    for key in ("alpha_T", "alpha_A", "r", "t_in", "t_out", "S", "e_C"):
        assert result["estimates"][key] == pytest.approx(expected[key], rel=1e-10), key


def test_exact_zero_t_in_is_reported_as_null_with_a_note():
    # basis e1: ΔD = (I − P)ΔU exactly, so t_in = 0 and S = t_out/t_in is infinite
    basis = np.eye(4)[:, :1]
    rng = np.random.default_rng(2)
    B, A = rng.standard_normal((4, 2)), rng.standard_normal((2, 3))
    kept = B.copy()
    kept[0] = 0.0
    result = signature(
        {"m": LowRank(B, A, 1.0)},
        {"m": LowRank(kept, A, 1.0)},
        ReferenceSubspace("U", {"m": basis}),
    )
    json.dumps(result, allow_nan=False)
    assert result["estimates"]["t_in"] == 0.0 and result["estimates"]["S"] is None
    assert any("infinite" in note for note in result["notes"])
    assert result["observed"] == "complement-projection"
    # ΔU with no component in the subspace: t_in undefined
    outside = signature(
        {"m": LowRank(kept, A, 1.0)},
        {"m": LowRank(0.5 * kept, A, 1.0)},
        ReferenceSubspace("U", {"m": basis}),
    )
    assert outside["estimates"]["t_in"] is None and any(
        "t_in is undefined" in n for n in outside["notes"]
    )


def test_thresholds_are_overridable(world, tmp_path):
    defended = edit_adapter(
        world.undefended, tmp_path / "nearly", lambda m, f, x: 0.995 * x if f == "B" else x
    )
    assert signature_of(world, defended)["observed"] == "unchanged"  # ‖ΔD−ΔU‖/‖ΔU‖ = 0.005
    result = signature_of(
        world,
        defended,
        thresholds={"unchanged_max": 0.001, "shrinkage_max_alpha_t": 0.999, "justification": "x"},
    )
    assert result["observed"] == "shrinkage" and result["thresholds"]["unchanged_max"] == 0.001
    assert list(result["thresholds"]) == list(THRESHOLD_NAMES)
    # the codebook's thresholds are the schema's mechanism thresholds (but z, the behavioral control's)
    assert set(THRESHOLD_NAMES) == set(MECHANISM_DEFAULTS) - {"z"}


# --- Full weights -----------------------------------------------------------------------------


def merged(world, adapter: Path, target: Path, **save_options) -> Path:
    model = transformers.LlamaForCausalLM.from_pretrained(world.base)
    peft.PeftModel.from_pretrained(model, adapter).merge_and_unload().save_pretrained(
        target, **save_options
    )
    return target


def test_full_weights_give_the_adapter_signature(world, tmp_path):
    defended, reference, _ = projection_case(world, tmp_path, 0.8, complement=False)
    full_u = merged(world, world.undefended, tmp_path / "full-u")
    full_d = merged(world, defended, tmp_path / "full-d", max_shard_size="40KB")
    assert (full_d / "model.safetensors.index.json").is_file()  # sharded

    dense_u = read_deltas(full_u, world.base)
    assert sorted(dense_u) == world.modules and all(isinstance(x, Dense) for x in dense_u.values())

    ref = read_reference(reference)
    adapter_form = signature(*read_update_pair(world.undefended, defended), ref)
    for pair in (
        read_update_pair(full_u, full_d, world.base),
        read_update_pair(world.undefended, full_d, world.base),  # mixed forms
    ):
        full_form = signature(*pair, ref)
        assert full_form["observed"] == adapter_form["observed"] == "projection"
        assert (
            full_form["estimates"]["changed_modules"]
            == adapter_form["estimates"]["changed_modules"]
        )
        for key in (
            "alpha_T",
            "alpha_A",
            "kappa",
            "r",
            "unchanged_ratio",
            "t_in",
            "t_out",
            "changed_share",
        ):
            assert full_form["estimates"][key] == pytest.approx(
                adapter_form["estimates"][key], rel=1e-5, abs=1e-6
            ), key

    # a defense that restores the base weights: full weights equal to base are an ablation
    restored = signature(*read_update_pair(full_u, world.base, world.base))
    assert restored["observed"] == "ablation"

    # verification streams full weights into the signature module by module: the same result, bit for bit
    def streamed(undefended: Path, defended: Path, reference_path: Path | None = None) -> dict:
        paths = {"undefended": undefended, "defended": defended, "base": world.base, "reference_subspace": reference_path}
        pinned = {name: Pinned(path, digest_path(path), name) for name, path in paths.items() if path is not None}
        return read_signature(pinned, MECHANISM_DEFAULTS)

    assert streamed(full_u, full_d, reference) == signature(*read_update_pair(full_u, full_d, world.base), ref)
    assert streamed(world.undefended, full_d, reference) == signature(
        *read_update_pair(world.undefended, full_d, world.base), ref)
    assert streamed(full_d, world.undefended, reference) == signature(
        *read_update_pair(full_d, world.undefended, world.base), ref)
    assert streamed(full_u, world.base) == restored


# --- control:shrinkage ------------------------------------------------------------------------


def test_control_shrinkage_adapter_loads_and_has_defended_norms(world, tmp_path):
    rng = np.random.default_rng(11)
    _, C = safelora_references(world, rng)
    defended = edit_adapter(
        world.undefended,
        tmp_path / "d",
        lambda m, f, x: C[m] @ x if f == "B" and "layers.0" in m else x,
    )
    scales = write_control_shrinkage(world.undefended, defended, tmp_path / "control")
    assert scales == pytest.approx(
        control_scales(read_adapter(world.undefended), read_adapter(defended))
    )
    assert sorted(load_file(tmp_path / "control" / "adapter_model.safetensors")) == sorted(
        load_file(world.undefended / "adapter_model.safetensors")
    )
    model = peft.PeftModel.from_pretrained(
        transformers.LlamaForCausalLM.from_pretrained(world.base), tmp_path / "control"
    )
    defended_norms = {m: np.linalg.norm(u) for m, u in dense_updates(defended).items()}
    checked = 0
    for name, layer in model.base_model.model.named_modules():
        if isinstance(layer, peft.tuners.lora.LoraLayer):
            norm = torch.linalg.norm(layer.get_delta_weight("default").double()).item()
            assert norm == pytest.approx(defended_norms[name], rel=1e-6), name
            checked += 1
    assert checked == len(world.modules)


# --- Errors: coded, never a traceback ---------------------------------------------------------


def raises_code(code: str, call, *args, **kwargs) -> AcardsError:
    with pytest.raises(AcardsError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, str(caught.value)
    assert caught.value.problems[0].hint
    return caught.value


def test_pickle_only_checkpoints_are_refused(world, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "pytorch_model.bin").write_bytes(b"\x80\x04 not to be unpickled")
    error = raises_code("weights.not-safetensors", read_deltas, full, world.base)
    assert error.problems[0].location.file == str(full)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    shutil.copy(world.undefended / "adapter_config.json", adapter)
    (adapter / "adapter_model.bin").write_bytes(b"\x80\x04")
    raises_code("weights.not-safetensors", read_adapter, adapter)
    raises_code("weights.not-safetensors", read_deltas, full / "pytorch_model.bin", world.base)


def test_reference_missing_a_module(world, tmp_path):
    rng = np.random.default_rng(0)
    bases = {m: orthonormal(rng, world.factors[m][0], 2) for m in world.modules[1:]}
    reference = read_reference(write_reference(tmp_path / "u.safetensors", "U", bases))
    error = raises_code(
        "weights.missing-reference-module",
        signature,
        read_adapter(world.undefended),
        read_adapter(world.undefended),
        reference,
    )
    assert world.modules[0] in str(error)


def test_adapters_naming_different_modules(world, tmp_path):
    dropped = world.modules[0]
    defended = edit_adapter(
        world.undefended, tmp_path / "fewer", lambda m, f, x: None if m == dropped else x
    )
    error = raises_code(
        "weights.module-mismatch",
        signature,
        read_adapter(world.undefended),
        read_adapter(defended),
    )
    assert dropped in str(error)
    raises_code(
        "weights.module-mismatch",
        control_scales,
        read_adapter(world.undefended),
        read_adapter(defended),
    )


def test_shape_mismatches(world, tmp_path):
    rng = np.random.default_rng(0)
    wrong = {
        m: rng.standard_normal((world.factors[m][1] + 1, world.factors[m][0]))
        for m in world.modules
    }
    reference = read_reference(write_reference(tmp_path / "v.safetensors", "V", wrong))
    raises_code(
        "weights.shape-mismatch",
        signature,
        read_adapter(world.undefended),
        read_adapter(world.undefended),
        reference,
    )

    # a config whose rank disagrees with the tensors would give a wrong scaling
    relabelled = edit_adapter(world.undefended, tmp_path / "r8", lambda m, f, x: x)
    config = json.loads((relabelled / "adapter_config.json").read_text())
    (relabelled / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    raises_code("weights.shape-mismatch", read_adapter, relabelled)

    # U and D of different shapes in one module
    module = world.modules[0]
    wider = edit_adapter(
        world.undefended,
        tmp_path / "wider",
        lambda m, f, x: np.vstack([x, x[:1]]) if m == module and f == "B" else x,
    )
    raises_code(
        "weights.shape-mismatch",
        signature,
        read_adapter(world.undefended),
        read_adapter(wider),
    )
    raises_code("weights.shape-mismatch", read_deltas, wider, world.base)


@pytest.mark.parametrize(
    "options",
    [{"use_dora": True}, {"modules_to_save": ["lm_head"]}, {"lora_bias": True}],
    ids=["dora", "modules-to-save", "lora-bias"],
)
def test_unsupported_adapters(tmp_path, options):
    adapter = make_adapter(tmp_path / "adapter", target_modules=["q_proj"], **options)
    raises_code("weights.unsupported-adapter", read_adapter, adapter)


def test_other_bad_inputs(world, tmp_path):
    rebased = edit_adapter(world.undefended, tmp_path / "pissa", lambda m, f, x: x)
    config = json.loads((rebased / "adapter_config.json").read_text())
    (rebased / "adapter_config.json").write_text(
        json.dumps({**config, "init_lora_weights": "pissa"})
    )
    raises_code("weights.unsupported-adapter", read_adapter, rebased)
    (rebased / "adapter_config.json").write_text("{not json")
    raises_code("weights.bad-adapter-config", read_adapter, rebased)

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 5)
    raises_code("weights.bad-safetensors", read_deltas, garbage, world.base)
    raises_code("weights.missing-base", read_deltas, world.base)
    raises_code("weights.not-found", read_deltas, tmp_path / "nowhere", world.base)

    rng = np.random.default_rng(0)
    skewed = {m: orthonormal(rng, world.factors[m][0], 3) * 1.01 for m in world.modules}
    raises_code(
        "weights.not-orthonormal",
        read_reference,
        write_reference(tmp_path / "skew.safetensors", "U", skewed),
    )
    mixed = tmp_path / "mixed.safetensors"
    save_file(
        {"a.U": np.eye(3, 1, dtype=np.float32), "b.V": np.ones((3, 3), dtype=np.float32)}, mixed
    )
    raises_code("weights.bad-reference", read_reference, mixed)

    zero = edit_adapter(
        world.undefended, tmp_path / "zero", lambda m, f, x: 0 * x if f == "B" else x
    )
    raises_code(
        "weights.zero-update", signature, read_adapter(zero), read_adapter(world.undefended)
    )
    raises_code(
        "weights.zero-update", control_scales, read_adapter(zero), read_adapter(world.undefended)
    )
    undefended = read_adapter(world.undefended)
    raises_code(
        "weights.bad-threshold",
        signature,
        undefended,
        undefended,
        thresholds={"unchangd": 0.1},
    )
    raises_code(
        "weights.bad-threshold",
        signature,
        undefended,
        undefended,
        thresholds={"unchanged_max": "low"},
    )
    # the caller passes every threshold in force: mechanism/ has no defaults of its own
    error = raises_code("weights.bad-threshold", weight_signature, undefended, undefended, None, {"unchanged_max": 0.1})
    assert "`subspace_energy`" in str(error)
    raises_code(
        "weights.not-an-adapter",
        write_control_shrinkage,
        world.base,
        world.undefended,
        tmp_path / "c",
    )
    raises_code(
        "weights.write-failed", write_control_shrinkage, world.undefended, world.undefended, world.undefended
    )


def test_damaged_checkpoints(world, tmp_path):
    first = world.modules[0]
    half = edit_adapter(
        world.undefended, tmp_path / "half", lambda m, f, x: None if m == first and f == "B" else x
    )
    raises_code("weights.bad-adapter", read_adapter, half)
    nan = edit_adapter(
        world.undefended, tmp_path / "nan", lambda m, f, x: x * np.nan if m == first else x
    )
    raises_code("weights.non-finite", read_adapter, nan)

    quantized = tmp_path / "quantized"
    quantized.mkdir()
    shutil.copy(world.undefended / "adapter_config.json", quantized)
    tensors = load_file(world.undefended / "adapter_model.safetensors")
    save_file({k: v.astype(np.int8) for k, v in tensors.items()}, quantized / "adapter_model.safetensors")
    raises_code("weights.unsupported-dtype", read_adapter, quantized)
    # the rules generation shares read the config and the header only, never a tensor
    assert sorted(check_adapter(quantized, world.base).modules) == world.modules

    sharded = tmp_path / "sharded"
    shutil.copytree(world.base, sharded)
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})
    )
    raises_code("weights.bad-index", read_deltas, sharded, world.base)
    (sharded / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "../base/model.safetensors"}})
    )
    raises_code("weights.bad-index", read_deltas, sharded, world.base)


def test_updates_whose_norms_overflow_are_refused_not_read_as_zero():
    """Finite factors near 1e150 overflow ‖ΔU‖² to infinity: a coded error, not weights.zero-update."""
    rng = np.random.default_rng(0)
    huge = LowRank(B=rng.normal(size=(8, 2)) * 1e150, A=rng.normal(size=(2, 8)) * 1e150, scaling=1.0)
    small = LowRank(B=rng.normal(size=(8, 2)), A=rng.normal(size=(2, 8)), scaling=1.0)
    for undefended, defended in ((huge, small), (small, huge)):
        with pytest.raises(AcardsError) as excinfo:
            weight_signature({"m": undefended}, {"m": defended}, None, MECHANISM_DEFAULTS)
        assert excinfo.value.code == "weights.non-finite"
