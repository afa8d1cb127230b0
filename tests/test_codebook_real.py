"""The standard 1.1 codebook (SPEC §10.5–§10.9) on real PEFT adapters and real full-weight checkpoints.

Every defended checkpoint is built the way its defense builds it — B scaled, projected, reflected,
SafeLoRA's C = VVᵀ/‖V‖_F applied to the lowest-cosine modules, rank-1 components or entries masked,
a merge with the aligned delta, noise, an additive realignment — saved by peft / safetensors in
fp32, bf16 or fp16, read back by acards, and must be coded as SPEC §10 says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from builders import SCALING, TARGETS, edit_adapter, make_adapter, tiny_llama, write_reference  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from acards.card.validate import threshold_defaults  # noqa: E402
from acards.errors import AcardsError  # noqa: E402
from acards.evidence.checkpoints import Pinned, read_reference, read_signature, read_update_pair  # noqa: E402
from acards.mechanism.signature import weight_signature  # noqa: E402

TH_11 = threshold_defaults("1.1")["mechanism"]
TH_10 = threshold_defaults("1.0")["mechanism"]


def signature(undefended: Path, defended: Path, reference: Path | None = None, *, base: Path | None = None,
              rank: int | None = None, standard: str = "1.1") -> dict:
    """The signature acards verify computes: every file read through read_signature."""
    pinned = {"undefended": Pinned(undefended, None, "u"), "defended": Pinned(defended, None, "d")}
    if base is not None:
        pinned["base"] = Pinned(base, None, "base")
    if reference is not None:
        pinned["reference_subspace"] = Pinned(reference, None, "ref")
    return read_signature(pinned, TH_11 if standard == "1.1" else TH_10, standard, rank)


# --- adapters ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("codebook")
    undefended = make_adapter(root / "undefended", seed=1)
    model = tiny_llama()
    weights = {name.removesuffix(".weight"): p.detach().numpy().astype(np.float64) for name, p in model.named_parameters()}
    modules = sorted(m for m in weights if m.rsplit(".", 1)[-1] in TARGETS)
    rng = np.random.default_rng(7)
    # V = W_aligned − W_pre: a rank-8 alignment change per module, plus a little full-rank spread.
    V = {m: rng.standard_normal((weights[m].shape[0], 8)) @ rng.standard_normal((8, weights[m].shape[1]))
         + 0.01 * rng.standard_normal(weights[m].shape) for m in modules}
    # ‖V_ℓ‖_F = 1, so SafeLoRA's C = VVᵀ/‖V‖_F shrinks (its eigenvalues are σᵢ²/‖V‖_F ≤ 1)
    V = {m: np.asarray(v / np.linalg.norm(v), np.float32).astype(np.float64) for m, v in V.items()}  # as stored
    bases = {m: np.linalg.svd(V[m], full_matrices=False)[0][:, :8] for m in modules}
    return {"root": root, "U": undefended, "V": V, "P": bases, "modules": modules, "weights": weights,
            "v_file": write_reference(root / "v.safetensors", "V", V),
            "u_file": write_reference(root / "u.safetensors", "U", bases), "rng": rng}


def defended(world, name: str, edit) -> Path:
    return edit_adapter(world["U"], world["root"] / name, edit)


def on_b(transform):
    return lambda module, factor, x: transform(module, x) if factor == "B" else x


def test_shrinkage_of_an_adapter(world):
    result = signature(world["U"], defended(world, "shrink", on_b(lambda m, b: 0.5 * b)), world["v_file"])
    assert result["observed"] == "shrinkage"
    assert result["estimates"]["alpha_T"] == pytest.approx(0.5, abs=1e-6)
    assert not result["estimates"]["layer_selective"]
    assert set(result["estimates"]["module_classes"].values()) == {"shrinkage"}


@pytest.mark.parametrize("file", ["u_file", "v_file"])
def test_projection_and_complement(world, file):
    P = world["P"]
    inside = defended(world, f"proj-{file}", on_b(lambda m, b: P[m] @ (P[m].T @ b)))
    outside = defended(world, f"comp-{file}", on_b(lambda m, b: b - P[m] @ (P[m].T @ b)))
    rank = 8 if file == "v_file" else None
    proj, comp = signature(world["U"], inside, world[file], rank=rank), signature(world["U"], outside, world[file], rank=rank)
    assert proj["observed"] == "projection", proj["rule"]
    assert proj["estimates"]["t_in"] == pytest.approx(1, abs=1e-5) and abs(proj["estimates"]["t_out"]) < 1e-5
    assert comp["observed"] == "complement-projection", comp["rule"]


def test_reflections_are_never_projections(world):
    """SPEC §10.5: B − 2(I−P)B reflects the out-of-subspace part (1.0 coded it projection)."""
    P = world["P"]
    out_reflected = defended(world, "reflect-out", on_b(lambda m, b: b - 2 * (b - P[m] @ (P[m].T @ b))))
    in_reflected = defended(world, "reflect-in", on_b(lambda m, b: b - 2 * P[m] @ (P[m].T @ b)))
    for path, negative in ((out_reflected, "t_out"), (in_reflected, "t_in")):
        result = signature(world["U"], path, world["u_file"])
        assert result["estimates"][negative] == pytest.approx(-1, abs=1e-5)
        assert result["observed"] not in ("projection", "complement-projection")
        assert all(c not in ("projection", "complement-projection") for c in result["estimates"]["module_classes"].values())
    assert signature(world["U"], out_reflected, world["u_file"], standard="1.0")["observed"] == "projection"
    assert signature(world["U"], in_reflected, world["u_file"], standard="1.0")["observed"] == "complement-projection"


def test_rank_k_complement_against_a_v_file(world):
    """SPEC §10.6: a rank-8 complement checked against V is coded so when the card gives rank 8;
    the 90%-energy rule picks another k and misses it."""
    P = world["P"]
    path = defended(world, "comp-rank8", on_b(lambda m, b: b - P[m] @ (P[m].T @ b)))
    with_rank = signature(world["U"], path, world["v_file"], rank=8)
    assert with_rank["observed"] == "complement-projection"
    assert {e["subspace_dim"] for e in with_rank["modules"].values()} == {8}
    energy = signature(world["U"], path, world["v_file"])
    assert {e["subspace_dim"] for e in energy["modules"].values()} != {8}
    with pytest.raises(AcardsError) as error:
        read_reference(world["u_file"], rank=8)
    assert error.value.problems[0].code == "weights.bad-reference"


def safelora(world, name: str, *, threshold: float | None = None, number: int | None = None) -> tuple[Path, set[str]]:
    """SafeLoRA as published: per module C = VVᵀ/‖V‖_F, the cosine between flattened C·ΔW and ΔW,
    and B ← C·B in the modules below the threshold (threshold mode) or the ``number`` lowest (number mode)."""
    from safetensors.numpy import load_file

    factors: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(world["U"] / "adapter_model.safetensors").items():
        module, _, factor = key.removeprefix("base_model.model.").removesuffix(".weight").rpartition(".lora_")
        factors.setdefault(module, {})[factor] = value.astype(np.float64)
    cosines = {}
    for module, f in factors.items():
        V = world["V"][module]
        C = V @ V.T / np.linalg.norm(V)
        dw = SCALING * f["B"] @ f["A"]
        cdw = C @ dw
        cosines[module] = float(np.vdot(cdw, dw) / (np.linalg.norm(cdw) * np.linalg.norm(dw)))
    ranked = sorted(cosines, key=cosines.get)
    chosen = set(ranked[:number]) if number is not None else {m for m in ranked if cosines[m] < threshold}

    def edit(module, factor, x):
        if factor == "B" and module in chosen:
            V = world["V"][module]
            return (V @ V.T / np.linalg.norm(V)) @ x
        return x

    return defended(world, name, edit), chosen


@pytest.mark.parametrize("mode", ["threshold", "number"])
def test_safelora_as_published_shows_its_layer_selection(world, mode):
    if mode == "number":
        path, chosen = safelora(world, "safelora-number", number=3)
    else:  # a threshold that selects some modules, not all: the median cosine
        path, chosen = safelora(world, "safelora-threshold", threshold=_median_cosine(world))
    assert 0 < len(chosen) < len(world["modules"])
    result = signature(world["U"], path, world["v_file"])
    assert set(result["estimates"]["changed_modules"]) == chosen
    assert result["estimates"]["layer_selective"] is True
    assert set(result["estimates"]["module_classes"]) == chosen
    assert set(result["estimates"]["module_classes"].values()) == {"soft-spectral-reweighting"}
    assert result["observed"] in ("soft-spectral-reweighting", "shrinkage")
    assert any("layer-selective" in note for note in result["notes"])


def _median_cosine(world) -> float:
    from safetensors.numpy import load_file

    factors: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(world["U"] / "adapter_model.safetensors").items():
        module, _, factor = key.removeprefix("base_model.model.").removesuffix(".weight").rpartition(".lora_")
        factors.setdefault(module, {})[factor] = value.astype(np.float64)
    cosines = []
    for module, f in factors.items():
        V = world["V"][module]
        cdw = (V @ V.T / np.linalg.norm(V)) @ f["B"] @ f["A"]
        dw = f["B"] @ f["A"]
        cosines.append(float(np.vdot(cdw, dw) / (np.linalg.norm(cdw) * np.linalg.norm(dw))))
    return float(np.median(cosines))


def test_mask_of_rank_one_components(world):
    def edit(module, factor, x):
        x = x.copy()
        if factor == "B":
            x[:, :2] = 0  # two of the four components dropped
        return x

    result = signature(world["U"], defended(world, "mask-components", edit))
    assert result["observed"] == "mask", result["rule"]
    assert result["estimates"]["mask_share"] == 1.0 and result["estimates"]["mask_zeroed"] == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("factors", ["B", "both"])
def test_noise_added_to_an_adapter(world, factors, seed):
    rng = np.random.default_rng(seed)

    def edit(module, factor, x):
        return x + 0.02 * rng.standard_normal(x.shape) if factors == "both" or factor == "B" else x

    result = signature(world["U"], defended(world, f"noise-{factors}-{seed}", edit), world["v_file"])
    assert result["observed"] == "noise", (result["rule"], result["estimates"])


def test_additive_realignment_of_an_adapter(world):
    rng = np.random.default_rng(4)
    P = world["P"]
    result = signature(world["U"], defended(world, "additive", on_b(lambda m, b: b + P[m] @ (0.05 * rng.standard_normal((8, b.shape[1]))))),
                       world["u_file"])
    assert result["observed"] == "additive-realignment", (result["rule"], result["estimates"])


# --- full weights in fp32, bf16, fp16 ------------------------------------------------------------

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def save_weights(path: Path, weights: dict[str, np.ndarray], dtype) -> Path:
    path.mkdir(parents=True)
    save_file({f"{m}.weight": torch.tensor(w, dtype=torch.float64).to(dtype).contiguous() for m, w in weights.items()},
              str(path / "model.safetensors"))
    return path


def stored(weights: dict[str, np.ndarray], dtype) -> dict[str, np.ndarray]:
    return {m: torch.tensor(w, dtype=torch.float64).to(dtype).to(torch.float64).numpy() for m, w in weights.items()}


@pytest.fixture(scope="module")
def full(world):
    """Base weights and a low-rank fine-tuning update with ‖ΔU‖/‖W‖ = 0.005 per module (the
    smallest SPEC §10.7 names), per storage dtype."""
    rng = np.random.default_rng(11)
    out = {}
    for label, dtype in DTYPES.items():
        base = stored(world["weights"], dtype)
        updates = {}
        for m in world["modules"]:
            d = rng.standard_normal((base[m].shape[0], 4)) @ rng.standard_normal((4, base[m].shape[1]))
            updates[m] = d * 0.005 * np.linalg.norm(base[m]) / np.linalg.norm(d)
        root = world["root"] / f"full-{label}"
        out[label] = {"base": base, "dU": updates, "dtype": dtype, "root": root,
                      "base_path": save_weights(root / "base", base, dtype),
                      "U": save_weights(root / "U", {m: base[m] + updates.get(m, 0) for m in base}, dtype)}
    return out


def full_defended(full_case: dict, name: str, update) -> Path:
    base = full_case["base"]
    return save_weights(full_case["root"] / name, {m: base[m] + update(m) if m in full_case["dU"] else base[m] for m in base},
                        full_case["dtype"])


@pytest.mark.parametrize("factor", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("label", list(DTYPES))
def test_exact_shrinkage_of_full_weights_in_every_dtype(full, label, factor):
    case = full[label]
    path = full_defended(case, f"shrink-{factor}", lambda m: factor * case["dU"][m])
    result = signature(case["U"], path, base=case["base_path"])
    assert result["observed"] == "shrinkage", (result["rule"], result["estimates"])
    if not (label == "bf16" and factor == 0.9):  # one module alone holds too little to resolve 0.9 from 1 in bf16
        assert set(result["estimates"]["module_classes"].values()) == {"shrinkage"}
    if label == "bf16" and factor == 0.5:  # 1.0 codes it other: rounding alone gives a large α_A
        assert signature(case["U"], path, base=case["base_path"], standard="1.0")["observed"] == "other"
        assert result["estimates"]["noise_floor"] > 0.1


@pytest.mark.parametrize("label", list(DTYPES))
def test_mask_of_full_weight_entries(full, label):
    case = full[label]
    rng = np.random.default_rng(5)
    keep = {m: rng.random(case["dU"][m].shape) < 0.5 for m in case["dU"]}
    base = case["base"]
    U_stored = stored({m: base[m] + case["dU"][m] for m in case["dU"]}, case["dtype"])
    path = full_defended(case, "mask", lambda m: np.where(keep[m], U_stored[m] - base[m], 0.0))
    result = signature(case["U"], path, base=case["base_path"])
    assert result["observed"] == "mask", (result["rule"], result["estimates"])


def test_merge_with_the_aligned_delta(world, full):
    """Merging the fine-tune with the aligned model: W = (1−μ)·W_U + μ·W_aligned, so ΔD = (1−μ)ΔU + μV."""
    case = full["fp32"]
    V = {m: 0.002 * world["V"][m] / np.linalg.norm(world["V"][m]) * np.linalg.norm(case["base"][m]) for m in case["dU"]}
    v_file = write_reference(case["root"] / "v-merge.safetensors", "V", V)
    V = {m: np.asarray(v, np.float32).astype(np.float64) for m, v in V.items()}
    path = full_defended(case, "merge", lambda m: 0.7 * case["dU"][m] + 0.3 * V[m])
    result = signature(case["U"], path, v_file, base=case["base_path"])
    assert result["observed"] == "merge", (result["rule"], result["estimates"])


def test_noise_on_full_weights(world, full):
    case = full["fp32"]
    rng = np.random.default_rng(6)
    path = full_defended(case, "noise", lambda m: case["dU"][m] + 0.5 * np.linalg.norm(case["dU"][m])
                         * rng.standard_normal(case["dU"][m].shape) / np.sqrt(case["dU"][m].size))
    result = signature(case["U"], path, world["v_file"], base=case["base_path"])
    assert result["observed"] == "noise", (result["rule"], result["estimates"])


def test_additive_realignment_of_full_weights(world, full):
    case = full["fp32"]
    rng = np.random.default_rng(8)
    P = world["P"]
    path = full_defended(case, "additive", lambda m: case["dU"][m] + P[m] @ (1e-3 * rng.standard_normal((8, case["dU"][m].shape[1]))))
    result = signature(case["U"], path, world["u_file"], base=case["base_path"])
    assert result["observed"] == "additive-realignment", (result["rule"], result["estimates"])


def test_one_point_zero_signature_is_unchanged_by_the_new_fields(world):
    """A 1.0 signature carries none of 1.1's fields (its reports must not change)."""
    path = defended(world, "shrink-1.0", on_b(lambda m, b: 0.5 * b))
    result = signature(world["U"], path, world["v_file"], standard="1.0")
    assert "standard" not in result and "layer_selective" not in result["estimates"]
    assert "observed" not in next(iter(result["modules"].values()))
    undefended, defended_updates = read_update_pair(world["U"], path)
    assert weight_signature(undefended, defended_updates, None, TH_10) == weight_signature(undefended, defended_updates, None, TH_10, "1.0")


