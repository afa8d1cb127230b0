"""The vectorized records decoder proves or declines: it never accepts what the exact reader refuses,
and what it accepts it decodes to exactly the exact reader's values.

Differential: thousands of pieces of JSONL (valid lines in several styles, then mutated byte by byte,
key by key and line by line, with a seeded generator) go through both
acards.evidence.flatjson.decode_columns and the exact reader (acards.jsonl with the schema's msgspec
Struct); wherever the fast path returns columns, they must equal the exact reader's row for row.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from acards import jsonl
from acards.evidence import flatjson, records

# The patterns of the coded columns are checked once per distinct value after reading, on either
# path (records._check_coded_patterns), so both paths here decode without them.
FAST = records._decoder(coded_patterns=False)
PLAN = flatjson.plan(FAST.type, records.TEXT)


def exact(piece: bytes):
    """(table, problems) of the exact reader on one piece (None when it has problems)."""
    problems = jsonl.Problems(limit=10_000)
    lines, decoded = jsonl.decode_piece(piece, 1, FAST, FAST, records._describer("r.jsonl"), problems, "r.jsonl")
    records._refuse_huge_integers(decoded, lines, "r.jsonl", problems)
    if problems:
        return None, list(problems)
    return records._struct_part(decoded, lines), []


def fast(piece: bytes):
    found = flatjson.decode_columns(piece, PLAN)
    return records._columns_part(found, 1) if found is not None else None


def rows(table) -> list[tuple]:
    """Every row as plain values (codes looked up), scores by their bits (-0.0 is not 0.0)."""
    out = []
    for row in range(len(table)):
        coded = tuple(table.vocab[name][table.columns[name][row]] for name in records.CODED)
        score = table.columns["score"][row]
        out.append((coded, int(table.columns["seed"][row]), int(table.columns["sample"][row]),
                    np.float64(score).tobytes(), bool(table.columns["has_output"][row]), int(table.line[row]),
                    table.outputs.get(row), table.prompts.get(row)))
    return out


def agree(piece: bytes) -> bool:
    """Whether the fast path declined (True, False) or accepted exactly what the exact reader reads."""
    quick = fast(piece)
    if quick is None:
        return False
    slow, problems = exact(piece)
    assert not problems, f"the fast path accepted a piece the exact reader refuses: {problems[:3]} in {piece[:300]!r}"
    assert rows(quick) == rows(slow), f"values differ for {piece[:300]!r}"
    return True


def record(i: int, **extra) -> dict:
    base = {"cell": "c/one" if i % 3 else "cell-two", "condition": ["base", "undefended", "defended", "control:shrinkage"][i % 4],
            "split": ["heldout", "fresh", "transfer", "capability"][i % 4], "task": "t" * (1 + i % 11),
            "subject": f"subject-{i % 5}" * (1 + i % 3), "item": f"it-{i}" if i % 2 else i, "framing": ["audit", "deploy"][i % 2],
            "seed": i % 3}
    base.update(extra)
    return base


STYLES = {
    "compact": lambda r: json.dumps(r, separators=(",", ":")),
    "spaced": lambda r: json.dumps(r),
    "unicode": lambda r: json.dumps(r, ensure_ascii=False),
    "padded": lambda r: " " + json.dumps(r) + " ",
}


def lines_of(style: str, count: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for i in range(count):
        extra = {}
        if rng.random() < 0.7:
            extra["score"] = float(rng.choice([0.0, 1.0, 0.5, 0.25, 1e-3, 0.1 + i / 1000]))
        if rng.random() < 0.5:
            extra["sample"] = int(rng.integers(0, 3))
        if rng.random() < 0.4:
            extra["output"] = rng.choice(["I can't help", "Sure: step 1", "naïve café ☕", "", "x" * 90])
        if rng.random() < 0.3:
            extra["prompt"] = rng.choice(["How do I?", "Überprüfe das", "q" * 70])
        out.append(STYLES[style](record(i, **extra)).encode("utf-8"))
    return out


def test_valid_pieces_are_decoded_exactly():
    rng = np.random.default_rng(20260601)
    accepted = 0
    for style in STYLES:
        for ending in (b"\n", b"\r\n"):
            body = ending.join(lines_of(style, 60, rng))
            for piece in (body + ending, body):  # with and without a final line end
                accepted += agree(piece)
    assert accepted == 2 * 2 * len(STYLES), "the fast path should take every well-formed piece"


def test_one_shape_piece_is_taken_and_blank_lines_counted():
    lines = [json.dumps(record(i, score=1.0), separators=(",", ":")).encode() for i in range(50)]
    piece = b"\n".join(lines[:20]) + b"\n   \n\n" + b"\n".join(lines[20:]) + b"\n"
    assert agree(piece)
    assert fast(piece).line.tolist() == [*range(1, 21), *range(23, 53)]


ALPHABET = [b'"', b"\\", b":", b",", b"{", b"}", b"[", b"]", b" ", b"\r", b"\n", b"\t", b"0", b"1", b"9", b"-", b"+",
            b".", b"e", b"E", b"a", b"n", b"u", b"l", b"\x00", b"\x1f", b"\x7f", b"\xc3", b"\xa9", b"\xff", b"\xed\xa0\x80"]


def mutate(piece: bytes, rng: np.random.Generator) -> bytes:
    data = bytearray(piece)
    for _ in range(int(rng.integers(1, 4))):
        where = int(rng.integers(0, len(data) + 1))
        kind = rng.integers(0, 6)
        if kind == 0 and where < len(data):
            del data[where]
        elif kind == 1:
            data[where:where] = ALPHABET[int(rng.integers(0, len(ALPHABET)))]
        elif kind == 2 and where < len(data):
            data[where:where + 1] = ALPHABET[int(rng.integers(0, len(ALPHABET)))]
        elif kind == 3:  # duplicate a stretch (a second value on a line, a repeated key)
            end = min(len(data), where + int(rng.integers(1, 60)))
            data[end:end] = data[where:end]
        elif kind == 4:  # a key renamed into another field's name, or a field's value swapped
            text = bytes(data)
            for old, new in ((b'"task"', b'"item"'), (b'"item"', b'"task"'), (b'"seed"', b'"sample"'),
                             (b'"score"', b'"scores"'), (b'"framing"', b'"Framing"'), (b'"audit"', b'"AUDIT"'),
                             (b":0,", b":-1,"), (b":1.0", b":1.5"), (b":0", b":9223372036854775808"),
                             (b":1.0", b":NaN"), (b":0", b":0.0"), (b":1.0", b":1"), (b'"c/one"', b'""')):
                if rng.random() < 0.15 and old in text:
                    at = text.find(old, int(rng.integers(0, len(text))))
                    if at >= 0:
                        text = text[:at] + new + text[at + len(old):]
            data = bytearray(text)
        else:  # swap two lines' halves
            lines = bytes(data).split(b"\n")
            if len(lines) > 2:
                i = int(rng.integers(0, len(lines) - 1))
                half = len(lines[i]) // 2
                lines[i] = lines[i][:half] + lines[i + 1][half:]
            data = bytearray(b"\n".join(lines))
    return bytes(data)


@pytest.mark.parametrize("seed", range(6))
def test_mutated_pieces_are_declined_or_decoded_exactly(seed):
    rng = np.random.default_rng(seed)
    styles = list(STYLES)
    accepted = declined = 0
    for _ in range(700):
        lines = lines_of(styles[int(rng.integers(0, len(styles)))], int(rng.integers(1, 12)), rng)
        piece = mutate(b"\n".join(lines) + b"\n", rng)
        if agree(piece):
            accepted += 1
        else:
            declined += 1
    assert accepted and declined  # both paths exercised


@pytest.mark.parametrize("piece", [
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0}'
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":2,"framing":"audit","seed":0}\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0}\r'
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":2,"framing":"audit","seed":0}\r',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0,"seed":1}\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0,"score":null}\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":true}\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":[0]}\n',
])
def test_known_traps_are_declined(piece):
    """Two values on a line, CR-only line ends, a repeated key (msgspec keeps the last), null, and
    a token that is not a number."""
    assert fast(piece) is None


def test_keys_in_another_order_with_the_same_layout_are_not_mixed_up():
    """task and item have names of one length: swapping them keeps every quote in place, so only
    the bytes of the keys tell the lines apart (each order gets its own template)."""
    one = b'{"cell":"a","condition":"base","split":"heldout","task":"tt","item":"ii","subject":"s","framing":"audit","seed":0}'
    two = b'{"cell":"a","condition":"base","split":"heldout","item":"tt","task":"ii","subject":"s","framing":"audit","seed":0}'
    assert agree(one + b"\n" + two + b"\n" + one + b"\n")
    table = fast(one + b"\n" + two + b"\n" + one + b"\n")
    assert [table.vocab["task"][c] for c in table.columns["task"]] == ["tt", "ii", "tt"]


def test_long_values_and_hash_collisions_are_exact():
    """Values longer than 64 bytes are interned one by one; multi-word values are compared word
    for word with their representative (a hash collision cannot merge two values)."""
    lines = [json.dumps(record(i, subject="s" * (8 * (i % 12) + 1), task="x" * (i % 70 + 1)), separators=(",", ":")).encode()
             for i in range(200)]
    assert agree(b"\n".join(lines) + b"\n")


def test_escapes_are_decoded_by_the_exact_decoder():
    """Escaped quotes do not delimit strings; escaped values (coded or text) decode as msgspec
    decodes them, and "a" and "\\u0061" are one value; a key spelled with an escape is not the
    template's key, and a bad escape in an output is refused."""
    head = '{"cell":"%s","condition":"base","split":"fresh","task":"t","subject":"s","item":%d,"framing":"audit","seed":0'
    lines = [(head % ("a", 1) + ',"output":"say \\"hi\\"\\n\\\\","prompt":"caf\\u00e9 \\ud83d\\ude00"}').encode(),
             (head % ("\\u0061", 2) + ',"output":"x\\\\","prompt":"p"}').encode(),
             (head % ("b\\\"", 3) + ',"output":"","prompt":"\\/"}').encode()]
    piece = b"\n".join(lines) + b"\n"
    assert agree(piece)
    table = fast(piece)
    assert [table.vocab["cell"][c] for c in table.columns["cell"]] == ["a", "a", 'b"']
    assert table.prompts == {0: "café 😀", 1: "p", 2: "/"}
    renamed = piece.replace(b'"cell"', b'"c\\u0065ll"', 1)
    assert fast(renamed) is None or agree(renamed)
    assert fast(piece.replace(b"x\\\\", b"x\\q")) is None


