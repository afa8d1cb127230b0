"""A fully cached re-verify does not complete the evidence again, nor read the checkpoints again:
the completed table (every regenerated score placed, the control records appended) with the report's
generation section, and each weight signature, are kept in the records cache under the digest of
everything they depend on, MAC'd under the user's cache key (acards.pipeline.complete,
acards.pipeline.recompute, acards.evidence.records_cache).  Real tiny models (tests/test_generate.py's
world): the first verify generates, the second (every output cached) stores the completed table, the
third reads it.  Each test checks that the report is the same, byte for byte but the time the
generation step took, with the entries, without them (``use_cache=False``, ``--no-cache``), and after
an entry was tampered with."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

from cli_run import run_fresh  # noqa: E402
from test_generate import _one_torch_thread, make_card, records_for, world  # noqa: E402,F401  (fixtures)

from acards.evidence import records_cache  # noqa: E402
from acards.evidence.cachekey import CacheKey, cache_key, collected_warnings  # noqa: E402
from acards.pipeline.complete import completion_key  # noqa: E402
from acards.pipeline.load import load  # noqa: E402
from acards.pipeline.verify import verify  # noqa: E402
from acards.present.text import report_json  # noqa: E402

SECONDS = re.compile(r'("seconds":\s*)[-0-9.eE+]+')
HEAVY = ("torch", "transformers", "peft", "acards.generate.runner", "acards.evidence.checkpoints",
         "subprocess", "numpy.ma")  # the last two: a `uname -p` subprocess and the first plain np.unique (30 ms)


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def reverify(card: Path, **options) -> tuple[str, list]:
    """The report's JSON text with the generation step's time blanked, and the cache.entry-rejected
    warnings recorded; nothing in the card's folder may change."""
    before = snapshot(card.parent)
    with collected_warnings() as warnings:
        text = report_json(verify(card, bootstrap=200, **options))
    assert snapshot(card.parent) == before
    return SECONDS.sub(r"\g<1>0", text), [w for w in warnings if w.code == "cache.entry-rejected"]


def entries(kind: str) -> list[Path]:
    return sorted((Path(os.environ["ACARDS_CACHE_DIR"]) / "records").glob(f"*.{kind}.*"))


def opened(entry: Path, key=None) -> dict:
    """The entry's content (verified under this user's key)."""
    purpose, version, _ = records_cache.DERIVED[entry.name.split(".")[1]]
    value = records_cache._open(entry.read_bytes(), key or cache_key(), (purpose, entry.name.split(".")[0], version))
    assert value is not None
    return value


def sealed(entry: Path, value: dict, key) -> bytes:
    purpose, version, _ = records_cache.DERIVED[entry.name.split(".")[1]]
    return records_cache._seal(value, key, (purpose, entry.name.split(".")[0], version))


def flipped(entry: Path, key=None) -> bytes:
    """The completed entry with every score flipped (1 − score): re-MAC'd under ``key``, or with
    the genuine MAC, now stale."""
    value = opened(entry)
    value["columns"]["score"] = 1.0 - value["columns"]["score"]
    forged = sealed(entry, value, key or cache_key())
    if key is None:
        data, start = entry.read_bytes(), len(records_cache.MAGIC)
        forged = forged[:start] + data[start:start + 32] + forged[start + 32:]
    return forged


@pytest.fixture
def regenerated(world, tmp_path):  # noqa: F811
    """A card whose undefended and defended outputs (and the control) are all regenerated, verified
    twice: the first verify generates (no completed entry: it made model calls), the second finds
    every output in the output cache and stores the completed table."""
    card = make_card(tmp_path / "card", world, records=records_for(conditions=("undefended", "defended")))
    first, _ = reverify(card)
    assert json.loads(first)["generation"]["generated"] > 0 and not entries("completed")
    second, rejected = reverify(card)
    assert not rejected and json.loads(second)["generation"]["cache_hits"] == json.loads(first)["generation"]["generated"]
    assert json.loads(second)["cells"] == json.loads(first)["cells"]
    (entry,) = entries("completed")
    assert entries("signature")  # the mechanism diagnostic read the adapters once
    return {"card": card, "report": second, "entry": entry}


