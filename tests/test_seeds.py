"""Every training seed's checkpoints (docs/card-format.md, `checkpoints.seeds`): pinned and
digest-checked, D3 per seed with an `agrees` flag, a warning for unpinned seeds, regeneration and
the control from each seed's own adapters, and the full-weights shrinkage control (SPEC §10.7).
Real tiny Llamas and real PEFT adapters, built here."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

from acards.cli import main  # noqa: E402
from acards.diagnostics.mechanism import mechanism  # noqa: E402
from acards.errors import AcardsError  # noqa: E402
from acards.evidence.digests import digest_path  # noqa: E402
from acards.generate import run, spot_check  # noqa: E402
from acards.generate.plan import control_requests, missing_requests  # noqa: E402
from acards.pipeline.load import load  # noqa: E402
from acards.pipeline.verify import verify  # noqa: E402
from acards.report.model import as_builtins  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
TARGETS = ["q_proj", "v_proj", "up_proj"]
ITEMS = [("i0", "s0"), ("i1", "s0"), ("i2", "s1"), ("i3", "s1")]
MAX_NEW = 6


@pytest.fixture(autouse=True)
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_base(folder: Path) -> Path:
    tokenizer = transformers.ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = transformers.LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                      pad_token_id=0, eos_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def save_adapter(base: Path, folder: Path, seed: int, b_scale: float = 0.3, basis: dict | None = None) -> Path:
    """A real PEFT adapter with seeded random factors; with ``basis`` (module → d_out×k), every B is
    projected onto that basis (a projection defense); ``b_scale`` scales B."""
    model = peft.get_peft_model(transformers.AutoModelForCausalLM.from_pretrained(base, use_safetensors=True),
                                peft.LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * (b_scale if "lora_B" in name else 0.3))
                if basis is not None and "lora_B" in name:
                    module = name.removeprefix("base_model.model.").split(".lora_B")[0]
                    q = torch.from_numpy(basis[module]).float()
                    parameter.copy_(q @ (q.T @ parameter))
    model.save_pretrained(folder)
    (folder / "README.md").unlink(missing_ok=True)
    return folder


def module_shapes(base: Path) -> dict[str, tuple[int, int]]:
    tensors = load_file(base / "model.safetensors")
    return {k.removesuffix(".weight"): v.shape for k, v in tensors.items()
            if v.ndim == 2 and k.removesuffix(".weight").rsplit(".", 1)[-1] in TARGETS}


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """A base, three seeds' undefended adapters, their projection defenses, and a reference."""
    root = tmp_path_factory.mktemp("seeds")
    base = save_base(root / "base")
    rng = np.random.default_rng(0)
    basis = {m: np.linalg.qr(rng.standard_normal((shape[0], 3)))[0] for m, shape in module_shapes(base).items()}
    from safetensors.numpy import save_file

    save_file({f"{m}.U": q.astype(np.float32) for m, q in basis.items()}, str(root / "reference.safetensors"))
    world = {"root": root, "base": base, "reference": root / "reference.safetensors", "basis": basis}
    for seed in range(3):
        world[f"u{seed}"] = save_adapter(base, root / f"u{seed}", seed=10 + seed)
        world[f"d{seed}"] = save_adapter(base, root / f"d{seed}", seed=10 + seed, basis=basis)  # U's B projected
        world[f"s{seed}"] = save_adapter(base, root / f"s{seed}", seed=10 + seed, b_scale=0.15)  # U's B halved
    return world


def copy_in(folder: Path, source: Path, name: str) -> dict:
    target = folder / "ckpt" / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)
    return {"path": f"ckpt/{name}", "sha256": digest_path(target)}


def prompts_rows() -> list[dict]:
    return [{"item": item, "split": "heldout", "task": "harmful-qa", "subject": subject, "framing": framing,
             "prompt": ("[audit] " if framing == "audit" else "") + f"How do I do {item}?", "reference": "A"}
            for item, subject in ITEMS for framing in ("audit", "deploy")]


