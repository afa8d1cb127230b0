"""Vectorized decoding of JSONL lines that are flat JSON objects, straight into columns.

The exact reader (acards.jsonl with a msgspec Struct) makes a Python object of every field of every
line and then walks them in Python to build columns: most of the time of reading records went
there.  This module reads a piece of whole lines with numpy instead, and makes Python objects only
of the *distinct* values of each field.  It is a fast path that proves or declines: it returns
columns only for a piece it can prove the exact reader would accept with the same values, and
``None`` otherwise, so that the caller reads that piece again with the exact reader, which locates
and words every problem.  It never reports a problem itself.

The proof, for each group of lines with the same number of quote characters:

- the piece holds no control byte other than the LF of a line end and the CR of a CRLF, and is
  valid UTF-8; a ``"`` delimits a string unless an odd number of backslashes precede it;
- the group's first line (its template) is decoded by the exact line decoder, and is a flat object
  ``{"key": value, ...}`` whose values are strings or bare tokens (numbers), each key a field once;
- every other line is the template byte for byte outside its values: the bytes between values
  (keys, quotes, ``:``, ``,``, braces, spaces) are compared 8 bytes at a time, and their lengths
  are checked against the quote positions; so each line is an object with the template's keys;
- every distinct value of a field (a string's contents, or a token) is decoded once by a msgspec
  decoder of that field's type, so the field's type and constraints (schema patterns, ranges,
  lengths) are checked exactly as the exact reader checks them (escapes included).  A string
  without backslash or control byte in valid UTF-8 is a valid JSON string whose value is its bytes;
  a token is one JSON value (the field decoder refuses anything else).  Fields the caller names as
  text (unconstrained strings, such as outputs) are decoded only where they hold a backslash (to
  check their escapes); otherwise their byte spans are kept, and decoded when asked for.

Distinct values are found exactly: a value's bytes are loaded as little-endian 8-byte words (no
value holds a NUL byte, so zero padding is unambiguous; a string's words are left to run on past
its closing quote, which tells it apart all the same, see _intern); runs of equal words in
consecutive lines are found word for word, and the first line of each run is keyed (a value of up
to 8 bytes is its own key, longer ones are hashed and then compared word for word with their
representative).  Values spelled differently ("a" and "\\u0061", 1.0 and 1e0) are one value.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec
import numpy as np

MAX_WORDS = 8  # values longer than 64 bytes are interned one by one in Python
MAX_SHAPES = 32  # more templates than this in a piece: decline
_TOKEN = re.compile(rb"( *: *)([^ ,}]+)( *([,}]) *)")
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2 ** 64 - 1], np.uint64)
_QUOTE, _LF, _CR = 34, 10, 13
_MIX = np.uint64(0x9E3779B97F4A7C15)
_BACKSLASH = 92
_STRING = msgspec.json.Decoder(str)
_SEPARATOR = np.frombuffer(b'","', np.uint8)


@dataclass(frozen=True)
class Plan:
    """How to decode lines of one Struct type: which fields are interned, which are kept as text."""

    line: msgspec.json.Decoder  # the exact decoder of one line (for templates)
    values: dict[str, msgspec.json.Decoder]  # interned field -> decoder of one of its values
    lists: dict[str, msgspec.json.Decoder]  # interned field -> decoder of a JSON array of its values
    kinds: dict[str, Any]  # interned field -> its type (UNSET left out), for msgspec.convert
    text: frozenset[str]  # unconstrained string fields, kept as byte spans
    required: frozenset[str]


@lru_cache(maxsize=None)
def plan(struct: type, text: frozenset[str] = frozenset()) -> Plan:
    """The plan for ``struct`` (a msgspec Struct); ``text`` fields must be plain strings."""
    values, lists, kinds, required = {}, {}, {}, set()
    for info in msgspec.structs.fields(struct):
        kind = info.type
        if typing.get_origin(kind) is typing.Union:
            options = tuple(a for a in typing.get_args(kind) if a is not msgspec.UnsetType)
            kind = options[0] if len(options) == 1 else typing.Union[options]
        if info.required:
            required.add(info.name)
        if info.name in text:
            if kind is not str:
                raise ValueError(f"text field {info.name} must be a plain string, not {kind}")
            continue
        values[info.name] = msgspec.json.Decoder(kind)
        lists[info.name] = msgspec.json.Decoder(list[kind])  # type: ignore[valid-type]
        kinds[info.name] = kind
    return Plan(msgspec.json.Decoder(struct), values, lists, kinds, frozenset(text), frozenset(required))


@dataclass
class Columns:
    """A piece of lines decoded: one row per record, in line order."""

    piece: bytes
    offsets: np.ndarray  # int64: per row, its line's index in the piece (blank lines are skipped)
    codes: dict[str, np.ndarray] = field(default_factory=dict)  # int32 codes into values[name]; -1 absent
    values: dict[str, list] = field(default_factory=dict)  # distinct decoded values, first appearance first
    spans: dict[str, np.ndarray] = field(default_factory=dict)  # text field -> (rows, 2) byte spans; -1 absent
    tokens: set[str] = field(default_factory=set)  # fields some line gives as a bare token (not a string)

    def __len__(self) -> int:
        return len(self.offsets)

    def text(self, name: str, row: int) -> str | None:
        start, end = self.spans[name][row]
        if start < 0:
            return None
        raw = self.piece[start:end]
        return _STRING.decode(b'"' + raw + b'"') if b"\\" in raw else raw.decode("utf-8")


class _Words:
    """Little-endian 8-byte words read at any byte offsets of a piece: each offset's bytes are
    copied as one fixed-size item of a strided view (numpy's per-byte and unaligned gathers are
    several times slower), zero past the piece's end."""

    def __init__(self, piece: bytes):
        self.padded = np.frombuffer(piece + bytes(8 * MAX_WORDS + 8), np.uint8)
        self.size = len(piece)

    def load(self, at: np.ndarray, count: int) -> np.ndarray:
        """``count`` words from each offset in ``at``: shape ``at.shape + (count,)``."""
        view = np.ndarray((self.size + 1,), np.dtype((np.void, 8 * count)), self.padded, 0, (1,))
        return view[at.reshape(-1)].view(np.uint64).reshape(*at.shape, count)


