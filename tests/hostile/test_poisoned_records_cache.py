"""A poisoned records cache cannot flip a verdict (issues "A verdict bound to the bytes that were
hashed" and "Evidence at the speed of the disk").

The records cache keeps a records file's decoded columns under ``<cache>/records/``, keyed by the
sha256 of the bytes hashed while parsing, and MAC'd under the user's cache key.  Someone who can
write the (shared) cache folder forges an entry: columns whose scores are flipped, with the genuine
entry's stale MAC, with a MAC under their own key, or as a link or a huge file.  Each test asserts
that the forged columns are not used (the verdict is the genuine one), that the rejection is
recorded (``cache.entry-rejected``), that the entry is rebuilt, and that nothing in the evidence
folder changed.  No model is needed: the golden full-pass case has scored records.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from acards.errors import AcardsError
from acards.evidence import records_cache
from acards.evidence.cachekey import CacheKey, cache_key, collected_warnings
from acards.pipeline.verify import verify
from acards.report.model import as_builtins

REPO = Path(__file__).resolve().parents[2]
CASE = REPO / "tests" / "cases" / "verify" / "full-pass"


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def verdicts(report: dict) -> tuple:
    return (json.dumps(report["cells"], sort_keys=True), json.dumps(report["claims"], sort_keys=True))


@pytest.fixture
def case(tmp_path, monkeypatch):
    """A copy of the case, its cache folder, its genuine report and its filled records cache."""
    folder = tmp_path / "case"
    shutil.copytree(CASE, folder)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(cache))
    genuine = as_builtins(verify(folder / "card.yaml", bootstrap=200, use_cache=False))
    assert not (cache / "records").exists()  # --no-cache writes no entry either
    first = reverify(folder)
    assert verdicts(first[0]) == verdicts(genuine) and not first[1]
    (entry,) = (cache / "records").glob("*.jsonl.*")
    (checked,) = (cache / "records").glob("*.checked.*")  # the checks across records passed for these bytes
    return {"card": folder / "card.yaml", "folder": folder, "cache": cache, "entry": entry, "checked": checked,
            "genuine": genuine}


def reverify(folder: Path, **options) -> tuple[dict, list]:
    before = snapshot(folder)
    with collected_warnings() as warnings:
        report = as_builtins(verify(folder / "card.yaml", bootstrap=200, **options))
    assert snapshot(folder) == before  # nothing in the evidence folder changed
    return report, [w for w in warnings if w.code == "cache.entry-rejected" and "records cache" in w.message]


def flipped(entry: Path, key=None) -> bytes:
    """The entry with every score flipped (1 - score): with the old MAC, or re-MAC'd under ``key``."""
    data = entry.read_bytes()
    sha256, fmt = entry.name.split(".")[:2]
    decoded = records_cache._decode(data, cache_key(), sha256, fmt)
    assert decoded is not None
    decoded["columns"]["score"] = 1.0 - decoded["columns"]["score"]
    forged = records_cache._encode(decoded, key or cache_key(), sha256, fmt)
    if key is None:  # keep the genuine MAC: now stale for these columns
        forged = forged[:len(records_cache.MAGIC)] + data[len(records_cache.MAGIC):len(records_cache.MAGIC) + 32] + \
            forged[len(records_cache.MAGIC) + 32:]
    return forged


def test_a_hit_is_used_without_parsing_and_no_cache_bypasses_it(case):
    """An entry under this user's key is trusted (it is what this user's acards decoded): one with
    flipped scores flips the verdict, which shows the columns came from the entry, not a parse;
    `--no-cache` reads the file itself."""
    case["entry"].write_bytes(flipped(case["entry"], cache_key()))
    poisoned, rejected = reverify(case["folder"])
    assert not rejected and verdicts(poisoned) != verdicts(case["genuine"])
    clean, _ = reverify(case["folder"], use_cache=False)
    assert verdicts(clean) == verdicts(case["genuine"])


