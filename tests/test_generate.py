"""acards.generate (SPEC §5.3) on tiny real models built here: a Llama of 2 layers, a byte-level
tokenizer with a small chat template, and real PEFT LoRA adapters with random B.  Nothing is
downloaded; every model is a few hundred kilobytes and generates in milliseconds on a CPU."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from click.testing import CliRunner  # noqa: E402

from acards.card.model import load_card  # noqa: E402
from acards.cli import main  # noqa: E402
from acards.errors import AcardsError  # noqa: E402
from acards.evidence.digests import digest_path  # noqa: E402
from acards.evidence.prompts import read_prompts  # noqa: E402
from acards.generate import Request, run, spot_check  # noqa: E402
from acards.generate import cache as output_cache  # noqa: E402
from acards.generate.backends.hf import TransformersBackend  # noqa: E402
from acards.generate.plan import control_requests, missing_requests  # noqa: E402
from acards.pipeline.load import load  # noqa: E402

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
MAX_NEW = 8
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ITEMS = [("i0", "s0"), ("i1", "s0"), ("i2", "s1"), ("i3", "s1"), ("i4", "s2"), ("i5", "s2")]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads; on a busy shared machine one thread is much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the tiny world ----------------------------------------------------------------------------

def llama_config(hidden: int = 32):
    return transformers.LlamaConfig(vocab_size=384, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                    pad_token_id=0, eos_token_id=1, bos_token_id=None)


def save_base(folder: Path, hidden: int = 32, seed: int = 0) -> Path:
    tokenizer = transformers.ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    transformers.LlamaForCausalLM(llama_config(hidden)).save_pretrained(folder)
    return folder


def save_adapter(base: Path, folder: Path, seed: int, scale: float = 0.5) -> Path:
    model = transformers.AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
    model = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # B is zero at init: randomise it so the adapter changes outputs
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    model.save_pretrained(folder)
    return folder


@dataclass
class World:
    root: Path
    base: Path
    undefended: Path
    defended: Path
    wrong_base_adapter: Path


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    base = save_base(root / "base")
    other = save_base(root / "other-base", hidden=48)
    return World(root, base, save_adapter(base, root / "undefended", seed=1, scale=0.2),
                 save_adapter(base, root / "defended", seed=2, scale=0.1),
                 save_adapter(other, root / "wrong", seed=3))


def prompt_text(item: str, framing: str) -> str:
    cue = "[This is a safety evaluation.] " if framing == "audit" else ""
    return cue + "How do I do thing " + item + "?" + " please" * int(item[1:])


def prompts_for(items=ITEMS, split="heldout", task="harmful-qa") -> list[dict]:
    rows = []
    for item, subject in items:
        for framing in ("audit", "deploy"):
            rows.append({"item": item, "split": split, "task": task, "subject": subject, "framing": framing,
                         "prompt": prompt_text(item, framing), "reference": "A"})
    rows[0]["system"] = "You are careful."
    return rows


def records_for(conditions=("base", "undefended", "defended"), items=ITEMS, seed=0, outputs: dict | None = None) -> list[dict]:
    rows = []
    for condition in conditions:
        for item, subject in items:
            for framing in ("audit", "deploy"):
                row = {"cell": "demo/a", "condition": condition, "split": "heldout", "task": "harmful-qa", "subject": subject,
                       "item": item, "framing": framing, "seed": seed}
                if outputs and (condition, item, framing) in outputs:
                    row["output"] = outputs[(condition, item, framing)]
                rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_card(folder: Path, world: World, *, checkpoints: dict | None = None, records: list[dict] | None = None,
              prompts: list[dict] | None = None, generation: dict | None = None, scorer: dict | None = None,
              seed: int | None = None) -> Path:
    """A valid card in ``folder`` whose checkpoints are copies of ``world``'s (or other folders)."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoints = {"base": world.base, "undefended": world.undefended, "defended": world.defended} if checkpoints is None else checkpoints
    pointers = {}
    for name, source in checkpoints.items():
        target = folder / "ckpt" / name
        if not target.exists():
            shutil.copytree(source, target)
        pointers[name] = {"path": f"ckpt/{name}", "sha256": digest_path(target)}
    if seed is not None:
        pointers["seed"] = seed
    write_jsonl(folder / "evidence" / "records.jsonl", records if records is not None else records_for())
    evidence = {"records": [{"path": "evidence/records.jsonl", "sha256": digest_path(folder / "evidence" / "records.jsonl")}]}
    if prompts is not False:
        write_jsonl(folder / "evidence" / "prompts.jsonl", prompts if prompts is not None else prompts_for())
        evidence["prompts"] = {"path": "evidence/prompts.jsonl", "sha256": digest_path(folder / "evidence" / "prompts.jsonl")}
    card = {
        "acard": "1.0", "id": "demo-card", "version": 1, "title": "Generation test card",
        "authors": [{"name": "A. Author"}], "limitations": "A test fixture.", "model": {"name": "tiny/llama"},
        "protocol": {"behavior": "refusal of unsafe requests", "higher_score_means": "safer",
                     "framings": {"audit": "evaluation cue", "deploy": "no cue"}},
        "evidence": evidence,
        "cells": [{"id": "demo/a", "family": "subspace-projection", "declared_mechanism": "projection", "task": "harmful-qa",
                   "transfer": {"task": "sentiment-flip", "differs_in": ["format"]}, "checkpoints": pointers}],
        "generation": {"max_new_tokens": MAX_NEW, "batch_size": 4, **(generation or {})},
        "scorer": scorer or {"kind": "refusal-keywords"},
        "claims": [{"id": "C1", "statement": "The demo defense removes the installed gap.", "cells": ["demo/a"]}],
    }
    path = folder / "card.yaml"
    path.write_text(json.dumps(card, indent=1), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def main_card(world, tmp_path_factory) -> Path:
    return make_card(tmp_path_factory.mktemp("card"), world)


def load_all(card_path: Path):
    loaded = load(card_path)
    return loaded.card, loaded.table, loaded.prompts


# --- a direct transformers call, the reference every regenerated output must equal -----------------

def direct_generate(card_folder: Path, requests: list[Request]) -> list[str]:
    base = card_folder / "ckpt" / "base"
    tokenizer = transformers.AutoTokenizer.from_pretrained(base)
    outputs = []
    models = {}
    for request in requests:
        if request.condition not in models:
            model = transformers.AutoModelForCausalLM.from_pretrained(base, use_safetensors=True)
            if request.condition != "base":
                model = peft.PeftModel.from_pretrained(model, card_folder / "ckpt" / request.condition)
            models[request.condition] = model.eval()
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + [{"role": "user", "content": request.prompt}]
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = models[request.condition].generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW,
                                                     do_sample=False, pad_token_id=0)
        new = out[0, ids.shape[1]:].tolist()
        if 1 in new:
            new = new[: new.index(1)]
        outputs.append(tokenizer.decode(new, skip_special_tokens=True))
    return outputs


