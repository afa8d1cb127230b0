"""JSON Lines input, read with acards' one JSONL reader (bounded lines, exact line numbers) and hashed as read."""

from __future__ import annotations

import msgspec

from acards import jsonl
from acards.errors import AcardsError, Location, Problem
from acards.importers.source import HashingReader, Records, SourceFile, open_source

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


def jsonl_records(file: SourceFile) -> Records:
    """(\"line N\", object) of every non-blank line; a line that is not a JSON object stops the import.
    A piece of whole lines is decoded at once (msgspec's decode_lines) when it is provably one value
    per line, else line by line, which words each bad line."""
    problems = jsonl.Problems()
    describe = _describe(file.name)
    with open_source(file) as raw:
        handle = HashingReader(raw)
        for first_line, piece in jsonl.chunks(handle, file.name, problems):
            for number, value in _decoded(piece, first_line, describe, problems, file.name):
                if not isinstance(value, dict):
                    problems.add(Problem("import.bad-source", f"line {number} is a JSON {type(value).__name__}, not an object",
                                         "each line of a JSONL source is one JSON object", Location(file.name, number)))
                    continue
                if not problems:
                    yield f"line {number}", value
        if problems:
            raise AcardsError.collect(list(problems))
        file.sha256, file.size = handle.hexdigest(), handle.size