def _cli(*args: str) -> dict:
    return run_fresh(HEAVY, *args)


def test_a_reverify_reads_the_completed_table_and_reports_the_same_bytes(regenerated, tmp_path):
    card, genuine = regenerated["card"], regenerated["report"]
    again, rejected = reverify(card)
    assert again == genuine and not rejected
    without, _ = reverify(card, use_cache=False)  # completed again from the output cache, checkpoints read again
    assert without == genuine
    # As a command: neither the output cache's runner nor the checkpoint reader is even imported.
    ran = _cli("verify", str(card), "--report", str(tmp_path / "cli.json"), "--bootstrap", "200")
    assert ran["imported"] == []
    assert SECONDS.sub(r"\g<1>0", (tmp_path / "cli.json").read_text().strip()) == genuine
    ran = _cli("verify", str(card), "--no-cache", "--report", str(tmp_path / "no-cache.json"), "--bootstrap", "200")
    assert "acards.generate.runner" in ran["imported"] and "acards.evidence.checkpoints" in ran["imported"]
    assert "torch" not in ran["imported"]  # every output is still in the output cache
    assert SECONDS.sub(r"\g<1>0", (tmp_path / "no-cache.json").read_text().strip()) == genuine


def test_the_entry_is_what_a_hit_uses_and_no_cache_bypasses_it(regenerated):
    """An entry under this user's key is trusted (this user's acards wrote it): one with flipped
    scores flips the result, which shows the table came from the entry; use_cache=False ignores it."""
    entry = regenerated["entry"]
    entry.write_bytes(flipped(entry, cache_key()))
    poisoned, rejected = reverify(regenerated["card"])
    assert not rejected and json.loads(poisoned)["cells"] != json.loads(regenerated["report"])["cells"]
    clean, _ = reverify(regenerated["card"], use_cache=False)
    assert clean == regenerated["report"]