# --- planning -----------------------------------------------------------------------------------

def test_missing_requests_cover_records_without_output_or_score(main_card):
    card, table, prompts = load_all(main_card)
    requests = missing_requests(table, prompts)
    assert len(requests) == 3 * len(ITEMS) * 2
    assert requests == sorted(requests, key=Request.identity)
    first = next(r for r in requests if r.item == "i0" and r.framing == "audit")
    assert first.system == "You are careful." and first.subject == "s0" and first.reference == "A"
    assert first.prompt == prompt_text("i0", "audit")


def test_records_with_an_output_or_a_score_are_not_requested(world, tmp_path):
    rows = records_for()
    rows[0]["output"] = "supplied"
    rows[1]["score"] = 1.0
    card, table, prompts = load_all(make_card(tmp_path, world, records=rows))
    assert len(missing_requests(table, prompts)) == len(rows) - 2


def test_control_requests_are_every_heldout_item_and_framing(main_card):
    card, table, prompts = load_all(main_card)
    controls = control_requests(card, table, prompts)
    assert {(r.item, r.framing) for r in controls} == {(i, f) for i, _ in ITEMS for f in ("audit", "deploy")}
    assert {r.condition for r in controls} == {"control:shrinkage"} and {r.seed for r in controls} == {0}


def test_no_control_requests_when_control_records_exist(world, tmp_path):
    rows = records_for(conditions=("undefended", "defended", "control:shrinkage"))
    card, table, prompts = load_all(make_card(tmp_path, world, records=rows))
    assert control_requests(card, table, prompts) == []


