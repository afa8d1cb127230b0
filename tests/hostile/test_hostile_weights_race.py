"""The weights the signature is computed from are the bytes the card pins.

`acards verify` checks every evidence digest first and reads the checkpoints later, for the weight
signature.  A checkpoint or reference file replaced in between must be refused
(evidence.digest-mismatch, exit 3), never reported with a "digest matched" next to numbers that came
from other bytes.  Each case copies examples/tiny-defense (two LoRA adapters per cell and a
reference subspace, no model needed) to tmp_path and swaps a file right after the digest check.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from acards.cli import main
from acards.evidence.checkpoints import Pinned, read_signature_inputs
from acards.evidence.digests import digest_path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tiny-defense"
DEFENDED = "ckpt/seed0/defended-projection/adapter_model.safetensors"
REFERENCE = "ckpt/reference.safetensors"


def make_case(tmp_path: Path) -> Path:
    folder = tmp_path / "case"
    folder.mkdir()
    for name in ("card.yaml", "ckpt", "evidence"):
        source = EXAMPLE / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)
    return folder / "card.yaml"


def altered(path: Path) -> dict[str, np.ndarray]:
    """The tensors of ``path`` with other values, same names and shapes: halved, or for an orthonormal
    basis (`.U`) negated, so that the new file is still a valid one."""
    return {key: (value * (-1.0 if key.endswith(".U") else 0.5)).astype(value.dtype)
            for key, value in load_file(str(path)).items()}


def verify(card: Path) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["verify", str(card), "--no-generate", "--bootstrap", "200", "--format", "json",
                                       "--no-cache"])
    text = result.stdout
    return result.exit_code, json.loads(text[text.index("{"):])


def swap_after_check(monkeypatch, target: Path) -> None:
    """Replace ``target`` (with other values) right after every digest has been checked."""
    from acards.evidence import digests
    from acards.pipeline import load

    real = digests.check_pointers
    replacement = altered(target)

    def check_then_swap(*args, **kwargs):
        results = real(*args, **kwargs)
        save_file(replacement, str(target))  # the race: the file changes between the check and the read
        return results

    monkeypatch.setattr(load, "check_pointers", check_then_swap)


@pytest.mark.parametrize("swapped", [DEFENDED, REFERENCE])
def test_a_checkpoint_swapped_after_its_digest_was_checked_is_refused(tmp_path, monkeypatch, swapped):
    card = make_case(tmp_path)
    swap_after_check(monkeypatch, card.parent / swapped)
    status, output = verify(card)
    assert status == 3, output
    codes = {p["code"] for p in output["problems"]}
    assert codes == {"evidence.digest-mismatch"}, output["problems"]
    assert any(Path(swapped).name in p["message"] for p in output["problems"]), output["problems"]
    assert "reproduced" not in output and "cells" not in output


def test_the_unswapped_copy_still_reproduces(tmp_path):
    status, output = verify(make_case(tmp_path))
    assert status == 0, output
    assert output["reproduced"] is True


def test_read_signature_inputs_checks_the_bytes_it_read(tmp_path):
    """The check is on what was parsed: pinning the digest of the altered file (as if the card had
    been written for it) is refused after a read of the original, and accepted for a read of it."""
    card = make_case(tmp_path)
    ckpt = card.parent / "ckpt"

    def pinned(name: str, relative: str, sha: str | None = None) -> Pinned:
        return Pinned(ckpt / name, sha or digest_path(ckpt / name), relative)

    original = {"undefended": pinned("seed0/undefended", "ckpt/seed0/undefended"),
                "defended": pinned("seed0/defended-projection", "ckpt/seed0/defended-projection"),
                "reference_subspace": pinned("reference.safetensors", REFERENCE)}
    undefended, defended, reference = read_signature_inputs(original)
    assert set(undefended) == set(defended) and reference is not None

    save_file(altered(card.parent / REFERENCE), str(ckpt / "reference.safetensors"))
    with pytest.raises(Exception) as refused:
        read_signature_inputs({**original, "reference_subspace": pinned("reference.safetensors", REFERENCE,
                                                                          original["reference_subspace"].sha256)})
    assert [p.code for p in refused.value.problems] == ["evidence.digest-mismatch"]
    # pinned to the new bytes, the new bytes are read and accepted
    _, _, now = read_signature_inputs({**original, "reference_subspace": pinned("reference.safetensors", REFERENCE)})
    assert not all(np.array_equal(now.matrices[m], reference.matrices[m]) for m in reference.matrices)
