"""acards.jsonl, the one JSONL reader: exact line numbers across chunks, the line-length bound, the
problem limit, and decoding with the caller's wording."""

from __future__ import annotations

import io
import time

import msgspec
import pytest

from acards import jsonl
from acards.errors import Location, Problem


class Counting(io.BytesIO):
    """A file that remembers how many bytes were read from it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.consumed = 0

    def read(self, size=-1):
        block = super().read(size)
        self.consumed += len(block)
        return block


def numbered(data: bytes, size: int, max_line: int = jsonl.MAX_LINE_BYTES, limit: int = jsonl.MAX_PROBLEMS):
    problems = jsonl.Problems(limit)
    found = list(jsonl.raw_lines(io.BytesIO(data), "f.jsonl", problems, size=size, max_line=max_line))
    return found, [(p.code, p.location.line) for p in problems]


LINES = [b'{"a": 1}', b"", b'{"bb": 22}', b"   ", b'{"ccc": 333}', b'{"d": "' + b"x" * 40 + b'"}', b"", b"{}"]
DATA = b"\n".join(LINES) + b"\n"
EXPECTED = [(n, line) for n, line in enumerate(LINES, 1) if line.strip()]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 10, 16, 64, 1 << 20])
def test_every_chunk_size_gives_the_same_lines_and_numbers(size):
    assert numbered(DATA, size) == (EXPECTED, [])


@pytest.mark.parametrize("size", [1, 5, 1 << 20])
def test_a_last_line_without_newline_and_crlf_lines(size):
    assert numbered(b'{"a": 1}\r\n\r\n{"b": 2}', size) == ([(1, b'{"a": 1}\r'), (3, b'{"b": 2}')], [])


def test_pieces_are_whole_lines_numbered_by_their_first():
    problems = jsonl.Problems()
    pieces = list(jsonl.chunks(io.BytesIO(DATA), "f", problems, size=16))
    assert all(piece.endswith(b"\n") for _, piece in pieces)
    assert b"".join(piece for _, piece in pieces) == DATA
    line = 1
    for first, piece in pieces:
        assert first == line
        line += piece.count(b"\n")


# --- the line-length bound ------------------------------------------------------------------------

MAX = 10


@pytest.mark.parametrize("size", [1, 3, 4, 10, 11, 1000])
@pytest.mark.parametrize("case, data, lines, too_long", [
    ("exactly-max", b"a" * MAX + b"\nb\n", [1, 2], []),
    ("one-over", b"a" * (MAX + 1) + b"\nb\n", [2], [1]),
    ("one-over-in-the-middle", b"a\n" + b"x" * (MAX + 1) + b"\nc\n", [1, 3], [2]),
    ("far-over", b"a\n" + b"x" * (7 * MAX) + b"\nc\n", [1, 3], [2]),
    ("over-at-the-end-without-newline", b"a\n" + b"x" * (MAX + 5), [1], [2]),
    ("two-long-lines-back-to-back", b"y" * (MAX + 1) + b"\n" + b"z" * (3 * MAX) + b"\nok\n", [3], [1, 2]),
    ("long-then-blank", b"y" * (MAX + 2) + b"\n\nok", [3], [1]),
])
def test_a_line_over_the_bound_is_reported_and_skipped(size, case, data, lines, too_long):
    found, problems = numbered(data, size, max_line=MAX)
    assert [n for n, _ in found] == lines, case
    assert problems == [("records.line-too-long", n) for n in too_long], case
    assert all(len(raw) <= MAX for _, raw in found)


def test_the_too_long_problem_names_file_line_and_bound():
    problems = jsonl.Problems()
    list(jsonl.raw_lines(io.BytesIO(b"ok\n" + b"x" * 50), "evidence/r.jsonl", problems, size=8, max_line=20))
    (problem,) = problems
    assert problem.location == Location("evidence/r.jsonl", 2)
    assert "20 bytes" in problem.message and problem.hint


def test_a_long_line_costs_linear_time():
    # 2 MiB in 64-byte reads: re-joining the unfinished line on every read would copy ~32 GB.
    data = b'{"x": "' + b"y" * (2 << 20) + b'"}\n{}\n'
    started = time.perf_counter()
    found, problems = numbered(data, 64, max_line=4 << 20)
    assert time.perf_counter() - started < 5
    assert [n for n, _ in found] == [1, 2] and problems == []


def test_memory_is_bounded_by_the_line_bound_and_the_chunk():
    problems = jsonl.Problems()
    data = (b"x" * 300 + b"\n") * 50 + b"y" * 5000 + b"\n"
    sizes = [len(piece) for _, piece in jsonl.chunks(io.BytesIO(data), "f", problems, size=256, max_line=1000)]
    assert max(sizes) <= 1000 + 256
    assert [(p.code, p.location.line) for p in problems] == [("records.line-too-long", 51)]


# --- problems and decoding ------------------------------------------------------------------------

class Row(msgspec.Struct, forbid_unknown_fields=True):
    a: int


DECODER = msgspec.json.Decoder(Row)


def describe(error, number):
    code = "records.invalid" if isinstance(error, msgspec.ValidationError) else "records.bad-json"
    return Problem(code, str(error), "hint", Location("f", number))


def test_objects_decodes_good_lines_and_words_bad_ones_with_the_caller():
    data = b'{"a": 1}\n\n{"a": "x"}\n{nope\n{"a": 4}\n'
    problems = jsonl.Problems()
    rows = list(jsonl.objects(io.BytesIO(data), "f", DECODER, describe, problems, size=5))
    assert [(n, r.a) for n, r in rows] == [(1, 1), (5, 4)]
    assert [(p.code, p.location.line) for p in problems] == [("records.invalid", 3), ("records.bad-json", 4)]


def test_a_callers_own_problems_interleave_in_line_order():
    data = b'{"a": 1}\n{"a": 1}\n{"a": "x"}\n'
    problems = jsonl.Problems()
    for number, row in jsonl.objects(io.BytesIO(data), "f", DECODER, describe, problems):
        if number == 2:
            problems.add(Problem("records.duplicate", "again", "hint", Location("f", number)))
    assert [(p.code, p.location.line) for p in problems] == [("records.duplicate", 2), ("records.invalid", 3)]


def test_reading_stops_at_the_problem_limit():
    data = b"{bad\n" * 100_000
    handle = Counting(data)
    problems = jsonl.Problems()
    assert list(jsonl.objects(handle, "f", DECODER, describe, problems, size=4096)) == []
    assert len(problems) == jsonl.MAX_PROBLEMS == 20
    assert [p.location.line for p in problems] == list(range(1, 21))
    assert handle.consumed < len(data) // 10


def test_problems_keep_at_most_their_limit():
    problems = jsonl.Problems(2)
    for line in range(5):
        problems.add(Problem("records.bad-json", "m", "h", Location("f", line)))
    assert len(problems) == 2 and problems.full