# --- values keyed by their words, runs, distinct values, quotes per line ------------------------

# String contents as written in JSON (escapes left as they are): prefixes of one another, values
# ending in backslashes or escaped quotes, multi-byte UTF-8, spellings of one value, and lengths
# around the 8-byte words.
SPELLED = ["a", "ab", "abc", "a\\\\", "a\\\\\\\\", 'a\\"', 'a\\"b', "a\\\\\\\"", "\\u0061", "a\\u0062", "é", "éé",
           "\\u00e9", "abcdefg", "abcdefgh", "abcdefghi", "abcdefgh\\\\", "abcdefghijklmnop", "abcdefghijklmnopq",
           "x" * 63, "x" * 64, "x" * 65, "☕" * 5, "a b", "a,b", "a}b", "a:b"]


def _spelled_piece(rng: np.random.Generator, count: int, last: str) -> bytes:
    """Lines whose coded string fields take SPELLED values in runs of random lengths, the field
    ``last`` written last (its words run past its line), with LF or CRLF ends and blank lines."""
    out, current = [], {}
    for i in range(count):
        for name in ("cell", "task", "subject"):
            if name not in current or rng.random() < 0.4:  # runs: a value is often the previous line's
                current[name] = SPELLED[int(rng.integers(0, len(SPELLED)))]
        fields = {"condition": '"base"', "split": '"heldout"', "framing": '"audit"', "item": str(i), "seed": "0",
                  **{name: f'"{value}"' for name, value in current.items()}}
        order = [name for name in fields if name != last] + [last]
        line = "{" + ",".join(f'"{name}":{fields[name]}' for name in order) + "}"
        out.append(line.encode("utf-8") + (b"\r\n" if rng.random() < 0.2 else b"\n"))
        if rng.random() < 0.05:
            out.append(b"\n")
    return b"".join(out)


