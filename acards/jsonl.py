"""The one JSONL reader: records, prompts and training data (SPEC §5) all come through here.

Bounded in every direction:

- a file is read in chunks of ``CHUNK_BYTES`` and handed on as pieces of whole lines, so memory
  does not grow with the file;
- a line may hold at most ``MAX_LINE_BYTES``: a longer one is reported (``records.line-too-long``)
  and skipped without being kept, and a long line costs time linear in its length (its parts are
  collected in a list and joined once, never re-concatenated per chunk);
- at most ``MAX_PROBLEMS`` problems are kept per file, and reading stops when they are reached.

Every problem names the file and the 1-based line.  Lines end at ``\\n``; blank lines are
skipped but counted.  Decoding is the caller's (a msgspec decoder, usually of a Struct generated
from the schema by :func:`acards.schemas.schema_struct`): :func:`objects` decodes line by line
and asks the caller's ``describe`` to word a line that fails; a caller with a faster path for
whole pieces (acards.evidence.records) uses :func:`chunks` and falls back to :func:`decode`.
"""

from __future__ import annotations

from typing import Any, BinaryIO, Callable, Iterator

import msgspec

from acards.errors import Location, Problem

CHUNK_BYTES = 256 * 1024  # small enough that a decoded chunk stays in CPU cache
MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_PROBLEMS = 20

Describe = Callable[[msgspec.DecodeError, int], Problem]


class Problems(list):
    """The problems of one file: at most ``limit`` are kept; ``full`` says reading can stop."""

    def __init__(self, limit: int = MAX_PROBLEMS):
        super().__init__()
        self.limit = limit

    def add(self, problem: Problem) -> None:
        if len(self) < self.limit:
            self.append(problem)

    @property
    def full(self) -> bool:
        return len(self) >= self.limit


def too_long(file: str, line: int, limit: int) -> Problem:
    return Problem("records.line-too-long", f"line {line} is longer than {limit:,} bytes",
                   f"each line of a JSONL evidence file is one JSON object of at most {limit:,} bytes; "
                   "check that the file is JSONL (one object per line), or shorten the line",
                   Location(file, line))


def chunks(handle: BinaryIO, file: str, problems: Problems, *, size: int = CHUNK_BYTES,
           max_line: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(number of its first line, bytes) pieces of a file, each of whole lines ending in a newline
    (only the file's last line may lack it).  A line over ``max_line`` bytes is reported in
    ``problems`` and left out, its line number still counted.  Stops when ``problems`` is full."""
    size = max(1, min(size, max_line))  # so that only a line spanning chunks can be too long
    carry: list[bytes] = []  # the parts of the unfinished line
    carried = 0
    line = 1  # the number of the first line not yet handed on
    skipping = False  # inside a line too long to keep: drop bytes up to its newline
    while not problems.full:
        block = handle.read(size)
        if not block:
            if carry:
                yield line, b"".join(carry)
            return
        start = 0
        if skipping:
            start = block.find(b"\n") + 1
            if start == 0:
                continue
            skipping, line = False, line + 1
        last = block.rfind(b"\n", start) + 1
        if last == 0:  # no newline: all of it belongs to the unfinished line
            carry.append(block[start:])
            carried += len(block) - start
            if carried > max_line:
                problems.add(too_long(file, line, max_line))
                carry, carried, skipping = [], 0, True
            continue
        head = block[start:last]
        if carry:
            first = head.find(b"\n")
            if carried + first > max_line:
                problems.add(too_long(file, line, max_line))
                head, line = head[first + 1:], line + 1
                piece = head
            else:
                piece = b"".join((*carry, head))
        else:
            piece = head
        carry = [block[last:]] if last < len(block) else []
        carried = len(block) - last
        if piece:
            yield line, piece
            line += piece.count(b"\n")


def lines(piece: bytes, first_line: int) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of a piece."""
    for offset, raw in enumerate(piece.split(b"\n")):
        if raw.strip():
            yield first_line + offset, raw


def decode(piece: bytes, first_line: int, decoder, describe: Describe, problems: Problems) -> Iterator[tuple[int, Any]]:
    """(line number, object) of every line of a piece that ``decoder`` accepts; each line it
    refuses becomes ``describe(error, line)`` in ``problems``.  Stops when ``problems`` is full."""
    for number, raw in lines(piece, first_line):
        if problems.full:
            return
        try:
            value = decoder.decode(raw)
        except msgspec.DecodeError as error:  # ValidationError included
            problems.add(describe(error, number))
            continue
        yield number, value


def raw_lines(handle: BinaryIO, file: str, problems: Problems, **bounds) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of a file, within the bounds of :func:`chunks`."""
    for first_line, piece in chunks(handle, file, problems, **bounds):
        yield from lines(piece, first_line)


def objects(handle: BinaryIO, file: str, decoder, describe: Describe, problems: Problems, **bounds) -> Iterator[tuple[int, Any]]:
    """(line number, object) of every good line of a file, one line at a time (so a caller's own
    checks interleave with the decoding problems in line order)."""
    for first_line, piece in chunks(handle, file, problems, **bounds):
        yield from decode(piece, first_line, decoder, describe, problems)