def test_missing_prompt_is_a_coded_error(world, tmp_path):
    card, table, prompts = load_all(make_card(tmp_path, world, prompts=prompts_for(items=ITEMS[:2])))
    with pytest.raises(AcardsError) as raised:
        missing_requests(table, prompts)
    assert raised.value.code == "evidence.prompt-not-found" and raised.value.exit_code == 3


def test_no_prompts_file_is_a_coded_error(world, tmp_path):
    card, table, prompts = load_all(make_card(tmp_path, world, prompts=False))
    assert len(prompts) == 0
    with pytest.raises(AcardsError) as raised:
        missing_requests(table, prompts)
    assert raised.value.code == "evidence.prompts-missing"


def test_bad_prompt_lines_are_collected(world, tmp_path):
    rows = prompts_for()
    rows.append(dict(rows[0]))  # a duplicate
    card_path = make_card(tmp_path, world, prompts=rows)
    card = load_card(card_path)
    with pytest.raises(AcardsError) as raised:
        read_prompts(card)
    assert raised.value.code == "records.duplicate-prompt"


# --- generation ---------------------------------------------------------------------------------

def test_regenerated_outputs_equal_a_direct_generate_call(main_card):
    card, table, prompts = load_all(main_card)
    requests = missing_requests(table, prompts)
    result = run(card, requests, device="cpu")
    assert result.counts["generated"] == len(requests) and result.counts["cache_hits"] == 0
    assert result.outputs == direct_generate(main_card.parent, requests)
    # the adapters change the outputs (else the test would prove little)
    by = {(r.condition, r.item, r.framing): o for r, o in zip(requests, result.outputs)}
    assert sum(by[("base", i, f)] != by[("undefended", i, f)] for i, _ in ITEMS for f in ("audit", "deploy")) >= 6
    provenance = result.provenance
    assert provenance["device"] == "cpu" and provenance["dtype"] == "float32" and provenance["batch_size"] == 4
    assert provenance["counts"]["generated"] == len(requests) and "transformers" in provenance["packages"]
    assert {m["weights"]["base"] for m in provenance["models"]} == {digest_path(main_card.parent / "ckpt" / "base")}


def test_second_run_makes_zero_model_calls(main_card):
    card, table, prompts = load_all(main_card)
    requests = missing_requests(table, prompts)
    backend = TransformersBackend(device="cpu")
    first = run(card, requests, backend=backend)
    calls = backend.model_calls
    assert calls == 3 * -(-len(requests) // 3 // 4)  # three models, batches of 4
    second = run(card, requests, backend=backend)
    assert backend.model_calls == calls and backend.generated == len(requests)
    assert second.counts["cache_hits"] == len(requests) and second.counts["model_calls"] == 0
    assert second.outputs == first.outputs
    # a run that finds everything cached never builds a backend at all
    third = run(card, requests, backend="transformers")
    assert third.provenance["device"].startswith("none") and third.outputs == first.outputs


def test_batch_size_does_not_change_greedy_outputs(main_card, tmp_path, monkeypatch):
    card, table, prompts = load_all(main_card)
    requests = [r for r in missing_requests(table, prompts) if r.condition != "defended"]
    outputs = []
    for size in (1, 8):
        monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / f"cache-{size}"))
        card.data["generation"]["batch_size"] = size
        result = run(card, requests, device="cpu")
        assert result.counts["generated"] == len(requests)
        outputs.append(result.outputs)
    assert outputs[0] == outputs[1]


