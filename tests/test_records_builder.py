"""How read_records assembles its table: columns grown in place (one copy of the table at a time),
the same table whatever the piece size, and regenerated scores placed on the rows they identify."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from acards.errors import Location
from acards.evidence import records
from acards.evidence.cachekey import CacheKey
from acards.evidence.digests import digest_path
from acards.evidence.records import IDENTITY, _Column, fill_scores, read_records
from acards.evidence.records_cache import RecordsCache


def test_a_grown_column_holds_exactly_the_parts_appended():
    rng = np.random.default_rng(7)
    for dtype in (np.int32, np.int64, np.float64, bool):
        parts = [rng.integers(0, 100, size).astype(dtype) for size in (0, 1, 5000, 3, 20_000, 0, 7)]
        column = _Column()
        for part in parts:
            column.append(part)
        joined = column.joined(dtype)
        assert joined.dtype == np.dtype(dtype) and np.array_equal(joined, np.concatenate(parts))
    assert _Column().joined(np.int32).dtype == np.int32 and len(_Column().joined(np.int32)) == 0


def _lines(count: int) -> list[dict]:
    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        record = {"cell": f"cell-{i % 3}", "condition": ["undefended", "defended"][i % 2], "split": "heldout",
                  "task": "t", "subject": f"s{i % 11}", "item": i if i % 5 else f"item-{i}",
                  "framing": ["audit", "deploy"][(i // 2) % 2], "seed": i % 4, "sample": 0}
        if rng.random() < 0.7:
            record["score"] = float(rng.integers(0, 2))
        else:
            record["output"] = f"output {i}"
        out.append(record)
    return out


def _write(folder: Path, rows: list[dict]) -> None:
    (folder / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _plain(table) -> list[tuple]:
    return [tuple(table.vocab[n][table.columns[n][row]] if n in records.CODED else table.columns[n][row].item()
                  for n in (*records.CODED, "seed", "sample", "has_output"))
            + (np.float64(table.columns["score"][row]).tobytes(), int(table.line[row])) for row in range(len(table))]


def test_the_table_is_the_same_whatever_the_piece_size(tmp_path):
    _write(tmp_path, _lines(3000))
    whole = read_records(tmp_path, [("r.jsonl", Location())])
    assert len(whole) == 3000
    for size in (300, 4096, 65_536):  # many pieces: many appends, each column grown several times
        pieces = read_records(tmp_path, [("r.jsonl", Location())], chunk_bytes=size)
        assert _plain(pieces) == _plain(whole)
        assert pieces.outputs == whole.outputs


def _fill_one_row_at_a_time(table, made: list[dict]) -> int:
    """The definition: each unscored row whose identity (as text) a made record carries gets its score."""
    wanted = {tuple(str(r[n]) for n in IDENTITY): r.get("score") for r in made}
    filled = 0
    for row in np.flatnonzero(np.isnan(table.columns["score"])):
        identity = tuple(str(table.vocab[n][table.columns[n][row]]) if n in records.CODED else str(table.columns[n][row])
                         for n in IDENTITY)
        if wanted.get(identity) is not None:
            table.columns["score"][row] = wanted[identity]
            filled += 1
    return filled


def test_regenerated_scores_land_on_the_rows_they_identify(tmp_path):
    rows = _lines(2000)
    _write(tmp_path, rows)
    unscored = [r for r in rows if "score" not in r]
    # scores for most unscored rows, one with no score, and records that identify no row
    made = [{**r, "score": (i % 3) / 2} for i, r in enumerate(unscored[:-10])]
    made[0].pop("score")
    made += [{**unscored[0], "seed": 99, "score": 1.0}, {**unscored[1], "item": "nowhere", "score": 1.0}]
    table = read_records(tmp_path, [("r.jsonl", Location())])
    expected = read_records(tmp_path, [("r.jsonl", Location())])
    count = fill_scores(table, made)
    assert count == _fill_one_row_at_a_time(expected, made) == len(unscored) - 11
    assert np.array_equal(table.columns["score"], expected.columns["score"], equal_nan=True)
    assert fill_scores(table, []) == 0


# Reads r.jsonl under argv[1] with the records cache argv[2] (key argv[4]), digest argv[3] pinned, in
# a fresh interpreter; prints the rows and which parsing modules the read imported.
_RE_READ = """
import json, sys
from pathlib import Path
from acards.errors import Location
from acards.evidence.cachekey import CacheKey
from acards.evidence.records import read_records
from acards.evidence.records_cache import RecordsCache
root, folder, digest, secret = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], bytes.fromhex(sys.argv[4])
cache = RecordsCache(folder, CacheKey(secret))
table = read_records(root, [("r.jsonl", Location())], sha256=[digest], cache=cache)
watched = ("acards.evidence.flatjson", "acards.evidence.columnar")
print(json.dumps({"rows": len(table), "rejected": len(cache.rejected), "imported": [m for m in watched if m in sys.modules]}))
"""


def test_a_re_read_from_the_records_cache_imports_no_parser(tmp_path):
    """A re-read whose every file comes from the records cache parses nothing: neither the
    vectorized decoder nor the columnar reader is imported (a fresh interpreter tells); a first
    read in the same setting imports the decoder."""
    _write(tmp_path, _lines(500))
    digest, secret = digest_path(tmp_path / "r.jsonl"), bytes(range(32))
    first = read_records(tmp_path, [("r.jsonl", Location())], sha256=[digest],
                         cache=RecordsCache(tmp_path / "cache", CacheKey(secret)))

    def fresh(folder: Path) -> dict:
        done = subprocess.run([sys.executable, "-c", _RE_READ, str(tmp_path), str(folder), digest, secret.hex()],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    assert fresh(tmp_path / "cache") == {"rows": len(first), "rejected": 0, "imported": []}
    parsed = fresh(tmp_path / "empty")
    assert parsed["rows"] == len(first) and "acards.evidence.flatjson" in parsed["imported"]


def test_files_read_straight_into_the_table_equal_files_read_one_by_one(tmp_path):
    """Without a records cache every file's pieces go straight into one table; with one, each file
    becomes its own table (the cache's entry) first: the two give the same table, vocabularies
    (in order of first appearance) included, for files read by the vectorized decoder, by the
    exact reader (a tab between tokens) or by both."""
    rows = _lines(3000)
    texts = ["".join(json.dumps(r) + "\n" for r in rows[:1000]),
             "".join(json.dumps(r).replace(', "seed"', ',\t"seed"') + "\n" for r in rows[1000:1400]),
             "".join((json.dumps(r).replace(', "seed"', ',\t"seed"') if i % 97 == 0 else json.dumps(r)) + "\n"
                     for i, r in enumerate(rows[1400:]))]
    paths = []
    for index, text in enumerate(texts):
        (tmp_path / f"r{index}.jsonl").write_text(text)
        paths.append((f"r{index}.jsonl", Location()))
    digests = [digest_path(tmp_path / name) for name, _ in paths]
    straight = read_records(tmp_path, paths, sha256=digests, chunk_bytes=20_000)
    one_by_one = read_records(tmp_path, paths, sha256=digests, chunk_bytes=20_000,
                              cache=RecordsCache(tmp_path / "cache", CacheKey(bytes(32))))
    assert _plain(straight) == _plain(one_by_one) and len(straight) == 3000
    assert straight.vocab == one_by_one.vocab
    assert straight.file_index.tolist() == one_by_one.file_index.tolist() == [0] * 1000 + [1] * 400 + [2] * 1600
    assert straight.outputs == one_by_one.outputs and straight.outputs


def test_a_key_with_two_values_is_found_as_a_set_of_pairs_finds_it():
    """records.has_two_values (the subject check, and the batch import's) against plain sets, in
    its one-sort path and, with keys too large to pack with the value, its counting path."""
    rng = np.random.default_rng(20261202)
    for trial in range(200):
        size = int(rng.integers(0, 40))
        keys = rng.integers(0, 12, size).astype(np.int64)
        values = rng.integers(0, 3 if trial % 2 else 1, size).astype(np.int64)
        if trial % 3 == 0:
            keys += 2**61  # (key, value) no longer fits 62 bits
        expected = len(set(keys.tolist())) != len(set(zip(keys.tolist(), values.tolist())))
        assert records.has_two_values(keys, values) == expected, (keys, values)
