"""Scorer patterns: Python ``re`` syntax and answers, run by RE2 in linear time.

The card author writes ``scorer.pattern`` and may also supply the outputs it runs on, so acards
never runs it with Python's backtracking engine (``.*sorry`` on a 100,000-character output takes
seconds there, ``(a|a)*b`` for ever). :func:`check_pattern` parses it with Python's own parser,
translates the tree into a pattern for RE2 (Google's linear-time engine, the ``google-re2``
package), and :meth:`PatternMatcher.search` answers exactly what ``re.search(pattern, output) is not
None`` answers. ``acards validate`` runs the same check, so a refused pattern is found before any
evidence is read. Pure: no I/O.

How the answers stay Python's. RE2 runs in Latin-1 mode over a framed copy of the output: each
character becomes five bytes, ``S d d d E``, where ``d d d`` are its code point in three 7-bit
digits (bytes 0x80-0xFF) and the ASCII bytes ``S`` and ``E`` carry what Python's assertions read:
``a`` for a word character (Python's ``\\w``: Unicode, or ASCII under ``(?a)``), ``\\n`` for a
newline, ``-`` otherwise. Then:

- every one-character item (literal, class, ``.``, ``\\d``, ``\\w``, ``\\s``) becomes the set of code
  points Python matches with it, asked of Python's ``re`` itself: categories by scanning every code
  point once, ``(?i)`` items by asking about each cased character (the others match as without
  ``(?i)``); lone surrogates and astral characters are code points like any other. A set holding
  every word character, or none (``\\w``, ``\\W``, ``[\\w.-]``), reads ``S`` instead of listing ~700
  ranges, and ``.`` reads ``E``;
- RE2's ASCII ``\\b``/``\\B`` between two frames read ``E`` and ``S``, so they answer Python's
  Unicode (or ``(?a)``) word boundaries; on the empty output ``\\B`` answers as this Python does;
- ``(?m)^`` reads ``E == \\n``, ``(?m)$`` reads ``S == \\n``; ``$`` without ``(?m)`` (the end, or
  before a final newline) is RE2's ``(?m)$`` over frames where only a final newline has
  ``S == \\n``; ``^``/``\\A`` and ``\\Z`` are RE2's ``\\A`` and ``\\z``;
- repeats, groups and alternation carry over, made lazy: whether a match exists does not change,
  and RE2 can stop sooner once one is found.

Refused, with a code: what has no exact linear-time translation (card.unsupported-pattern):
backreferences, conditional groups, lookarounds, atomic groups, possessive repeats, a repeat count
over 1000, ``$`` both with and without ``(?m)``, ``\\b``/``\\B`` both with and without ``(?a)``,
``\\d``/``\\s``/``\\w`` in a group that switches between ``(?a)`` and ``(?u)``, groups nested over
MAX_NESTING deep; and what would cost too much (card.unsafe-pattern): over MAX_PATTERN characters,
or over MAX_PROGRAM RE2 instructions, which bounds the work a byte can cost when RE2 falls back
from its DFA (a few nanoseconds a byte) to its NFA.
"""

from __future__ import annotations

import functools
import re
import sys
from array import array
from collections.abc import Iterable
from typing import Any

import re2

from acards.errors import AcardsError, Location

try:  # Python's own parser of regular expressions (3.11+)
    import re._parser as _re_parser
except ImportError:  # pragma: no cover
    import sre_parse as _re_parser

MAX_PATTERN = 1000  # characters of scorer.pattern
MAX_PROGRAM = 10_000  # RE2 instructions: the most steps a byte can cost where RE2 falls back from its DFA to its NFA
MAX_MEMORY = 64 << 20  # bytes for RE2's program and DFA cache (its default, 8 MiB, sends a.{1000}b to the NFA)
MAX_REPEAT = 1000  # RE2's largest repeat count (nested counts multiply)
MAX_NESTING = 100  # groups, repeats and alternations inside one another (the translation recurses)
_LAST = 0x10FFFF
_MARK_ABOVE = 32  # a set of more ranges than this may be written with the word mark (see _frame)
_CASED_BELOW = 0x20000  # no character from U+20000 on has a case (tests/unit/test_patterns.py checks it)
_B_ON_EMPTY = re.search(r"\B", "") is not None  # this Python's own answer (it has changed between versions)
_POINTER = "/scorer/pattern"

Ranges = tuple[tuple[int, int], ...]  # sorted, disjoint, inclusive code point ranges