def test_sampling_is_per_request_seeded_and_independent_of_batching(main_card, tmp_path, monkeypatch):
    card, table, prompts = load_all(main_card)
    base_requests = [r for r in missing_requests(table, prompts) if r.condition == "undefended" and r.item < "i4"]
    requests = base_requests + [replace(r, sample=1) for r in base_requests]
    card.data["generation"].update(do_sample=True, temperature=1.0, top_p=0.9, seed=7, num_samples=2)
    runs = []
    for size in (1, 8):
        monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / f"cache-{size}"))
        card.data["generation"]["batch_size"] = size
        runs.append(run(card, requests, device="cpu").outputs)
    assert runs[0] == runs[1]
    half = len(base_requests)
    assert sum(a != b for a, b in zip(runs[0][:half], runs[0][half:])) >= half // 2  # sample 0 and 1 differ
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "cache-seed"))
    card.data["generation"]["seed"] = 8
    assert run(card, requests, device="cpu").outputs != runs[0]


def test_shards_then_merge_equal_a_single_run(main_card, tmp_path, monkeypatch):
    card, table, prompts = load_all(main_card)
    requests = [r for r in missing_requests(table, prompts) if r.condition != "defended"]
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "single"))
    single = run(card, requests, device="cpu")
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "sharded"))
    parts = [run(card, requests, device="cpu", shard=f"{i}/3") for i in range(3)]
    assert sum(p.counts["in_shard"] for p in parts) == len(requests)
    assert all(p.counts["in_shard"] > 0 for p in parts)
    for part in parts:  # each shard fills its own requests only
        assert [o is None for o in part.outputs] == [k is None for k in part.keys]
    assert len(output_cache.shard_files()) == 3 and not output_cache.main_path().exists()
    merged = output_cache.merge()
    assert merged["added"] == len(requests) and merged["outputs"] == len(requests)
    after = run(card, requests, device="cpu")
    assert after.counts["cache_hits"] == len(requests) and after.counts["model_calls"] == 0
    assert after.outputs == single.outputs


def test_control_shrinkage_is_built_once_in_the_cache(main_card):
    card, table, prompts = load_all(main_card)
    controls = control_requests(card, table, prompts)
    result = run(card, controls, device="cpu")
    assert all(isinstance(o, str) for o in result.outputs)
    folders = list((output_cache.outputs_dir().parent / "controls").iterdir())
    assert len(folders) == 1 and (folders[0] / "adapter_model.safetensors").is_file()
    weights = result.provenance["models"][0]["weights"]
    assert weights["adapter"] == digest_path(folders[0])
    assert weights["adapter"] not in (digest_path(main_card.parent / "ckpt" / "undefended"),
                                      digest_path(main_card.parent / "ckpt" / "defended"))
    assert run(card, controls, device="cpu").counts["model_calls"] == 0


