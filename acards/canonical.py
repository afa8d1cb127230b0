"""Canonical JSON (RFC 8785) and a strict JSON reader for signed data.

What is signed must have exactly one byte form, so signed payloads are RFC 8785 bytes and are read
back with a parser that refuses every input two JSON parsers could read differently: duplicate
keys, NaN/Infinity, integers a double cannot hold exactly, lone surrogates and invalid UTF-8.
Canonicalisation itself is the ``rfc8785`` library's; this module only wraps its errors.
"""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785

from acards.errors import AcardsError, Location

# I-JSON's safe range, which is also the range rfc8785 will serialise.
MAX_SAFE_INTEGER = 2**53 - 1

_NOT_CANONICALIZABLE = "envelope.not-canonicalizable"


def canonical_bytes(obj: Any) -> bytes:
    """The RFC 8785 serialisation of ``obj`` (dicts, lists, str, int, float, bool, None)."""
    try:
        return rfc8785.dumps(obj)
    # UnicodeError: rfc8785 sorts keys by their UTF-16 form, which a lone surrogate cannot have.
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError) as error:
        raise AcardsError(
            _NOT_CANONICALIZABLE,
            f"value cannot be written as canonical JSON: {error}",
            "use only strings, booleans, null, finite numbers and integers within ±(2^53−1)",
        ) from None


class _Refused(Exception):
    """Raised inside the json hooks; turned into an AcardsError once the parse has stopped."""

    def __init__(self, code: str, message: str, hint: str):
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def _refuse_constant(name: str) -> Any:
    raise _Refused(
        "envelope.bad-number",
        f"{name} is not a JSON number",
        "write finite numbers only; NaN and Infinity are not JSON",
    )


def _parse_int(text: str) -> int:
    # Checked on the digit count first so that a huge literal is never converted.
    digits = len(text.lstrip("-"))
    if digits > 16 or abs(int(text)) > MAX_SAFE_INTEGER:
        raise _Refused(
            "envelope.bad-number",
            f"integer {text[:40]}{'…' if len(text) > 40 else ''} is outside ±(2^53−1)",
            "store large integers as strings; other JSON readers would round them",
        )
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(
            "envelope.bad-number",
            f"number {text[:40]} overflows a double",
            "write numbers within the range of an IEEE 754 double",
        )
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Refused(
                "envelope.duplicate-key",
                f"key {key!r} appears twice in one object",
                "remove the duplicate; readers disagree about which one wins",
            )
        result[key] = value
    return result


def _find_lone_surrogate(value: Any) -> str | None:
    """The first string (key or value) holding an unpaired surrogate, or None.

    json joins valid \\ud83d\\ude02 pairs into one code point, so any surrogate left is unpaired.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return text
    return None


def parse_strict_json(data: bytes, source: str | None = None) -> Any:
    """Parse UTF-8 JSON ``data``, refusing anything that could be read two ways.

    ``source`` names the input (a file name) in the error's location.
    """
    location = Location(file=source)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise AcardsError(
            "envelope.bad-json",
            f"expected JSON bytes, got {type(data).__name__}",
            "pass the raw bytes read from the file",
            location,
        )
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise AcardsError(
            "envelope.bad-json",
            f"not valid UTF-8 at byte {error.start}",
            "save the file as UTF-8",
            location,
        ) from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except _Refused as refused:
        raise AcardsError(refused.code, refused.message, refused.hint, location) from None
    except json.JSONDecodeError as error:
        raise AcardsError(
            "envelope.bad-json",
            f"not valid JSON: {error.msg}",
            "check the JSON syntax at the given line and column",
            Location(file=source, line=error.lineno, column=error.colno),
        ) from None
    except RecursionError:
        raise AcardsError(
            "envelope.bad-json",
            "JSON is nested too deeply to read",
            "flatten the document",
            location,
        ) from None
    lone = _find_lone_surrogate(value)
    if lone is not None:
        raise AcardsError(
            "envelope.lone-surrogate",
            f"string {lone[:40]!r} holds an unpaired UTF-16 surrogate escape",
            "escape characters beyond U+FFFF as a surrogate pair, or write them as UTF-8",
            location,
        )
    return value


def is_canonical(data: bytes) -> bool:
    """Whether ``data`` is strict JSON already in its RFC 8785 form."""
    try:
        return canonical_bytes(parse_strict_json(data)) == bytes(data)
    except AcardsError:
        return False