# --- through a card: reference.rank, the per-module view in the report, refusals -------------------


def _card_with_weights(tmp_path: Path, world, defended_path: Path, declared: str, reference: Path | None, rank: int | None):
    import json
    import shutil

    from simulate import CellSpec, build_card

    from acards.evidence.digests import digest_path

    folder = tmp_path / "card"
    (folder / "weights").mkdir(parents=True)
    shutil.copytree(world["U"], folder / "weights" / "U")
    shutil.copytree(defended_path, folder / "weights" / "D")
    checkpoints = {"undefended": "weights/U", "defended": "weights/D"}
    if reference is not None:
        shutil.copy(reference, folder / "weights" / "reference.safetensors")
        checkpoints["reference_subspace"] = "weights/reference.safetensors"
    card_path = build_card(folder, [CellSpec(id="a", seeds=(0, 1, 2), declared=declared, checkpoints=checkpoints)], acard="1.1")
    if rank is not None:
        card = json.loads(card_path.read_text())
        card["cells"][0]["checkpoints"]["reference_subspace"]["rank"] = rank
        card_path.write_text(json.dumps(card, indent=2))
    assert digest_path(folder / "weights" / "U")
    return card_path


def test_a_1_1_card_reads_reference_rank_and_reports_the_per_module_view(tmp_path, world):
    import json

    from acards.pipeline.verify import verify
    from acards.report.model import as_builtins
    from acards.schemas import validator

    P = world["P"]
    chosen = set(world["modules"][:3])
    path = defended(world, "card-comp", on_b(lambda m, b: b - P[m] @ (P[m].T @ b) if m in chosen else b))
    card = _card_with_weights(tmp_path, world, path, "complement-projection", world["v_file"], rank=8)
    report = as_builtins(verify(card, bootstrap=50, generate=False, use_cache=False))
    validator("report-1.0").validate(json.loads(json.dumps(report)))
    d3 = report["cells"][0]["diagnostics"]["mechanism"]
    assert d3["observed"] == "complement-projection" and d3["strict"] == "pass"
    assert d3["estimates"]["layer_selective"] is True
    assert d3["details"]["module_classes"] == {m: "complement-projection" for m in sorted(chosen)}
    assert "layer-selective" in {r["code"] for r in d3["reasons"]}


def test_a_1_1_card_declaring_an_unobservable_class_is_refused(tmp_path, world):
    from acards.card.model import load_card

    path = defended(world, "card-shrink", on_b(lambda m, b: 0.5 * b))
    card = _card_with_weights(tmp_path, world, path, "projection", None, None)
    with pytest.raises(AcardsError) as error:
        load_card(card)
    assert "card.unobservable-mechanism" in {p.code for p in error.value.problems}
