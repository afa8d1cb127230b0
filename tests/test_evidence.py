"""Safe paths, hashing, folder manifests and the digest cache."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from acards.errors import AcardsError
from acards.evidence.digests import (
    CHUNK,
    DigestCache,
    digest_file,
    digest_path,
    folder_manifest,
    manifest_bytes,
)
from acards.evidence.paths import check_relative_path, resolve_inside


@pytest.mark.parametrize("path, code", [
    ("", "path.empty"),
    ("/etc/passwd", "path.absolute"),
    ("C:/x", "path.absolute"),
    ("a/../../b", "path.escape"),
    ("..", "path.escape"),
    ("a\\b", "path.backslash"),
    ("a\x00b", "path.control-character"),
    ("a\nb", "path.control-character"),
    ("a//b", "path.not-normal"),
    ("./a", "path.not-normal"),
    ("a/", "path.not-normal"),
])
def test_unsafe_paths_are_refused_before_any_file_is_touched(path, code):
    with pytest.raises(AcardsError) as caught:
        check_relative_path(path)
    assert caught.value.code == code


@given(st.text(max_size=40))
def test_any_accepted_path_stays_inside(text):
    try:
        parts = check_relative_path(text).parts
    except AcardsError:
        return
    assert ".." not in parts and not text.startswith("/") and "\\" not in text


def test_resolve_inside_refuses_links_and_special_files(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f.txt").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "linkdir")
    os.symlink("/etc/hostname", tmp_path / "outside")
    os.mkfifo(tmp_path / "pipe")
    assert resolve_inside(tmp_path, "real/f.txt") == tmp_path / "real" / "f.txt"
    for relative, code in [("linkdir/f.txt", "evidence.symlink"), ("outside", "evidence.symlink"),
                           ("pipe", "evidence.special-file"), ("real/none", "evidence.missing")]:
        with pytest.raises(AcardsError) as caught:
            resolve_inside(tmp_path, relative)
        assert caught.value.code == code


def test_file_digest_equals_hashlib_and_sha256sum(tmp_path):
    data = os.urandom(2 * CHUNK + 17)  # crosses chunk boundaries
    path = tmp_path / "blob"
    path.write_bytes(data)
    size, value = digest_file(path)
    assert size == len(data)
    assert value == hashlib.sha256(data).hexdigest()
    if shutil.which("sha256sum"):
        assert value == subprocess.run(["sha256sum", str(path)], capture_output=True, text=True).stdout.split()[0]


def test_folder_manifest_is_rfc8785_of_sorted_entries(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_bytes(b"zz")
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "B.txt").write_bytes(b"")
    entries = folder_manifest(tmp_path)
    expected = {"files": [
        {"path": "B.txt", "size": 0, "sha256": hashlib.sha256(b"").hexdigest()},
        {"path": "a.txt", "size": 1, "sha256": hashlib.sha256(b"a").hexdigest()},
        {"path": "b/z.txt", "size": 2, "sha256": hashlib.sha256(b"zz").hexdigest()},
    ]}
    assert manifest_bytes(entries) == rfc8785.dumps(expected)
    # Written out by hand: keys sorted, no whitespace.
    assert manifest_bytes(entries).startswith(b'{"files":[{"path":"B.txt","sha256":"')
    assert digest_path(tmp_path) == hashlib.sha256(rfc8785.dumps(expected)).hexdigest()


def test_folder_digest_changes_with_an_extra_missing_or_renamed_file(tmp_path):
    (tmp_path / "a").write_text("1")
    (tmp_path / "b").write_text("2")
    original = digest_path(tmp_path)
    (tmp_path / "c").write_text("")
    assert digest_path(tmp_path) != original
    (tmp_path / "c").unlink()
    assert digest_path(tmp_path) == original
    (tmp_path / "b").rename(tmp_path / "b2")
    assert digest_path(tmp_path) != original
    (tmp_path / "b2").rename(tmp_path / "b")
    (tmp_path / "b").unlink()
    assert digest_path(tmp_path) != original


def test_folder_with_a_link_inside_is_refused(tmp_path):
    (tmp_path / "a").write_text("1")
    os.symlink(tmp_path / "a", tmp_path / "link")
    with pytest.raises(AcardsError) as caught:
        digest_path(tmp_path)
    assert caught.value.code == "evidence.symlink"


def test_digest_cache_is_used_when_fresh_and_ignored_when_the_file_changes(tmp_path):
    cache = DigestCache(tmp_path / "cache.sqlite")
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"a" * 1000)
    _, first = digest_file(path, cache)
    info = os.stat(path)
    # A planted entry for this exact (path, inode, size, mtime, ctime) is returned without reading:
    # that is what makes re-checking unchanged multi-GB checkpoints instant.
    cache.put(path, info, "f" * 64)
    assert digest_file(path, cache)[1] == "f" * 64
    # Same size, mtime set back by hand: ctime still moves, so the file is hashed again.
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert digest_file(path, cache)[1] == hashlib.sha256(b"b" * 1000).hexdigest() != first
    cache.close()


def test_a_broken_cache_file_is_ignored(tmp_path):
    bad = tmp_path / "cache.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    cache = DigestCache(bad)
    (tmp_path / "x").write_bytes(b"x")
    assert digest_file(tmp_path / "x", cache)[1] == hashlib.sha256(b"x").hexdigest()


def test_importing_the_cli_and_validating_do_not_import_torch(tmp_path):
    card = os.path.join(os.path.dirname(__file__), "cases", "valid", "card.yaml")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from acards.cli import main\n"
        f"result = CliRunner().invoke(main, ['check', {card!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "ACARDS_CACHE_DIR": str(tmp_path)})


def test_hash_command_prints_sha256sum_style_lines(tmp_path):
    from click.testing import CliRunner

    from acards.cli import main

    (tmp_path / "f").write_bytes(b"hello")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_bytes(b"x")
    result = CliRunner().invoke(main, ["hash", str(tmp_path / "f"), str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{hashlib.sha256(b'hello').hexdigest()}  {tmp_path / 'f'}"
    assert lines[1].split()[0] == digest_path(tmp_path / "d")
    manifest = CliRunner().invoke(main, ["hash", "--manifest", str(tmp_path / "d")]).output
    assert json.loads(manifest) == {"files": [{"path": "x", "size": 1, "sha256": hashlib.sha256(b"x").hexdigest()}]}
    missing = CliRunner().invoke(main, ["hash", str(tmp_path / "nope")])
    assert missing.exit_code == 3 and "evidence.missing" in missing.output
