"""The model a regeneration loads is the bytes whose digest was checked.

`acards verify` and `acards generate` check each checkpoint's digest, then load the model, its
adapters and its tokenizer.  A file swapped in between must never be what generates: the run either
uses the pinned bytes or is refused (evidence.digest-mismatch, exit 3).  Each case copies the tiny
world of tests/test_generate.py (a real Llama, ByT5 tokenizer, PEFT adapters) into a card, swaps one
file right after the digest check or right before the backend loads the model, and compares the
outputs with those of the untouched card.  ``test_each_swap_changes_the_outputs`` shows the swapped
bytes would change the outputs, so outputs equal to the genuine ones mean the pinned bytes were used.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
pytest.importorskip("torch", reason="regenerating outputs needs torch (acards[generate])")
pytest.importorskip("transformers", reason="regenerating outputs needs transformers (acards[generate])")
pytest.importorskip("peft", reason="regenerating outputs needs peft (acards[generate])")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from click.testing import CliRunner  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from test_generate import ITEMS, _one_torch_thread, load_all, make_card, records_for, world  # noqa: E402,F401  (fixtures)

from acards.cli import main  # noqa: E402
from acards.errors import AcardsError  # noqa: E402
from acards.generate import run  # noqa: E402
from acards.generate.plan import control_requests, missing_requests  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
CONDITIONS = ("base", "undefended")
# (checkpoint, file) -> how the file is replaced: same names and shapes, other values
SWAPS = {
    "base-weights": ("base", "model.safetensors"),
    "base-config": ("base", "config.json"),
    "adapter-weights": ("undefended", "adapter_model.safetensors"),
}


def swap(path: Path) -> None:
    """Replace ``path`` with a valid file of other values (tensors halved; a config with another RoPE base)."""
    if path.suffix == ".safetensors":
        save_file({key: (value * 0.5).astype(value.dtype) for key, value in load_file(str(path)).items()}, str(path))
    else:
        config = json.loads(path.read_text())
        config["rope_theta"] = 3.0
        config["rms_norm_eps"] = 0.5
        path.write_text(json.dumps(config))


def card_in(folder: Path, world) -> Path:  # noqa: F811
    return make_card(folder, world, records=records_for(conditions=CONDITIONS, items=ITEMS[:2]), prompts=None)


def outputs_of(card_path: Path) -> list[str]:
    card, table, prompts = load_all(card_path)
    return run(card, missing_requests(table, prompts), device="cpu").outputs


@pytest.fixture(scope="module")
def genuine(world, tmp_path_factory) -> list[str]:  # noqa: F811
    root = tmp_path_factory.mktemp("genuine")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACARDS_CACHE_DIR", str(root / "cache"))
        return outputs_of(card_in(root / "card", world))


@pytest.mark.parametrize("name", sorted(SWAPS))
def test_each_swap_changes_the_outputs(world, genuine, tmp_path, name):  # noqa: F811
    """A card written for the swapped bytes generates other outputs: the swaps below are visible."""
    checkpoint, file = SWAPS[name]
    folder = tmp_path / "swapped"
    shutil.copytree(getattr(world, checkpoint), folder)
    swap(folder / file)
    card_path = make_card(tmp_path / "card", world, records=records_for(conditions=CONDITIONS, items=ITEMS[:2]),
                          checkpoints={"base": world.base, "undefended": world.undefended, checkpoint: folder})
    assert outputs_of(card_path) != genuine


def swap_after_the_digest_check(monkeypatch, target: Path) -> None:
    """Swap ``target`` once, right after the digest of its checkpoint folder was checked."""
    from acards.evidence import digests

    real = digests.check_digest
    done = []

    def check_then_swap(path, *args, **kwargs):
        value = real(path, *args, **kwargs)
        if not done and Path(path) == target.parent:
            swap(target)
            done.append(target)
        return value

    monkeypatch.setattr(digests, "check_digest", check_then_swap)


def swap_before_loading(monkeypatch, target: Path) -> None:
    """Swap ``target`` once, when the backend is first asked for a model (tokenizing is over)."""
    from acards.generate.backends.hf import TransformersBackend

    real = TransformersBackend._model_for
    done = []

    def swap_then_load(self, spec):
        if not done:
            swap(target)
            done.append(target)
        return real(self, spec)

    monkeypatch.setattr(TransformersBackend, "_model_for", swap_then_load)


def refused_or_genuine(generate, genuine: list[str]) -> str:
    """Run ``generate()``: refused with the mismatch code, or outputs equal to the genuine ones."""
    try:
        outputs = generate()
    except AcardsError as error:
        assert [p.code for p in error.problems] == ["evidence.digest-mismatch"], error.problems
        return "refused"
    assert outputs == genuine, "the run generated from bytes that are not the pinned ones"
    return "pinned bytes used"


@pytest.mark.parametrize("moment", ["after-check", "before-load"])
@pytest.mark.parametrize("name", sorted(SWAPS))
def test_a_checkpoint_file_swapped_after_its_digest_was_checked_is_never_generated_from(  # noqa: F811
        world, genuine, tmp_path, monkeypatch, moment, name):  # noqa: F811
    card_path = card_in(tmp_path / "card", world)
    checkpoint, file = SWAPS[name]
    target = card_path.parent / "ckpt" / checkpoint / file
    (swap_after_the_digest_check if moment == "after-check" else swap_before_loading)(monkeypatch, target)
    outcome = refused_or_genuine(lambda: outputs_of(card_path), genuine)
    assert outcome == "refused"  # the copy acards loads from is hashed, and the swap shows in its digest


def test_a_control_adapter_swapped_after_its_seal_was_written_is_never_generated_from(world, tmp_path, monkeypatch):  # noqa: F811
    """The cached control:shrinkage adapter, replaced after acards wrote it and sealed its digest."""
    from acards.generate import models

    card_path = make_card(tmp_path / "card", world, records=records_for(conditions=("undefended", "defended"), items=ITEMS[:2]))
    card, table, prompts = load_all(card_path)
    requests = control_requests(card, table, prompts)
    with monkeypatch.context() as patch:
        patch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "genuine-cache"))
        genuine = run(card, requests, device="cpu").outputs
    real = models._write_seal

    def seal_then_swap(seal, key, name, value):
        real(seal, key, name, value)
        swap(seal.parent.parent / "controls" / name / "adapter_model.safetensors")

    monkeypatch.setattr(models, "_write_seal", seal_then_swap)
    assert refused_or_genuine(lambda: run(card, requests, device="cpu").outputs, genuine) == "refused"


def test_verify_refuses_a_base_model_swapped_before_loading(world, tmp_path, monkeypatch):  # noqa: F811
    """Through the command line: exit 3, one coded problem, no traceback, no report."""
    card_path = card_in(tmp_path / "card", world)
    swap_before_loading(monkeypatch, card_path.parent / "ckpt" / "base" / "model.safetensors")
    result = CliRunner().invoke(main, ["verify", str(card_path), "--bootstrap", "200", "--format", "json"])
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    report = json.loads(result.stdout[result.stdout.index("{"):])
    assert {p["code"] for p in report["problems"]} == {"evidence.digest-mismatch"}, report["problems"]
    assert "cells" not in report


def test_a_classifier_swapped_after_its_digest_was_checked_never_scores(tmp_path, monkeypatch):
    """The classifier scorer's folder, swapped right after score() checked its digest: refused."""
    import torch
    import transformers

    from acards.evidence import digests
    from acards.evidence.digests import digest_path
    from acards.generate.scorers import score

    folder = tmp_path / "card" / "clf"
    config = transformers.LlamaConfig(vocab_size=384, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, num_labels=2,
                                      id2label={0: "comply", 1: "refusal"}, label2id={"comply": 0, "refusal": 1},
                                      pad_token_id=0, eos_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    transformers.LlamaForSequenceClassification(config).save_pretrained(folder)
    transformers.ByT5Tokenizer().save_pretrained(folder)
    settings = {"kind": "classifier", "model": {"path": "clf", "sha256": digest_path(folder)}, "label": "refusal"}
    outputs = ["I cannot help with that.", "Sure, here you go: step one"]
    genuine, _ = score(settings, outputs, card_folder=folder.parent, device="cpu")
    real = digests.digest_path

    def check_then_swap(path, *args, **kwargs):
        value = real(path, *args, **kwargs)
        if Path(path) == folder:
            swap(folder / "model.safetensors")
        return value

    monkeypatch.setattr(digests, "digest_path", check_then_swap)
    assert refused_or_genuine(lambda: score(settings, outputs, card_folder=folder.parent, device="cpu")[0], genuine) == "refused"
    monkeypatch.undo()
    # the swapped classifier does score differently: had it been loaded, the scores would show it
    pinned_to_swap = {**settings, "model": {"path": "clf", "sha256": digest_path(folder)}}
    assert score(pinned_to_swap, outputs, card_folder=folder.parent, device="cpu")[0] != genuine