_ANY_START, _WORD_START, _OTHER_START = r"[\x00-\x7f]", "a", r"[\x00-\x60\x62-\x7f]"
_ANY_DATA, _ANY_END = r"[\x80-\xff]" * 3, r"[\x00-\x7f]"  # no {3}: RE2 multiplies nested repeat counts
_FRAME = _ANY_START + _ANY_DATA + _ANY_END
_NEVER = r"[^\x00-\xff]"  # an empty class: matches nothing
_ANCHORS = {"AT_BEGINNING_STRING": r"\A", "AT_END_STRING": r"\z"}
_NOT_NEWLINE = ((0, 9), (11, _LAST))
_CATEGORIES = {"DIGIT": r"\d+", "SPACE": r"\s+", "WORD": r"\w+"}
_UNSUPPORTED = {
    "GROUPREF": "a backreference", "GROUPREF_EXISTS": "a conditional group", "ASSERT": "a lookahead or lookbehind",
    "ASSERT_NOT": "a negative lookahead or lookbehind", "ATOMIC_GROUP": "an atomic group",
    "POSSESSIVE_REPEAT": "a possessive repeat",
}
_TYPE_FLAGS = re.ASCII | re.LOCALE | re.UNICODE


def _refuse(code: str, why: str, hint: str) -> AcardsError:
    return AcardsError(code, f"scorer.pattern {why}", hint, Location(pointer=_POINTER))


def _unsupported(why: str) -> AcardsError:
    return _refuse("card.unsupported-pattern", f"uses {why}, which acards cannot run in linear time with Python's answers",
                   "rewrite it with what docs/generation.md#the-regex-scorer lists (no backreferences, lookarounds, "
                   "atomic groups or possessive repeats)")


# --- sets of code points ------------------------------------------------------------------------

