"""The one JSONL reader: records, prompts and training data (SPEC §5) all come through here.

Bounded in every direction:

- a file is read in chunks of ``CHUNK_BYTES`` and handed on as pieces of whole lines, so memory
  does not grow with the file;
- a line may hold at most ``MAX_LINE_BYTES``: a longer one is reported (``records.line-too-long``)
  and skipped without being kept, and a long line costs time linear in its length (its parts are
  collected in a list and joined once, never re-concatenated per chunk);
- at most ``MAX_PROBLEMS`` problems are kept per file, and reading stops when they are reached.

Every problem names the file and the 1-based line.  Lines end at ``\\n`` (``\\r\\n`` too); blank
lines (spaces and tabs only) are skipped but counted.  Strictly one JSON value per line: a second
value on a line is ``records.extra-value``, a carriage return that does not end a line
(CR-only line ends, a stray CR) is ``records.bad-line-end``, so that every non-blank line is either
one record or one coded problem.  Decoding is the caller's (a msgspec decoder, usually of a Struct
generated from the schema by :func:`acards.schemas.schema_struct`): :func:`objects` decodes line by
line and asks the caller's ``describe`` to word a line that fails; :func:`decode_piece` decodes a
whole piece at once when it can prove the piece is one value per line (acards.evidence.records).

:class:`Hashed` hashes the bytes as they are read, so a caller can check that the bytes it parsed
are the bytes a card pins (not a file swapped in after its digest was checked).
"""

from __future__ import annotations

import hashlib
from typing import Any, BinaryIO, Callable, Iterator

import msgspec
import numpy as np

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


class Hashed:
    """A binary file whose bytes are hashed (sha256) as they are read."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0  # bytes read so far

    def read(self, size: int = -1) -> bytes:
        block = self.handle.read(size)
        self.sha256.update(block)
        self.size += len(block)
        return block

    def finish(self) -> str:
        """Read what is left (so the digest covers the whole file) and return the hex digest."""
        block = bytearray(1024 * 1024)  # one buffer, refilled: no new allocation per block
        view = memoryview(block)
        while size := self.handle.readinto(block):  # type: ignore[attr-defined]
            self.sha256.update(view[:size])
            self.size += size
        return self.sha256.hexdigest()


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
        if carry:
            first = block.find(b"\n", start) - start
            if carried + first > max_line:
                problems.add(too_long(file, line, max_line))
                piece, line = block[start + first + 1:last], line + 1
            else:  # joined from a view: the piece is the only copy made
                piece = b"".join((*carry, memoryview(block)[start:last]))
        else:
            piece = block[start:last]
        carry = [block[last:]] if last < len(block) else []
        carried = len(block) - last
        if piece:
            yield line, piece
            line += count_lines(piece)


def count_lines(piece: bytes) -> int:
    """How many LFs ``piece`` holds: numpy's vectorized compare is several times faster than
    ``bytes.count`` (a byte at a time) on pieces of a MiB."""
    return int(np.count_nonzero(np.frombuffer(piece, np.uint8) == _LF))


def lines(piece: bytes, first_line: int) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of a piece (blank: spaces, tabs, a CRLF's CR)."""
    for offset, raw in enumerate(piece.split(b"\n")):
        if (raw[:-1] if raw.endswith(b"\r") else raw).strip(b" \t"):
            yield first_line + offset, raw


def bad_line_end(file: str, line: int) -> Problem:
    return Problem("records.bad-line-end", f"line {line} holds a carriage return (CR) that does not end a line",
                   "lines of a JSONL evidence file end with LF or CRLF; a lone CR (old Mac line ends, or a stray "
                   "CR) is refused so that every reader sees the same lines: convert the file to LF line ends",
                   Location(file, line))


def extra_value(file: str, line: int, error: Exception) -> Problem:
    return Problem("records.extra-value", f"line {line} holds more than one JSON value ({error})",
                   "each line of a JSONL evidence file is exactly one JSON object: put each value on its own line",
                   Location(file, line))


