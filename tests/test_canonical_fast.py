"""The exact fast path of acards.canonical: json's C encoder where it writes RFC 8785's bytes.

``canonical_bytes`` and ``parse_canonical_json`` hand a value to ``json.dumps`` only when it holds
no float and no key beyond U+FFFF (``canonical._plain``); the claim is that json then writes exactly
RFC 8785's bytes, and that everything else still goes through the ``rfc8785`` library. Checked here
against that library on generated values (every class of character in keys and strings, integers
inside and outside ±(2^53−1), floats, lone surrogates, nesting) and against the RFC's vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_vectors import VECTORS, needs_vectors  # noqa: E402

from acards import canonical
from acards.canonical import canonical_bytes, is_canonical, parse_canonical_json, parse_strict_json
from acards.errors import AcardsError

RFC8785_DIR = (VECTORS or Path("/nonexistent")) / "rfc8785" / "testdata"
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters where the two serialisers could part: controls, quote and backslash, DEL, U+2028,
# the top of the BMP (above the surrogates, where UTF-16 and code point order disagree with
# astral characters), astral characters themselves, and (separately) lone surrogates.
_CHARACTERS = st.one_of(
    st.characters(max_codepoint=0x7F),
    st.sampled_from(['"', "\\", "\x7f", "\u2028", "\u2029", "\x00", "\x1f", "/"]),
    st.characters(min_codepoint=0x80, max_codepoint=0xD7FF),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF),
    st.characters(min_codepoint=0x10000),
)
_TEXT = st.text(_CHARACTERS, max_size=6)
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1), st.integers(), st.floats(), _TEXT,
)


def _values(scalars, keys):
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=24,
    )


VALUES = _values(_SCALARS, _TEXT)
# What the fast path takes: no float, keys within the BMP.
PLAIN = _values(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1), _TEXT),
    st.text(st.characters(max_codepoint=0xFFFF, exclude_categories=("Cs",)), max_size=6),
)


def reference(value) -> bytes | None:
    """RFC 8785 by the rfc8785 library, or None where it refuses the value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeError, RecursionError):
        return None


@PROPERTY
@given(PLAIN)
def test_json_writes_rfc8785_bytes_for_every_plain_value(value):
    assert canonical._plain(value)
    assert canonical._dumps_plain(value) == rfc8785.dumps(value)


@PROPERTY
@given(VALUES)
def test_canonical_bytes_is_rfc8785(value):
    expected = reference(value)
    if expected is None:
        with pytest.raises(AcardsError) as excinfo:
            canonical_bytes(value)
        assert excinfo.value.code == "envelope.not-canonicalizable"
    else:
        assert canonical_bytes(value) == expected


@PROPERTY
@given(VALUES, st.booleans(), st.booleans(), st.booleans())
def test_parse_canonical_json_says_exactly_whether_bytes_are_rfc8785(value, sort_keys, compact, ensure_ascii):
    separators = (",", ":") if compact else (", ", ": ")
    try:
        data = json.dumps(value, sort_keys=sort_keys, separators=separators, ensure_ascii=ensure_ascii)
    except TypeError:  # json cannot write non-string keys sorted against each other
        return
    data = data.encode("utf-8", "surrogatepass")
    try:
        parsed = parse_strict_json(data)
    except AcardsError as error:
        with pytest.raises(AcardsError) as excinfo:
            parse_canonical_json(data)
        assert excinfo.value.code == error.code
        return
    again, canonical_form = parse_canonical_json(data)
    assert again == parsed
    assert canonical_form is (reference(parsed) == data)
    assert is_canonical(data) is canonical_form


@PROPERTY
@given(VALUES)
def test_rfc8785_bytes_read_back_as_canonical(value):
    data = reference(value)
    if data is None:
        return
    try:
        parsed, canonical_form = parse_canonical_json(data)
    except AcardsError:  # an integer beyond 2^53 - 1: the strict reader refuses it
        return
    assert canonical_form
    assert rfc8785.dumps(parsed) == data


@pytest.mark.parametrize(
    "value, plain",
    [
        ({"\ue000": 1, "\U0001f600": 2}, False),  # UTF-16 order puts the astral key first
        ({"a": 1.0}, False),  # RFC 8785 writes 1, json 1.0
        ([1e21], False),
        ({"b": [True, None, -(2**53 - 1)], "a": "\x7f\u2028\x1f"}, True),
        (2**53, False),
        (("tuple", 1), True),
    ],
)
def test_the_fast_path_is_taken_exactly_where_it_is_exact(value, plain):
    assert canonical._plain(value) is plain
    expected = reference(value)
    if expected is not None:
        assert canonical_bytes(value) == expected


def test_the_exclusions_are_needed():
    """json and RFC 8785 do differ where _plain refuses: the check can fail."""
    value = {"\ue000": 1, "\U0001f600": 2}
    assert canonical._dumps_plain(value) != rfc8785.dumps(value)
    assert canonical._dumps_plain({"a": 1.0}) != rfc8785.dumps({"a": 1.0})
    assert parse_canonical_json(canonical._dumps_plain(value)) == (value, False)
    assert parse_canonical_json(rfc8785.dumps(value)) == (value, True)


def test_subclasses_and_odd_types_go_to_rfc8785():
    class Text(str):
        pass

    assert not canonical._plain({"a": Text("x")})
    assert not canonical._plain({1: 2})
    assert canonical_bytes({"a": Text("x")}) == rfc8785.dumps({"a": Text("x")})
    nested: list = []
    for _ in range(canonical._MAX_PLAIN_DEPTH + 5):
        nested = [nested]
    assert not canonical._plain(nested)


def test_a_lone_surrogate_is_refused_on_both_paths():
    for value in ("\ud800", {"\udc00": 1}, ["x\ud83d"]):
        with pytest.raises(AcardsError) as excinfo:
            canonical_bytes(value)
        assert excinfo.value.code == "envelope.not-canonicalizable"


@needs_vectors
@pytest.mark.parametrize("name", sorted(p.name for p in (RFC8785_DIR / "input").glob("*.json")))
def test_rfc8785_vectors_on_both_paths(name):
    source = (RFC8785_DIR / "input" / name).read_bytes()
    expected = (RFC8785_DIR / "output" / name).read_bytes()
    value, source_canonical = parse_canonical_json(source)
    assert not source_canonical
    assert canonical_bytes(value) == expected
    assert parse_canonical_json(expected) == (value, True)
    if canonical._plain(value):
        assert canonical._dumps_plain(value) == expected


@needs_vectors
def test_the_vectors_exercise_both_paths():
    values = [parse_strict_json((RFC8785_DIR / "input" / p.name).read_bytes())
              for p in (RFC8785_DIR / "input").glob("*.json")]
    assert {canonical._plain(value) for value in values} == {True, False}