def _masks(length: np.ndarray, count: int) -> np.ndarray:
    """Per value of ``length`` bytes, the masks of its ``count`` words that keep only its bytes."""
    return _MASKS[np.minimum(np.maximum(length[..., None] - np.arange(0, 8 * count, 8), 0), 8)]


def decode_columns(piece: bytes, how: Plan) -> Columns | None:
    """``piece`` (whole lines, as acards.jsonl.chunks yields them) as columns, or None to decline."""
    if not piece:
        return None
    if not piece.isascii():
        try:
            piece.decode("utf-8")
        except UnicodeDecodeError:
            return None
    buf = np.frombuffer(piece, np.uint8)
    lines = _lines(buf)
    if lines is None:
        return None
    starts, ends, quotes = lines
    escapes = np.flatnonzero(buf == _BACKSLASH) if b"\\" in piece else None
    if escapes is not None:
        quotes = quotes[~_escaped(quotes, escapes)]
    first_quote, counts = _quotes_per_line(quotes, starts, ends)
    shapes = np.flatnonzero(np.bincount(counts))  # the quote counts lines have
    if shapes[0] == 0:
        blank = np.flatnonzero(counts == 0)
        if any(piece[s:e].strip(b" ") for s, e in zip(starts[blank].tolist(), ends[blank].tolist())):
            return None
        shapes = shapes[1:]
    if not len(shapes) or len(shapes) > MAX_SHAPES or (shapes % 2).any():
        return None
    words = _Words(piece)
    groups: list[tuple[np.ndarray, dict]] = []
    for count in shapes.tolist():
        if len(shapes) == 1 and len(quotes) == count * len(starts):  # every line one shape, none blank
            rows, at = np.arange(len(starts)), quotes.reshape(len(starts), count)
        else:
            rows = np.flatnonzero(counts == count)
            at = quotes[first_quote[rows][:, None] + np.arange(count)]
        line_starts, line_ends = (starts, ends) if len(rows) == len(starts) else (starts[rows], ends[rows])
        while len(rows):  # the lines that fit the first one's template, then the others
            found = _group(piece, words, rows, line_starts, line_ends, at, escapes, how)
            if found is None or len(groups) == MAX_SHAPES:
                return None
            fits, columns = found
            if fits.all():
                groups.append((rows, columns))
                break
            groups.append((rows[fits], columns))
            rows, at, line_starts, line_ends = rows[~fits], at[~fits], line_starts[~fits], line_ends[~fits]
    if len(groups) == 1 and len(groups[0][0]) == len(starts):  # one template, every line: the columns as they are
        out = Columns(piece, groups[0][0])
        for name, found in groups[0][1].items():
            if found[0] == "span":
                out.spans[name] = found[1]
            else:
                out.codes[name], out.values[name] = found[1], found[2]
                if found[3]:
                    out.tokens.add(name)
        return out
    return _merge(piece, groups, np.flatnonzero(counts > 0), how)


