"""acards.patterns: scorer patterns run by RE2 over framed text answer exactly as ``re.search`` does.

A Hypothesis differential test compares the two on patterns drawn from a grammar of every construct
acards accepts, over texts of ASCII and non-ASCII letters, digits, spaces, newlines, an astral
character and a lone surrogate; the translation rules the module docstring states are pinned one by
one below, and so are the refusals.
"""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from acards import patterns
from acards.errors import AcardsError
from acards.patterns import MAX_PATTERN, MAX_PROGRAM, check_pattern

EVERY_CHARACTER = "".join(map(chr, range(0x110000)))

# Characters where Python's Unicode rules differ from ASCII ones or from RE2's: non-ASCII letters and
# digits, the special case pairs of (?i) (K and the Kelvin sign, s and long s, sigma's three forms,
# dotted and dotless i, sharp s, the titlecase dz, Ohm and omega, micro and mu), Unicode spaces.
TEXT_CHARACTERS = list("abAB_1 \n\t-.xé\u00c9\u00df\u1e9e\u0130i\u0131k\u212aKs\u017f\u03a3\u03c3\u03c2\u0663\u00a0\u2028"
                       "\u01c4\u01c5\u01c6\u2126\u03c9\u00b5\u03bc") + ["\U0001d400", "\ud800"]
ATOMS = ["a", "b", "A", "x", "é", "\u00c9", "\u00df", "\u1e9e", "\u0130", "i", "\u0131", "k", "K", "\u212a", "s", "\u017f",
         "\u03c3", "\u03a3", "\u01c5", "\u00b5", "\\.", ".", "\\d", "\\D", "\\w", "\\W", "\\s", "\\S", "\\n", " ", "_", "1",
         "\\u0663", "\\U0001d400", "[a-z]", "[^a-z]", "[A-Z]", "[k-s]", "[\u00e0-\u00ff]", "[\u01c4-\u01cc]", "[\\w-]",
         "[^\\W\\d]", "[\\s\\d]", "[^\\n]", "[\ud800-\udfff]", "[^\u00b5]",
         "\\b", "\\B", "^", "$", "\\A", "\\Z", ""]
QUANTIFIERS = ["*", "+", "?", "*?", "+?", "??", "{2}", "{0,2}", "{1,}", "{,2}", "{2,3}?"]
GROUP_FLAGS = ["i", "-i", "m", "s", "a", "im", "ai", "is"]
GLOBAL_FLAGS = ["", "", "(?i)", "(?m)", "(?s)", "(?a)", "(?ai)", "(?im)"]


def _compose(children):
    pieces = st.lists(children, min_size=2, max_size=3)
    return st.one_of(
        pieces.map("".join),
        pieces.map(lambda parts: "(?:" + "|".join(parts) + ")"),
        children.map(lambda part: "(" + part + ")"),
        st.tuples(children, st.sampled_from(QUANTIFIERS)).map(lambda t: "(?:" + t[0] + ")" + t[1]),
        st.tuples(st.sampled_from(GROUP_FLAGS), children).map(lambda t: f"(?{t[0]}:{t[1]})"),
    )


PATTERNS = st.tuples(st.sampled_from(GLOBAL_FLAGS), st.recursive(st.sampled_from(ATOMS), _compose, max_leaves=8)).map("".join)
TEXTS = st.lists(st.text(alphabet=st.sampled_from(TEXT_CHARACTERS), max_size=14), min_size=1, max_size=8)
# The refusals a grammar pattern may meet: combinations, never a construct the grammar uses alone.
COMBINATION_REFUSALS = ("$ both with and without", "both with and without (?a)", "switches between (?a) and (?u)")


@given(PATTERNS, TEXTS)
@example("(?a:\\W)", ["é", " "])  # Python's search prefilter reads \W with the pattern's flags: refused
@example("x$", ["x\n", "x\n\n", "x"])
@example("\\B", ["", "é", "a", " "])
@example("(?i)\\bk\\b", ["\u212a", "K é"])
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_search_answers_as_python_re_does(pattern, texts):
    try:
        re.compile(pattern)
    except re.error:
        assume(False)
    try:
        matcher = check_pattern(pattern)
    except AcardsError as error:
        assert error.code == "card.unsupported-pattern" and any(why in error.problems[0].message for why in COMBINATION_REFUSALS)
        return
    for text in texts:
        assert matcher.search(text) == (re.search(pattern, text) is not None), (pattern, text)


# --- the translation rules -------------------------------------------------------------------------

def _python_ranges(item: str) -> tuple[tuple[int, int], ...]:
    """The code points Python's ``item`` (one character, maybe after global flags) matches, as maximal runs."""
    flags, body = re.fullmatch(r"(\(\?[a-z]+\))?(.*)", item).groups()
    runs = re.compile((flags or "") + "(?:" + body + ")+")
    return tuple((m.start(), m.end() - 1) for m in runs.finditer(EVERY_CHARACTER))


def _expanded(ranges) -> set[int]:
    return {code for lo, hi in ranges for code in range(lo, hi + 1)}


