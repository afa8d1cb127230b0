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


def jsonl_records(file: SourceFile) -> Records:
    """(\"line N\", object) of every non-blank line; a line that is not a JSON object stops the import."""
    problems = jsonl.Problems()
    with open_source(file) as raw:
        handle = HashingReader(raw)
        for number, value in jsonl.objects(handle, file.name, _ANY, _describe(file.name), problems):
            if not isinstance(value, dict):
                problems.add(Problem("import.bad-source", f"line {number} is a JSON {type(value).__name__}, not an object",
                                     "each line of a JSONL source is one JSON object", Location(file.name, number)))
                continue
            if not problems:
                yield f"line {number}", value
        if problems:
            raise AcardsError.collect(list(problems))
        file.sha256, file.size = handle.hexdigest(), handle.size
