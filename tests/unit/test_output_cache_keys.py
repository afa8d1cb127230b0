"""Output-cache keys from prompt text, their MACs, the schema-2 → 3 change, and torch's CPU threads.

Pure: no torch, no model.  The real-model side (a fully cached verify imports no torch; a changed
tokenizer, template or decoding setting is a miss; shared requests count once) is in
tests/test_generate_cached.py.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3

import pytest

from acards.errors import AcardsError
from acards.evidence.cachekey import CacheKey, framed
from acards.generate import cache as output_cache
from acards.generate.backends.base import cpu_threads, usable_cores
from acards.settings import Settings

CONTEXT = "c" * 64


@pytest.mark.parametrize("length", [0, 1, 32, 64, 65, 200])
def test_the_mac_is_hmac_sha256(length):
    secret = os.urandom(length)
    key = CacheKey(secret)
    for message in (b"", b"x", os.urandom(1000)):
        expected = hmac.new(secret, message, hashlib.sha256).digest()
        assert key.mac_framed(message) == expected and key.macs_framed([message, message]) == [expected, expected]
    assert key.mac("p", b"k", "v", None, 3) == hmac.new(secret, framed("p", b"k", "v", None, 3), hashlib.sha256).digest()


def test_an_output_row_is_framed_as_every_mac_is():
    assert output_cache._entry_message(b"k" * 32, b"c" * 32, "out \ud800 é") == framed(output_cache.PURPOSE, b"k" * 32, b"c" * 32,
                                                                                      "out \ud800 é")


@pytest.mark.parametrize("prompt, system, sample", [("How do I?", None, 0), ("", "", 7), ("lone \ud800 é", "Be brief.", 12)])
def test_a_request_key_is_the_sha256_of_its_framed_parts(prompt, system, sample):
    """The fast path (a hash state per context) gives the bytes the format names, for any context order."""
    for context in (CONTEXT, "d" * 64, CONTEXT):
        assert output_cache.request_key(context, prompt, system, sample) == \
            hashlib.sha256(framed(output_cache.KEY_FORMAT, context, prompt, system, sample)).hexdigest()


@pytest.mark.parametrize("name", ["numpy", "scipy", "ruamel.yaml", "msgspec", "safetensors", "torch", "transformers", "peft",
                                  "typing-extensions", "surely-not-installed-acards-test"])
def test_package_versions_are_importlib_metadatas(name):
    """Read from the .dist-info without importing importlib.metadata (40 ms), but never a different answer."""
    from importlib import metadata

    from acards.generate.backends import base

    try:
        expected = metadata.version(name)
    except metadata.PackageNotFoundError:
        expected = None
    decided, found = base._dist_info_version(name)
    assert base.installed_version(name) == expected and found == (expected if decided else None)


def test_a_dist_info_version_is_read_as_importlib_metadata_reads_it(tmp_path, monkeypatch):
    from importlib import metadata

    from acards.generate.backends import base

    (tmp_path / "Acards_Probe.Pkg-9.8.7.dist-info").mkdir()
    (tmp_path / "Acards_Probe.Pkg-9.8.7.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: acards-probe.pkg\nVersion: 9.8.7rc1\n\nVersion: 0 (the body, not a header)\n")
    (tmp_path / "acards_egg-1.0.egg-info").mkdir()
    (tmp_path / "acards_egg-1.0.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: acards_egg\nVersion: 1.0.post2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert base._dist_info_version("acards-probe-pkg") == (True, "9.8.7rc1") and metadata.version("acards-probe-pkg") == "9.8.7rc1"
    assert base._dist_info_version("acards-egg") == (False, None)  # egg-info: importlib.metadata answers
    assert metadata.version("acards-egg") == "1.0.post2"
    (tmp_path / "not-a-folder.zip").write_bytes(b"PK")
    monkeypatch.syspath_prepend(str(tmp_path / "not-a-folder.zip"))
    assert base._dist_info_version("surely-not-installed-acards-test") == (False, None)  # a zip may hold it


def test_the_platform_is_named_as_platform_platform_names_it():
    """Without its `uname -p` subprocess; the two agree wherever that names no processor."""
    import platform

    from acards.generate.backends.base import platform_name

    if platform.uname().processor not in ("", "unknown"):
        pytest.skip("uname -p names a processor here, which platform_name leaves out")
    assert platform_name() == platform.platform()


def test_framing_keeps_parts_apart():
    assert framed("ab", "c") != framed("a", "bc") and framed(None) != framed("") and framed("\ud800") != framed("?")
    assert framed(b"\x01") == (1).to_bytes(8, "big") + b"\x01"


def test_the_key_is_the_prompt_text_not_token_ids():
    key = output_cache.request_key(CONTEXT, "How do I?", None, 0)
    assert len(key) == 64 and key == output_cache.request_key(CONTEXT, "How do I?", None, 0)
    others = {output_cache.request_key(CONTEXT, "How do I? ", None, 0), output_cache.request_key(CONTEXT, "How do I?", "", 0),
              output_cache.request_key(CONTEXT, "How do I?", "Be brief.", 0), output_cache.request_key(CONTEXT, "How do I?", None, 1),
              output_cache.request_key("d" * 64, "How do I?", None, 0), output_cache.request_key(CONTEXT, "How do", " I?", 0),
              output_cache.request_key(CONTEXT, "lone \ud800 surrogate", None, 0)}
    assert key not in others and len(others) == 7


def _rows(n: int, context: str = CONTEXT) -> list[tuple[str, str, str]]:
    return [(output_cache.request_key(context, f"prompt {i}", None, 0), context, f"output {i}") for i in range(n)]


def test_lookups_return_what_was_written_and_reject_what_was_altered(tmp_path):
    path = tmp_path / "outputs.sqlite"
    rows = _rows(2000)
    with output_cache.OutputCache(path) as cache:
        cache.put_many(rows)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET output = 'forged' WHERE key = ?", (bytes.fromhex(rows[7][0]),))
        db.execute("UPDATE entries SET mac = 'not a blob' WHERE key = ?", (bytes.fromhex(rows[8][0]),))
    wanted = [k for k, _, _ in rows] + [output_cache.request_key(CONTEXT, "never written", None, 0)]
    with output_cache.OutputCache(path, readonly=True) as cache:
        found = cache.get_many(list(reversed(wanted)))
        assert cache.rejected == {"altered": 2, "other-key": 0, "no-mac": 0}
    assert found == {k: o for k, _, o in rows if k not in (rows[7][0], rows[8][0])}


def test_sparse_and_dense_lookups_agree_and_count_only_what_was_asked_for(tmp_path):
    path = tmp_path / "outputs.sqlite"
    rows = _rows(3000)
    with output_cache.OutputCache(path) as cache:
        cache.put_many(rows)
    by_key = sorted(rows)
    forged = (by_key[100], by_key[1000], by_key[2000])  # rows in the key ranges read, but not asked for until the end
    with sqlite3.connect(path) as db:
        for key, _, _ in forged:
            db.execute("UPDATE entries SET output = 'forged' WHERE key = ?", (bytes.fromhex(key),))
    for asked in (by_key[101:1000] + by_key[1001:2000], by_key[:100] + by_key[101::40], [by_key[99], by_key[2500]]):  # dense, sparse, two
        assert not set(forged) & set(asked)
        with output_cache.OutputCache(path, readonly=True) as cache:
            assert cache.get_many([k for k, _, _ in asked]) == {k: o for k, _, o in asked}
            assert cache.rejected_count == 0
    asked = by_key[98:103] + by_key[999:1002] + by_key[1999:2002]
    with output_cache.OutputCache(path, readonly=True) as cache:
        assert cache.get_many([k for k, _, _ in asked]) == {k: o for k, c, o in asked if (k, c, o) not in forged}
        assert cache.rejected == {"altered": 3, "other-key": 0, "no-mac": 0}


def _schema_2_file(path, rows):
    """A cache file as acards wrote it before keys were made of prompt text (schema 2)."""
    with output_cache.OutputCache(path) as cache:
        cache.put_many(rows, {CONTEXT: {"weights": "old"}})
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=2")


def test_rows_of_schema_2_are_misses_never_read_and_dropped_when_written(tmp_path):
    path = tmp_path / "outputs.sqlite"
    rows = _rows(5)
    _schema_2_file(path, rows)
    with output_cache.OutputCache(path, readonly=True) as cache:
        assert cache.get_many([k for k, _, _ in rows]) == {} and cache.stale == 5 and cache.rejected_count == 0
        assert cache.count() == 0 and list(cache.rows()) == []
    with output_cache.OutputCache(path) as cache:  # opened to write: the old rows go, the file is schema 3
        assert cache.stale == 5 and cache.count() == 0 and cache.context_descriptions() == {}
        cache.put_many(rows[:1])
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == output_cache.SCHEMA_VERSION == 3
    with output_cache.OutputCache(path, readonly=True) as cache:
        assert cache.get_many([rows[0][0]]) == {rows[0][0]: rows[0][2]}


def test_merging_a_schema_2_shard_merges_nothing_and_warns_of_nothing(tmp_path):
    from acards.evidence.cachekey import collected_warnings

    shard = tmp_path / "shard.sqlite"
    _schema_2_file(shard, _rows(3))
    with collected_warnings() as warnings:
        result = output_cache.merge([shard], into=tmp_path / "main.sqlite")
    assert result["added"] == 0 and result["rejected"] == 0 and result["sources"][0]["stale"] == 3 and warnings == []


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "outputs.sqlite"
    with output_cache.OutputCache(path) as cache:
        cache.put_many(_rows(1))
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=4")
    with pytest.raises(AcardsError) as raised:
        output_cache.OutputCache(path, readonly=True)
    assert raised.value.code == "cache.version"


# --- torch's threads on the CPU -------------------------------------------------------------------

def test_usable_cores_are_within_the_affinity():
    cores = usable_cores()
    assert 1 <= cores <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())


def test_the_setting_wins_and_omp_num_threads_is_its_default():
    assert Settings.from_environ({"ACARDS_CPU_THREADS": "3", "OMP_NUM_THREADS": "5"}).cpu_threads == ("ACARDS_CPU_THREADS", "3")
    assert Settings.from_environ({"OMP_NUM_THREADS": "5,2"}).cpu_threads == ("OMP_NUM_THREADS", "5,2")
    assert Settings.from_environ({}).cpu_threads is None
    assert cpu_threads(("ACARDS_CPU_THREADS", "3"))[0] == 3
    assert cpu_threads(("OMP_NUM_THREADS", "5,2")) == (5, "OMP_NUM_THREADS=5,2")


@pytest.mark.parametrize("value", ["0", "-2", "many", ""])
def test_a_bad_thread_count_is_a_coded_error(value):
    with pytest.raises(AcardsError) as raised:
        cpu_threads(("ACARDS_CPU_THREADS", value))
    assert raised.value.code == "usage.bad-threads" and raised.value.exit_code == 2


def test_the_default_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr("acards.generate.backends.base.usable_cores", lambda: 2)
    for load, expected in ((0.0, 2), (1.2, 2), (2.0, 1), (6.5, 1)):  # this process's own 1 is not "others"
        monkeypatch.setattr(os, "getloadavg", lambda load=load: (load, load, load))
        threads, why = cpu_threads(None)
        assert threads == expected and "usable cores" in why, (load, threads)