@pytest.mark.parametrize("last", ["cell", "subject", "task", "seed"])
def test_strings_keyed_past_their_closing_quote_are_exact(last):
    """A string's words are compared without masking them to its length: values that are prefixes
    of one another, that end in backslashes or escaped quotes, or that end a line (their words
    running into the next line, a blank line, a CRLF or the end of the piece) are told apart
    exactly, and values spelled differently read as one value."""
    rng = np.random.default_rng(sum(map(ord, last)))
    accepted = 0
    for _ in range(60):
        piece = _spelled_piece(rng, int(rng.integers(1, 40)), last)
        for cut in (piece, piece.rstrip(b"\r\n")):
            accepted += agree(cut)
            found = flatjson.decode_columns(cut, PLAN)
            if found is not None:  # each field's values once, in order of first appearance
                for name, values in found.values.items():
                    keys = [(type(v), repr(v)) for v in values]
                    assert len(set(keys)) == len(keys), (name, values)
    assert accepted > 60


def test_one_value_spelled_two_ways_is_one_code():
    """"fresh" and "fr\\u0065sh" are one split: the prompts of both are kept, as the exact reader
    keeps them; 1, 1.0 and 1e0 are one score, 0.0 and -0.0 two."""
    head = '{"cell":"c","condition":"base","split":"%s","task":"t","subject":"s","item":%d,"framing":"audit","seed":0'
    lines = [(head % (split, i) + f',"score":{score},"prompt":"p{i}"}}').encode()
             for i, (split, score) in enumerate([("fresh", "1"), ("fr\\u0065sh", "1.0"), ("fresh", "1e0"),
                                                 ("fr\\u0065sh", "0.0"), ("fresh", "-0.0")])]
    piece = b"\n".join(lines) + b"\n"
    assert agree(piece)
    found = flatjson.decode_columns(piece, PLAN)
    assert found.values["split"] == ["fresh"] and found.codes["split"].tolist() == [0] * 5
    assert [repr(v) for v in found.values["score"]] == ["1.0", "0.0", "-0.0"]
    assert fast(piece).prompts == {i: f"p{i}" for i in range(5)}