@pytest.mark.parametrize("kind, predicate, ascii_members", [
    ("DIGIT", str.isdecimal, "0123456789"),
    ("SPACE", str.isspace, " \t\n\r\x0b\x0c"),  # under (?a), not \x1c-\x1f, which str.isspace counts
    ("WORD", lambda c: c.isalnum() or c == "_", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"),
])
def test_categories_are_pythons_own_predicates(kind, predicate, ascii_members):
    assert _expanded(patterns._category(kind, False)) == {i for i, c in enumerate(EVERY_CHARACTER) if predicate(c)}
    assert _expanded(patterns._category(kind, True)) == set(map(ord, ascii_members))


def test_no_character_beyond_the_cased_bound_has_a_case():
    beyond = EVERY_CHARACTER[patterns._CASED_BELOW:]
    assert all(c.lower() == c and c.upper() == c for c in beyond)
    cased_text, _ = patterns._cased()
    if hasattr(__import__("_sre"), "unicode_iscased"):  # what sre itself calls cased, and its lower forms
        import _sre

        cased = {c for c in range(0x110000) if _sre.unicode_iscased(c)}
        assert cased | {_sre.unicode_tolower(c) for c in cased} <= set(map(ord, cased_text))


@pytest.mark.parametrize("item", ["(?i)k", "(?i)s", "(?i)\u03c3", "(?i)\u00df", "(?i)\u0130", "(?i)i", "(?i)\u01c5", "(?i)[a-z]",
                                  "(?i)[^a-z]", "(?i)[\u0100-\u017f]", "(?i)[\\w]", "(?i)\\W", "(?ai)k", "(?ai)[^k]",
                                  "(?i)[^\\W\\d]", "(?i)[\u2126-\u212b]", "\\S", "(?a)\\D", "(?s).", ".", "[^\\n\\d]"])
def test_one_character_items_match_what_python_matches(item):
    parsed = patterns._re_parser.parse(item)
    (op, arg), flags = list(parsed)[0], parsed.state.flags
    key = tuple((str(o), str(a) if str(o) == "CATEGORY" else a) for o, a in arg) if str(op) == "IN" else arg
    found = patterns._item_set(str(op), key, flags & (re.IGNORECASE | re.ASCII | re.DOTALL))
    assert found == _python_ranges(item)


def test_frames_carry_code_points_word_marks_and_newlines():
    matcher = check_pattern(r"\b(?m:$)")
    assert matcher.frames("a\n\u00e9\U0001d400") == (b"a\x80\x80\xe1a" + b"\n\x80\x80\x8a\n" + b"a\x80\x81\xe9a"
                                                  + b"a\x87\xa8\x80a")
    final_only = check_pattern(r"\bx$")  # $ without (?m): only a final newline opens with \n
    assert final_only.frames("\n\n") == b"-\x80\x80\x8a\n" + b"\n\x80\x80\x8a\n"
    assert check_pattern("x").frames("\u00e9") == b"-\x80\x81\xe9-"  # no \b and no large class: no word marks


@pytest.mark.parametrize("pattern, text, found", [
    ("sorry$", "I am sorry\n", True),  # $ before a final newline
    ("sorry$", "I am sorry\n\n", False),
    ("sorry$\\n", "I am sorry\n", True),  # ...and the newline after it can still be matched
    ("(?m)^sure", "no\nsure", True),
    ("\\bcaf\u00e9\\b", "un caf\u00e9!", True),  # Unicode word boundaries: é is a word character
    ("\\bcaf\\b", "un caf\u00e9!", False),
    ("(?a)\\bcaf\\b", "un caf\u00e9!", True),  # ...but not under (?a)
    ("\\d", "\u0663", True), ("(?a)\\d", "\u0663", False),  # Arabic-Indic three
    ("\\s", "\u2028", True), ("(?i)stra\u00dfe", "STRASSE", False), ("(?i)k", "\u212a", True),
    ("\\B", "", False), ("^$", "", True), ("\\b", "", False),
    (".", "\n", False), ("(?s).", "\n", True), ("[\ud800-\udfff]", "a\udc00", True), ("\U0001d400", "x\U0001d400", True),
])
def test_translation_keeps_pythons_answer(pattern, text, found):
    assert (re.search(pattern, text) is not None) == found
    assert check_pattern(pattern).search(text) == found


@pytest.mark.parametrize("pattern, code, why", [
    (r"(a)\1", "card.unsupported-pattern", "backreference"),
    (r"(a)?(?(1)b|c)", "card.unsupported-pattern", "conditional group"),
    (r"(?<!not )\bsafe\b", "card.unsupported-pattern", "lookahead or lookbehind"),
    (r"sorry(?=\.)", "card.unsupported-pattern", "lookahead or lookbehind"),
    (r"a{1001}", "card.unsupported-pattern", "repeat count over 1000"),
    (r"(?:a{100}){20}", "card.unsupported-pattern", "nested"),
    (r"(?m:^x$)|y$", "card.unsupported-pattern", "$ both with and without"),
    (r"\bx(?a:\b)", "card.unsupported-pattern", "both with and without (?a)"),
    (r"(?a:\w)", "card.unsupported-pattern", "switches between (?a) and (?u)"),
    ("(" * 120 + ")" * 120, "card.unsupported-pattern", "nested more than"),
    ("x" * (MAX_PATTERN + 1), "card.unsafe-pattern", "characters long"),
    (r"[^\W\d_]{20}", "card.unsafe-pattern", f"at most {MAX_PROGRAM}"),
    ("(unclosed", "card.bad-pattern", "not a valid Python regular expression"),
])
def test_what_cannot_run_exactly_in_linear_time_is_refused(pattern, code, why):
    with pytest.raises(AcardsError) as raised:
        check_pattern(pattern)
    assert raised.value.code == code and why in raised.value.problems[0].message
    assert raised.value.problems[0].location.pointer == "/scorer/pattern"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="atomic groups and possessive repeats are Python 3.11+")
@pytest.mark.parametrize("pattern", [r"(?>a+)b", r"a*+b"])
def test_atomic_groups_and_possessive_repeats_are_refused(pattern):
    with pytest.raises(AcardsError) as raised:
        check_pattern(pattern)
    assert raised.value.code == "card.unsupported-pattern"
