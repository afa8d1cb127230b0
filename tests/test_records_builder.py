"""How read_records assembles its table: columns grown in place (one copy of the table at a time),
the same table whatever the piece size, and regenerated scores placed on the rows they identify."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from acards.errors import Location
from acards.evidence import records
from acards.evidence.records import IDENTITY, _Column, fill_scores, read_records


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
