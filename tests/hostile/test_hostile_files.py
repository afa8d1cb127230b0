"""Hostile files: FIFOs, devices, huge files, unreadable and deeply nested evidence, and outputs that
cannot be written.  Every case runs the CLI and asserts the exact error code and exit status, and
that nothing in the card's folder changed.  Cases that could hang (a FIFO) run in a subprocess with
a timeout, so a regression fails instead of blocking the test run."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.cli import main
from acards.errors.codes import CATALOGUE

REPO = Path(__file__).resolve().parents[2]
FULL_PASS = REPO / "tests" / "cases" / "verify" / "full-pass"
TINY = REPO / "examples" / "tiny-defense"
ACARDS = Path(sys.executable).parent / "acards"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
FAST = ["--bootstrap", "100", "--no-generate", "--spot-check", "0"]


def codes_in(output: str) -> set[str]:
    return {name for name in re.findall(r"([a-z]+\.[a-z-]+)", output) if name in CATALOGUE}


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def run_child(*args, timeout: float = 60):
    """The CLI in a subprocess: a read that blocks (a FIFO) fails the test by timeout, never hangs it."""
    try:
        done = subprocess.run([str(ACARDS), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"acards {' '.join(map(str, args))} blocked for {timeout} s")
    return done.returncode, done.stdout + done.stderr


def expect(result, code: str, status: int) -> None:
    output = result.output if hasattr(result, "output") else result[1]
    exit_code = result.exit_code if hasattr(result, "exit_code") else result[0]
    assert code in codes_in(output), output
    assert exit_code == status, output
    assert CATALOGUE[code].exit_status == status


def snapshot(folder: Path) -> dict:
    """Every path below ``folder`` with its type, mode and content digest."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = os.lstat(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if stat.S_ISREG(info.st_mode) else None
            state[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), digest)
    return state


@pytest.fixture
def card_folder(tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(FULL_PASS, folder)
    before = snapshot(folder)
    yield folder
    assert snapshot(folder) == before, "the card's folder changed"


@pytest.fixture
def tiny(tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="module")
def keypair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    result = run("key", "new", "--out", folder / "signer", "--no-passphrase")
    assert result.exit_code == 0, result.output
    return folder / "signer", folder / "signer.pub"


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


# --- FIFOs: refused before opening (a subprocess with a timeout, so a regression fails) -----------

def test_fifo_as_the_card(fifo):
    expect(run_child("validate", fifo), "usage.not-a-file", 2)


def test_fifo_as_the_report_to_render(card_folder, fifo):
    expect(run_child("render", card_folder / "card.yaml", "--report", fifo), "usage.not-a-file", 2)


def test_fifo_as_the_signing_key(card_folder, fifo):
    expect(run_child("sign", card_folder / "card.yaml", "--key", fifo, "--out", card_folder.parent / "e.json"),
           "usage.not-a-file", 2)


def test_fifo_as_the_envelope(card_folder, fifo, keypair):
    expect(run_child("verify", card_folder / "card.yaml", "--envelope", fifo, "--trusted-key", keypair[1], *FAST),
           "usage.not-a-file", 2)


def test_fifo_as_the_report_to_sign(card_folder, fifo, keypair):
    expect(run_child("sign", card_folder / "card.yaml", "--key", keypair[0], "--report", fifo,
                     "--out", card_folder.parent / "e.json"), "usage.not-a-file", 2)


def test_fifo_inside_an_evidence_folder(tiny):
    os.mkfifo(tiny / "ckpt" / "seed0" / "undefended" / "pipe")
    expect(run_child("hash", tiny / "ckpt" / "seed0" / "undefended"), "evidence.special-file", 3)


# --- devices ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_device_as_the_signing_key(card_folder, device):
    expect(run("sign", card_folder / "card.yaml", "--key", device, "--out", card_folder.parent / "e.json"),
           "usage.not-a-file", 2)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_device_as_the_envelope(card_folder, device, keypair):
    expect(run("verify", card_folder / "card.yaml", "--envelope", device, "--trusted-key", keypair[1], *FAST),
           "usage.not-a-file", 2)


def test_device_as_a_trusted_key(card_folder, tmp_path):
    envelope = tmp_path / "envelope.json"
    envelope.write_text("{}")
    expect(run("verify", card_folder / "card.yaml", "--envelope", envelope, "--trusted-key", "/dev/zero", *FAST),
           "usage.not-a-file", 2)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_device_as_the_report_to_render(card_folder, device):
    expect(run("render", card_folder / "card.yaml", "--report", device), "usage.not-a-file", 2)


def test_device_as_the_card():
    expect(run("validate", "/dev/zero", "--format", "json"), "usage.not-a-file", 2)


# --- sizes ------------------------------------------------------------------------------------------

def test_a_huge_key_file(card_folder, tmp_path):
    key = tmp_path / "huge.key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 100_000)
    expect(run("sign", card_folder / "card.yaml", "--key", key, "--out", tmp_path / "e.json"), "usage.too-large", 2)


def test_a_huge_envelope(card_folder, tmp_path, keypair):
    envelope = tmp_path / "huge.json"
    with open(envelope, "wb") as handle:
        handle.truncate(65 * 1024 * 1024)  # sparse: no disk used
    expect(run("verify", card_folder / "card.yaml", "--envelope", envelope, "--trusted-key", keypair[1], *FAST),
           "usage.too-large", 2)


def test_a_huge_report(card_folder, tmp_path):
    report = tmp_path / "huge.json"
    with open(report, "wb") as handle:
        handle.truncate(65 * 1024 * 1024)
    expect(run("render", card_folder / "card.yaml", "--report", report), "usage.too-large", 2)


def test_a_card_that_is_a_folder(card_folder):
    expect(run("validate", card_folder, "--format", "json"), "card.not-found", 2)


def test_a_huge_card(tmp_path):
    card = tmp_path / "card.yaml"
    card.write_bytes(b"# " + b"x" * (1024 * 1024) + b"\n")
    expect(run("validate", card, "--format", "json"), "yaml.too-large", 2)


# --- unreadable evidence: never skipped -----------------------------------------------------------

def _refuse_listing(monkeypatch, target: Path) -> None:
    """Make os.scandir fail on ``target`` as a chmod 000 folder does (root reads through chmod)."""
    real = os.scandir

    def scandir(path="."):
        if Path(os.fsdecode(path)) == target:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def _refuse_open(monkeypatch, target: Path) -> None:
    real = os.open

    def fake_open(path, flags, *args, **kwargs):
        if Path(os.fsdecode(path)) == target:
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)