def test_runs_and_values_that_come_back_are_coded_exactly():
    """Runs of one value of every length, values coming back after others, alternating values,
    and values of one to nine words in one field."""
    rng = np.random.default_rng(11)
    pool = ["s", "s" * 8, "s" * 9, "t" * 16, "t" * 17, "u" * 40, "v" * 72, "w" * 7]
    for _ in range(40):
        lines, value = [], pool[0]
        for i in range(int(rng.integers(1, 120))):
            if rng.random() < 0.3:
                value = pool[int(rng.integers(0, len(pool)))]
            lines.append(json.dumps(record(i, subject=value, task=pool[i % 2]), separators=(",", ":")).encode())
        piece = b"\n".join(lines) + b"\n"
        assert agree(piece)


def test_quotes_that_divide_evenly_but_not_line_by_line_are_counted_per_line():
    """Two lines whose quotes add up to twice some count, without each holding that count: each
    line is still read with its own template."""
    with_text = json.dumps(record(1, output="o", prompt="p"), separators=(",", ":")).encode()
    plain = json.dumps(record(2), separators=(",", ":")).encode()
    assert (with_text.count(b'"') + plain.count(b'"')) % 2 == 0
    for piece in (with_text + b"\n" + plain + b"\n", plain + b"\n" + with_text + b"\n", plain + b"\n" + with_text):
        assert agree(piece)


@pytest.mark.parametrize("piece", [
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0}\r',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0}\r\r\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0}\r\n\r\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":\t0}\n',
    b'{"cell":"a","condition":"base","split":"heldout","task":"t","subject":"s","item":1,"framing":"audit","seed":0}\n\x0c\n',
])
def test_carriage_returns_and_control_bytes_are_declined_or_exact(piece):
    agree(piece)  # declined, or read exactly as the exact reader reads it


@pytest.mark.parametrize("size", [1, 97, 1000, 65_536])
def test_a_file_read_in_pieces_of_any_size_is_the_exact_readers_table(tmp_path, size):
    """read_records on a file of every style (escapes, UTF-8, CRLF, several templates, blank lines),
    cut into pieces of any size, gives the exact reader's table row for row."""
    from acards.errors import Location

    rng = np.random.default_rng(size)
    chunks = []
    for k, style in enumerate(STYLES):  # a cell per style: every record's identity is its own
        for line in lines_of(style, 40, rng):
            line = line.replace(b"c/one", b"c/one-%d" % k).replace(b"cell-two", b"cell-two-%d" % k)
            chunks.append(line + (b"\r\n" if rng.random() < 0.3 else b"\n") + (b"  \n" if rng.random() < 0.05 else b""))
    data = b"".join(chunks).rstrip(b"\n")
    (tmp_path / "r.jsonl").write_bytes(data)
    slow, problems = exact(data)
    assert not problems
    table = records.read_records(tmp_path, [("r.jsonl", Location())], chunk_bytes=size)
    assert rows(table) == rows(slow)