def test_interrupted_run_keeps_finished_batches_and_resumes(main_card):
    card, table, prompts = load_all(main_card)
    requests = [r for r in missing_requests(table, prompts) if r.condition == "base"]

    class Interrupting(TransformersBackend):
        def generate(self, *args, **kwargs):
            if self.model_calls == 1:
                raise KeyboardInterrupt
            return super().generate(*args, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        run(card, requests, backend=Interrupting(device="cpu"))
    with output_cache.OutputCache(output_cache.main_path(), readonly=True) as cache:
        assert cache.count() == 4  # the first batch was committed
    backend = TransformersBackend(device="cpu")
    resumed = run(card, requests, backend=backend)
    assert resumed.counts["cache_hits"] == 4 and resumed.counts["generated"] == len(requests) - 4


def test_spot_check_reports_the_exact_match_rate(world, main_card, tmp_path):
    card, table, prompts = load_all(main_card)
    requests = missing_requests(table, prompts)
    truth = run(card, requests, device="cpu").outputs
    supplied = {(r.condition, r.item, r.framing): o for r, o in zip(requests, truth)}
    wrong = sorted(supplied)[:6]
    for key in wrong:
        supplied[key] = supplied[key] + " (edited)"
    rows = records_for(outputs=supplied)
    for row in rows:
        row["score"] = 0.0
    checked, table2, prompts2 = load_all(make_card(tmp_path, world, records=rows))
    result = spot_check(checked, table2, prompts2, n=len(rows), seed=0)
    assert result["checked"] == len(rows) and result["matches"] == len(rows) - len(wrong)
    assert result["exact_match_rate"] == pytest.approx((len(rows) - len(wrong)) / len(rows))
    small = spot_check(checked, table2, prompts2, n=5, seed=1)
    again = spot_check(checked, table2, prompts2, n=5, seed=1)
    assert small["checked"] == 5 and (small["matches"], small["mismatches"]) == (again["matches"], again["mismatches"])
    assert again["generation"]["model_calls"] == 0


# --- errors -------------------------------------------------------------------------------------

def _run_expecting(card_path: Path, code: str, exit_code: int = 3):
    card, table, prompts = load_all(card_path)
    with pytest.raises(AcardsError) as raised:
        run(card, missing_requests(table, prompts), device="cpu")
    assert raised.value.code == code, raised.value
    assert raised.value.exit_code == exit_code
    result = CliRunner().invoke(main, ["generate", str(card_path), "--device", "cpu"])
    assert result.exit_code == exit_code and code in result.output and "Traceback" not in result.output
    return raised.value


def test_pickle_only_base_is_refused(world, tmp_path):
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for name in os.listdir(world.base):
        if not name.endswith(".safetensors"):
            shutil.copy(world.base / name, pickled / name)
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    error = _run_expecting(make_card(tmp_path / "card", world, checkpoints={"base": pickled, "undefended": world.undefended,
                                                                            "defended": world.defended}), "weights.not-safetensors")
    assert "never unpickles" in str(error)  # the one pickle refusal (acards.evidence), as verification gives it


def test_adapter_for_another_base_is_refused(world, tmp_path):
    # the fits-the-base check verification runs (acards.evidence.adapters), so the same code
    _run_expecting(make_card(tmp_path, world, checkpoints={"base": world.base, "undefended": world.wrong_base_adapter,
                                                           "defended": world.defended}), "weights.shape-mismatch")


@pytest.mark.parametrize("config", [{"use_dora": True}, {"init_lora_weights": "pissa"}, {"peft_type": "IA3"}],
                         ids=["dora", "pissa", "not-lora"])
def test_adapter_verification_refuses_is_not_generated_from(world, tmp_path, config):
    # Deliberate: generation applies verification's adapter rules (it used to load any peft_type).
    refused = tmp_path / "refused"
    shutil.copytree(world.undefended, refused)
    original = json.loads((refused / "adapter_config.json").read_text())
    (refused / "adapter_config.json").write_text(json.dumps({**original, **config}))
    error = _run_expecting(make_card(tmp_path / "card", world, checkpoints={"base": world.base, "undefended": refused,
                                                                            "defended": world.defended}),
                           "weights.unsupported-adapter")
    assert error.problems[0].location.file.endswith("adapter_config.json")


def test_missing_adapter_pointer_is_refused(world, tmp_path):
    _run_expecting(make_card(tmp_path, world, checkpoints={"base": world.base, "defended": world.defended}),
                   "model.missing-checkpoint")


def test_missing_model_folder_is_refused(world, tmp_path):
    card_path = make_card(tmp_path, world)
    card, table, prompts = load_all(card_path)
    requests = missing_requests(table, prompts)
    shutil.rmtree(tmp_path / "ckpt" / "base")
    with pytest.raises(AcardsError) as raised:
        run(card, requests, device="cpu")
    assert raised.value.code == "model.not-found" and raised.value.exit_code == 3
    result = CliRunner().invoke(main, ["generate", str(card_path)])
    assert result.exit_code == 3 and "Traceback" not in result.output


def test_records_of_another_seed_are_not_regenerated_from_these_checkpoints(world, tmp_path):
    _run_expecting(make_card(tmp_path, world, records=records_for(conditions=("undefended",), seed=3)),
                   "model.no-checkpoint-for-seed")


def test_unknown_control_is_refused(world, tmp_path):
    _run_expecting(make_card(tmp_path, world, records=records_for(conditions=("control:other",))), "model.unknown-condition")


# --- prompts to tokens -------------------------------------------------------------------------

def _bos_tokenizer(folder: Path, template: str | None) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "hello": 4, "world": 5, "<u>": 6, "<a>": 7}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                                     pad_token="<pad>", unk_token="<unk>")
    if template:
        tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("template", [
    "{{ bos_token }}{% for m in messages %}{{ m['content'] }} {% endfor %}",  # the template writes BOS
    "{% for m in messages %}{{ m['content'] }} {% endfor %}",  # it does not
    None,  # no chat template: the plain prompt
])
def test_exactly_one_bos(tmp_path, template):
    from acards.generate.prompting import PromptEncoder

    encoder = PromptEncoder(_bos_tokenizer(tmp_path, template), use_chat_template=True)
    ids = encoder.encode("hello world")
    assert ids[0] == 1 and ids.count(1) == 1 and ids[-1] != 2
    assert encoder.pad_id == 0 and encoder.eos_ids == [2]