def test_write_digests_refuses_a_folder_with_an_unreadable_subfolder(tiny, monkeypatch):
    hidden = tiny / "ckpt" / "seed0" / "undefended" / "more"
    hidden.mkdir()
    (hidden / "extra.bin").write_bytes(b"x")
    before = snapshot(tiny)
    _refuse_listing(monkeypatch, hidden)
    result = run("check", tiny / "card.yaml", "--write-digests", "--format", "json")
    expect(result, "evidence.unreadable", 3)
    assert "ckpt/seed0/undefended/more" in result.output
    assert "every evidence digest matches" not in result.output
    monkeypatch.undo()
    assert snapshot(tiny) == before  # the card was not re-pinned


@pytest.mark.skipif(IS_ROOT, reason="root reads through chmod 000; the monkeypatched test covers the code path")
def test_write_digests_refuses_a_chmod_000_subfolder(tiny):
    hidden = tiny / "ckpt" / "seed0" / "undefended" / "more"
    hidden.mkdir()
    card = (tiny / "card.yaml").read_bytes()
    hidden.chmod(0)
    try:
        expect(run("check", tiny / "card.yaml", "--write-digests", "--format", "json"), "evidence.unreadable", 3)
    finally:
        hidden.chmod(0o755)
    assert (tiny / "card.yaml").read_bytes() == card


def test_hash_refuses_a_folder_with_an_unreadable_subfolder(tiny, monkeypatch):
    hidden = tiny / "ckpt" / "seed0" / "undefended" / "more"
    hidden.mkdir()
    _refuse_listing(monkeypatch, hidden)
    expect(run("hash", tiny / "ckpt" / "seed0" / "undefended"), "evidence.unreadable", 3)


def test_an_unreadable_evidence_file(card_folder, monkeypatch):
    _refuse_open(monkeypatch, card_folder / "evidence" / "records.jsonl")
    result = run("check", card_folder / "card.yaml", "--format", "json", "--no-cache")
    expect(result, "evidence.unreadable", 3)
    assert "records.jsonl" in result.output


def test_an_unreadable_file_inside_an_evidence_folder(tiny, monkeypatch):
    folder = tiny / "ckpt" / "seed0" / "undefended"
    target = sorted(p for p in folder.iterdir() if p.is_file())[0]
    _refuse_open(monkeypatch, target)
    expect(run("check", tiny / "card.yaml", "--format", "json", "--no-cache"), "evidence.unreadable", 3)


# --- deep nesting ----------------------------------------------------------------------------------