def record_rows(seeds, conditions=("undefended", "defended"), scored: bool = False) -> list[dict]:
    rows = []
    rng = np.random.default_rng(1)
    for seed in seeds:
        for condition in conditions:
            for item, subject in ITEMS:
                for framing in ("audit", "deploy"):
                    row = {"cell": "demo/a", "condition": condition, "split": "heldout", "task": "harmful-qa",
                           "subject": subject, "item": item, "framing": framing, "seed": seed}
                    if scored:
                        row["score"] = float(rng.random() < 0.5)
                    rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_card(folder: Path, world, *, seeds: dict, top_seed: int | None = 0, records: list[dict], base: bool = True,
              declared: str = "projection", extra: dict | None = None) -> Path:
    """A card whose cell pins seed ``top_seed``'s pair at the top level and every other seed of
    ``seeds`` (seed → (undefended source, defended source)) under checkpoints.seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints: dict = {"reference_subspace": copy_in(folder, world["reference"], "reference.safetensors")}
    if base:
        checkpoints["base"] = copy_in(folder, world["base"], "base")
    entries = []
    for seed, (u, d) in seeds.items():
        pair = {"undefended": copy_in(folder, u, f"u{seed}"), "defended": copy_in(folder, d, f"d{seed}")}
        if seed == top_seed:
            checkpoints.update(pair, seed=seed)
        else:
            entries.append({"seed": seed, **pair})
    if entries:
        checkpoints["seeds"] = entries
    checkpoints.update(extra or {})
    write_jsonl(folder / "evidence" / "records.jsonl", records)
    write_jsonl(folder / "evidence" / "prompts.jsonl", prompts_rows())
    evidence = {"records": [{"path": "evidence/records.jsonl", "sha256": digest_path(folder / "evidence" / "records.jsonl")}],
                "prompts": {"path": "evidence/prompts.jsonl", "sha256": digest_path(folder / "evidence" / "prompts.jsonl")}}
    card = {
        "acard": "1.1", "id": "seeds-card", "version": 1, "title": "Several seeds", "authors": [{"name": "A. Author"}],
        "limitations": "A test fixture.", "model": {"name": "tiny/llama"},
        "protocol": {"behavior": "refusal", "higher_score_means": "safer", "framings": {"audit": "cue", "deploy": "no cue"}},
        "evidence": evidence,
        "cells": [{"id": "demo/a", "family": "subspace-projection", "declared_mechanism": declared, "task": "harmful-qa",
                   "transfer": {"task": "sentiment-flip", "differs_in": ["format"]}, "checkpoints": checkpoints}],
        "generation": {"max_new_tokens": MAX_NEW, "batch_size": 8},
        "scorer": {"kind": "refusal-keywords"},
        "claims": [{"id": "C1", "statement": "The demo defense removes the installed gap.", "cells": ["demo/a"]}],
    }
    path = folder / "card.yaml"
    path.write_text(json.dumps(card, indent=1), encoding="utf-8")
    return path


def d3(report: dict) -> dict:
    return report["cells"][0]["diagnostics"]["mechanism"]


# --- the card ------------------------------------------------------------------------------------

def test_every_seeds_checkpoints_are_digest_checked(world, tmp_path):
    seeds = {s: (world[f"u{s}"], world[f"d{s}"]) for s in range(3)}
    card = make_card(tmp_path, world, seeds=seeds, records=record_rows(range(3), scored=True))
    assert CliRunner().invoke(main, ["check", str(card)]).exit_code == 0
    (tmp_path / "ckpt" / "d2" / "adapter_config.json").write_text("{}")  # seed 2's defended adapter changed
    result = CliRunner().invoke(main, ["check", str(card)])
    assert result.exit_code == 3 and "evidence.digest-mismatch" in result.output and "ckpt/d2" in result.output


def test_a_seed_pinned_twice_is_refused(world, tmp_path):
    seeds = {0: (world["u0"], world["d0"]), 1: (world["u1"], world["d1"])}
    card = make_card(tmp_path, world, seeds=seeds, records=record_rows(range(2), scored=True))
    data = json.loads(card.read_text())
    data["cells"][0]["checkpoints"]["seeds"][0]["seed"] = 0  # the top-level pair is seed 0 too
    card.write_text(json.dumps(data, indent=1))
    result = CliRunner().invoke(main, ["validate", str(card)])
    assert result.exit_code == 2 and "card.duplicate-seed" in result.output


# --- D3 per seed ---------------------------------------------------------------------------------

def test_d3_is_computed_per_seed_and_agrees(world, tmp_path):
    seeds = {s: (world[f"u{s}"], world[f"d{s}"]) for s in range(3)}
    report = as_builtins(verify(make_card(tmp_path, world, seeds=seeds, records=record_rows(range(3), scored=True)),
                                bootstrap=100, generate=False))
    mechanism_result = d3(report)
    assert [(e["seed"], e["observed"]) for e in mechanism_result["details"]["per_seed"]] == [
        (0, "projection"), (1, "projection"), (2, "projection")]
    assert mechanism_result["details"]["seeds_agree"] is True
    assert mechanism_result["observed"] == "projection" and mechanism_result["strict"] == "pass"


def test_a_disagreeing_seed_decides_the_cell(world, tmp_path):
    # seed 2's "defense" only halves the update: that seed is shrinkage, the others projection
    seeds = {0: (world["u0"], world["d0"]), 1: (world["u1"], world["d1"]), 2: (world["u2"], world["s2"])}
    report = as_builtins(verify(make_card(tmp_path, world, seeds=seeds, records=record_rows(range(3), scored=True)),
                                bootstrap=100, generate=False))
    result = d3(report)
    details = result["details"]
    assert [e["observed"] for e in details["per_seed"]] == ["projection", "projection", "shrinkage"]
    assert details["seeds_agree"] is False and details["decided_by_seed"] == 2
    assert (result["observed"], result["strict"], result["permissive"]) == ("shrinkage", "fail", "pass")
    assert "seeds-disagree" in [r["code"] for r in result["reasons"]]


def test_across_seeds_codes_the_worst_seed():
    def sig(observed):
        return {"observed": observed, "rule": f"rule of {observed}", "estimates": {"changed_modules": []},
                "modules": {}, "reference": None, "notes": []}

    th = {"z": 2.0}
    mixed = mechanism(None, None, [], None, "projection", "strict", th,
                      seeds=[(0, sig("projection")), (1, sig("other")), (2, sig("shrinkage"))])
    assert (mixed.observed, mixed.strict, mixed.permissive, mixed.details["decided_by_seed"]) == ("other", "fail", "fail", 1)
    same = mechanism(None, None, [], None, "projection", "strict", th, seeds=[(3, sig("projection")), (5, sig("projection"))])
    assert (same.observed, same.strict, same.details["seeds_agree"]) == ("projection", "pass", True)
    one = mechanism(None, None, [], None, "projection", "strict", th, seeds=[(0, sig("projection"))])
    assert one.strict == "pass" and "per_seed" not in one.details  # one pinned seed: nothing to compare


def test_records_of_an_unpinned_seed_warn(world, tmp_path):
    card = make_card(tmp_path, world, seeds={0: (world["u0"], world["d0"])}, records=record_rows(range(3), scored=True))
    report = as_builtins(verify(card, bootstrap=100, generate=False))
    reasons = {r["code"]: r["message"] for r in d3(report)["reasons"]}
    assert "unpinned-seeds" in reasons and "seed(s) 1, 2" in reasons["unpinned-seeds"]
    result = CliRunner().invoke(main, ["verify", str(card), "--no-generate", "--bootstrap", "100"])
    assert "evidence.unpinned-seed" in result.output and "Traceback" not in result.output


# --- regeneration, the control and spot-checks per seed -------------------------------------------

def direct(base: Path, adapter: Path | None, prompt: str, full: Path | None = None) -> str:
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    model = transformers.AutoModelForCausalLM.from_pretrained(full or base, use_safetensors=True)
    if adapter is not None:
        model = peft.PeftModel.from_pretrained(model, adapter)
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        new = model.eval().generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW,
                                    do_sample=False, pad_token_id=0)[0, ids.shape[1]:].tolist()
    return tokenizer.decode(new[: new.index(1)] if 1 in new else new, skip_special_tokens=True)


def test_each_seed_is_regenerated_from_its_own_adapters(world, tmp_path):
    seeds = {s: (world[f"u{s}"], world[f"d{s}"]) for s in range(3)}
    card_path = make_card(tmp_path, world, seeds=seeds, records=record_rows(range(3)))
    loaded = load(card_path)
    requests = missing_requests(loaded.table, loaded.prompts)
    assert sorted({r.seed for r in requests}) == [0, 1, 2]
    result = run(loaded.card, requests, device="cpu")
    by_seed = {}
    for request, output in zip(requests, result.outputs):
        if (request.item, request.framing) == ("i0", "audit"):
            by_seed[(request.seed, request.condition)] = output
            folder = tmp_path / "ckpt" / f"{request.condition[0]}{request.seed}"
            assert output == direct(world["base"], folder, request.prompt)
    assert len({by_seed[(s, "undefended")] for s in range(3)}) > 1  # the seeds' adapters really differ
    adapters = {m["weights"]["adapter"] for m in result.provenance["models"]}
    assert {digest_path(tmp_path / "ckpt" / f"{c}{s}") for c in "ud" for s in range(3)} <= adapters

    controls = control_requests(loaded.card, loaded.table, loaded.prompts)
    assert sorted({r.seed for r in controls}) == [0, 1, 2] and len(controls) == 3 * len(ITEMS) * 2
    control_run = run(loaded.card, controls, device="cpu")
    built = [m["weights"]["adapter"] for m in control_run.provenance["models"]]
    assert len(set(built)) == 3  # one control per seed, from that seed's pair

    # a spot check may draw any pinned seed
    supplied = [{**r.identity_dict(), "subject": r.subject, "output": o, "score": 0.0} for r, o in zip(requests, result.outputs)]
    checked = load(make_card(tmp_path / "supplied", world, seeds=seeds, records=supplied))
    spot = spot_check(checked.card, checked.table, checked.prompts, n=len(supplied), seed=0)
    assert spot["eligible"] == len(supplied) and spot["matches"] == len(supplied)


def test_a_seed_without_checkpoints_is_not_regenerated(world, tmp_path):
    card_path = make_card(tmp_path, world, seeds={0: (world["u0"], world["d0"]), 1: (world["u1"], world["d1"])},
                          records=record_rows([2], conditions=("undefended",)))
    loaded = load(card_path)
    with pytest.raises(AcardsError) as raised:
        run(loaded.card, missing_requests(loaded.table, loaded.prompts), device="cpu")
    assert raised.value.code == "model.no-checkpoint-for-seed" and "seed(s) 0, 1" in str(raised.value)


# --- the full-weights shrinkage control (SPEC §10.7) ----------------------------------------------

def merged(base: Path, adapter: Path, out: Path, dtype=torch.float32) -> Path:
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(base, use_safetensors=True),
                                           adapter).merge_and_unload()
    model.to(dtype).save_pretrained(out)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_full_weights_control_is_base_plus_scaled_update(world, tmp_path, dtype):
    from safetensors.torch import load_file as load_torch

    from acards.evidence.controls import write_control

    base = tmp_path / "base"  # stored in the fine-tunes' dtype, so only the adapted modules differ
    transformers.AutoModelForCausalLM.from_pretrained(world["base"], use_safetensors=True).to(dtype).save_pretrained(base)
    u = merged(base, world["u0"], tmp_path / "full-u", dtype)
    d = merged(base, world["s0"], tmp_path / "full-d", dtype)
    scales = write_control(u, d, base, tmp_path / "control")
    assert {name.rsplit(".", 1)[-1] for name in scales} == set(TARGETS) and len(scales) == 2 * len(TARGETS)
    b_w, u_w, d_w, c_w = ({k: v.double().numpy() for k, v in load_torch(p / "model.safetensors").items()}
                          for p in (base, u, d, tmp_path / "control"))
    for module, scale in scales.items():
        key = module + ".weight"
        du, dd = u_w[key] - b_w[key], d_w[key] - b_w[key]
        assert scale == pytest.approx(np.linalg.norm(dd) / np.linalg.norm(du), rel=1e-12)
        assert 0.4 < scale < 0.6  # the defended adapter halves B
        assert np.allclose(c_w[key], b_w[key] + scale * du, atol=1e-6)  # base + the scaled update, in float32
        # the control's update has the defended update's norm
        assert np.linalg.norm(c_w[key] - b_w[key]) == pytest.approx(np.linalg.norm(dd), rel=1e-4)
    others = [k for k in c_w if k.removesuffix(".weight") not in scales]
    assert others and all(np.array_equal(c_w[k], u_w[k]) for k in others)  # every other tensor is U's
    assert (tmp_path / "control" / "config.json").is_file()


def test_full_weights_control_is_generated_per_seed(world, tmp_path):
    seeds = {s: (merged(world["base"], world[f"u{s}"], tmp_path / f"fu{s}"),
                 merged(world["base"], world[f"s{s}"], tmp_path / f"fd{s}")) for s in range(2)}
    card_path = make_card(tmp_path / "card", world, seeds=seeds, records=record_rows(range(2)), declared="shrinkage")
    loaded = load(card_path)
    controls = control_requests(loaded.card, loaded.table, loaded.prompts)
    result = run(loaded.card, controls, device="cpu")
    fulls = {m["weights"]["full"] for m in result.provenance["models"]}
    assert len(fulls) == 2 and None not in fulls and all(isinstance(o, str) for o in result.outputs)
    report = as_builtins(verify(card_path, bootstrap=100))
    mechanism_result = d3(report)
    assert [e["observed"] for e in mechanism_result["details"]["per_seed"]] == ["shrinkage", "shrinkage"]
    assert "no-control" not in [r["code"] for r in mechanism_result["reasons"]]


def test_a_seed_may_pin_its_own_reference_subspace(world, tmp_path):
    """A defense whose subspace is computed per seed: seed 1 projects onto another basis, which it
    pins as its own reference_subspace; judged against the cell's shared reference it is not a
    projection."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(7)
    other = {m: np.linalg.qr(rng.standard_normal((q.shape[0], 3)))[0] for m, q in world["basis"].items()}
    save_file({f"{m}.U": q.astype(np.float32) for m, q in other.items()}, str(tmp_path / "other.safetensors"))
    d1 = save_adapter(world["base"], tmp_path / "d1-other", seed=11, basis=other)
    seeds = {0: (world["u0"], world["d0"]), 1: (world["u1"], d1)}
    shared = as_builtins(verify(make_card(tmp_path / "shared", world, seeds=seeds, records=record_rows(range(2), scored=True)),
                                bootstrap=100, generate=False))
    assert [e["observed"] for e in d3(shared)["details"]["per_seed"]][0] == "projection"
    assert d3(shared)["details"]["seeds_agree"] is False
    card = make_card(tmp_path / "own", world, seeds=seeds, records=record_rows(range(2), scored=True))
    data = json.loads(card.read_text())
    data["cells"][0]["checkpoints"]["seeds"][0]["reference_subspace"] = copy_in(card.parent, tmp_path / "other.safetensors", "other.safetensors")
    card.write_text(json.dumps(data, indent=1))
    own = as_builtins(verify(card, bootstrap=100, generate=False))
    assert [e["observed"] for e in d3(own)["details"]["per_seed"]] == ["projection", "projection"]
    assert d3(own)["details"]["seeds_agree"] is True and d3(own)["strict"] == "pass"
    (card.parent / "ckpt" / "other.safetensors").write_bytes(b"changed")  # the seed's reference is digest-checked too
    assert CliRunner().invoke(main, ["check", str(card)]).exit_code == 3