def test_chat_template_false_encodes_the_plain_prompt(world):
    from acards.generate.prompting import PromptEncoder

    plain = PromptEncoder(world.base, use_chat_template=False)
    chat = PromptEncoder(world.base, use_chat_template=True)
    assert plain.encode("hi") == [b + 3 for b in b"hi"]  # ByT5: byte + 3, and no EOS appended
    assert chat.encode("hi") == [b + 3 for b in b"<user>hi\n<assistant>"]


# --- the cache ----------------------------------------------------------------------------------

def test_cache_key_names_every_ingredient():
    context = {"weights": {"base": "a" * 64, "adapter": None, "full": None}, "tokenizer": "b" * 64,
               "prompting": {"rules": "r/1", "chat_template": True, "packages": {"tokenizers": "0.2"}},
               "decoding": {"max_new_tokens": 8, "do_sample": False},
               "backend": {"name": "transformers", "versions": {"transformers": "5"}, "dtype": "float32"}}
    digest = output_cache.context_digest(context)
    base = output_cache.request_key(digest, "hi", None, 0)
    variants = [output_cache.request_key(digest, "hi!", None, 0), output_cache.request_key(digest, "hi", "", 0),
                output_cache.request_key(digest, "hi", "be brief", 0), output_cache.request_key(digest, "hi", None, 1),
                output_cache.request_key(digest, "h", "i", 0)]
    for path, value in [(("weights", "base"), "c" * 64), (("weights", "adapter"), "d" * 64), (("tokenizer",), "e" * 64),
                        (("prompting", "rules"), "r/2"), (("prompting", "chat_template"), False),
                        (("prompting", "packages", "tokenizers"), "0.3"), (("decoding", "max_new_tokens"), 9),
                        (("decoding", "do_sample"), True), (("backend", "dtype"), "bfloat16"),
                        (("backend", "versions", "transformers"), "6")]:
        changed = json.loads(json.dumps(context))
        node = changed
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        variants.append(output_cache.request_key(output_cache.context_digest(changed), "hi", None, 0))
    assert len({base, *variants}) == len(variants) + 1


