"""Parquet and Arrow IPC records (``format`` on a records pointer): the same table as JSONL, the same
record schema, the same coded problems with a row number where JSONL names a line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from acards.cli import main
from acards.errors import AcardsError, Location
from acards.evidence.digests import digest_path
from acards.evidence.records import read_records
from acards.pipeline.verify import verify
from acards.report.model import as_builtins

pa = pytest.importorskip("pyarrow", reason="Parquet and Arrow records need pyarrow (acards[columnar])")
pytest.importorskip("pyarrow.ipc", reason="Arrow IPC records need pyarrow (acards[columnar])")
import pyarrow.parquet as pq  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "tests" / "cases" / "verify" / "full-pass"
BASE = {"cell": "c", "condition": "undefended", "split": "heldout", "task": "t", "subject": "s1",
        "item": "i1", "framing": "audit", "seed": 0}


def rows_of(table) -> list[tuple]:
    out = []
    for row in range(len(table)):
        out.append((tuple(table.vocab[n][table.columns[n][row]] for n in ("cell", "condition", "split", "task", "subject", "item", "framing")),
                    int(table.columns["seed"][row]), int(table.columns["sample"][row]), repr(float(table.columns["score"][row])),
                    bool(table.columns["has_output"][row]), table.outputs.get(row), table.prompts.get(row)))
    return out


def write_columnar(path: Path, records: list[dict], fmt: str, schema=None) -> None:
    table = pa.Table.from_pylist(records, schema=schema)
    if fmt == "parquet":
        pq.write_table(table, path, row_group_size=7)  # several row groups: chunked columns
    elif fmt == "arrow":
        with pa.ipc.new_file(str(path), table.schema) as writer:
            writer.write_table(table, max_chunksize=5)
    else:  # an Arrow IPC stream
        with pa.ipc.new_stream(str(path), table.schema) as writer:
            writer.write_table(table)


def read(folder: Path, name: str, fmt: str):
    return read_records(folder, [(name, Location())], formats=[fmt])


def problems(folder: Path, records: list[dict], schema=None) -> list[tuple]:
    write_columnar(folder / "r.parquet", records, "parquet", schema)
    with pytest.raises(AcardsError) as caught:
        read(folder, "r.parquet", "parquet")
    return [(p.code, p.location.line, p.location.pointer) for p in caught.value.problems]


def sample_records() -> list[dict]:
    out = []
    for i in range(40):
        record = {**BASE, "item": f"i{i % 13}", "subject": f"s{i % 13 % 4}", "seed": i // 13, "framing": ("audit", "deploy")[i % 2],
                  "split": "fresh" if i >= 26 else "heldout", "condition": ("undefended", "defended")[(i // 2) % 2]}
        record["item"] = f"{record['item']}-{record['condition']}-{i}"
        if i % 3:
            record["score"] = (i % 5) / 4
        if i % 4 == 0:
            record["output"] = f"out {i} ☕"
        if i >= 26:
            record["prompt"] = f"prompt {i}"
        if i % 7 == 0:
            record["sample"] = 0
        out.append(record)
    return out


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "stream"])
def test_columnar_records_read_as_the_same_table_as_jsonl(tmp_path, fmt):
    records = sample_records()
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    columns = [{k: r.get(k) for k in ("cell", "condition", "split", "task", "subject", "item", "framing", "seed", "sample",
                                      "prompt", "output", "score")} for r in records]  # absent fields as nulls
    write_columnar(tmp_path / "r.bin", columns, fmt)
    expected = read(tmp_path, "r.jsonl", "jsonl")
    found = read(tmp_path, "r.bin", "arrow" if fmt == "stream" else fmt)
    assert rows_of(found) == rows_of(expected)
    assert found.line.tolist() == list(range(1, len(records) + 1))  # a row's number where JSONL has a line


def test_integer_items_and_dictionary_columns(tmp_path):
    records = [{**BASE, "item": i, "subject": f"s{i % 3}", "score": 1.0} for i in range(10)]
    table = pa.Table.from_pylist(records)
    table = table.set_column(table.schema.get_field_index("subject"), "subject", table.column("subject").dictionary_encode())
    pq.write_table(table, tmp_path / "r.parquet")
    found = read(tmp_path, "r.parquet", "parquet")
    assert [found.vocab["item"][c] for c in found.columns["item"]] == [str(i) for i in range(10)]
    assert [found.vocab["subject"][c] for c in found.columns["subject"]] == [f"s{i % 3}" for i in range(10)]


def test_schema_problems_name_the_row_and_field(tmp_path):
    records = [{**BASE, "item": f"i{i}", "score": 1.0} for i in range(8)]
    records[2]["framing"] = "sideways"
    records[3]["seed"] = -1
    records[5]["score"] = 1.5
    records[6]["cell"] = ""
    records[7]["condition"] = "attacker"
    assert problems(tmp_path, records) == [
        ("records.invalid", 7, "/cell"), ("records.invalid", 3, "/framing"), ("records.invalid", 4, "/seed"),
        ("records.invalid", 6, "/score")]  # the condition pattern is checked once the columns are read:
    records[2]["framing"], records[3]["seed"], records[5]["score"], records[6]["cell"] = "audit", 0, 1.0, "c"
    assert problems(tmp_path, records) == [("records.invalid", 8, "/condition")]


def test_columns_must_be_record_fields_of_the_schema_types(tmp_path):
    assert problems(tmp_path, [{**BASE, "extra": 1}]) == [("records.invalid", None, "/extra")]
    no_subject = {k: v for k, v in BASE.items() if k != "subject"}
    assert problems(tmp_path, [no_subject]) == [("records.invalid", None, "/subject")]
    assert problems(tmp_path, [{**BASE, "seed": 0.0}]) == [("records.invalid", 1, "/seed")]  # an integer field
    assert problems(tmp_path, [{**BASE, "score": "high"}]) == [("records.invalid", 1, "/score")]
    assert problems(tmp_path, [BASE, {**BASE, "item": "i2", "subject": None}]) == [("records.invalid", 2, "/subject")]
    scored = {**BASE, "score": 1.0}
    assert problems(tmp_path, [scored, {**scored, "item": "i2", "score": float("nan")}]) == [("records.invalid", 2, "/score")]
    big = pa.schema([(k, pa.uint64() if k == "seed" else pa.string()) for k in BASE])
    assert problems(tmp_path, [BASE, {**BASE, "item": "i2", "seed": 2 ** 63}], big) == [("records.out-of-range", 2, "/seed")]


def test_null_in_an_optional_column_is_an_absent_field(tmp_path):
    schema = pa.schema([*((k, pa.int64() if k == "seed" else pa.string()) for k in BASE), ("score", pa.float64()),
                        ("output", pa.string())])
    write_columnar(tmp_path / "r.parquet", [{**BASE, "score": None, "output": None}, {**BASE, "item": "i2", "score": 0.5}],
                   "parquet", schema)
    table = read(tmp_path, "r.parquet", "parquet")
    assert np.isnan(table.columns["score"][0]) and table.columns["score"][1] == 0.5
    assert table.columns["has_output"].tolist() == [False, False]
    write_columnar(tmp_path / "r.parquet", [{**BASE, "output": None}], "parquet")  # a column of Arrow's null type
    assert read(tmp_path, "r.parquet", "parquet").columns["has_output"].tolist() == [False]
    assert problems(tmp_path, [{**BASE, "subject": None}]) == [("records.invalid", 1, "/subject")]


def test_duplicates_and_subjects_are_checked_as_for_jsonl(tmp_path):
    found = problems(tmp_path, [BASE, {**BASE, "score": 1.0}])
    assert found == [("records.duplicate", 2, None)]
    found = problems(tmp_path, [BASE, {**BASE, "framing": "deploy", "subject": "s2"}])
    assert found == [("records.subject-mismatch", 2, None)]


def test_a_file_that_is_not_what_its_pointer_says(tmp_path):
    (tmp_path / "r.jsonl").write_text(json.dumps(BASE) + "\n")
    with pytest.raises(AcardsError) as caught:
        read(tmp_path, "r.jsonl", "parquet")
    (problem,) = caught.value.problems
    assert problem.code == "records.bad-format" and "format: jsonl" in problem.hint
    write_columnar(tmp_path / "r.parquet", [BASE], "parquet")
    with pytest.raises(AcardsError) as caught:
        read(tmp_path, "r.parquet", "jsonl")  # the default format: nothing is guessed from the name
    (problem,) = caught.value.problems
    assert problem.code == "records.bad-format" and "format: parquet" in problem.hint
    (tmp_path / "cut.parquet").write_bytes((tmp_path / "r.parquet").read_bytes()[:-20])
    with pytest.raises(AcardsError) as caught:
        read(tmp_path, "cut.parquet", "parquet")
    assert [p.code for p in caught.value.problems] == ["records.bad-format"]


def parquet_case(tmp_path: Path, fmt: str = "parquet") -> Path:
    """The golden full-pass case with its records as a Parquet (or Arrow) file."""
    folder = tmp_path / "case"
    shutil.copytree(CASE, folder)
    lines = (folder / "evidence" / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    name = f"evidence/records.{fmt}"
    write_columnar(folder / name, records, fmt)
    (folder / "evidence" / "records.jsonl").unlink()
    card = folder / "card.yaml"
    text = card.read_text()
    old = text[text.index("    - path: evidence/records.jsonl"):text.index("cells:")]
    card.write_text(text.replace(old, f"    - path: {name}\n      sha256: {digest_path(folder / name)}\n      format: {fmt}\n"))
    return card


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_card_with_columnar_records_verifies_as_its_jsonl_twin(tmp_path, fmt):
    card = parquet_case(tmp_path, fmt)
    assert CliRunner().invoke(main, ["validate", str(card)]).exit_code == 0
    genuine = as_builtins(verify(CASE / "card.yaml", bootstrap=200, use_cache=False))
    report = as_builtins(verify(card, bootstrap=200, use_cache=False))
    assert report["reproduced"] and json.dumps(report["cells"], sort_keys=True) == json.dumps(genuine["cells"], sort_keys=True)
    assert report["generation"]["provenance"]["records"] == genuine["generation"]["provenance"]["records"]


def test_an_unknown_format_is_a_schema_error(tmp_path):
    card = parquet_case(tmp_path)
    card.write_text(card.read_text().replace("format: parquet", "format: csv"))
    result = CliRunner().invoke(main, ["validate", str(card), "--format", "json"])
    assert result.exit_code == 2
    assert "schema.enum" in result.output and "/evidence/records/0/format" in result.output
