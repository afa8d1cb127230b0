"""Settings are read from the environment once, at the edge, and a command opens one digest cache.

- ``Settings.from_environ`` reads ACARDS_CACHE_DIR, ACARDS_DEVICE and ACARDS_KEY_PASSPHRASE (and
  never prints the passphrase); library defaults read the same variables through acards.settings;
- the root command group puts the Settings on the click context, and commands use its values;
- a DigestCache handed down (``digests=``) is borrowed: callees close their view, not the cache;
- ``acards check`` and ``acards verify`` open the digest cache once.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from acards.cli import main
from acards.evidence.digests import DigestCache
from acards.settings import Settings, current, platform_cache_dir

REPO = Path(__file__).resolve().parents[2]
CASE = REPO / "tests" / "cases" / "verify" / "full-pass"


def test_settings_from_a_mapping(tmp_path):
    settings = Settings.from_environ({"ACARDS_CACHE_DIR": str(tmp_path), "ACARDS_DEVICE": "cpu",
                                      "ACARDS_KEY_PASSPHRASE": "s3cret"})
    assert settings == Settings(cache_dir=tmp_path, device="cpu", key_passphrase="s3cret")
    assert settings.digests_path == tmp_path / "digests.sqlite"
    assert "s3cret" not in repr(settings)
    with pytest.raises(AttributeError):
        settings.device = "cuda"  # frozen


def test_defaults_when_the_environment_is_silent():
    settings = Settings.from_environ({"ACARDS_DEVICE": ""})
    assert settings.cache_dir == platform_cache_dir()
    assert settings.device is None and settings.key_passphrase is None


def test_library_default_reads_the_environment_at_the_call(tmp_path, monkeypatch):
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "a"))
    assert current().cache_dir == tmp_path / "a" and DigestCache.default_path() == tmp_path / "a" / "digests.sqlite"
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "b"))
    assert current().cache_dir == tmp_path / "b"
    assert DigestCache.default_path(tmp_path / "c") == tmp_path / "c" / "digests.sqlite"


def test_the_root_group_puts_settings_on_the_context(tmp_path):
    seen = []

    @main.command("_settings_probe", hidden=True)
    def probe() -> None:
        seen.append(click.get_current_context().find_root().obj)

    try:
        result = CliRunner().invoke(main, ["_settings_probe"], env={"ACARDS_CACHE_DIR": str(tmp_path), "ACARDS_DEVICE": "cpu",
                                                                    "ACARDS_CACHE_KEY": str(tmp_path / "key")})
    finally:
        main.commands.pop("_settings_probe")
    assert result.exit_code == 0, result.output
    assert seen == [Settings(cache_dir=tmp_path, device="cpu", cache_key=tmp_path / "key")]


def test_cache_info_uses_the_settings_cache_folder(tmp_path):
    result = CliRunner().invoke(main, ["cache", "info", "--format", "json"], env={"ACARDS_CACHE_DIR": str(tmp_path / "here")})
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "here" / "outputs") in result.output


def test_a_borrowed_cache_stays_open_for_its_owner(tmp_path):
    sample = tmp_path / "file"
    sample.write_bytes(b"x")
    with DigestCache(tmp_path / "digests.sqlite") as owner:
        view = DigestCache.or_default(owner)
        info = sample.stat()
        view.put(sample, info, "a" * 64)
        view.close()
        assert owner.get(sample, info) == "a" * 64  # the owner's connection is still open
    assert owner.get(sample, info) is None  # closed at the end of the block
    fresh = DigestCache.or_default(None, use_cache=False)
    assert fresh.get(sample, info) is None
    fresh.close()


@pytest.mark.parametrize("command", [["check"], ["verify", "--no-generate", "--bootstrap", "200", "--format", "json"]])
def test_a_command_opens_the_digest_cache_once(tmp_path, monkeypatch, command):
    folder = tmp_path / "card"
    shutil.copytree(CASE, folder)
    opened = []
    connect = sqlite3.connect

    def counting(path, *args, **kwargs):
        if Path(path).name == "digests.sqlite":
            opened.append(path)
        return connect(path, *args, **kwargs)

    monkeypatch.setattr("acards.evidence.digests.sqlite3.connect", counting)
    result = CliRunner().invoke(main, [command[0], str(folder / "card.yaml"), *command[1:]],
                                env={"ACARDS_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert opened == [tmp_path / "cache" / "digests.sqlite"]
