"""JSON Lines input, read with acards' one JSONL reader (bounded lines, exact line numbers) and hashed as read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import msgspec

from acards import jsonl
from acards.errors import AcardsError, Location, Problem
from acards.importers.source import Records, SourceFile, open_source

_ANY = msgspec.json.Decoder()


def _describe(file: str):
    def describe(error: msgspec.DecodeError, line: int) -> Problem:
        return Problem("import.bad-source", f"line {line} is not a JSON object: {error}",
                       "each line of a JSONL source is one JSON object", Location(file, line))
    return describe


def _decoded(piece: bytes, first_line: int, describe, problems: jsonl.Problems, file: str):
    """(line number, value) of a piece: decoded at once when it is provably one value per line and
    decodes whole, else line by line, so that the problems come in line order.  Not
    jsonl.decode_piece: on its slow path it decodes the whole piece before returning, and the
    caller's own "not an object" problems must interleave with the decoding problems by line."""
    count = jsonl.one_object_per_line(piece)
    if count > 0:
        try:
            values = _ANY.decode_lines(piece)
        except (msgspec.DecodeError, RecursionError):
            values = None
        if values is not None and len(values) == count:
            return zip(range(first_line, first_line + count), values)
    return jsonl.decode(piece, first_line, _ANY, describe, problems, file)


@dataclass
class Piece:
    """Whole lines of a JSONL source (the batch import's unit, acards.importers.batch): its bytes,
    the number of its first line, and the exact reading of them (:meth:`records`)."""

    first_line: int
    data: bytes
    file: str
    problems: jsonl.Problems  # the file's problems so far (shared by its pieces)

    def records(self) -> Records:
        """(\"line N\", object) of every non-blank line; a line that is not a JSON object is a
        problem of the file (raised once the file is read), and no record is given after one."""
        describe = _describe(self.file)
        for number, value in _decoded(self.data, self.first_line, describe, self.problems, self.file):
            if not isinstance(value, dict):
                self.problems.add(Problem("import.bad-source", f"line {number} is a JSON {type(value).__name__}, not an object",
                                          "each line of a JSONL source is one JSON object", Location(self.file, number)))
                continue
            if not self.problems:
                yield f"line {number}", value


def jsonl_pieces(file: SourceFile, size: int = jsonl.CHUNK_BYTES) -> Iterator[Piece]:
    """The file as pieces of whole lines, hashed as read; once every piece was handed on (and read,
    where a piece's records were asked for), the file's problems are raised together."""
    problems = jsonl.Problems()
    with open_source(file) as raw:
        handle = jsonl.Hashed(raw)  # the file's own reads, hashed: no copy on the way
        for first_line, data in jsonl.chunks(handle, file.name, problems, size=size):
            yield Piece(first_line, data, file.name, problems)
        if problems:
            raise AcardsError.collect(list(problems))
        file.sha256, file.size = handle.sha256.hexdigest(), handle.size


def jsonl_records(file: SourceFile) -> Records:
    """(\"line N\", object) of every non-blank line; a line that is not a JSON object stops the import.
    A piece of whole lines is decoded at once (msgspec's decode_lines) when it is provably one value
    per line, else line by line, which words each bad line."""
    for piece in jsonl_pieces(file):
        yield from piece.records()
