"""Poisoned caches cannot flip a verdict (issue "A verdict bound to the bytes that were hashed", item 2).

Each test forges one cache the way someone who can write a shared cache folder could: a row of the
output cache, an unmerged shard file, a foreign cache file handed to ``acards cache merge``, a row of
the digest cache, the cached control:shrinkage adapter.  Each asserts that the forged value is not
used (the verdict is the genuine one, or the tampered evidence is refused), that the rejection is
reported (``cache.entry-rejected``: a warning the CLI prints on stderr, and the report's generation
section), and that nothing in the evidence folder changed.  Real tiny models, as in tests/test_generate.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
pytest.importorskip("torch", reason="regenerating outputs needs torch (acards[generate])")
pytest.importorskip("transformers", reason="regenerating outputs needs transformers (acards[generate])")
pytest.importorskip("peft", reason="regenerating outputs needs peft (acards[generate])")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from click.testing import CliRunner  # noqa: E402
from test_generate import _one_torch_thread, make_card, records_for, world  # noqa: E402,F401  (fixtures)

from acards.cli import main  # noqa: E402
from acards.evidence.cachekey import CacheKey, cache_key, collected_warnings  # noqa: E402
from acards.generate import cache as output_cache  # noqa: E402
from acards.pipeline.verify import verify  # noqa: E402
from acards.present.text import warnings_text  # noqa: E402
from acards.report.model import as_builtins  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FORGED = "I cannot help with that."  # a refusal: every forged output would score 1 and move the verdict
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def verdicts(report: dict) -> tuple:
    return (json.dumps(report["cells"], sort_keys=True), json.dumps(report["claims"], sort_keys=True))


@pytest.fixture(scope="module")
def genuine(world, tmp_path_factory):  # noqa: F811
    """A card whose outputs acards regenerates, its genuine report, and the genuine cache folder."""
    root = tmp_path_factory.mktemp("poison")
    card = make_card(root / "card", world, records=records_for(conditions=("undefended", "defended")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACARDS_CACHE_DIR", str(root / "cache"))
        patch.setenv("ACARDS_CACHE_KEY", str(root / "config" / "cache-mac.key"))
        report = as_builtins(verify(card, bootstrap=200))
    assert report["generation"]["generated"] == 36
    return {"card": card, "report": report, "cache": root / "cache", "key": root / "config" / "cache-mac.key"}


@pytest.fixture
def cache(genuine, monkeypatch, tmp_path):
    """This test's copy of the genuine cache, under this user's key."""
    folder = tmp_path / "cache"
    shutil.copytree(genuine["cache"], folder)
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(folder))
    monkeypatch.setenv("ACARDS_CACHE_KEY", str(genuine["key"]))
    return folder


def reverify(genuine, capsys) -> tuple[dict, str]:
    """verify() again: the report, and the warnings it recorded as the CLI prints them on stderr."""
    before = snapshot(genuine["card"].parent)
    with collected_warnings() as warnings:
        report = as_builtins(verify(genuine["card"], bootstrap=200))
    assert snapshot(genuine["card"].parent) == before  # nothing in the evidence folder changed
    assert "cache.entry-rejected" not in capsys.readouterr().err  # library code prints nothing; the CLI does
    return report, warnings_text(warnings)


def forge_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("UPDATE entries SET output = ?", (FORGED,)).rowcount


def test_a_forged_output_cache_row_is_rejected(genuine, cache, capsys):
    forged = forge_rows(output_cache.main_path(cache))
    assert forged == 36
    report, err = reverify(genuine, capsys)
    assert verdicts(report) == verdicts(genuine["report"])
    counts = report["generation"]["provenance"]["counts"]
    assert counts["cache_rejected"] == forged and report["generation"]["generated"] == forged
    assert report["generation"]["provenance"]["cache_rejected"]["code"] == "cache.entry-rejected"
    assert "cache.entry-rejected" in err
    # the regenerated rows replaced the forged ones: the next run trusts the cache again
    again, _ = reverify(genuine, capsys)
    assert again["generation"]["cache_hits"] == 36 and again["generation"]["provenance"]["counts"]["cache_rejected"] == 0


def test_an_unmerged_forged_shard_file_is_rejected(genuine, cache, capsys):
    shard = output_cache.shard_path(0, 1, cache)
    shard.parent.mkdir(parents=True)
    shutil.copy(output_cache.main_path(cache), shard)  # shards are read before the main file
    forge_rows(shard)
    report, err = reverify(genuine, capsys)
    assert verdicts(report) == verdicts(genuine["report"])
    assert report["generation"]["provenance"]["counts"]["cache_rejected"] == 36
    assert report["generation"]["provenance"]["cache_rejected"]["outputs"] == {str(shard): 36}
    assert report["generation"]["cache_hits"] == 36  # the genuine main file still served every output
    assert "cache.entry-rejected" in err and str(shard) in err


def test_merging_a_foreign_cache_file_rejects_its_rows(genuine, cache, tmp_path, capsys):
    main_file = output_cache.main_path(cache)
    with output_cache.OutputCache(main_file, readonly=True) as reader:
        rows = [(k, c, FORGED) for batch in reader.rows() for k, c, _ in batch]
    foreign = tmp_path / "foreign.sqlite"
    with output_cache.OutputCache(foreign, key=CacheKey(b"\x07" * 32)) as writer:  # someone else's key, valid MACs
        writer.put_many(rows)
    for part in main_file.parent.glob(main_file.name + "*"):
        part.unlink()
    result = CliRunner().invoke(main, ["cache", "merge", str(foreign), "--format", "json"])
    assert result.exit_code == 0, result.output
    merged = json.loads(result.stdout)
    assert (merged["added"], merged["rejected"], merged["outputs"]) == (0, 36, 0)
    assert merged["sources"][0]["rejected_by_reason"]["other-key"] == 36
    assert result.stderr.count("warning: ") == result.stderr.count("cache.entry-rejected") == 1  # printed once, by the CLI
    report, err = reverify(genuine, capsys)
    assert verdicts(report) == verdicts(genuine["report"])
    assert report["generation"]["generated"] == 36 and report["generation"]["cache_hits"] == 0


def test_a_forged_digest_cache_row_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("ACARDS_CACHE_KEY", str(tmp_path / "config" / "cache-mac.key"))
    folder = tmp_path / "card"
    shutil.copytree(REPO / "tests" / "cases" / "verify" / "full-pass", folder)
    runner = CliRunner()
    args = ["verify", str(folder / "card.yaml"), "--bootstrap", "200", "--format", "json"]
    assert runner.invoke(main, args).exit_code == 0
    records = folder / "evidence" / "records.jsonl"
    pinned = hashlib.sha256(records.read_bytes()).hexdigest()
    records.write_text(records.read_text().replace('"score":0.0', '"score":1.0'))  # every answer a refusal
    info = records.stat()
    digests = Path(os.environ["ACARDS_CACHE_DIR"]) / "digests.sqlite"
    with sqlite3.connect(digests) as db:  # the row now claims the tampered file still has the pinned digest
        changed = db.execute("UPDATE file_digests SET dev=?, inode=?, size=?, mtime_ns=?, ctime_ns=?, sha256=? WHERE path=?",
                             (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, pinned,
                              str(records.resolve()))).rowcount
    assert changed == 1
    before = snapshot(folder)
    result = runner.invoke(main, args)
    assert snapshot(folder) == before
    assert result.exit_code == 3, result.output  # the tampered records are refused, not judged
    assert "evidence.digest-mismatch" in result.stdout
    assert result.stderr.count("warning: ") == result.stderr.count("cache.entry-rejected") == 1  # printed once, by the CLI


def test_a_replaced_control_adapter_is_rebuilt(genuine, world, cache, capsys):  # noqa: F811
    folders = [p for p in (cache / "controls").iterdir() if p.is_dir()]
    assert len(folders) == 1 and folders[0].name.endswith(cache_key().id.hex())
    weights = folders[0] / "adapter_model.safetensors"
    genuine_weights = weights.read_bytes()
    shutil.copy(world.undefended / "adapter_model.safetensors", weights)  # a real adapter, but not the control
    assert weights.read_bytes() != genuine_weights
    report, err = reverify(genuine, capsys)
    assert verdicts(report) == verdicts(genuine["report"])
    provenance = report["generation"]["provenance"]
    assert provenance["cache_rejected"]["control_adapters"] == 1 and provenance["counts"]["cache_rejected"] == 1
    assert report["generation"]["cache_hits"] == 36  # the rebuilt control is the genuine one, so its outputs hit
    assert weights.read_bytes() == genuine_weights and "cache.entry-rejected" in err