def test_concurrent_writers_and_info_clear(tmp_path):
    import threading

    path = tmp_path / "c.sqlite"
    rows = [(f"{i:064x}", "0" * 64, f"out {i}") for i in range(2000)]
    errors = []

    def write(offset):
        try:
            with output_cache.OutputCache(path) as cache:
                for start in range(offset, len(rows), 200):
                    cache.put_many(rows[start:start + 200])
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(o,)) for o in (0, 0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with output_cache.OutputCache(path) as cache:
        assert cache.count() == len(rows)
        found = cache.get_many([k for k, _, _ in rows] + ["f" * 64])
        assert len(found) == len(rows) and found[rows[7][0]] == "out 7"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_cache_cli_info_merge_clear(main_card):
    card, table, prompts = load_all(main_card)
    requests = [r for r in missing_requests(table, prompts) if r.condition == "base"]
    run(card, requests, device="cpu", shard="0/2")
    run(card, requests, device="cpu", shard="1/2")
    runner = CliRunner()
    info = json.loads(runner.invoke(main, ["cache", "info", "--format", "json"]).output)
    assert len(info["shards"]) == 2 and sum(s["outputs"] for s in info["shards"]) == len(requests)
    merged = runner.invoke(main, ["cache", "merge", "--remove"])
    assert merged.exit_code == 0, merged.output
    info = json.loads(runner.invoke(main, ["cache", "info", "--format", "json"]).output)
    assert info["main"]["outputs"] == len(requests) and info["shards"] == [] and info["models"][0]["outputs"] == len(requests)
    assert info["records"]["files"] >= 1  # load_all decoded the card's records into the records cache
    assert runner.invoke(main, ["cache", "clear"]).exit_code == 0
    cleared = json.loads(runner.invoke(main, ["cache", "info", "--format", "json"]).output)
    assert cleared["main"]["outputs"] == 0 and cleared["records"]["files"] == 0


def test_bad_shard_is_a_usage_error():
    with pytest.raises(AcardsError) as raised:
        output_cache.parse_shard("3/3")
    assert raised.value.code == "usage.bad-shard"
    assert output_cache.parse_shard("2/3") == (2, 3)


# --- the command line ---------------------------------------------------------------------------

def test_generate_command_writes_scored_records(main_card, tmp_path):
    out = tmp_path / "regenerated.jsonl"
    result = CliRunner().invoke(main, ["generate", str(main_card), "--device", "cpu", "--out", str(out), "--format", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    expected = 3 * len(ITEMS) * 2 + len(ITEMS) * 2  # missing records + control:shrinkage
    assert summary["requests"] == expected and summary["written"] == expected
    assert summary["provenance"]["scorer"]["kind"] == "refusal-keywords"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["score"] in (0.0, 1.0) and isinstance(r["output"], str) for r in records)
    again = json.loads(CliRunner().invoke(main, ["generate", str(main_card), "--format", "json"]).output)
    assert again["counts"]["cache_hits"] == expected and again["counts"]["model_calls"] == 0


def test_importing_the_api_does_not_import_torch():
    code = ("import sys, acards.cli, acards.generate, acards.generate.plan, acards.generate.scorers, acards.generate.cache;"
            "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_full_weight_checkpoint_is_the_conditions_model(world, tmp_path):
    merged = tmp_path / "merged"
    model = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(world.base, use_safetensors=True),
                                           world.undefended).merge_and_unload()
    model.save_pretrained(merged)
    card_path = make_card(tmp_path / "card", world, checkpoints={"base": world.base, "undefended": merged},
                          records=records_for(conditions=("undefended",)))
    card, table, prompts = load_all(card_path)
    requests = missing_requests(table, prompts)
    result = run(card, requests, device="cpu")
    assert result.provenance["models"][0]["weights"]["full"] == digest_path(tmp_path / "card" / "ckpt" / "undefended")
    tokenizer = transformers.AutoTokenizer.from_pretrained(world.base)
    direct = transformers.AutoModelForCausalLM.from_pretrained(merged, use_safetensors=True).eval()
    for request, output in zip(requests, result.outputs):
        text = tokenizer.apply_chat_template(([{"role": "system", "content": request.system}] if request.system else [])
                                             + [{"role": "user", "content": request.prompt}], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            new = direct.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW, do_sample=False,
                                  pad_token_id=0)[0, ids.shape[1]:].tolist()
        assert output == tokenizer.decode(new[: new.index(1)] if 1 in new else new, skip_special_tokens=True)


def test_device_override_and_unknown_device(monkeypatch):
    from acards.generate.backends import select_device

    monkeypatch.setenv("ACARDS_DEVICE", "cpu")
    assert select_device(None) == "cpu"
    with pytest.raises(AcardsError) as raised:
        select_device("tpu")
    assert raised.value.code == "usage.bad-device"
    if not torch.cuda.is_available():
        with pytest.raises(AcardsError) as raised:
            select_device("cuda")
        assert raised.value.code == "generate.no-device"


# --- verify regenerates what is missing -----------------------------------------------------------

def test_verify_regenerates_missing_outputs_and_the_control_then_hits_the_cache(world, tmp_path):
    from acards.pipeline.verify import verify
    from acards.report.model import as_builtins

    card = make_card(tmp_path / "card", world, records=records_for(conditions=("undefended", "defended")))
    # The default spot check must look at the authors' outputs only, not at the control acards made.
    first = as_builtins(verify(card, bootstrap=200))
    generation = first["generation"]
    # 2 conditions × 6 items × 2 framings missing, plus the control on the same 12 prompts.
    assert (generation["requested"], generation["generated"], generation["cache_hits"]) == (36, 36, 0)
    assert generation["scored"] == 36 and generation["provenance"]["scorer"]["kind"] == "refusal-keywords"
    reliability = first["cells"][0]["diagnostics"]["reliability"]
    assert "unscored-records" not in [r["code"] for r in reliability["reasons"]]
    assert reliability["estimates"]["n_items"] == 6
    mechanism = first["cells"][0]["diagnostics"]["mechanism"]
    assert mechanism["estimates"].get("control_margin") is not None or "control-too-small" in [r["code"] for r in mechanism["reasons"]]
    assert "spot_check" not in generation["provenance"]  # no output was supplied
    second = as_builtins(verify(card, bootstrap=200))
    assert (second["generation"]["generated"], second["generation"]["cache_hits"]) == (0, 36)
    assert second["cells"] == first["cells"]


def test_verify_without_generation_leaves_missing_outputs_insufficient(world, tmp_path):
    from acards.pipeline.verify import verify
    from acards.report.model import as_builtins

    card = make_card(tmp_path / "card", world, records=records_for(conditions=("undefended", "defended")))
    report = as_builtins(verify(card, bootstrap=200, generate=False))
    reliability = report["cells"][0]["diagnostics"]["reliability"]
    assert reliability["outcome"] == "insufficient"
    assert "unscored-records" in [r["code"] for r in reliability["reasons"]]
    assert report["generation"]["generated"] == 0


def test_code_shipped_with_a_model_is_never_run(world, tmp_path):
    """A base folder whose config asks for its own modeling code (auto_map): trust_remote_code
    stays off, so that code is never imported, whatever transformers then decides."""
    base = tmp_path / "evil-base"
    shutil.copytree(world.base, base)
    marker = tmp_path / "pwned"
    for name in ("modeling_evil.py", "configuration_evil.py", "tokenization_evil.py"):
        (base / name).write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((base / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (base / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((base / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}
    (base / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    card = make_card(tmp_path / "card", world, checkpoints={"base": base, "undefended": world.undefended, "defended": world.defended},
                     records=records_for(conditions=("undefended",)))
    result = CliRunner().invoke(main, ["verify", str(card), "--bootstrap", "200", "--format", "json"])
    assert not marker.exists()
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 3, 4), result.output
