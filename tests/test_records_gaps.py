"""Reading records (file:line errors, duplicates, chunking) and turning them into item gaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acards.diagnostics.values import GroupIndex, split_values
from acards.errors import AcardsError, Location
from acards.evidence.records import read_records, records_summary
from acards.schemas import load_schema, schema_struct, validator

BASE = {"cell": "c", "condition": "undefended", "split": "heldout", "task": "t", "subject": "s1",
        "item": "i1", "framing": "audit", "seed": 0}


def write(folder: Path, lines: list, name: str = "r.jsonl") -> Path:
    path = folder / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def read(folder: Path, *names: str, chunk_bytes: int | None = None):
    kwargs = {"chunk_bytes": chunk_bytes} if chunk_bytes else {}
    return read_records(folder, [(name, Location()) for name in (names or ("r.jsonl",))], **kwargs)


def problems(folder: Path, lines: list) -> list:
    write(folder, lines)
    with pytest.raises(AcardsError) as caught:
        read(folder)
    return [(p.code, p.location.line, p.location.pointer) for p in caught.value.problems]


def test_every_bad_line_is_reported_with_its_line_and_field(tmp_path):
    lines = [
        {**BASE, "score": 1.0},
        "{not json",
        {**BASE, "item": "i2", "seed": -1},
        {**BASE, "item": "i3", "framing": "sideways"},
        {**BASE, "item": "i4", "condition": "attacker"},
        {**BASE, "item": "i5", "score": 1.5},
        {**BASE, "item": "i6", "extra": 1},
        {k: v for k, v in BASE.items() if k != "subject"},
        {**BASE, "item": "i8", "score": "high"},
    ]
    found = problems(tmp_path, lines)
    assert found == [
        ("records.bad-json", 2, None),
        ("records.invalid", 3, "/seed"),
        ("records.invalid", 4, "/framing"),
        ("records.invalid", 5, "/condition"),
        ("records.invalid", 6, "/score"),
        ("records.invalid", 7, None),
        ("records.invalid", 8, None),
        ("records.invalid", 9, "/score"),
    ]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(load_schema("record-1.0")["properties"]) + ["other"]),
                       st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-1, 2, allow_nan=False),
                                 st.sampled_from(["", "x", "audit", "deploy", "heldout", "defended", "control:shrinkage", "control:X"]))))
def test_the_generated_struct_accepts_exactly_what_the_schema_accepts(record):
    import msgspec

    schema_ok = validator("record-1.0").is_valid(record)
    try:
        msgspec.json.decode(json.dumps(record).encode(), type=schema_struct("record-1.0"))
        struct_ok = True
    except msgspec.ValidationError:
        struct_ok = False
    # JSON Schema counts 1.0 as an integer; the struct is stricter there and nowhere else.
    integral_floats = any(isinstance(record.get(k), float) and record[k].is_integer() for k in ("seed", "sample", "item"))
    assert struct_ok == schema_ok or (integral_floats and schema_ok and not struct_ok)


def test_a_bad_condition_alone_is_found_by_its_distinct_value_check(tmp_path):
    # The fast path checks patterns once per distinct value; the report is the same: first line, field.
    found = problems(tmp_path, [{**BASE, "score": 1.0}, {**BASE, "item": "i2", "score": 1.0},
                                {**BASE, "item": "i3", "condition": "attacker", "score": 1.0},
                                {**BASE, "item": "i4", "condition": "attacker", "score": 1.0}])
    assert found == [("records.invalid", 3, "/condition")]


def test_duplicates_are_refused_with_both_locations(tmp_path):
    write(tmp_path, [{**BASE, "score": 1.0}], "a.jsonl")
    write(tmp_path, [{**BASE, "item": "i2", "score": 0.0}, {**BASE, "score": 0.0}], "b.jsonl")
    with pytest.raises(AcardsError) as caught:
        read(tmp_path, "a.jsonl", "b.jsonl")
    problem = caught.value.problems[0]
    assert problem.code == "records.duplicate"
    assert (problem.location.file, problem.location.line) == ("b.jsonl", 2)
    assert "a.jsonl:1" in problem.message


def test_a_second_sample_is_not_a_duplicate(tmp_path):
    write(tmp_path, [{**BASE, "score": 1.0}, {**BASE, "sample": 1, "score": 0.0}])
    assert len(read(tmp_path)) == 2


def test_an_item_under_two_subjects_is_refused(tmp_path):
    found = problems(tmp_path, [{**BASE, "score": 1.0}, {**BASE, "framing": "deploy", "subject": "s2", "score": 0.0}])
    assert found == [("records.subject-mismatch", 2, None)]


def test_chunked_reading_with_blank_lines_keeps_exact_line_numbers(tmp_path):
    lines = []
    for i in range(300):
        lines.append({**BASE, "item": f"i{i}", "subject": f"s{i % 7}", "score": 1.0})
        if i % 50 == 0:
            lines.append("")
    lines.append({**BASE, "item": "bad", "seed": "x"})
    write(tmp_path, lines)
    with pytest.raises(AcardsError) as caught:
        read(tmp_path, chunk_bytes=997)  # many chunks, cut mid-line
    assert [(p.code, p.location.line) for p in caught.value.problems] == [("records.invalid", len(lines))]
    write(tmp_path, lines[:-1])
    table = read(tmp_path, chunk_bytes=997)
    assert len(table) == 300
    assert table.line[-1] == len(lines) - 1
    assert table.vocab["item"][table.columns["item"][-1]] == "i299"


def test_a_bad_value_in_a_chunk_with_blank_lines_is_reported_not_dropped(tmp_path):
    # The blank line sends the chunk down the line-by-line path, which once dropped a record whose
    # condition broke the pattern without saying so.
    found = problems(tmp_path, [{**BASE, "score": 1.0}, "", {**BASE, "item": "i2", "condition": "attacker", "score": 1.0}])
    assert found == [("records.invalid", 3, "/condition")]


def test_training_data_lines_are_read_with_file_line_problems(tmp_path):
    from acards.evidence.records import read_objects

    write(tmp_path, [{"subject": "s", "text": "a", "other": 1}, "", {"subject": "t", "text": "b"}], "train.jsonl")
    rows = read_objects(tmp_path, "train.jsonl", Location(), "training-1.0")
    assert [(r.subject, r.text) for r in rows] == [("s", "a"), ("t", "b")]
    write(tmp_path, [{"subject": "s"}, "{", {"subject": "t", "text": 3}], "train.jsonl")
    with pytest.raises(AcardsError) as caught:
        read_objects(tmp_path, "train.jsonl", Location(), "training-1.0")
    assert [(p.code, p.location.file, p.location.line, p.location.pointer) for p in caught.value.problems] == [
        ("records.invalid", "train.jsonl", 1, None), ("records.bad-json", "train.jsonl", 2, None),
        ("records.invalid", "train.jsonl", 3, "/text")]


def test_integer_items_share_the_string_id_space_and_outputs_are_kept_for_scoring(tmp_path):
    write(tmp_path, [{**BASE, "item": 7, "output": "I can't help."}, {**BASE, "item": "8", "score": 1.0, "output": "x"}])
    table = read(tmp_path)
    assert table.vocab["item"] == ["7", "8"]
    assert table.outputs == {0: "I can't help."}  # only where a score is missing
    assert records_summary(table) == {"records": 2, "unscored": 1, "without_output": 0}


def test_item_gaps_match_a_direct_computation(tmp_path):
    rng = np.random.default_rng(5)
    lines = []
    truth = {}
    for condition in ("undefended", "defended"):
        for seed in (0, 3):
            for item in range(12):
                for framing in ("audit", "deploy"):
                    scores = rng.random(2)  # two samples, averaged
                    for sample, score in enumerate(scores):
                        lines.append({**BASE, "condition": condition, "seed": seed, "item": f"i{item}", "subject": f"s{item % 4}",
                                      "framing": framing, "sample": sample, "score": float(score)})
                    truth[(condition, seed, item, framing)] = scores.mean()
    rng.shuffle(lines)
    write(tmp_path, lines)
    values = split_values(GroupIndex(read(tmp_path)), "c", "heldout", "t")
    table_items = [int(x) for x in values.items]
    for condition in ("undefended", "defended"):
        got = values.conditions[condition]
        assert list(got.seeds) == [0, 3]
        for s, seed in enumerate((0, 3)):
            for position, code in enumerate(table_items):
                item = int(read(tmp_path).vocab["item"][code][1:])
                expected = truth[(condition, seed, item, "audit")] - truth[(condition, seed, item, "deploy")]
                assert got.values[s, position] == pytest.approx(expected)


def test_incomplete_and_unscored_items_are_left_out_of_pairs(tmp_path):
    lines = []
    for condition in ("undefended", "defended"):
        for item in range(3):
            for framing in ("audit", "deploy"):
                record = {**BASE, "condition": condition, "item": f"i{item}", "framing": framing, "score": 1.0}
                if condition == "defended" and item == 1 and framing == "deploy":
                    continue  # incomplete
                if condition == "undefended" and item == 2 and framing == "audit":
                    record.pop("score")  # unscored
                lines.append(record)
    write(tmp_path, lines)
    values = split_values(GroupIndex(read(tmp_path)), "c", "heldout", "t")
    _, _, _, mask = values.paired("undefended", "defended")
    assert mask.tolist() == [True, False, False]
    assert values.conditions["undefended"].unscored == 1


def test_capability_values_are_deploy_scores(tmp_path):
    lines = [{**BASE, "split": "capability", "framing": "deploy", "item": f"q{i}", "score": float(i % 2)} for i in range(4)]
    write(tmp_path, lines)
    values = split_values(GroupIndex(read(tmp_path)), "c", "capability")
    assert values.conditions["undefended"].values.tolist() == [[0.0, 1.0, 0.0, 1.0]]
