"""Canonical JSON (RFC 8785) and a strict JSON reader for signed data.

What is signed must have exactly one byte form, so signed payloads are RFC 8785 bytes and are read
back with a parser that refuses every input two JSON parsers could read differently: duplicate
keys, NaN/Infinity, integers a double cannot hold exactly, lone surrogates and invalid UTF-8.
Canonicalisation is the ``rfc8785`` library's, with one exact fast path: for a value built only of
dicts, lists, strings, safe integers, booleans and null, whose keys hold no character beyond
U+FFFF, RFC 8785 and ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
write the same bytes, so the C encoder writes them (see ``_plain``; tests/test_canonical_fast.py
checks the two against each other and against the RFC's vectors).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import rfc8785

from acards.errors import AcardsError, Location

# I-JSON's safe range, which is also the range rfc8785 will serialise.
MAX_SAFE_INTEGER = 2**53 - 1

_NOT_CANONICALIZABLE = "envelope.not-canonicalizable"


# Deeper than this, the fast path leaves the value to rfc8785 (and its RecursionError).
_MAX_PLAIN_DEPTH = 400


def _has_astral(key: str) -> bool:
    return not key.isascii() and max(key) > "\uffff"


def _plain(value: Any) -> bool:
    """Whether ``json.dumps`` (``_dumps_plain``) writes ``value`` exactly as RFC 8785 does.

    The two agree on null, booleans, strings (both escape only ``"``, ``\\`` and U+0000–U+001F, as
    \\b \\t \\n \\f \\r or lowercase \\u00xx, and write everything else as UTF-8), integers within
    ±(2^53−1) (plain digits) and nesting. They differ on floats (ECMAScript's number form is not
    Python's repr) and on the order of keys holding a character beyond U+FFFF (RFC 8785 sorts by
    UTF-16 code units, Python by code points), so those, and any type other than the plain ones
    (subclasses included), go to rfc8785. A lone surrogate fails the UTF-8 encoding and also goes
    there, to be refused.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if depth >= _MAX_PLAIN_DEPTH:
            return False
        if kind is dict:
            for key in item:
                if type(key) is not str or _has_astral(key):
                    return False
            stack.extend((child, depth + 1) for child in item.values())
        elif kind is list or kind is tuple:
            stack.extend((child, depth + 1) for child in item)
        else:
            return False
    return True


def _dumps_plain(value: Any) -> bytes:
    """RFC 8785 bytes of a value ``_plain`` accepts, written by the C encoder."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def canonical_bytes(obj: Any) -> bytes:
    """The RFC 8785 serialisation of ``obj`` (dicts, lists, str, int, float, bool, None)."""
    if _plain(obj):
        try:
            return _dumps_plain(obj)
        except (UnicodeEncodeError, RecursionError, ValueError):
            pass  # a lone surrogate, or nesting json refuses: rfc8785 says what is wrong
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


# Only a \\uD800–\\uDFFF escape can put a surrogate into a parsed string (UTF-8 input cannot hold
# one), and only a run of 16 or more digits can be an integer beyond 2^53 − 1: text with neither
# skips the lone-surrogate walk and the integer hook (a digit run inside a string only costs the
# slow path).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONG_DIGITS = re.compile(r"[0-9]{16}")


class _Shape:
    """What the parse hooks saw that decides whether ``_plain`` holds for the value, without
    walking it again: a float, or a key beyond U+FFFF."""

    def __init__(self) -> None:
        self.plain = True

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if self.plain and any(_has_astral(key) for key, _ in pairs):
            self.plain = False
        return _object_without_duplicates(pairs)

    def number(self, text: str) -> float:
        self.plain = False
        return _parse_float(text)


def _parse(data: bytes, source: str | None, shape: _Shape | None) -> Any:
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
            object_pairs_hook=shape.pairs if shape else _object_without_duplicates,
            parse_constant=_refuse_constant,
            parse_int=_parse_int if _LONG_DIGITS.search(text) else None,
            parse_float=shape.number if shape else _parse_float,
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
    lone = _find_lone_surrogate(value) if _SURROGATE_ESCAPE.search(text) else None
    if lone is not None:
        raise AcardsError(
            "envelope.lone-surrogate",
            f"string {lone[:40]!r} holds an unpaired UTF-16 surrogate escape",
            "escape characters beyond U+FFFF as a surrogate pair, or write them as UTF-8",
            location,
        )
    return value


def parse_strict_json(data: bytes, source: str | None = None) -> Any:
    """Parse UTF-8 JSON ``data``, refusing anything that could be read two ways.

    ``source`` names the input (a file name) in the error's location.
    """
    return _parse(data, source, None)


def parse_canonical_json(data: bytes, source: str | None = None) -> tuple[Any, bool]:
    """``parse_strict_json``, and whether ``data`` is already the RFC 8785 form of the value.

    Exact, and without re-serialising through Python where ``_plain`` holds (what the parse saw
    says so): the C encoder's bytes are then the RFC 8785 bytes.
    """
    shape = _Shape()
    value = _parse(data, source, shape)
    if shape.plain:
        try:
            return value, _dumps_plain(value) == bytes(data)
        except (UnicodeEncodeError, RecursionError, ValueError):
            pass
    try:
        return value, rfc8785.dumps(value) == bytes(data)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError):
        return value, False


def is_canonical(data: bytes) -> bool:
    """Whether ``data`` is strict JSON already in its RFC 8785 form."""
    try:
        return parse_canonical_json(data)[1]
    except AcardsError:
        return False
