"""Hostile inputs that once ended in ``internal.error`` (or in a crash of one output format) where a
coded error is due: a record seed beyond int64, a reference basis with no columns, an unusable
cache folder, an adapter whose ``lora_alpha`` overflows the weight signature, and bidirectional
controls in the registry site's index and log.  Every case runs the CLI and asserts the exact code
and exit status, and that nothing in the evidence folder changed."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from acards.attest import dsse, in_toto
from acards.attest.keys import load_private_key, new_key
from acards.canonical import canonical_bytes
from acards.cli import main
from acards.errors.codes import CATALOGUE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_hostile_files import FAST, FULL_PASS, IS_ROOT, TINY, snapshot  # noqa: E402

BIDI = "\u202e"
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def expect(result, code: str, status: int) -> None:
    codes = {name for name in re.findall(r"([a-z]+\.[a-z-]+)", result.output) if name in CATALOGUE}
    assert code in codes, result.output
    assert result.exit_code == status, result.output
    assert CATALOGUE[code].exit_status == status
    assert "internal.error" not in result.output, result.output


def prepared(tmp_path: Path, source: Path, change) -> Path:
    """A copy of ``source`` with ``change(folder)`` applied and the card's digests rewritten."""
    folder = tmp_path / "card"
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.envelope.json"))
    change(folder)
    result = run("check", folder / "card.yaml", "--write-digests", env={"ACARDS_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    return folder


def verify_unchanged(folder: Path, *extra, env=None):
    """``acards verify`` of the card in ``folder``; the folder must not change."""
    before = snapshot(folder)
    result = run("verify", folder / "card.yaml", *FAST, *extra, env=env)
    assert snapshot(folder) == before, "the evidence folder changed"
    return result


@pytest.fixture
def cache_env(tmp_path):
    return {"ACARDS_CACHE_DIR": str(tmp_path / "cache")}


# --- 1. a record seed beyond int64 ------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [("seed", 2 ** 63), ("seed", 2 ** 70), ("sample", 2 ** 64)])
def test_a_seed_or_sample_beyond_int64_is_refused_at_its_line(tmp_path, cache_env, field, value):
    def change(folder):
        path = folder / "evidence" / "records.jsonl"
        lines = path.read_text(encoding="utf-8").split("\n")
        record = json.loads(lines[2])
        record[field] = value
        lines[2] = json.dumps(record)
        path.write_text("\n".join(lines), encoding="utf-8")

    folder = prepared(tmp_path, FULL_PASS, change)
    for fmt in ("text", "json"):
        result = verify_unchanged(folder, "--format", fmt, env=cache_env)
        expect(result, "records.out-of-range", 3)
    assert f"evidence/records.jsonl:3 at /{field}" in verify_unchanged(folder, env=cache_env).output


def test_the_largest_int64_seed_is_accepted(tmp_path, cache_env):
    def change(folder):
        path = folder / "evidence" / "records.jsonl"
        path.write_text(path.read_text(encoding="utf-8").replace('"seed":0', f'"seed":{2 ** 63 - 1}'), encoding="utf-8")

    result = verify_unchanged(prepared(tmp_path, FULL_PASS, change), env=cache_env)
    assert result.exit_code in (0, 1), result.output
    assert "internal." not in result.output


# --- 2. a reference basis with no columns -----------------------------------------------------------

def test_a_reference_basis_with_no_columns_is_a_bad_reference(tmp_path, cache_env):
    from safetensors.numpy import load_file, save_file

    def change(folder):
        path = folder / "ckpt" / "reference.safetensors"
        tensors = load_file(path)
        key = sorted(tensors)[0]
        tensors[key] = np.zeros((tensors[key].shape[0], 0), np.float32)
        save_file(tensors, path)

    folder = prepared(tmp_path, TINY, change)
    for fmt in ("text", "json"):
        expect(verify_unchanged(folder, "--format", fmt, env=cache_env), "weights.bad-reference", 3)


# --- 3. an unusable cache folder --------------------------------------------------------------------

@pytest.fixture
def card_folder(tmp_path):
    folder = tmp_path / "full-pass"
    shutil.copytree(FULL_PASS, folder)
    return folder


def test_a_cache_folder_that_is_a_file(tmp_path, card_folder):
    (tmp_path / "cache-file").write_text("not a folder")
    result = verify_unchanged(card_folder, env={"ACARDS_CACHE_DIR": str(tmp_path / "cache-file")})
    expect(result, "cache.unusable-folder", 4)


def test_a_cache_folder_under_a_file(tmp_path, card_folder):
    (tmp_path / "cache-file").write_text("not a folder")
    result = verify_unchanged(card_folder, env={"ACARDS_CACHE_DIR": str(tmp_path / "cache-file" / "below")})
    expect(result, "cache.unusable-folder", 4)


def test_an_unwritable_cache_folder(tmp_path, card_folder, monkeypatch):
    cache = tmp_path / "read-only"
    cache.mkdir()
    if IS_ROOT:  # root writes any folder: let the access check answer as it would for a user
        import acards.settings

        real = os.access
        monkeypatch.setattr(acards.settings.os, "access",
                            lambda path, mode, **kw: False if Path(path) == cache else real(path, mode, **kw))
    cache.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        result = verify_unchanged(card_folder, env={"ACARDS_CACHE_DIR": str(cache)})
    finally:
        cache.chmod(stat.S_IRWXU)
    expect(result, "cache.unusable-folder", 4)


def test_hash_with_an_unusable_cache_folder(tmp_path, card_folder):
    (tmp_path / "cache-file").write_text("not a folder")
    result = run("hash", card_folder / "evidence" / "records.jsonl", env={"ACARDS_CACHE_DIR": str(tmp_path / "cache-file")})
    expect(result, "cache.unusable-folder", 4)


# --- 4. an adapter whose scaling overflows ------------------------------------------------------------

@pytest.mark.parametrize("config", [{"lora_alpha": 1e308}, {"lora_alpha": -1e300},
                                    {"alpha_pattern": {"q_proj": 1e308}}])
def test_an_overflowing_lora_alpha_is_a_bad_adapter_config_in_text_and_json(tmp_path, cache_env, config):
    def change(folder):
        path = folder / "ckpt" / "seed0" / "undefended" / "adapter_config.json"
        path.write_text(json.dumps({**json.loads(path.read_text(encoding="utf-8")), **config}), encoding="utf-8")

    folder = prepared(tmp_path, TINY, change)
    for fmt in ("text", "json"):
        result = verify_unchanged(folder, "--format", fmt, env=cache_env)
        expect(result, "weights.bad-adapter-config", 3)


def test_a_non_finite_number_never_reaches_the_report(tmp_path, cache_env, monkeypatch):
    """The last line of defence: a non-finite number in the report is internal.report-invalid, in
    text and JSON alike, never a verdict in one and a crash in the other."""
    import acards.pipeline.assemble as assemble

    card_folder = tmp_path / "full-pass"
    shutil.copytree(FULL_PASS, card_folder)
    original = assemble.environment
    monkeypatch.setattr(assemble, "environment", lambda device: {**original(device), "python": float("nan")})
    for fmt in ("text", "json"):
        result = verify_unchanged(card_folder, "--format", fmt, env=cache_env)
        expect(result, "internal.report-invalid", 4)
        assert "non-finite" in result.output


# --- 5. bidirectional controls on the registry site's index and log -----------------------------------

def test_bidi_controls_in_titles_and_revoke_reasons_are_isolated_on_the_site(tmp_path):
    from acards.registry import store

    new_key(tmp_path / "registry.key")
    new_key(tmp_path / "author.key")
    directory = tmp_path / "registry"
    store.init_registry(directory, "acards.test/bidi", tmp_path / "registry.key")
    store.add_trusted_key(directory, tmp_path / "author.key.pub")
    title = f"harmless {BIDI}txet desrever"
    predicate = {"card": {"id": "bidi-card", "version": 1, "title": title}, "report": {"claims": []}}
    payload = canonical_bytes(in_toto.statement([("card.yaml", "ab" * 32)], in_toto.PREDICATE_TYPE, predicate))
    envelope = canonical_bytes(dsse.sign_envelope(dsse.PAYLOAD_TYPE, payload, load_private_key(tmp_path / "author.key")))
    registry_key = load_private_key(tmp_path / "registry.key")
    entry = store.publish(directory, envelope, registry_key)
    store.revoke(directory, entry["digest"], f"withdrawn {BIDI}nosaer", registry_key)
    before = snapshot(directory)

    result = run("registry", "build", directory)
    assert result.exit_code == 0, result.output
    site = directory / "site"
    for name in ("index.html", "log.html", f"cards/{entry['digest']}.html"):
        html = (site / name).read_text(encoding="utf-8")
        outside = [m.start() for m in BIDI_CONTROLS.finditer(html)
                   if html[: m.start()].rfind("<bdi>") <= html[: m.start()].rfind("</bdi>")]
        assert outside == [], (name, [html[max(0, i - 60): i + 20] for i in outside])
    index = (site / "index.html").read_text(encoding="utf-8")
    assert f"<bdi>{title}</bdi>" in index
    assert "[U+202E]" in re.search(r'data-search="([^"]*)"', index)[1]
    log = (site / "log.html").read_text(encoding="utf-8")
    assert f"<bdi>withdrawn {BIDI}nosaer</bdi>" in log
    assert {k: v for k, v in snapshot(directory).items() if not k.startswith(("site", ".site"))} == \
        {k: v for k, v in before.items() if not k.startswith(("site", ".site"))}


def test_the_site_reuses_the_card_pages_bidi_functions():
    from acards.present import render
    from acards.site.view import templates

    env = templates()
    assert env.finalize is render.isolate_bidi
    assert env.filters["bidi_visible"] is render.visible_bidi
    assert os.path.basename(render.__file__) == "render.py"