def decode_line(raw: bytes, number: int, file: str, decoder, describe: Describe, problems: Problems) -> tuple[bool, Any]:
    """(True, value) for a line ``decoder`` accepts, else (False, None) with the line's problem added."""
    body = raw[:-1] if raw.endswith(b"\r") else raw
    if b"\r" in body:
        problems.add(bad_line_end(file, number))
        return False, None
    try:
        return True, decoder.decode(body)
    except msgspec.DecodeError as error:  # ValidationError included
        if not isinstance(error, msgspec.ValidationError) and "trailing characters" in str(error) and _values(body) > 1:
            problems.add(extra_value(file, number, error))
        else:
            problems.add(describe(error, number))
    except RecursionError:  # nesting deeper than the interpreter allows, e.g. in a free-form field
        problems.add(describe(msgspec.DecodeError("JSON is nested too deeply"), number))
    return False, None


def decode(piece: bytes, first_line: int, decoder, describe: Describe, problems: Problems,
           file: str = "") -> Iterator[tuple[int, Any]]:
    """(line number, object) of every line of a piece that ``decoder`` accepts; each line it
    refuses becomes a problem (worded by ``describe``, or ``records.extra-value`` /
    ``records.bad-line-end``).  Stops when ``problems`` is full."""
    for number, raw in lines(piece, first_line):
        if problems.full:
            return
        ok, value = decode_line(raw, number, file, decoder, describe, problems)
        if ok:
            yield number, value


def _values(line: bytes) -> int:
    """How many JSON values a line holds when read as a stream of them; 0 if it is not one."""
    try:
        return len(_ANY.decode_lines(line))
    except (msgspec.DecodeError, RecursionError):
        return 0


_ANY = msgspec.json.Decoder()
_OPEN, _CLOSE, _CR, _LF = ord("{"), ord("}"), ord("\r"), ord("\n")


def one_object_per_line(piece: bytes) -> int:
    """The number of lines of ``piece`` if it provably holds one JSON object per line once it
    decodes as a stream of values, else -1.  Proof: every line starts with ``{`` and ends with
    ``}`` (before an optional CR of a CRLF), and no other CR occurs.  A line break in a valid value
    is outside strings (JSON strings cannot hold a raw line break), and after a ``}`` that closes a
    nested value JSON allows only ``,`` ``}`` or ``]``, never ``{``: so every line break separates
    two top-level values, no value spans lines, and with as many values as lines each line is one."""
    if not piece:
        return 0
    body = np.frombuffer(piece, np.uint8)
    if body[-1] == _LF:
        body = body[:-1]
    if not len(body) or body[0] != _OPEN or body[-1] == _LF:
        return -1
    breaks = np.flatnonzero(body == _LF)
    ends = np.append(breaks, len(body)) - 1  # the last byte of every line
    crlf = body[ends] == _CR
    ends = ends - crlf
    if (ends < 0).any() or (body[ends] != _CLOSE).any() or (body[breaks + 1] != _OPEN).any():
        return -1
    if b"\r" in piece and int(np.count_nonzero(body == _CR)) != int(np.count_nonzero(crlf)):  # memchr first: CR is rare
        return -1
    return len(breaks) + 1


def decode_piece(piece: bytes, first_line: int, fast, decoder, describe: Describe, problems: Problems,
                 file: str = "") -> tuple[np.ndarray, list]:
    """(line numbers, objects) of a piece: decoded at once by ``fast`` (``decode_lines``) when the
    piece is provably one object per line (:func:`one_object_per_line`), else line by line with
    ``decoder`` (every refused line a problem, as :func:`decode`)."""
    count = one_object_per_line(piece)
    if count > 0:
        try:
            values = fast.decode_lines(piece)
        except (msgspec.DecodeError, RecursionError):  # ValidationError included: find the lines
            values = None
        if values is not None and len(values) == count:
            return np.arange(first_line, first_line + count, dtype=np.int64), values
    numbers, values = [], []
    for number, value in decode(piece, first_line, decoder, describe, problems, file):
        numbers.append(number)
        values.append(value)
    return np.asarray(numbers, np.int64), values


def raw_lines(handle: BinaryIO, file: str, problems: Problems, **bounds) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of every non-blank line of a file, within the bounds of :func:`chunks`."""
    for first_line, piece in chunks(handle, file, problems, **bounds):
        yield from lines(piece, first_line)


def objects(handle: BinaryIO, file: str, decoder, describe: Describe, problems: Problems, **bounds) -> Iterator[tuple[int, Any]]:
    """(line number, object) of every good line of a file, one line at a time (so a caller's own
    checks interleave with the decoding problems in line order)."""
    for first_line, piece in chunks(handle, file, problems, **bounds):
        yield from decode(piece, first_line, decoder, describe, problems, file)
