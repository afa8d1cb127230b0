"""examples/installed-gap-audit: the shipped card validates and its digests hold, the folder stays
small, and the SafeLoRA code build.py uses is the published rule (closed forms on small matrices).

No training and no generation: build.py's defenses are imported as a module (numpy only)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from acards.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "installed-gap-audit"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"installed_gap_audit_{name}", EXAMPLE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


defenses = load("defenses")


def test_card_validates_and_digests_hold():
    runner = CliRunner()
    for command in ("validate", "check"):
        result = runner.invoke(main, [command, str(EXAMPLE / "card.yaml")])
        assert result.exit_code == 0, result.output


def test_card_has_every_cell_three_seeds_and_filled_claims():
    import yaml

    card = yaml.safe_load((EXAMPLE / "card.yaml").read_text(encoding="utf-8"))
    assert card["acard"] == "1.1"
    families = {cell["family"] for cell in card["cells"]}
    assert len(families) >= 5 and {"safelora", "safety-data-mixing", "scalar-shrinkage"} <= families
    for cell in card["cells"]:
        seeds = [cell["checkpoints"]["seed"]] + [s["seed"] for s in cell["checkpoints"]["seeds"]]
        assert sorted(seeds) == [0, 1, 2], cell["id"]
    # acards fill wrote every claim's reported block (no placeholder left)
    for claim in card["claims"]:
        assert "reported" in claim and "TODO" not in str(claim["reported"]), claim["id"]


def test_folder_stays_under_25_mb():
    size = sum(p.stat().st_size for p in EXAMPLE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert size < 25 * 2 ** 20, size


def rank_one_module(rng, cosine: float, d_out: int = 6, d_in: int = 5, r: int = 2):
    """V = σ u vᵀ, so C = σ u uᵀ and cos(C ΔW, ΔW) = ‖uᵀΔW‖/‖ΔW‖; B = (cosine·u + sine·w) bᵀ with
    w ⊥ u makes that exactly ``cosine``."""
    q, _ = np.linalg.qr(rng.normal(size=(d_out, 2)))
    u, w = q[:, 0], q[:, 1]
    v = 3.0 * np.outer(u, rng.normal(size=d_in))
    b = np.outer(cosine * u + np.sqrt(1 - cosine ** 2) * w, rng.normal(size=r))
    a = rng.normal(size=(r, d_in))
    return v, a, b


def published_selection(similarities: dict[str, float], mode: str, threshold: float, k: int) -> list[str]:
    """The public implementation's rule: cos <= threshold; in number mode the threshold is
    numpy.sort(cos)[:k][-1]."""
    cut = threshold if mode == "threshold" else float(np.sort(np.array(list(similarities.values())))[:k][-1])
    return sorted(name for name, value in similarities.items() if value <= cut)


def test_safelora_closed_form_rank_one():
    rng = np.random.default_rng(7)
    targets = {"m0": 0.9, "m1": 0.2, "m2": 0.6, "m3": 0.45, "m4": 0.75}
    modules = {name: rank_one_module(rng, c) for name, c in targets.items()}
    factors = {name: (a, b) for name, (_, a, b) in modules.items()}
    deltas = {name: v for name, (v, _, _) in modules.items()}
    for mode, expected in (("threshold", ["m1", "m3"]), ("number", ["m1", "m3"])):
        result = defenses.safelora(factors, deltas, mode, threshold=0.5, num_proj_layers=2)
        assert result["similarity"] == pytest.approx(targets, abs=1e-5)
        assert result["projected"] == expected
        for name, (v, a, b) in modules.items():
            c = v @ v.T / np.linalg.norm(v)  # = 3‖v‖ u uᵀ / ... : the closed form, written out
            assert np.allclose(result["B"][name], c @ b if name in expected else b)
    # number mode with k = 4 takes the four lowest; threshold 0.8 keeps the same four
    assert defenses.safelora(factors, deltas, "number", num_proj_layers=4)["projected"] == ["m1", "m2", "m3", "m4"]
    assert defenses.safelora(factors, deltas, "threshold", threshold=0.8)["projected"] == ["m1", "m2", "m3", "m4"]


def test_safelora_matches_published_rule_on_random_modules():
    rng = np.random.default_rng(11)
    names = [f"layer{i}" for i in range(14)]
    factors, deltas = {}, {}
    for i, name in enumerate(names):
        d_out, d_in = (8, 6) if i % 2 else (6, 8)
        deltas[name] = rng.normal(size=(d_out, d_in)) * rng.uniform(0.01, 2)
        factors[name] = (rng.normal(size=(3, d_in)), rng.normal(size=(d_out, 3)))
    expected_cos = {}
    for name in names:
        v, (a, b) = deltas[name], factors[name]
        c = np.einsum("ik,jk->ij", v, v) / np.sqrt(np.sum(v * v))
        x, y = (c @ b @ a).ravel(), (b @ a).ravel()
        expected_cos[name] = round(float(x @ y / np.sqrt((x @ x) * (y @ y))), 5)
    for mode, k, threshold in (("threshold", 10, 0.5), ("number", 10, 0.5), ("number", 3, 0.5), ("threshold", 10, 0.9)):
        result = defenses.safelora(factors, deltas, mode, threshold=threshold, num_proj_layers=k)
        assert result["similarity"] == expected_cos
        chosen = published_selection(expected_cos, mode, threshold, k)
        assert result["projected"] == chosen
        if mode == "number":
            assert len(chosen) == k  # no ties among random cosines
        for name in names:
            v, (a, b) = deltas[name], factors[name]
            want = (v @ v.T / np.linalg.norm(v, "fro")) @ b if name in chosen else b
            assert np.allclose(result["B"][name], want)
    with pytest.raises(ValueError):
        defenses.safelora(factors, deltas, "all")


def test_safelora_number_mode_ties_project_more_modules():
    similarities = {"a": 0.3, "b": 0.1, "c": 0.3, "d": 0.8}
    assert defenses.safelora_threshold(similarities, "number", num_proj_layers=2) == 0.3
    assert published_selection(similarities, "number", 0.5, 2) == ["a", "b", "c"]


def test_projection_defense_is_an_orthogonal_projector_onto_the_energy_subspace():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(10, 4)) @ np.diag([5.0, 2.0, 0.5, 0.1]) @ rng.normal(size=(4, 7))
    basis = defenses.energy_basis(v, 0.9)
    s = np.linalg.svd(v, compute_uv=False)
    k = int(np.argmax(np.cumsum(s ** 2) / np.sum(s ** 2) >= 0.9) + 1)
    assert basis.shape == (10, k) and np.allclose(basis.T @ basis, np.eye(k))
    b = rng.normal(size=(10, 3))
    projected = defenses.project_onto(b, basis)
    assert np.allclose(defenses.project_onto(projected, basis), projected)  # idempotent
    assert np.allclose(basis.T @ (b - projected), 0)  # the residual is orthogonal to the subspace


def test_verify_without_generation_decides_d3_from_the_weights_alone(tmp_path):
    """With no outputs, D1, D2, D4 and cost are insufficient (nothing is scored) and the card's
    reported outcomes are not reproduced (exit 1); D3 still reads the weights of all three seeds."""
    import json

    report = tmp_path / "report.json"
    result = CliRunner().invoke(main, ["verify", str(EXAMPLE / "card.yaml"), "--no-generate", "--bootstrap", "200",
                                       "--report", str(report)])
    assert result.exit_code == 1, result.output
    cells = {cell["id"]: cell["diagnostics"] for cell in json.loads(report.read_text(encoding="utf-8"))["cells"]}
    assert len(cells) == 6
    for diagnostics in cells.values():
        for name in ("reliability", "fresh", "transfer", "cost"):
            assert diagnostics[name]["outcome"] == "insufficient"
    assert cells["shrinkage/x0.5"]["mechanism"]["observed"] == "shrinkage"
    assert cells["projection/alignment-subspace"]["mechanism"]["observed"] == "projection"
    for cell in ("safelora/threshold-0.5", "safelora/number-10"):  # SafeLoRA edits some modules only
        estimates = cells[cell]["mechanism"]["estimates"]
        assert estimates["layer_selective"] is True and 0 < estimates["n_changed_modules"] < estimates["n_modules"]
