"""Full weights are streamed into the signature, and the bytes used are still the bytes hashed.

`acards verify` reads each safetensors file front to back through one descriptor, hashing every byte
as it goes, and computes the signature module by module (acards.evidence.checkpoints.read_signature),
so memory is one module's updates, not the checkpoints.  These tests write real safetensors files
by hand (to choose the order tensors are stored in) and change a file in place while it is being
read: the change must be refused as evidence.digest-mismatch, also when the file is put back before
the read ends, and also for a tensor that was passed over and read again later.
"""

from __future__ import annotations

import json
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from acards.card.validate import threshold_defaults
from acards.errors import AcardsError
from acards.evidence import checkpoints
from acards.evidence.checkpoints import Pinned, read_signature, read_update_pair
from acards.evidence.digests import digest_path
from acards.evidence.safetensors_io import hashed_reads, open_safetensors
from acards.mechanism.signature import weight_signature

THRESHOLDS = threshold_defaults()["mechanism"]
MATRICES = [f"model.layers.{i}.{name}.weight" for i in range(3) for name in ("mlp.down_proj", "self_attn.q_proj")]


def write_ordered(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A float32 safetensors file whose tensors are stored in the order of ``tensors``."""
    header, offset = {}, 0
    for key, value in tensors.items():
        header[key] = {"dtype": "F32", "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    text = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(text)) + text
                     + b"".join(np.ascontiguousarray(v, dtype="<f4").tobytes() for v in tensors.values()))
    return path


def span(path: Path, key: str) -> tuple[int, int]:
    """(file offset, length) of tensor ``key``'s bytes."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    begin, end = json.loads(data[8 : 8 + length])[key]["data_offsets"]
    return 8 + length + begin, end - begin


def overwrite(path: Path, offset: int, data: bytes) -> None:
    """Change bytes in place: the same file (the descriptor already open reads the new bytes)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


@pytest.fixture
def full(tmp_path):
    """base, undefended and defended full weights (matrices and a norm).  The base is stored in name
    order; the undefended fine-tune in reverse order (so streaming it in the base's order passes
    over tensors and reads them again); the defended one in two shards."""
    rng = np.random.default_rng(5)
    shapes = {key: ((24, 16) if "down" in key else (16, 16)) for key in MATRICES}
    base = {key: rng.standard_normal(shape).astype(np.float32) for key, shape in shapes.items()}
    base["model.norm.weight"] = np.ones(16, np.float32)
    update = {key: (0.01 * rng.standard_normal(shape)).astype(np.float32) for key, shape in shapes.items()}
    undefended = {key: value + update.get(key, 0) for key, value in base.items()}
    defended = {key: value + 0.5 * update.get(key, 0) for key, value in base.items()}
    defended[MATRICES[0]] = base[MATRICES[0]]  # one module restored to base weights
    folder = tmp_path / "ckpt"
    write_ordered(folder / "base" / "model.safetensors", dict(sorted(base.items())))
    write_ordered(folder / "undefended" / "model.safetensors", dict(sorted(undefended.items(), reverse=True)))
    keys = sorted(defended)
    write_ordered(folder / "defended" / "model-1.safetensors", {k: defended[k] for k in keys[1::2]})
    write_ordered(folder / "defended" / "model-2.safetensors", {k: defended[k] for k in keys[::2]})
    return folder


def pinned(folder: Path, pin: bool = True) -> dict[str, Pinned]:
    return {name: Pinned(folder / name, digest_path(folder / name) if pin else None, f"ckpt/{name}")
            for name in ("undefended", "defended", "base")}


def test_streaming_gives_the_signature_of_the_materialised_updates(full):
    streamed = read_signature(pinned(full), THRESHOLDS)
    materialised = weight_signature(*read_update_pair(full / "undefended", full / "defended", full / "base"), None,
                                    THRESHOLDS)
    assert streamed == materialised  # sums run in module order: the same numbers, bit for bit
    assert streamed["estimates"]["n_modules"] == len(MATRICES)
    assert streamed["modules"][checkpoints.module_name(MATRICES[0])]["sq_norm_defended"] == 0.0


def test_bytes_changed_while_streaming_are_refused_even_when_put_back(full, monkeypatch):
    """The last tensor of the undefended file is changed after the read began and put back once it
    was read: the file on disk ends as pinned, but the numbers came from other bytes."""
    target = full / "undefended" / "model.safetensors"
    first = sorted(MATRICES)[0]  # read first (the base's order), stored last (reverse order)
    offset, length = span(target, first)
    pins = pinned(full)
    genuine = target.read_bytes()[offset : offset + length]
    real = checkpoints.read_native
    calls = []

    def read_then_race(handle, path, key):
        if path == target and not calls:
            overwrite(target, offset, np.full(length // 4, 0.25, "<f4").tobytes())
        value = real(handle, path, key)
        if path == target:
            calls.append(key)
            if key == first:
                overwrite(target, offset, genuine)  # put back: the file is the pinned one again
        return value

    monkeypatch.setattr(checkpoints, "read_native", read_then_race)
    with pytest.raises(AcardsError) as refused:
        read_signature(pins, THRESHOLDS)
    assert [p.code for p in refused.value.problems] == ["evidence.digest-mismatch"]
    assert "ckpt/undefended" in refused.value.problems[0].message
    assert first in calls and target.read_bytes()[offset : offset + length] == genuine
    assert digest_path(full / "undefended") == pins["undefended"].sha256  # a digest taken now would pass
    assert read_signature(pins, THRESHOLDS)["estimates"]["n_modules"] == len(MATRICES)


@pytest.mark.parametrize("pin", [True, False])
def test_a_tensor_changed_between_its_pass_and_its_second_read_is_refused(full, monkeypatch, pin):
    """Streaming the reversed undefended file in the base's order passes over its tensors (hashing
    them) and reads them again later: a tensor changed in between is refused, pinned or not."""
    target = full / "undefended" / "model.safetensors"
    victim = sorted(MATRICES)[-1]  # stored first, so passed over before the first read
    offset, length = span(target, victim)
    real = checkpoints.read_native

    def read_then_change(handle, path, key):
        value = real(handle, path, key)
        if path == target and key != victim:
            overwrite(target, offset, np.zeros(length // 4, "<f4").tobytes())
        return value

    monkeypatch.setattr(checkpoints, "read_native", read_then_change)
    with pytest.raises(AcardsError) as refused:
        read_signature(pinned(full, pin), THRESHOLDS)
    problems = refused.value.problems
    assert [p.code for p in problems] == ["evidence.digest-mismatch"]
    assert "changed while it was read" in problems[0].message


def test_a_passed_tensor_read_again_unchanged_is_served(full):
    target = full / "undefended" / "model.safetensors"
    with hashed_reads() as reads, open_safetensors(target) as handle:
        keys = handle.stored_order()
        last, first = handle.raw(keys[-1]), handle.raw(keys[0])  # passes over all, then reads one again
    assert first.shape == handle.shape(keys[0]) and last.shape == handle.shape(keys[-1])
    read = reads[str(target)]
    assert read.sha256 == digest_path(target) and not read.changed and read.data is None


def test_memory_is_one_module_not_the_checkpoints(tmp_path):
    """tracemalloc sees numpy's buffers: the signature of three 6 MB checkpoints peaks near one module's
    updates in float64, where reading the files whole took the three files and every update."""
    rng = np.random.default_rng(9)
    keys = [f"model.layers.{i}.mlp.up_proj.weight" for i in range(24)]
    base = {key: rng.standard_normal((256, 256)).astype(np.float32) for key in keys}
    for name, scale in (("base", 0.0), ("undefended", 0.01), ("defended", 0.005)):
        write_ordered(tmp_path / name / "model.safetensors",
                      {key: value + scale * rng.standard_normal(value.shape).astype(np.float32)
                       for key, value in base.items()})
    checkpoint = (tmp_path / "base" / "model.safetensors").stat().st_size
    one_module = 256 * 256 * 8
    pins = pinned(tmp_path)
    tracemalloc.start()
    try:
        with hashed_reads() as reads:
            result = read_signature(pins, THRESHOLDS)
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result["estimates"]["n_modules"] == len(keys)
    assert peak < 10 * one_module < checkpoint, (peak, one_module, checkpoint)
    assert all(read.data is None for read in reads.values())  # the session keeps digests, not bytes
