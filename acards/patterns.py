"""Bounded regular expressions: a pattern a card gives is checked before it ever runs.

The card author writes ``scorer.pattern`` and the reviewer's machine runs it on every output
(acards.generate.scorers), so :func:`check_pattern` refuses what Python's backtracking engine could
run for a very long time; ``acards validate`` runs the same check, so an unsafe pattern is found
before any evidence is read.  Pure: no I/O.
"""

from __future__ import annotations

import re

from acards.errors import AcardsError, Location

try:  # Python's own parser of regular expressions (3.11+), to inspect a pattern before it runs
    import re._parser as _re_parser  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    import sre_parse as _re_parser  # type: ignore[no-redef]


# The card author writes scorer.pattern and the reviewer's machine runs it on every output, so a
# pattern that Python's backtracking engine could run for exponential or high-polynomial time is
# refused before it runs (card.unsafe-pattern): longer than MAX_PATTERN, a backreference or a
# conditional group, a quantifier or alternation inside a repeated group, or two unbounded repeats
# that can match the same characters with nothing between them that the first cannot match. What
# is left costs at most about len(output)² steps for re.search. Character sets are compared on a
# sample alphabet (Latin, general punctuation, CJK and fullwidth samples), case-folded under (?i).
MAX_PATTERN = 1000
_UNBOUNDED = 64  # a repeat allowing more than this many iterations counts as unbounded
_ALPHABET = tuple(chr(c) for c in [*range(0x250), *range(0x370, 0x400), *range(0x2000, 0x2070), 0x3000, 0x3001,
                                   0x3002, 0x4E00, 0x4E8C, 0xFF10, 0xFF21, 0xFF41, 0xFF0C, 0x1F600])
_CATEGORIES = {
    "CATEGORY_DIGIT": str.isdecimal, "CATEGORY_SPACE": str.isspace,
    "CATEGORY_WORD": lambda ch: ch.isalnum() or ch == "_",
    "CATEGORY_LINEBREAK": lambda ch: ch == "\n",
}


def _any_char(_ch: str) -> bool:
    return True


def _unsafe(why: str) -> AcardsError:
    return AcardsError("card.unsafe-pattern", f"scorer.pattern {why}, so it could run for a very long time on some outputs",
                       "rewrite it without backreferences, nested or adjacent overlapping repeats (docs/errors.md#card)",
                       Location(pointer="/scorer/pattern"))


def _char_test(op: str, arg):
    if op == "LITERAL":
        return lambda ch: ord(ch) == arg
    if op == "NOT_LITERAL":
        return lambda ch: ord(ch) != arg
    if op == "ANY":
        return _any_char
    if op == "RANGE":
        return lambda ch: arg[0] <= ord(ch) <= arg[1]
    if op == "CATEGORY":
        name = str(arg)
        test = _CATEGORIES.get(name.replace("NOT_", "").replace("UNI_", "").replace("LOC_", ""), _any_char)
        return (lambda ch: not test(ch)) if "NOT_" in name else test
    if op == "IN":
        negate = any(str(o) == "NEGATE" for o, _ in arg)
        tests = [_char_test(str(o), a) for o, a in arg if str(o) != "NEGATE"]
        return lambda ch: negate != any(t(ch) for t in tests)
    return None


def _chars(items, fold: bool) -> frozenset[str]:
    """Every sample character some item of ``items`` can consume (an over-approximation)."""
    found: set[str] = set()
    for op, arg in items:
        op = str(op)
        test = _char_test(op, arg)
        if test is not None:
            found.update(ch for ch in _ALPHABET if test(ch))
        elif op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            found |= _chars(arg[2], fold)
        elif op == "SUBPATTERN":
            found |= _chars(arg[3], fold)
        elif op == "ATOMIC_GROUP":
            found |= _chars(arg, fold)
        elif op == "BRANCH":
            for branch in arg[1]:
                found |= _chars(branch, fold)
    if fold:
        found |= {ch.swapcase() for ch in found if len(ch.swapcase()) == 1}
    return frozenset(found)


def _varies(items) -> bool:
    """Whether ``items`` hold an alternation or a repeat whose count can vary (a quantifier)."""
    for op, arg in _flatten(items):
        op = str(op)
        if op == "BRANCH":
            return True
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and (arg[0] != arg[1] or _varies(arg[2])):
            return True
        if op in ("ASSERT", "ASSERT_NOT") and _varies(arg[1]):
            return True
    return False


def _unbounded_inside(items) -> bool:
    for op, arg in _flatten(items):
        op = str(op)
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and (arg[1] > _UNBOUNDED or _unbounded_inside(arg[2])):
            return True
        if op == "BRANCH" and any(_unbounded_inside(branch) for branch in arg[1]):
            return True
    return False


def _flatten(items):
    for op, arg in items:
        if str(op) == "SUBPATTERN":
            yield from _flatten(arg[3])
        elif str(op) == "ATOMIC_GROUP":
            yield from _flatten(arg)
        else:
            yield op, arg


def _mandatory(items) -> bool:
    """Whether ``items`` always consume at least one character."""
    for op, arg in _flatten(items):
        op = str(op)
        if _char_test(op, arg) is not None:
            return True
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and arg[0] >= 1 and _mandatory(arg[2]):
            return True
        if op == "BRANCH" and all(_mandatory(branch) for branch in arg[1]):
            return True
    return False


def _check_sequence(items, fold: bool) -> None:
    open_repeats: list[frozenset[str]] = []  # unbounded repeats that may still be consuming
    for op, arg in _flatten(items):
        op = str(op)
        if op in ("GROUPREF", "GROUPREF_EXISTS"):
            raise _unsafe("uses a backreference or a conditional group")
        if op in ("ASSERT", "ASSERT_NOT"):
            _check_sequence(arg[1], fold)
            continue
        unbounded = False
        if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = arg
            if high > 1 and _varies(body):
                raise _unsafe("repeats a group that holds a quantifier or an alternation (nested quantifiers)")
            _check_sequence(body, fold)
            unbounded = high > _UNBOUNDED
        elif op == "BRANCH":
            for branch in arg[1]:
                _check_sequence(branch, fold)
            unbounded = any(_unbounded_inside(branch) for branch in arg[1])
        chars = _chars([(op, arg)], fold)
        if unbounded:
            if any(chars & earlier for earlier in open_repeats):
                raise _unsafe("has two unbounded repeats that can match the same characters one after the other")
            open_repeats = [chars] if _mandatory([(op, arg)]) else [*open_repeats, chars]
        elif _mandatory([(op, arg)]):
            open_repeats = [earlier for earlier in open_repeats if earlier & chars]


def check_pattern(pattern: str) -> re.Pattern:
    """``scorer.pattern`` compiled, after refusing what could make it run for a very long time."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise AcardsError("card.bad-pattern", f"scorer.pattern {pattern!r} is not a valid Python regular expression: {error}",
                          "fix the pattern (Python `re` syntax)", Location(pointer="/scorer/pattern")) from None
    if len(pattern) > MAX_PATTERN:
        raise _unsafe(f"is {len(pattern)} characters long (at most {MAX_PATTERN})")
    parsed = _re_parser.parse(pattern)
    fold = bool(compiled.flags & re.IGNORECASE) or re.search(r"\(\?[a-zA-Z-]*i", pattern) is not None
    _check_sequence(parsed, fold)
    return compiled
