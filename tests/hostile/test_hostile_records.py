"""Hostile records files: every non-blank line is one record or one coded problem, never silently
dropped; the card's records pointers are bounded; the bytes parsed are the bytes the card pins.

Each case copies tests/cases/verify/full-pass to tmp_path, alters its records (and re-pins the
digest, so the records reader itself is what refuses), runs `acards verify CARD --no-generate
--bootstrap 200` through the CLI, and checks the exact error code, the exit status, and that the
evidence folder is byte for byte what it was before the run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from acards import jsonl
from acards.cli import main
from acards.errors import AcardsError, Location
from acards.evidence.records import read_objects, read_records

BASE = Path(__file__).resolve().parents[1] / "cases" / "verify" / "full-pass"
RECORDS = "evidence/records.jsonl"
ORIGINAL = (BASE / RECORDS).read_bytes()
LINES = ORIGINAL.rstrip(b"\n").split(b"\n")
assert len(LINES) > 100


def make_case(tmp_path: Path, data: bytes | None = None, card_edit=None) -> Path:
    """The full-pass case in tmp_path with ``data`` as its records (digest re-pinned)."""
    folder = tmp_path / "case"
    shutil.copytree(BASE, folder)
    if data is not None:
        (folder / RECORDS).write_bytes(data)
    card = folder / "card.yaml"
    text = re.sub(r"sha256: [0-9a-f]{64}", "sha256: " + hashlib.sha256((folder / RECORDS).read_bytes()).hexdigest(),
                  card.read_text())
    card.write_text(card_edit(text) if card_edit else text)
    return card


def folder_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def verify(card: Path) -> tuple[int, dict]:
    """(exit status, JSON output) of the CLI; the evidence folder must not change."""
    evidence = card.parent / "evidence"
    before = folder_digest(evidence)
    result = CliRunner().invoke(main, ["verify", str(card), "--no-generate", "--bootstrap", "200", "--format", "json"])
    assert folder_digest(evidence) == before, "verify changed the evidence folder"
    text = result.stdout
    return result.exit_code, json.loads(text[text.index("{"):])


def refused(card: Path, code: str, exit_status: int, line: int | None = None) -> list[dict]:
    status, output = verify(card)
    assert status == exit_status, output
    problems = output["problems"]
    assert problems and all(p["code"] == code for p in problems), problems
    if line is not None:
        assert problems[0]["location"]["line"] == line, problems
    return problems


def joined(lines: list[bytes], end: bytes = b"\n") -> bytes:
    return end.join(lines) + end


def with_line(index: int, new: bytes) -> bytes:
    lines = list(LINES)
    lines[index] = new
    return joined(lines)


def record_count(output: dict) -> int:
    return output["generation"]["provenance"]["records"]["records"]


# --- one value per line --------------------------------------------------------------------------

@pytest.mark.parametrize("separator", [b"", b" ", b"\t"])
def test_two_objects_on_one_line(tmp_path, separator):
    lines = list(LINES)
    lines[1:3] = [lines[1] + separator + lines[2]]
    refused(make_case(tmp_path, joined(lines)), "records.extra-value", 3, line=2)


def test_two_objects_on_a_line_are_not_hidden_by_a_blank_line(tmp_path):
    """The old fast path compared the count of values with the count of lines: a blank line
    elsewhere in the chunk made the numbers agree."""
    lines = list(LINES)
    lines[1:3] = [lines[1] + lines[2]]
    lines.insert(10, b"")
    refused(make_case(tmp_path, joined(lines)), "records.extra-value", 3, line=2)


def test_an_object_followed_by_a_number(tmp_path):
    refused(make_case(tmp_path, with_line(4, LINES[4] + b" 1")), "records.extra-value", 3, line=5)


def test_an_object_split_over_two_lines(tmp_path):
    lines = list(LINES)
    head, tail = lines[3].split(b",", 1)
    lines[3:4] = [head + b",", tail]
    status, output = verify(make_case(tmp_path, joined(lines)))
    assert status == 3
    # each half is its own coded problem: a truncated object, then a string where a record should be
    assert [(p["code"], p["location"]["line"]) for p in output["problems"]] == [("records.bad-json", 4), ("records.invalid", 5)]


def test_a_string_broken_by_a_raw_newline(tmp_path):
    lines = list(LINES)
    head, tail = lines[0].split(b"can't", 1)
    lines[0:1] = [head + b"can", b"'t" + tail]
    status, output = verify(make_case(tmp_path, joined(lines)))
    assert status == 3
    assert [(p["code"], p["location"]["line"]) for p in output["problems"]] == [("records.bad-json", 1), ("records.bad-json", 2)]


# --- line ends -----------------------------------------------------------------------------------

def test_cr_only_line_ends_are_refused_not_read_as_nothing(tmp_path):
    refused(make_case(tmp_path, joined(LINES, b"\r")), "records.bad-line-end", 3, line=1)


def test_a_stray_cr_inside_a_line(tmp_path):
    refused(make_case(tmp_path, with_line(7, LINES[7].replace(b",", b",\r", 1))), "records.bad-line-end", 3, line=8)


def test_a_cr_cr_lf_line_end(tmp_path):
    refused(make_case(tmp_path, with_line(2, LINES[2] + b"\r\r")), "records.bad-line-end", 3, line=3)


def test_crlf_file_reads_every_record(tmp_path):
    status, output = verify(make_case(tmp_path, joined(LINES, b"\r\n")))
    assert status == 0 and record_count(output) == len(LINES)


def test_mixed_crlf_and_lf_reads_every_record(tmp_path):
    data = b"".join(line + (b"\r\n" if i % 3 else b"\n") for i, line in enumerate(LINES))
    status, output = verify(make_case(tmp_path, data))
    assert status == 0 and record_count(output) == len(LINES)


def test_blank_lines_are_counted_and_every_record_is_read(tmp_path):
    lines = list(LINES)
    for at in (0, 5, 50, 51):
        lines.insert(at, b"  \t")
    status, output = verify(make_case(tmp_path, joined(lines)[:-1]))  # and no final newline
    assert status == 0 and record_count(output) == len(LINES)


def test_the_plain_case_counts_one_record_per_line(tmp_path):
    status, output = verify(make_case(tmp_path))
    assert status == 0 and record_count(output) == ORIGINAL.count(b"\n") == len(LINES)


# --- bytes that are not one JSON object ------------------------------------------------------------

@pytest.mark.parametrize("name, line, code", [
    ("nul outside a string", LINES[3] + b"\0", "records.bad-json"),
    ("nul inside a string", LINES[3].replace(b'"cell":"c1"', b'"cell":"c\x001"'), "records.bad-json"),
    ("invalid utf-8", LINES[3].replace(b'"cell":"c1"', b'"cell":"c\xff\xfe1"'), "records.bad-json"),
    ("a value then a nul", LINES[3] + b" 1\0", "records.bad-json"),
    ("form feed line", b"\x0c", "records.bad-json"),
    ("a truncated line", LINES[3][:40], "records.bad-json"),
    ("an array", b"[" + LINES[3] + b"]", "records.invalid"),
    ("a number", b"42", "records.invalid"),
    ("a string", b'"hello"', "records.invalid"),
    ("null", b"null", "records.invalid"),
    ("an unknown field", LINES[3][:-1] + b',"extra":1}', "records.invalid"),
])
def test_a_line_that_is_not_one_record(tmp_path, name, line, code):
    refused(make_case(tmp_path, with_line(3, line)), code, 3, line=4)


def test_a_byte_order_mark(tmp_path):
    refused(make_case(tmp_path, b"\xef\xbb\xbf" + ORIGINAL), "records.bad-json", 3, line=1)


@pytest.mark.parametrize("field", [b'"cell"', b'"zz"'])
def test_deep_nesting_is_refused_at_the_first_bracket(tmp_path, field):
    """The record Struct forbids unknown fields and types every field, so msgspec refuses the
    first bracket of a nested value: nesting never recurses."""
    refused(make_case(tmp_path, with_line(3, b"{" + field + b":" + b"[" * 200_000)), "records.invalid", 3, line=4)


def test_a_line_over_16_mib(tmp_path):
    huge = LINES[3][:-1] + b',"output":"' + b"x" * (jsonl.MAX_LINE_BYTES + 10) + b'"}'
    refused(make_case(tmp_path, with_line(3, huge)), "records.line-too-long", 3, line=4)


def test_a_repeated_record(tmp_path):
    lines = list(LINES)
    lines.insert(9, lines[2])
    refused(make_case(tmp_path, joined(lines)), "records.duplicate", 3, line=10)


# --- the card's pointers -----------------------------------------------------------------------------

def _records_block(text: str, count: int) -> str:
    match = re.search(r"    - path: evidence/records.jsonl\n      sha256: [0-9a-f]{64}\n", text)
    return text.replace(match.group(0), match.group(0) * count)


def test_a_records_file_listed_twice(tmp_path):
    card = make_case(tmp_path, card_edit=lambda text: _records_block(text, 3))
    problems = refused(card, "card.duplicate-pointer", 2)
    assert len(problems) == 2 and "/evidence/records/1" in problems[0]["message"]
    assert "/evidence/records/2" in problems[1]["message"]


def test_too_many_records_files(tmp_path):
    def many(text):
        entries = "".join(f"    - path: evidence/r{i}.jsonl\n      sha256: {'0' * 64}\n" for i in range(1001))
        return re.sub(r"    - path: evidence/records.jsonl\n      sha256: [0-9a-f]{64}\n", entries, text)
    status, output = verify(make_case(tmp_path, card_edit=many))
    assert status == 2
    assert [p for p in output["problems"] if p["code"] == "card.too-many-records-files"]


# --- the bytes parsed are the bytes hashed -------------------------------------------------------------

def test_a_records_file_swapped_after_its_digest_was_checked(tmp_path, monkeypatch):
    from acards.evidence import digests
    from acards.pipeline import load

    card = make_case(tmp_path)
    records = card.parent / RECORDS
    other = with_line(0, LINES[0].replace(b'"score":1.0', b'"score":0.0'))
    real = digests.check_pointers

    def check_then_swap(*args, **kwargs):
        results = real(*args, **kwargs)
        records.write_bytes(other)  # the race: the file changes between the check and the read
        return results

    monkeypatch.setattr(load, "check_pointers", check_then_swap)
    status = CliRunner().invoke(main, ["verify", str(card), "--no-generate", "--bootstrap", "200", "--format", "json", "--no-cache"])
    output = json.loads(status.stdout[status.stdout.index("{"):])
    assert status.exit_code == 3, output
    assert [p["code"] for p in output["problems"]] == ["evidence.digest-mismatch"]
    assert "reproduced" not in output


def test_read_records_checks_the_digest_of_what_it_parsed(tmp_path):
    (tmp_path / "r.jsonl").write_bytes(ORIGINAL)
    pinned = hashlib.sha256(ORIGINAL).hexdigest()
    assert len(read_records(tmp_path, [("r.jsonl", Location())], sha256=[pinned])) == len(LINES)
    with pytest.raises(AcardsError) as caught:
        read_records(tmp_path, [("r.jsonl", Location())], sha256=["0" * 64])
    assert caught.value.code == "evidence.digest-mismatch"


def test_training_data_is_hashed_as_read(tmp_path):
    data = b'{"subject": "s1", "text": "a"}\r\n{"subject": "s2", "text": "b"}\n'
    (tmp_path / "t.jsonl").write_bytes(data)
    rows = read_objects(tmp_path, "t.jsonl", Location(), "training-1.0", hashlib.sha256(data).hexdigest())
    assert [r.subject for r in rows] == ["s1", "s2"]
    with pytest.raises(AcardsError) as caught:
        read_objects(tmp_path, "t.jsonl", Location(), "training-1.0", "0" * 64)
    assert caught.value.code == "evidence.digest-mismatch"


def test_training_data_nested_past_the_recursion_limit_is_a_coded_problem(tmp_path):
    """training-1.0 allows unknown fields, which msgspec skips recursively."""
    (tmp_path / "t.jsonl").write_bytes(b'{"subject": "s", "text": "t", "x": ' + b"[" * 200_000 + b"\n")
    with pytest.raises(AcardsError) as caught:
        read_objects(tmp_path, "t.jsonl", Location(), "training-1.0")
    assert caught.value.code == "records.bad-json" and "nested too deeply" in caught.value.problems[0].message


# --- the fast path proves one object per line, or falls back ---------------------------------------------

@pytest.mark.parametrize("piece, expected", [
    (b'{"a":1}\n{"a":2}\n', [(1, 1), (2, 2)]),
    (b'{"a":1}\r\n{"a":2}', [(1, 1), (2, 2)]),
    (b'{"a":1}{"a":2}\n\n{"a":3}\n', [(3, 3)]),  # the first line's two values: a problem
    (b'{"a":1}\n{"a":[{"a":1}\n{"a":2}]}\n', [(1, 1)]),  # looks like one object per line, is not
    (b'{"a":1}\r{"a":2}\n', []),
])
def test_decode_piece_is_exact(piece, expected):
    class Row(msgspec.Struct):
        a: object

    decoder = msgspec.json.Decoder(Row)
    problems = jsonl.Problems()

    def describe(error, number):
        from acards.errors import Problem
        return Problem("records.bad-json", str(error), "", Location("f", number))

    numbers, rows = jsonl.decode_piece(piece, 1, decoder, decoder, describe, problems, "f")
    assert [(int(n), r.a) for n, r in zip(numbers, rows)] == expected
    bad = {line for line in range(1, piece.count(b"\n") + 2)} - {n for n, _ in expected}
    lines_with_content = {n for n, _ in jsonl.lines(piece, 1)}
    assert {p.location.line for p in problems} == bad & lines_with_content


def test_records_read_in_tiny_chunks_match(tmp_path):
    data = joined(LINES[:50], b"\r\n").replace(b"\r\n", b"\n", 10)
    (tmp_path / "r.jsonl").write_bytes(data)
    whole = read_records(tmp_path, [("r.jsonl", Location())])
    for size in (64, 1000, 4096):
        table = read_records(tmp_path, [("r.jsonl", Location())], chunk_bytes=size)
        assert list(table.line) == list(whole.line) == list(range(1, 51))