def _nest(top: Path, depth: int) -> None:
    """``top/d/d/…/d`` ``depth`` deep, made through directory descriptors (the path is too long to name)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _unnest(top: Path) -> None:
    """Remove what _nest made, one level at a time by renames (no recursion, no long paths)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        while True:
            try:
                os.rename("d/d", "t", src_dir_fd=fd, dst_dir_fd=fd)
            except FileNotFoundError:
                os.rmdir("d", dir_fd=fd)
                break
            os.rmdir("d", dir_fd=fd)
            os.rename("t", "d", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    top.rmdir()


@pytest.mark.parametrize("write", [False, True], ids=["check", "write-digests"])
def test_a_folder_nested_2000_deep(tiny, write):
    top = tiny / "ckpt" / "seed0" / "undefended" / "deep"
    _nest(top, 2000)
    try:
        before = (tiny / "card.yaml").read_bytes()
        args = ["check", tiny / "card.yaml", "--format", "json"] + (["--write-digests"] if write else [])
        expect(run(*args), "evidence.too-deep", 3)
        assert (tiny / "card.yaml").read_bytes() == before
    finally:
        _unnest(top)


# --- outputs ---------------------------------------------------------------------------------------

@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs, filled up (root only); else None."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not IS_ROOT or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                     capture_output=True).returncode != 0:
        yield None
        return
    try:
        with open(mount / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_verify_report_on_a_full_disk(card_folder, tiny_disk):
    if tiny_disk is None:
        pytest.skip("needs root to mount a tiny tmpfs; test_render_output_on_a_full_disk covers ENOSPC by monkeypatch")
    result = run("verify", card_folder / "card.yaml", "--report", tiny_disk / "report.json", "--format", "json", *FAST)
    expect(result, "usage.cannot-write", 4)
    assert str(tiny_disk / "report.json") in result.output
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]  # no partial report, no temporary file


def test_render_output_on_a_full_disk(card_folder, tmp_path, monkeypatch):
    report = tmp_path / "report.json"
    assert run("verify", card_folder / "card.yaml", "--report", report, *FAST).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    (out / "page.html").write_text("old page")
    import acards.files

    def full(_fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(acards.files.os, "fsync", full)
    result = run("render", card_folder / "card.yaml", "--report", report, "-o", out / "page.html")
    expect(result, "usage.cannot-write", 4)
    assert "No space left" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["page.html"]
    assert (out / "page.html").read_text() == "old page"  # the old output survives whole


@pytest.fixture
def read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if IS_ROOT:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                          capture_output=True).returncode != 0:
            pytest.skip("root ignores chmod and a read-only tmpfs cannot be mounted here")
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_verify_report_into_a_read_only_folder(card_folder, read_only_folder):
    result = run("verify", card_folder / "card.yaml", "--report", read_only_folder / "r.json", "--format", "json", *FAST)
    expect(result, "usage.cannot-write", 4)
    assert '"reproduced"' not in result.output  # refused before verifying, not after
    assert list(read_only_folder.iterdir()) == []


def test_a_report_into_a_pipe_is_written_into_it_and_the_pipe_stays(card_folder, tmp_path):
    """`--report /dev/stdout`, `>(jq .)`, `/dev/null`: an output that is not a regular file is
    written into, never replaced by a renamed file (as root that replaced /dev/null itself)."""
    import json
    import threading

    (tmp_path / "out").mkdir()
    pipe = tmp_path / "out" / "pipe"
    os.mkfifo(pipe)
    received = []
    reader = threading.Thread(target=lambda: received.append(pipe.read_bytes()))
    reader.start()
    result = run("verify", card_folder / "card.yaml", "--report", pipe, "--format", "json", *FAST)
    reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.lstat(pipe).st_mode) and sorted(p.name for p in pipe.parent.iterdir()) == ["pipe"]
    assert json.loads(received[0])["reproduced"] is True


def test_a_report_through_a_symlink_replaces_the_file_and_keeps_the_link(card_folder, tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.json").write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(tmp_path / "reports" / "r.json")
    assert run("verify", card_folder / "card.yaml", "--report", link, *FAST).exit_code == 0
    assert link.is_symlink() and '"reproduced"' in (tmp_path / "reports" / "r.json").read_text()


def test_a_device_is_checked_for_writing_in_place():
    from acards.files import check_writable

    if not stat.S_ISCHR(os.stat("/dev/null").st_mode):
        pytest.skip("/dev/null is not a device here")
    check_writable("/dev/null")  # no temporary file made in /dev


def test_verify_report_into_a_missing_folder(card_folder, tmp_path):
    result = run("verify", card_folder / "card.yaml", "--report", tmp_path / "no" / "such" / "r.json", *FAST)
    expect(result, "usage.cannot-write", 4)
    assert not (tmp_path / "no").exists()


def test_sign_out_into_a_missing_folder(card_folder, tmp_path, keypair):
    result = run("sign", card_folder / "card.yaml", "--key", keypair[0], "--out", tmp_path / "no" / "e.json")
    expect(result, "usage.cannot-write", 4)


def test_render_output_below_a_file(card_folder, tmp_path):
    report = tmp_path / "report.json"
    assert run("verify", card_folder / "card.yaml", "--report", report, *FAST).exit_code == 0
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    expect(run("render", card_folder / "card.yaml", "--report", report, "-o", blocker / "page.html"),
           "usage.cannot-write", 4)


def test_a_verified_report_is_written_whole(card_folder, tmp_path):
    report = tmp_path / "report.json"
    result = run("verify", card_folder / "card.yaml", "--report", report, *FAST)
    assert result.exit_code == 0, result.output
    assert report.read_bytes().endswith(b"}\n")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