@pytest.mark.parametrize("how", ["stale-mac", "other-key", "truncated", "garbage"])
def test_a_forged_entry_is_rejected_and_rebuilt(case, how):
    entry = case["entry"]
    genuine_bytes = entry.read_bytes()
    forged = {"stale-mac": lambda: flipped(entry), "other-key": lambda: flipped(entry, CacheKey(b"\x07" * 32)),
              "truncated": lambda: genuine_bytes[:len(genuine_bytes) // 2],
              "garbage": lambda: records_cache.MAGIC + os.urandom(200)}[how]()
    entry.write_bytes(forged)
    report, rejected = reverify(case["folder"])
    assert verdicts(report) == verdicts(case["genuine"])
    assert len(rejected) == 1 and entry.name in rejected[0].message
    assert entry.read_bytes() == genuine_bytes  # rebuilt from the records file
    again, rejected = reverify(case["folder"])
    assert verdicts(again) == verdicts(case["genuine"]) and not rejected


def test_an_entry_that_is_a_link_or_too_large_is_rejected(case, tmp_path):
    entry = case["entry"]
    target = tmp_path / "elsewhere"
    target.write_bytes(flipped(entry, cache_key()))
    entry.unlink()
    entry.symlink_to(target)  # a valid entry, but not a regular file in the cache folder
    report, rejected = reverify(case["folder"])
    assert verdicts(report) == verdicts(case["genuine"]) and len(rejected) == 1
    size = (case["folder"] / "evidence" / "records.jsonl").stat().st_size
    with open(entry, "wb") as handle:  # the link was replaced by the rebuilt entry; now a huge sparse one
        handle.truncate(records_cache.entry_limit(size) + 1)
    report, rejected = reverify(case["folder"])
    assert verdicts(report) == verdicts(case["genuine"]) and len(rejected) == 1 and "more than" in rejected[0].message


def test_the_entry_is_bound_to_the_bytes_hashed_on_this_run(case):
    """A records file changed after the card pinned it is refused even though an entry exists for
    the pinned digest: the file is still read and hashed, and the digest check still happens."""
    records = case["folder"] / "evidence" / "records.jsonl"
    records.write_bytes(records.read_bytes().replace(b'"score":1.0', b'"score":0.0', 1))
    with pytest.raises(AcardsError) as caught:
        verify(case["card"], bootstrap=200, use_cache=False)
    assert caught.value.problems[0].code == "evidence.digest-mismatch"
    with pytest.raises(AcardsError) as caught:
        verify(case["card"], bootstrap=200)  # the digest cache misses too: the file's ctime changed
    assert caught.value.problems[0].code == "evidence.digest-mismatch"


def test_users_sharing_a_folder_keep_their_own_entries(case, monkeypatch, tmp_path):
    monkeypatch.setenv("ACARDS_CACHE_KEY", str(tmp_path / "other-user" / "cache-mac.key"))
    report, rejected = reverify(case["folder"])
    assert verdicts(report) == verdicts(case["genuine"]) and not rejected  # not found under this key: parsed
    entries = sorted(p.name.rsplit(".", 1)[1] for p in (case["cache"] / "records").glob("*.jsonl.*"))
    assert len(entries) == 2 and len(set(entries)) == 2  # one entry per key id, neither overwritten


def test_the_command_prints_the_rejection(case):
    from click.testing import CliRunner

    from acards.cli import main

    case["entry"].write_bytes(flipped(case["entry"]))
    result = CliRunner().invoke(main, ["verify", str(case["card"]), "--bootstrap", "200", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "cache.entry-rejected" in result.stderr and case["entry"].name in result.stderr
    assert verdicts(json.loads(result.stdout)) == verdicts(case["genuine"])


def test_a_forged_checked_marker_does_not_skip_the_checks(case):
    """The marker that lets a re-verify skip the checks across records (duplicates, subjects) is
    MAC'd too: a records file with a duplicate, pinned anew, with a marker forged for its digest
    (a stale MAC), is still refused, and the marker is reported."""
    records = case["folder"] / "evidence" / "records.jsonl"
    first = records.read_bytes().split(b"\n", 1)[0]
    records.write_bytes(records.read_bytes() + first + b"\n")  # the first record again
    from acards.evidence.digests import digest_path
    from acards.evidence.records_cache import RecordsCache

    card = case["card"]
    text = card.read_text()
    old = text.split("sha256: ", 1)[1].split("\n", 1)[0]
    card.write_text(text.replace(old, digest_path(records)))
    cache = RecordsCache(case["cache"] / "records")
    marker, _ = cache._checked_path([(digest_path(records), "jsonl")])
    marker.write_bytes(case["checked"].read_bytes())  # a valid MAC, for other files
    with collected_warnings() as warnings, pytest.raises(AcardsError) as caught:
        verify(card, bootstrap=200)
    assert [p.code for p in caught.value.problems] == ["records.duplicate"]
    assert [w.code for w in warnings if "records cache" in w.message] == ["cache.entry-rejected"]