def _quotes_per_line(quotes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each line's first quote in ``quotes``, how many quotes each line holds).  When
    the quotes divide evenly and the k-th share of them lies within the k-th line, every line holds
    its share (lines do not overlap), with no search."""
    lines = len(starts)
    share = len(quotes) // lines if lines else 0
    if share and share * lines == len(quotes):
        table = quotes.reshape(lines, share)
        if (table[:, 0] >= starts).all() and (table[:, -1] < ends).all():
            return np.arange(0, len(quotes), share), np.full(lines, share)
    first_quote = np.searchsorted(quotes, starts)
    return first_quote, np.diff(first_quote, append=len(quotes))


def _escaped(quotes: np.ndarray, backslashes: np.ndarray) -> np.ndarray:
    """Which quotes follow an odd number of backslashes (JSON's escaped quote)."""
    new_run = np.concatenate(([True], backslashes[1:] != backslashes[:-1] + 1))
    run_first = backslashes[new_run]
    run_last = backslashes[np.concatenate((new_run[1:], [True]))]
    run = np.minimum(np.searchsorted(run_last, quotes - 1), len(run_last) - 1)
    return (run_last[run] == quotes - 1) & ((quotes - run_first[run]) % 2 == 1)


def _lines(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(line starts, line ends without CRLF's CR, quote positions), or None for a control byte other
    than a line end's LF or a CRLF's CR (tabs too: the exact reader handles them)."""
    quotes = np.flatnonzero(buf == _QUOTE)
    newlines = np.flatnonzero(buf == _LF)
    if np.count_nonzero(buf < 32) != len(newlines):  # another control byte (a CRLF's CR, or one refused)
        other = np.flatnonzero(buf < 32)
        what = buf[other]
        if ((what != _LF) & (what != _CR)).any():
            return None
        returns = other[what == _CR]
        if returns[-1] + 1 >= len(buf) or (buf[returns + 1] != _LF).any():
            return None
    else:
        returns = newlines[:0]
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buf)]))
    if starts[-1] == len(buf):  # the piece ends with a line end
        starts, ends = starts[:-1], ends[:-1]
    if len(returns):
        crlf = np.zeros(len(ends), bool)
        crlf[np.searchsorted(ends, returns + 1)] = True
        ends = ends - crlf
    return starts, ends, quotes


@dataclass
class _Run:
    """A value's place in a template line: from quote ``start[0]`` + ``start[1]`` to anchor
    ``end[0]`` + ``end[1]`` (anchors: the quotes, then the line's start, then its end)."""

    name: str
    token: bool  # a bare token (number), else a string's contents
    start: tuple[int, int]
    end: tuple[int, int]


def _layout(line: bytes, quotes: list[int], how: Plan) -> list[_Run] | None:
    """The values of a template line (quote offsets relative to it), or None if it is not a flat
    object of distinct known keys whose values are strings or bare tokens."""
    strings = [(quotes[i], quotes[i + 1]) for i in range(0, len(quotes), 2)]
    count, line_end = len(strings), len(quotes) + 1
    if line[:strings[0][0]].strip(b" ") != b"{":
        return None
    runs, seen, j = [], set(), 0
    while j < count:
        opening, closing = strings[j]
        key = line[opening + 1:closing].decode("utf-8")
        if "\\" in key or key in seen or (key not in how.values and key not in how.text):
            return None
        seen.add(key)
        after = line[closing + 1:strings[j + 1][0] if j + 1 < count else len(line)]
        if j + 1 < count and after.strip(b" ") == b":":
            closer = line[strings[j + 1][1] + 1:strings[j + 2][0] if j + 2 < count else len(line)]
            if closer.strip(b" ") != (b"," if j + 2 < count else b"}"):
                return None
            runs.append(_Run(key, False, (2 * j + 2, 1), (2 * j + 3, 0)))
            j += 2
            continue
        match = _TOKEN.fullmatch(after)
        if match is None or match.group(4) != (b"," if j + 1 < count else b"}") or key in how.text:
            return None
        end_anchor = 2 * j + 2 if j + 1 < count else line_end
        runs.append(_Run(key, True, (2 * j + 1, 1 + len(match.group(1))), (end_anchor, -len(match.group(3)))))
        j += 1
    return runs if how.required <= seen else None


def _group(piece: bytes, words: _Words, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray,
           quotes: np.ndarray, escapes: np.ndarray | None, how: Plan) -> tuple[np.ndarray, dict] | None:
    """(which rows fit the first row's template, {field: ("codes", codes, values) | ("span",
    spans)} of those rows) for lines with the same number of quotes (``quotes``: rows x quotes),
    or None if the template or a value of a fitting row is not what the exact reader accepts."""
    template = piece[int(starts[0]):int(ends[0])]
    try:
        how.line.decode(template)
    except (msgspec.DecodeError, RecursionError):
        return None
    runs = _layout(template, (quotes[0] - starts[0]).tolist(), how)
    if runs is None:
        return None
    anchors = [*quotes.T, starts, ends]
    count = len(runs)
    # Field by field, each field's rows contiguous: the bytes before value k (k = count: after the
    # last value) run from fixed_starts[k] to fixed_ends[k]; value k from fixed_ends[k] to
    # fixed_starts[k + 1].
    fixed_starts = np.empty((count + 1, len(rows)), np.int64)
    fixed_ends = np.empty((count + 1, len(rows)), np.int64)
    fixed_starts[0] = starts
    fixed_ends[count] = ends
    value_starts, value_ends = fixed_ends[:count], fixed_starts[1:]
    for index, run in enumerate(runs):
        np.add(anchors[run.start[0]], run.start[1], out=value_starts[index])
        np.add(anchors[run.end[0]], run.end[1], out=value_ends[index])
    lengths = value_ends - value_starts
    shortest = np.array([[1 if r.token else 0] for r in runs])
    # Each check on all rows at once first (cheap); row by row only when some row does not fit.
    fits = _columns_where(lengths < shortest)
    # The bytes between values (and before the first, after the last) are the template's: with
    # every size the template's, all of a fitting row's positions lie in order inside its line.
    fixed_sizes = fixed_ends - fixed_starts
    sizes = fixed_sizes[:, 0].copy()
    if sizes.max() > 8 * MAX_WORDS:
        return None
    fits &= _columns_where(fixed_sizes != sizes[:, None])
    candidates = np.flatnonzero(fits) if not fits.all() else slice(None)
    width = -(-int(sizes.max()) // 8)
    fixed = words.load(fixed_starts.T[candidates], width)  # a row's bytes together: one sweep over the piece
    fixed &= _masks(sizes, width)
    fits[candidates] = _rows_where(fixed != fixed[0])
    if not fits.all():
        value_starts, value_ends, lengths = value_starts[:, fits], value_ends[:, fits], lengths[:, fits]
    shortest, widest = lengths.min(axis=1).tolist(), lengths.max(axis=1).tolist()
    columns: dict[str, tuple] = {}
    for index, run in enumerate(runs):
        if run.name in how.text:
            spans = np.column_stack((value_starts[index], value_ends[index]))
            if escapes is not None and not _escapes_valid(piece, spans, escapes):
                return None
            columns[run.name] = ("span", spans)
            continue
        codes, distinct = _intern(piece, words, value_starts[index], lengths[index], shortest[index], widest[index],
                                  run.token)
        values = _decode_values(distinct, run.token, how, run.name)
        if values is None:
            return None
        values, remap = _distinct(values, run.token)
        columns[run.name] = ("codes", codes if remap is None else remap[codes], values, run.token)
    return fits, columns


def _columns_where(wrong: np.ndarray) -> np.ndarray:
    """Which columns of ``wrong`` (fields x rows) hold no True."""
    if not wrong.any():
        return np.ones(wrong.shape[1], bool)
    return np.logical_not(wrong.any(axis=0))


def _rows_where(wrong: np.ndarray) -> np.ndarray:
    """Which rows of ``wrong`` (rows x ...) hold no True."""
    if not wrong.any():
        return np.ones(len(wrong), bool)
    return np.logical_not(wrong.reshape(len(wrong), -1).any(axis=1))


def _decode_values(distinct: list[bytes] | np.ndarray, token: bool, how: Plan, name: str) -> list | None:
    """The distinct values of a field (bytes, or words as _intern gives them) decoded by msgspec
    with the field's type, or None if one is refused.  String contents go in one JSON array (they
    hold no unescaped quote, and none ends in an odd run of backslashes, since their closing quote
    was not escaped: each is one element); tokens one by one (a token could hold a comma)."""
    if isinstance(distinct, np.ndarray):
        count = len(distinct)
        if token:  # no value holds a NUL byte: the zeros past a value are dropped
            distinct = distinct.view(f"S{8 * distinct.shape[1]}").ravel().tolist()
        else:
            array = _json_array(distinct)
    elif not token:
        count, array = len(distinct), b'["' + b'","'.join(distinct) + b'"]'
    try:
        if not token:
            values = how.lists[name].decode(array)
            return values if len(values) == count else None
        decoder = how.values[name]
        return [decoder.decode(raw) for raw in distinct]
    except (msgspec.DecodeError, RecursionError):
        return None


def _json_array(words: np.ndarray) -> bytes:
    """``["a","b",...]`` of string contents given as words (rows x width, zero past each value, and
    no value holds a NUL byte), built without a Python object per value."""
    size = 8 * words.shape[1]
    out = np.empty((len(words), size + 3), np.uint8)
    out[:, :size] = words.view(np.uint8).reshape(len(words), size)
    out[:, size:] = _SEPARATOR
    joined = out[out != 0].tobytes()  # 'a","b","'
    return b'["' + joined[:-2] + b"]"


def _distinct(values: list, token: bool) -> tuple[list, np.ndarray | None]:
    """(each value once, the codes of ``values`` in it, or None if they are already distinct).
    Several spellings may decode to one value ("a" and "\\u0061", 1.0 and 1e0), and a string's
    key may hold bytes after its closing quote (see _intern); floats are told apart by repr
    (0.0 and -0.0 are two values), as in _merge."""
    keys = values if not token else [(type(v), repr(v)) for v in values]
    if len(values) < 2 or len(set(keys)) == len(keys):
        return values, None
    table: dict = {}
    remap = np.fromiter((table.setdefault(k, len(table)) for k in keys), np.int32, len(keys))
    first = dict(zip(remap.tolist()[::-1], range(len(keys) - 1, -1, -1)))  # code -> its first index
    return [values[first[code]] for code in range(len(table))], remap


def _escapes_valid(piece: bytes, spans: np.ndarray, escapes: np.ndarray) -> bool:
    """Whether every text value holding a backslash is a valid JSON string (its escapes)."""
    holding = np.flatnonzero(np.searchsorted(escapes, spans[:, 1]) > np.searchsorted(escapes, spans[:, 0]))
    try:
        for start, end in spans[holding].tolist():
            _STRING.decode(b'"' + piece[start:end] + b'"')
    except (msgspec.DecodeError, RecursionError):
        return False
    return True


def _intern(piece: bytes, words: _Words, start: np.ndarray, length: np.ndarray, shortest: int,
            widest: int, token: bool) -> tuple[np.ndarray, list[bytes] | np.ndarray]:
    """(codes, distinct) of the values at start/length (``shortest`` and ``widest``: the least and
    largest length): one code per row, codes in order of first appearance; ``distinct``, one per
    code, is the bytes of each value, or for values of up to 64 bytes the words of each (rows x
    words, zero past the value).  Rows with one code hold the same bytes; two codes may hold the
    same bytes (a string's words can differ after its value).

    A token's words are masked to its length.  A string's are masked only for its distinct values:
    its words run on past its closing quote, and two strings whose words are equal are equal, since
    a value holds no unescaped quote: where the shorter one's closing quote lies, the other holds
    the same quote after the same backslashes, so it ends there too (and a value as long as the
    words has no quote in them, so the other does not end within them either).

    Consecutive records often share a value: runs of equal words are found exactly (each row's
    words against the previous row's), and only the first row of each run is hashed, sorted and
    compared word for word with the first row of its key."""
    if widest > 8 * MAX_WORDS:
        table: dict[bytes, int] = {}
        codes = np.fromiter((table.setdefault(piece[s:s + n], len(table)) for s, n in zip(start.tolist(), length.tolist())),
                            np.int32, len(start))
        return codes, list(table)
    width = max(-(-widest // 8), 1)
    chunk = words.load(start, width)
    if token and shortest != widest:
        chunk &= _masks(length, width)
    elif token and (widest % 8 or widest < 8 * width):
        chunk &= _masks(length[:1], width)
    other = chunk[1:, 0] != chunk[:-1, 0]
    for word in range(1, width):
        other |= chunk[1:, word] != chunk[:-1, word]
    change = np.flatnonzero(other)
    if not len(change):  # one value
        return np.zeros(len(chunk), np.int32), _masked(chunk[:1], length[:1], width, token)
    heads = np.empty(len(change) + 1, np.int64)  # the first row of each run of equal words
    heads[0] = 0
    np.add(change, 1, out=heads[1:])
    head_words = chunk[heads]
    key = head_words[:, 0]
    for word in range(1, width):  # a bijection of the first word while the others are 0
        key = (key ^ (key >> np.uint64(29))) * _MIX + head_words[:, word]
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    new = np.empty(len(heads), bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    group = np.empty(len(heads), np.int64)
    group[order] = np.cumsum(new) - 1
    first = order[new]  # per key, its first run (stable sort: the earliest first)
    if width > 1 and not (head_words == head_words[first[group]]).all():
        _, first, group = np.unique(head_words, axis=0, return_index=True, return_inverse=True)
        group = group.reshape(-1)  # hashes collided: exactly, per run
    appearance = np.argsort(first, kind="stable")
    rank = np.empty(len(first), np.int32)
    rank[appearance] = np.arange(len(first), dtype=np.int32)
    run_lengths = np.empty(len(heads), np.int64)
    np.subtract(heads[1:], heads[:-1], out=run_lengths[:-1])
    run_lengths[-1] = len(chunk) - heads[-1]
    rows = heads[first[appearance]]
    return np.repeat(rank[group], run_lengths), _masked(chunk[rows], length[rows], width, token)


def _masked(chunk: np.ndarray, length: np.ndarray, width: int, token: bool) -> np.ndarray:
    """Words of values (rows x width) zero past each value (a token's are already)."""
    return chunk if token else chunk & _masks(length, width)


def _merge(piece: bytes, groups: list, record_lines: np.ndarray, how: Plan) -> Columns:
    """One Columns from the groups (each its own rows), codes re-based on first appearance."""
    total = len(record_lines)
    row_of_line = np.full(int(record_lines[-1]) + 1, -1, np.int64)
    row_of_line[record_lines] = np.arange(total)
    out = Columns(piece, record_lines)
    names = {name for _, columns in groups for name in columns}
    for name in names:
        if name in how.text:
            spans = np.full((total, 2), -1, np.int64)
            for rows, columns in groups:
                if name in columns:
                    spans[row_of_line[rows]] = columns[name][1]
            out.spans[name] = spans
            continue
        parts = [(row_of_line[rows], columns[name][1], columns[name][2]) for rows, columns in groups if name in columns]
        if any(columns[name][3] for _, columns in groups if name in columns):
            out.tokens.add(name)
        if len(parts) == 1 and len(parts[0][0]) == total:
            out.codes[name], out.values[name] = parts[0][1], parts[0][2]
            continue
        firsts: list[tuple[int, int, int]] = []
        for index, (rows, codes, values) in enumerate(parts):
            seen = np.full(len(values), total, np.int64)
            np.minimum.at(seen, codes, rows)
            firsts.extend((int(seen[code]), index, code) for code in range(len(values)))
        table: dict = {}
        mappings = [np.empty(len(values), np.int32) for _, _, values in parts]
        for _, index, code in sorted(firsts):
            value = parts[index][2][code]
            mappings[index][code] = table.setdefault((type(value), repr(value)), (len(table), value))[0]
        merged = np.full(total, -1, np.int32)
        for (rows, codes, _), mapping in zip(parts, mappings):
            merged[rows] = mapping[codes]
        out.codes[name], out.values[name] = merged, [value for _, value in table.values()]
    return out
