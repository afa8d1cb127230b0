"""acards.evidence.snapshot: the private copy a model is loaded from holds exactly the pinned bytes.

Real files throughout (safetensors written by safetensors, a config, a nested folder); the snapshot
folder is ``$ACARDS_SNAPSHOT_DIR`` in tmp_path, so every test can see what is left behind.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from acards.errors import AcardsError
from acards.evidence import snapshot as snapshots
from acards.evidence.digests import CHUNK, digest_path

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def snapshot_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "snapshots"
    monkeypatch.setenv("ACARDS_SNAPSHOT_DIR", str(folder))
    return folder


def model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    save_file({"w": rng.standard_normal((64, 32)).astype(np.float32), "b": rng.standard_normal(32).astype(np.float32)},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    (folder / "additional_chat_templates").mkdir()
    (folder / "additional_chat_templates" / "tool.jinja").write_text("{{ messages }}")
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_copy_is_the_pinned_bytes_in_a_private_folder(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    pinned = digest_path(source)
    snapshot = snapshots.acquire(source, pinned)
    try:
        assert snapshot.digest == pinned == digest_path(snapshot.path)
        assert contents(snapshot.path) == contents(source)
        assert snapshot.holder.parent == snapshot_dir and snapshot.path.is_relative_to(snapshot.holder)
        assert stat.S_IMODE(os.stat(snapshot.holder).st_mode) == 0o700
        for path in snapshot.path.rglob("*"):
            assert stat.S_IMODE(os.stat(path).st_mode) == (0o700 if path.is_dir() else 0o600), path
    finally:
        snapshots.release(snapshot)
    assert not snapshot.holder.exists() and list(snapshot_dir.iterdir()) == []


def test_a_file_pointer_is_copied_as_a_file(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base") / "model.safetensors"
    with snapshots.pinned(source, digest_path(source)) as snapshot:
        assert snapshot.path.is_file() and snapshot.path.read_bytes() == source.read_bytes()
    assert list(snapshot_dir.iterdir()) == []


def test_one_copy_per_path_and_digest_while_it_is_held(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    pinned = digest_path(source)
    first = snapshots.acquire(source, pinned)
    second = snapshots.acquire(source, pinned)
    tokenizer_only = snapshots.acquire(source, pinned, weights=False)  # a full copy serves a tokenizer too
    assert first == second == tokenizer_only and len(list(snapshot_dir.iterdir())) == 1
    snapshots.release(first)
    snapshots.release(second)
    assert first.path.is_dir()  # one holder left
    snapshots.release(tokenizer_only)
    assert not first.holder.exists()
    holdings = snapshots.Holdings()
    assert holdings.path(source, pinned) == holdings.path(source, pinned)
    holdings.close()
    assert list(snapshot_dir.iterdir()) == []


def test_a_mismatch_is_the_digest_mismatch_and_leaves_nothing_behind(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    pinned = digest_path(source)
    save_file({"w": np.zeros((64, 32), np.float32), "b": np.zeros(32, np.float32)}, str(source / "model.safetensors"))
    with pytest.raises(AcardsError) as refused:
        snapshots.acquire(source, pinned, label="ckpt/base")
    assert [p.code for p in refused.value.problems] == ["evidence.digest-mismatch"] and refused.value.exit_code == 3
    assert "ckpt/base" in refused.value.problems[0].message and pinned in refused.value.problems[0].message
    assert list(snapshot_dir.iterdir()) == []


def test_a_tokenizer_copy_leaves_the_weights_out_but_checks_the_whole_folder(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    pinned = digest_path(source)
    with snapshots.pinned(source, pinned, weights=False) as snapshot:
        assert snapshot.digest == pinned
        assert sorted(contents(snapshot.path)) == ["additional_chat_templates/tool.jinja", "config.json", "tokenizer_config.json"]
    (source / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(AcardsError) as refused:
        snapshots.acquire(source, pinned, weights=False)
    assert refused.value.code == "evidence.digest-mismatch"
    assert list(snapshot_dir.iterdir()) == []


@pytest.mark.parametrize("special", ["symlink", "fifo"])
def test_a_link_or_fifo_inside_the_folder_is_refused(tmp_path, snapshot_dir, special):
    source = model_folder(tmp_path / "base")
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    if special == "symlink":
        (source / "generation_config.json").symlink_to(outside)
    else:
        os.mkfifo(source / "generation_config.json")
    with pytest.raises(AcardsError) as refused:
        snapshots.acquire(source, "0" * 64)
    assert refused.value.code == {"symlink": "evidence.symlink", "fifo": "evidence.special-file"}[special]
    assert list(snapshot_dir.iterdir()) == []


def test_a_linked_checkpoint_is_refused(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    (tmp_path / "link").symlink_to(source)
    with pytest.raises(AcardsError) as refused:
        snapshots.acquire(tmp_path / "link", digest_path(source))
    assert refused.value.code == "evidence.symlink"


def test_large_files_are_copied_in_bounded_memory(tmp_path, snapshot_dir):
    source = tmp_path / "big"
    source.mkdir()
    size = 6 * CHUNK + 12345
    (source / "model.safetensors").write_bytes(np.random.default_rng(1).bytes(size))
    pinned = digest_path(source)
    tracemalloc.start()
    try:
        snapshot = snapshots.acquire(source, pinned)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    try:
        assert snapshot.digest == pinned and (snapshot.path / "model.safetensors").stat().st_size == size
        assert peak < 2 * CHUNK, peak  # one chunk buffer, never the file
    finally:
        snapshots.release(snapshot)


def test_copies_still_held_are_deleted_at_exit(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    code = ("import sys; from pathlib import Path; from acards.evidence import snapshot;"
            f"held = snapshot.acquire(Path({str(source)!r}), {digest_path(source)!r});"
            "print(held.holder); assert held.path.is_dir()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True)
    holder = Path(result.stdout.strip())
    assert holder.parent == snapshot_dir and not holder.exists()


def test_a_snapshot_folder_others_can_tamper_with_is_refused(tmp_path, snapshot_dir):
    source = model_folder(tmp_path / "base")
    snapshot_dir.mkdir()
    snapshot_dir.chmod(0o777)  # anyone could rename the private copy away
    with pytest.raises(AcardsError) as refused:
        snapshots.acquire(source, digest_path(source))
    assert refused.value.code == "generate.snapshot-failed" and refused.value.exit_code == 4
    assert "ACARDS_SNAPSHOT_DIR" in refused.value.problems[0].hint
    snapshot_dir.chmod(0o1777)  # sticky, as /tmp is: only the owner may rename or delete
    with snapshots.pinned(source, digest_path(source)) as snapshot:
        assert snapshot.holder.parent == snapshot_dir


def test_a_full_snapshot_folder_is_a_coded_error(tmp_path, monkeypatch):
    if not IS_ROOT:
        pytest.skip("needs root to mount a tiny tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        monkeypatch.setenv("ACARDS_SNAPSHOT_DIR", str(mount))
        source = tmp_path / "base"
        source.mkdir()
        (source / "model.safetensors").write_bytes(bytes(256 * 1024))
        with pytest.raises(AcardsError) as refused:
            snapshots.acquire(source, digest_path(source))
        assert refused.value.code == "generate.snapshot-failed" and "GB free" in refused.value.problems[0].message
        assert list(mount.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)