@pytest.mark.parametrize("how", ["stale-mac", "other-key", "truncated", "garbage", "link"])
def test_a_tampered_entry_is_rejected_reported_and_rewritten(regenerated, how, tmp_path):
    entry = regenerated["entry"]
    genuine_bytes = entry.read_bytes()
    if how == "link":  # a valid entry elsewhere: not a regular file of the cache folder
        target = tmp_path / "elsewhere"
        target.write_bytes(flipped(entry, cache_key()))
        entry.unlink()
        entry.symlink_to(target)
    else:
        entry.write_bytes({"stale-mac": lambda: flipped(entry), "other-key": lambda: flipped(entry, CacheKey(b"\x07" * 32)),
                           "truncated": lambda: genuine_bytes[:len(genuine_bytes) // 2],
                           "garbage": lambda: records_cache.MAGIC + os.urandom(200)}[how]())
    report, rejected = reverify(regenerated["card"])
    assert report == regenerated["report"]
    assert len(rejected) == 1 and entry.name in rejected[0].message and "completed again" in rejected[0].message
    assert not entry.is_symlink() and opened(entry)["extra"]["section"]["cache_hits"] > 0  # rewritten, and it verifies
    again, rejected = reverify(regenerated["card"])
    assert again == regenerated["report"] and not rejected


def test_a_tampered_signature_is_rejected_and_the_checkpoints_read_again(regenerated):
    for entry in entries("signature"):
        value = opened(entry)
        value["extra"] = {**value["extra"], "observed_class": "forged"}
        data, start = entry.read_bytes(), len(records_cache.MAGIC)
        forged = sealed(entry, value, cache_key())
        entry.write_bytes(forged[:start] + data[start:start + 32] + forged[start + 32:])  # the genuine MAC, now stale
    report, rejected = reverify(regenerated["card"])
    assert report == regenerated["report"]
    assert len(rejected) == len(entries("signature")) and all("checkpoints are read again" in w.message for w in rejected)


def _changed_prompt(card: Path) -> None:
    prompts = card.parent / "evidence" / "prompts.jsonl"
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    rows[1]["prompt"] += " Be brief."
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = json.loads(card.read_text())
    data["evidence"]["prompts"]["sha256"] = hashlib.sha256(prompts.read_bytes()).hexdigest()
    card.write_text(json.dumps(data, indent=1))


def _changed_scorer(card: Path) -> None:
    data = json.loads(card.read_text())
    data["scorer"] = {"kind": "regex", "pattern": "e"}
    card.write_text(json.dumps(data, indent=1))


@pytest.mark.parametrize("change", [_changed_prompt, _changed_scorer])
def test_changed_evidence_or_settings_miss(regenerated, change):
    """A prompt changed (its digest updated in the card) or another scorer: the completed table
    named by the old inputs is not used; the new one equals a verify without the cache."""
    card = regenerated["card"]
    change(card)
    report, rejected = reverify(card)
    generation = json.loads(report)["generation"]
    assert not rejected and report != regenerated["report"]
    if change is _changed_prompt:  # that prompt's outputs (both conditions and the control) are generated again
        assert generation["generated"] > 0 and len(entries("completed")) == 1  # not fully cached: nothing stored
    else:  # the same outputs, every one cached, scored by the new scorer: stored beside the old entry
        assert generation["generated"] == 0 and len(entries("completed")) == 2
    again, _ = reverify(card)
    without, _ = reverify(card, use_cache=False)
    assert again == without and json.loads(again)["cells"] == json.loads(report)["cells"]
    assert len(entries("completed")) == 2


def test_the_key_binds_what_the_completed_table_depends_on(regenerated, monkeypatch, tmp_path):
    card = load(regenerated["card"]).card
    cache_dir = Path(os.environ["ACARDS_CACHE_DIR"])
    base = completion_key(card, None, cache_dir)
    assert completion_key(card, None, cache_dir) == base
    assert completion_key(card, "cpu", cache_dir) != base  # the device asked for
    assert completion_key(card, None, tmp_path / "other-cache") != base  # the output cache read
    shards = cache_dir / "outputs" / "shards"
    shards.mkdir(parents=True)
    (shards / "shard-00000-of-00002.sqlite").write_bytes(b"")
    assert completion_key(card, None, cache_dir) != base  # a shard file not merged yet is read too
    (shards / "shard-00000-of-00002.sqlite").unlink()
    from acards.generate.backends import base as backends

    monkeypatch.setattr(backends, "installed_version", lambda name: "0.0.1" if name == "torch" else None)
    assert completion_key(card, None, cache_dir) != base  # another torch (another output cache key)
    monkeypatch.undo()
    assert completion_key(card, None, cache_dir) == base
    monkeypatch.setattr("acards.__version__", "99.0")
    assert completion_key(card, None, cache_dir) != base
    monkeypatch.undo()
    data = json.loads(regenerated["card"].read_text())
    data["generation"]["batch_size"] = 3  # any change to the card's bytes
    regenerated["card"].write_text(json.dumps(data, indent=1))
    assert completion_key(load(regenerated["card"]).card, None, cache_dir) != base


def test_a_classifier_scorer_or_imported_records_are_never_cached(regenerated):
    """A classifier's scores depend on the device it runs on; imported records have no records file
    to bound an entry by: neither card's completed table is kept."""
    from acards.pipeline.complete import _cacheable

    card = load(regenerated["card"]).card
    assert _cacheable(card)
    card.data["capability_scorer"] = {"kind": "classifier", "model": {"path": "m", "sha256": "0" * 64}, "label": "x"}
    assert not _cacheable(card)
    del card.data["capability_scorer"]
    card.data["evidence"]["records"] = {"from": "import"}
    assert not _cacheable(card)