def _union(*parts: Iterable[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(r for part in parts for r in part):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    gaps, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            gaps.append((start, lo - 1))
        start = hi + 1
    if start <= _LAST:
        gaps.append((start, _LAST))
    return tuple(gaps)


def _minus(ranges: Ranges, removed: Ranges) -> Ranges:
    return _complement(_union(_complement(ranges), removed))


def _points(code_points: Iterable[int]) -> Ranges:
    return _union((c, c) for c in code_points)


@functools.lru_cache(maxsize=None)
def _every_character() -> str:
    """U+0000 to U+10FFFF in order, lone surrogates included."""
    return array("I", range(_LAST + 1)).tobytes().decode(f"utf-32-{sys.byteorder[0]}e", "surrogatepass")


@functools.lru_cache(maxsize=None)
def _category(kind: str, ascii_only: bool) -> Ranges:
    """The code points Python's ``\\d``, ``\\s`` or ``\\w`` match, asked of Python's ``re`` itself."""
    scanned = _every_character()[:128] if ascii_only else _every_character()
    matcher = re.compile(_CATEGORIES[kind], re.ASCII if ascii_only else 0)
    return tuple((m.start(), m.end() - 1) for m in matcher.finditer(scanned))


@functools.lru_cache(maxsize=None)
def _cased() -> tuple[str, Ranges]:
    """Every character with a lower- or uppercase form other than itself, and those forms: the only
    characters for which ``(?i)`` can change what a one-character item matches."""
    found: set[str] = set()
    characters = _every_character()[:_CASED_BELOW]
    for change in (str.lower, str.upper):
        for character, changed in zip(characters, map(change, characters)):
            if changed != character:
                found.add(character)
                found.update(changed)
    text = "".join(sorted(found))
    return text, _points(map(ord, text))


def _python_item(op: str, arg: Any) -> str:
    """One one-character item written back as Python syntax, to ask Python what it matches."""
    def char(code: int) -> str:
        return f"\\U{code:08x}"
    if op == "LITERAL":
        return char(arg)
    if op == "NOT_LITERAL":
        return f"[^{char(arg)}]"
    parts: list[str] = []
    for item_op, item in arg:
        if item_op == "NEGATE":
            parts.insert(0, "^")
        elif item_op == "LITERAL":
            parts.append(char(item))
        elif item_op == "RANGE":
            parts.append(f"{char(item[0])}-{char(item[1])}")
        else:  # CATEGORY
            letter = {"DIGIT": "d", "SPACE": "s", "WORD": "w"}[item.replace("CATEGORY_", "").replace("NOT_", "")]
            parts.append("\\" + (letter.upper() if "NOT_" in item else letter))
    return "[" + "".join(parts) + "]"


@functools.lru_cache(maxsize=4096)
def _item_set(op: str, arg: Any, flags: int) -> Ranges:
    """The code points the one-character item ``(op, arg)`` matches under ``flags``, as Python does."""
    ascii_only = bool(flags & re.ASCII)
    if op == "LITERAL":
        plain: Ranges = ((arg, arg),)
    elif op == "NOT_LITERAL":
        plain = _complement(((arg, arg),))
    elif op == "ANY":
        return ((0, _LAST),) if flags & re.DOTALL else _complement(((10, 10),))
    else:  # IN: literals, ranges and categories, maybe negated
        parts: list[Ranges] = []
        for item_op, item in arg:
            if item_op == "LITERAL":
                parts.append(((item, item),))
            elif item_op == "RANGE":
                parts.append((item,))
            elif item_op == "CATEGORY":
                ranges = _category(item.replace("CATEGORY_", "").replace("NOT_", ""), ascii_only)
                parts.append(_complement(ranges) if "NOT_" in item else ranges)
        plain = _union(*parts)
        if any(item_op == "NEGATE" for item_op, _ in arg):
            plain = _complement(plain)
    if not flags & re.IGNORECASE:
        return plain
    cased_text, cased = _cased()
    asked = re.compile(_python_item(op, arg), flags & (re.IGNORECASE | re.ASCII))
    return _union(_minus(plain, cased), _points(ord(m.group()) for m in asked.finditer(cased_text)))


def _byte(digit: int) -> str:
    return f"\\x{0x80 | digit:02x}"


def _digit_products(lo: tuple[int, ...], hi: tuple[int, ...]) -> list[str]:
    """Byte patterns for the code points whose 7-bit digits lie from ``lo`` to ``hi``."""
    if len(lo) == 1:
        return [_byte(lo[0]) if lo == hi else f"[{_byte(lo[0])}-{_byte(hi[0])}]"]
    if lo[0] == hi[0]:
        return [_byte(lo[0]) + rest for rest in _digit_products(lo[1:], hi[1:])]
    first, last, head, tail = lo[0], hi[0], [], []
    if any(lo[1:]):
        head = [_byte(lo[0]) + rest for rest in _digit_products(lo[1:], (127,) * (len(lo) - 1))]
        first += 1
    if any(d != 127 for d in hi[1:]):
        tail = [_byte(hi[0]) + rest for rest in _digit_products((0,) * (len(lo) - 1), hi[1:])]
        last -= 1
    middle = [f"[{_byte(first)}-{_byte(last)}]" + r"[\x80-\xff]" * (len(lo) - 1)] if first <= last else []
    return head + middle + tail


def _data(ranges: Ranges) -> str:
    products = []
    for lo, hi in ranges:
        products += _digit_products((lo >> 14, lo >> 7 & 127, lo & 127), (hi >> 14, hi >> 7 & 127, hi & 127))
    return "(?:" + "|".join(products) + ")"


@functools.lru_cache(maxsize=4096)
def _frame(ranges: Ranges, marked: Ranges | None) -> tuple[str, bool]:
    """RE2 pattern for one framed character whose code point is in ``ranges``. Where the frames mark
    the word characters ``marked`` (S is ``a``), a set holding all of them, or none, is written
    with that mark instead of their ~700 ranges, when that is shorter; the flag says it was."""
    if not ranges:
        return _NEVER, False
    written = [_ANY_START + _data(ranges)]
    if ranges == _NOT_NEWLINE:  # `.`: E is \n on a newline only
        written.append(_ANY_START + _ANY_DATA)
        return "(?:" + written[1] + r")[\x00-\x09\x0b-\x7f]", False
    if marked is not None:
        halves = []
        for start, half in ((_WORD_START, marked), (_OTHER_START, _complement(marked))):
            inside = _minus(ranges, _complement(half))
            if inside == half:
                halves.append(start + _ANY_DATA)
            elif inside:
                halves.append(start + _data(inside))
        written.append("|".join(halves))
    best = min(written, key=len)
    return "(?:" + best + ")" + _ANY_END, best is not written[0]


# --- the translation ----------------------------------------------------------------------------

class _Translation:
    """Python's parse tree written as an RE2 pattern over framed text; records which frames it needs."""

    def __init__(self, marked_ascii: bool = False, never_nonboundary: bool = False) -> None:
        self.marked_ascii = marked_ascii  # which words S marks: (?a)'s or Unicode's
        self.uses_marks = False  # whether some item reads the word mark
        self.word_modes: set[bool] = set()  # ascii_only for each \b or \B
        self.dollar_modes: set[bool] = set()  # multiline for each $
        self.has_nonboundary = False
        self.never_nonboundary = never_nonboundary  # \B matches nothing (Python's answer on the empty output)

    def sequence(self, items, flags: int) -> str:
        return "".join(self.item(str(op), arg, flags) for op, arg in items)

    def item(self, op: str, arg: Any, flags: int) -> str:
        if op in _UNSUPPORTED:
            raise _unsupported(_UNSUPPORTED[op])
        if op in ("LITERAL", "NOT_LITERAL", "ANY", "IN"):
            key = tuple((str(o), str(a) if str(o) == "CATEGORY" else a) for o, a in arg) if op == "IN" else arg
            ranges = _item_set(op, key, flags & (re.IGNORECASE | re.ASCII | re.DOTALL))
            marked = _category("WORD", self.marked_ascii) if len(ranges) > _MARK_ABOVE else None
            written, uses_marks = _frame(ranges, marked)
            self.uses_marks |= uses_marks
            return written
        if op == "BRANCH":
            return "(?:" + "|".join(self.sequence(branch, flags) for branch in arg[1]) + ")"
        if op == "SUBPATTERN":
            _group, add, remove, items = arg
            inner = (flags & ~_TYPE_FLAGS if add & _TYPE_FLAGS else flags) | add
            if (inner ^ flags) & _TYPE_FLAGS and _holds_category(items):
                # Python tests a leading class against the pattern's own flags before the group's
                # (its search prefilter), so its answer depends on where the group stands
                raise _unsupported(r"\d, \s or \w in a group that switches between (?a) and (?u); put (?a) at the start of the pattern")
            return "(?:" + self.sequence(items, inner & ~remove) + ")"
        if op in ("MAX_REPEAT", "MIN_REPEAT"):
            low, high, body = arg
            unbounded = high == _re_parser.MAXREPEAT
            if low > MAX_REPEAT or (not unbounded and high > MAX_REPEAT):
                raise _unsupported(f"a repeat count over {MAX_REPEAT}")
            # lazy, like the prefix in _program: the first match found ends the search early
            return "(?:" + self.sequence(body, flags) + ")" + (f"{{{low},}}?" if unbounded else f"{{{low},{high}}}?")
        if op == "AT":
            return self.anchor(str(arg), flags)
        raise _unsupported(f"the construct {op}")  # pragma: no cover - Python's parser has no other

    def anchor(self, at: str, flags: int) -> str:
        multiline = bool(flags & re.MULTILINE)
        if at in ("AT_BOUNDARY", "AT_NON_BOUNDARY"):
            self.word_modes.add(bool(flags & re.ASCII))
            if at == "AT_BOUNDARY":
                return r"\b"
            self.has_nonboundary = True
            return _NEVER if self.never_nonboundary else r"\B"
        if at == "AT_BEGINNING":
            return "(?m:^)" if multiline else r"\A"
        if at == "AT_END":
            self.dollar_modes.add(multiline)
            return "(?m:$)"
        return _ANCHORS[at]


def _holds_category(items) -> bool:
    for op, arg in items:
        op = str(op)
        if op == "IN" and any(str(item_op) == "CATEGORY" for item_op, _ in arg):
            return True
        if op == "SUBPATTERN" and _holds_category(arg[3]) or op in ("MAX_REPEAT", "MIN_REPEAT") and _holds_category(arg[2]):
            return True
        if op == "BRANCH" and any(_holds_category(branch) for branch in arg[1]):
            return True
    return False


def _depth(items) -> int:
    """How deeply groups, repeats and alternations nest in the parse tree (without recursion)."""
    deepest, stack = 0, [(items, 1)]
    while stack:
        items, depth = stack.pop()
        deepest = max(deepest, depth)
        for op, arg in items:
            op = str(op)
            children = {"SUBPATTERN": lambda: [arg[3]], "MAX_REPEAT": lambda: [arg[2]], "MIN_REPEAT": lambda: [arg[2]],
                        "BRANCH": lambda: arg[1]}.get(op, list)()
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _options() -> Any:
    options = re2.Options()
    options.encoding = re2.Options.Encoding.LATIN1
    options.log_errors = False
    options.never_capture = True
    options.max_mem = MAX_MEMORY
    return options


def _program(body: str) -> Any:
    try:
        program = re2.compile(("\\A(?:" + _FRAME + ")*?(?:" + body + ")").encode("ascii"), _options())
    except re2.error as error:
        reason = error.args[0].decode("ascii", "replace") if error.args and isinstance(error.args[0], bytes) else str(error)
        if "repetition" in reason:
            raise _unsupported(f"repeats nested {MAX_REPEAT}+ times in all (RE2: {reason})") from None
        raise _refuse("card.unsafe-pattern", f"is too large for the linear-time engine (RE2: {reason})",
                      "shorten the pattern: fewer or smaller character classes and repeats (docs/errors.md#card)") from None
    if program.programsize > MAX_PROGRAM:
        raise _refuse("card.unsafe-pattern", f"compiles to {program.programsize} RE2 instructions (at most {MAX_PROGRAM})",
                      "shorten the pattern: fewer or smaller character classes and repeats (docs/errors.md#card)")
    return program


@functools.lru_cache(maxsize=None)
def _word_table(ascii_only: bool) -> Any:
    import numpy as np

    table = np.zeros(_LAST + 1, dtype=bool)
    for lo, hi in _category("WORD", ascii_only):
        table[lo:hi + 1] = True
    return table


class PatternMatcher:
    """A checked ``scorer.pattern``: :meth:`search` is ``re.search(pattern, text) is not None``, in linear time."""

    def __init__(self, pattern: str, program: Any, ascii_words: bool | None, every_newline: bool, on_empty: bool) -> None:
        self.pattern = pattern
        self._program = program
        self._ascii_words = ascii_words  # None: the pattern has no \b or \B, so no frame says what is a word
        self._every_newline = every_newline  # S == \n on every newline ((?m)$), else on a final one only ($)
        self._on_empty = on_empty

    def frames(self, text: str) -> bytes:
        """``text`` as RE2 reads it: five bytes a character (see the module docstring)."""
        import numpy as np

        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        frames = np.empty((len(points), 5), dtype=np.uint8)
        frames[:, 1] = 0x80 | points >> 14
        frames[:, 2] = 0x80 | (points >> 7 & 127)
        frames[:, 3] = 0x80 | (points & 127)
        edge = np.full(len(points), ord("-"), dtype=np.uint8)
        if self._ascii_words is not None:
            edge[_word_table(self._ascii_words)[points]] = ord("a")
        newline = points == 10
        frames[:, 4] = np.where(newline, 10, edge)
        if self._every_newline:
            edge[newline] = 10
        elif len(points) and newline[-1]:
            edge[-1] = 10
        frames[:, 0] = edge
        return frames.tobytes()

    def search(self, text: str) -> bool:
        if not text:
            return self._on_empty
        return self._program.search(self.frames(text)) is not None


@functools.lru_cache(maxsize=64)
def check_pattern(pattern: str) -> PatternMatcher:
    """``scorer.pattern`` checked and translated; refused with a code when it cannot run as Python would."""
    if len(pattern) > MAX_PATTERN:
        raise _refuse("card.unsafe-pattern", f"is {len(pattern)} characters long (at most {MAX_PATTERN})",
                      "shorten the pattern (docs/errors.md#card)")
    try:
        re.compile(pattern)
        parsed = _re_parser.parse(pattern)
    except re.error as error:
        raise AcardsError("card.bad-pattern", f"scorer.pattern {pattern!r} is not a valid Python regular expression: {error}",
                          "fix the pattern (Python `re` syntax)", Location(pointer=_POINTER)) from None
    except RecursionError:
        raise _unsupported(f"groups nested more than {MAX_NESTING} deep") from None
    if _depth(parsed) > MAX_NESTING:
        raise _unsupported(f"groups nested more than {MAX_NESTING} deep")
    survey = _Translation()  # which \b and \B, which $: they choose how the frames mark words and newlines
    survey.sequence(parsed, parsed.state.flags)
    if len(survey.dollar_modes) > 1:
        raise _unsupported("$ both with and without (?m)")
    if len(survey.word_modes) > 1:
        raise _unsupported(r"\b or \B both with and without (?a)")
    marked_ascii = next(iter(survey.word_modes), False)
    translation = _Translation(marked_ascii)
    program = _program(translation.sequence(parsed, parsed.state.flags))
    empty = program
    if survey.has_nonboundary and not _B_ON_EMPTY:
        empty = _program(_Translation(marked_ascii, never_nonboundary=True).sequence(parsed, parsed.state.flags))
    marks = survey.word_modes or translation.uses_marks
    return PatternMatcher(pattern, program, ascii_words=marked_ascii if marks else None,
                          every_newline=True in survey.dollar_modes, on_empty=empty.search(b"") is not None)
