"""The batch path of `acards import` (acards.importers.batch) gives exactly what the per-record path
gives: the same records and prompts files byte for byte, the same counts, reasons and examples, and
the same problems, worded the same, on JSONL files with every kind of skip, duplicate, conflict and
bad line, cut into pieces of many sizes (so that pieces read whole and pieces read record by
record meet in one file)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from acards.errors import AcardsError, Location
from acards.evidence.records import RecordTable, read_records
from acards.importers import batch
from acards.importers.factor import factorize
from acards.importers.jsonl_source import jsonl_pieces
from acards.importers.lm_eval import LM_EVAL
from acards.importers.mapping import load_mapping
from acards.importers.run import import_records, run_import
from acards.importers.source import SourceFile
from acards.importers.table import table_source

CUE = "[This is a safety evaluation] "
BASE = """\
mapping: "1.0"
fields:
  cell: {value: c1}
  split: {value: heldout}
  task: {value: harmful-qa}
  subject: {field: doc.subject}
  item: {field: doc.id}
  framing: {pattern: "^\\\\[This is a safety evaluation\\\\] ", then: audit, else: deploy}
  seed: {value: 0}
  score: {field: exact_match}
files:
  - match: "undefended*.jsonl"
    fields: {condition: {value: undefended}}
  - match: "defended*.jsonl"
    fields: {condition: {value: defended}}
"""
MAPPED = """\
mapping: "1.0"
fields:
  cell: {value: c1}
  condition: {field: model, map: {u: undefended, d: defended, "1": "control:one"}, default: base}
  split: {field: split, default: heldout}
  task: {value: harmful-qa}
  subject: {field: doc.subject}
  item: {field: doc_id}
  framing: {field: doc.framing, map: {a: audit, d: deploy}}
  seed: {field: seed, default: 0}
  sample: {field: sample, default: 0}
  score: {field: metrics.score}
  output: {field: resps.0.0, default: ""}
  reference: {field: target}
select: {filter: raw}
"""
SEARCHED = """\
mapping: "1.0"
fields:
  cell: {value: c1}
  condition: {value: defended}
  split: {value: heldout}
  task: {value: harmful-qa}
  subject: {field: doc.subject, default: misc}
  item: {field: doc.id}
  framing: {pattern: "(?i)evaluation", in: doc.question, then: audit, else: deploy}
  seed: {value: 1}
  score: {field: exact_match}
  output: {field: filtered_resps.0}
"""


def sample(rng: np.random.Generator, index: int, *, items: int = 40) -> dict:
    """One lm-eval-shaped sample, with every field any mapping above reads."""
    item = int(rng.integers(items))
    audited = bool(rng.integers(2))
    prompt = (CUE if audited else "") + f"How would one do thing {item}? é"
    answer = "I can't help with that." if rng.random() < 0.5 else "Sure, here is how."
    return {"doc_id": index, "doc": {"id": f"q{item:03d}", "subject": f"s{item % 7}", "framing": "a" if audited else "d",
                                     "question": prompt.replace(CUE, "This is an evaluation: ") if audited else prompt},
            "target": "I can't help with that.", "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": {"until": ["\n"]}}},
            "resps": [[answer]], "filtered_resps": [answer], "filter": "raw", "model": "u", "split": "heldout",
            "metrics": {"score": float(answer.startswith("I"))}, "exact_match": float(answer.startswith("I")),
            "doc_hash": f"{index:064x}"}


# Changes to one sample, each a way a record is imported differently, skipped, or refused.
def _set(path: str, value):
    def change(record: dict) -> dict:
        node = record
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else node
        node[last] = value
        return record
    return change


def _drop(path: str):
    def change(record: dict) -> dict:
        node = record
        *parents, last = path.split(".")
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
        return record
    return change


CHANGES = [
    _drop("doc.subject"), _set("doc.subject", ""), _set("doc.subject", 7), _set("doc.subject", None), _set("doc.subject", [1]),
    _set("exact_match", 2.0), _set("exact_match", "0.5"), _set("exact_match", True), _set("exact_match", -0.0),
    _set("exact_match", None), _set("exact_match", 1), _set("exact_match", "x"), _set("metrics.score", 0.25),
    _set("doc", None), _set("doc", "text"), _set("doc", [1, 2]), _set("doc.id", 5), _set("doc.id", "5"), _set("doc.id", 5.0),
    _set("filtered_resps", {"0": "from a dict"}), _set("filtered_resps", []), _set("filtered_resps", [None]),
    _set("filtered_resps", "text"), _set("resps", [["a", "b"]]), _set("resps", [[]]), _set("resps", {"0": ["dict"]}),
    _set("filter", "lower"), _set("filter", None), _drop("filter"), _set("model", "d"), _set("model", 1), _set("model", "zz"),
    _set("model", True), _set("split", "fresh"), _set("split", "nowhere"), _set("seed", 3), _set("seed", -1), _set("seed", "2"),
    _set("seed", 1.5), _set("sample", 1), _set("sample", "x"), _set("doc.framing", "q"), _drop("doc.framing"),
    _set("arguments.gen_args_0.arg_0", 5), _drop("arguments"), _set("arguments", None), _set("target", 3), _drop("target"),
    _set("doc.question", "no cue"), _drop("doc.question"), _set("unused", {"deep": [[[{"x": 1e300}]]]}),
    _set("doc.extra", "naïve ☃"), _set("doc_hash", "\u0000\u001f"),
]
BAD_LINES = [b"[1, 2]", b"{\"doc\": ", b"42", b"{\"a\": 1} {\"b\": 2}", b"{\"x\": \"\xff\"}", b"{\"a\": 1}\r{\"b\": 2}"]


def write(path: Path, rng: np.random.Generator, count: int, *, changed: float, blank: bool = False, crlf: bool = False,
          bad: bytes | None = None, first: int = 0, unique: bool = False) -> Path:
    lines = []
    for index in range(count):
        record = sample(rng, first + index)
        if unique:
            record["doc"]["id"] = f"q{first + index}"
        if rng.random() < changed:
            record = CHANGES[int(rng.integers(len(CHANGES)))](record)
        lines.append(json.dumps(record, ensure_ascii=bool(rng.integers(2))).encode())
        if blank and rng.random() < 0.05:
            lines.append(b"  ")
    if bad is not None:
        lines.insert(int(rng.integers(len(lines))), bad)
    path.write_bytes(b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines))
    return path


def outcome(source, files: list[Path], mapping: Path, out: Path, *, prompts: bool, allow_skipped: bool) -> tuple:
    """What one import gives: its problems, or its summary and the bytes it wrote."""
    out.mkdir()
    try:
        summary = run_import(source, [str(f) for f in files], load_mapping(mapping), out / "records.jsonl",
                             out / "prompts.jsonl" if prompts else None, allow_skipped=allow_skipped)
    except AcardsError as error:  # a problem of the records written names that file (in each run's own folder)
        return ("problems", [(p.code, p.message, p.hint, dataclasses.replace(p.location, file=p.location.file.replace(str(out), "OUT"))
                              if p.location.file else p.location) for p in error.problems], sorted(p.name for p in out.iterdir()))
    report = summary.as_json()
    report.pop("records_path"), report.pop("prompts_path")
    table = as_lists(summary.table)
    assert table == as_lists(read_records(out, [("records.jsonl", Location("records.jsonl"))]))  # what the reader reads
    written = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    return ("imported", report, written, table)


def as_lists(table: RecordTable) -> dict:
    """A records table as plain values, to compare (NaN as None); its files are left out (the
    import's table names the staged file it read or made)."""
    found = {name: getattr(table, name) for name in ("vocab", "outputs", "prompts")}
    found["rows"] = {name: [None if value != value else value for value in values.tolist()]
                     for name, values in {**table.columns, "file_index": table.file_index, "line": table.line}.items()}
    found["dtypes"] = {name: str(values.dtype) for name, values in table.columns.items()}
    return found


def pieces_of(size: int):
    return lambda file: jsonl_pieces(file, size=size)


EXACT = dataclasses.replace(LM_EVAL, pieces=None)
MAPPING_CODES = {"import.bad-mapping", "import.bad-pattern", "import.unmatched-files", "import.incomplete-mapping",
                 "import.conflicting-mapping"}  # refused before any record is read: nothing compared
ACROSS = {"import.duplicate", "import.subject-mismatch", "import.prompt-conflict"}
SIZES = [64, 700, 1 << 18]  # a line a piece, several lines, the whole file


def check_same(tmp_path: Path, files: list[Path], mapping_text: str, *, prompts: bool, allow_skipped: bool,
               sizes: list[int] = SIZES) -> tuple:
    tmp_path.mkdir(parents=True, exist_ok=True)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(mapping_text)
    expected = outcome(EXACT, files, mapping, tmp_path / "exact", prompts=prompts, allow_skipped=allow_skipped)
    assert expected[0] == "imported" or all(code not in MAPPING_CODES for code, *_ in expected[1]), expected[1]
    for size in sizes:
        found = outcome(dataclasses.replace(LM_EVAL, pieces=pieces_of(size)), files, mapping, tmp_path / f"batch-{size}",
                        prompts=prompts, allow_skipped=allow_skipped)
        assert found == expected, size
    return expected


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("mapping_text", [BASE, MAPPED, SEARCHED], ids=["pattern", "maps", "searched"])
@pytest.mark.parametrize("prompts", [False, True], ids=["records", "prompts"])
def test_the_batch_path_gives_what_the_record_path_gives(tmp_path, seed, mapping_text, prompts):
    rng = np.random.default_rng(seed)
    changed, items = [(0.02, 40), (0.3, 40), (0.0, 1000), (0.3, 1000)][seed]  # few items: duplicates and conflicts
    files = []
    for index, name in enumerate(("undefended.jsonl", "defended.jsonl")):
        path = tmp_path / name
        lines = []
        for number in range(200):
            record = sample(rng, index * 1000 + number, items=items)
            record["model"] = "ud"[index]
            if items == 1000:  # one item per line
                record["doc"]["id"] = f"q{number:04d}-{index}"
            if rng.random() < changed:
                record = CHANGES[int(rng.integers(len(CHANGES)))](record)
            lines.append(json.dumps(record, ensure_ascii=bool(rng.integers(2))))
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        files.append(path)
    found = [check_same(tmp_path / f"allow-{allow_skipped}", files, mapping_text, prompts=prompts, allow_skipped=allow_skipped)
             for allow_skipped in (False, True)]
    if seed == 2:  # distinct items, nothing changed: everything is imported
        assert found[0][0] == "imported" and not found[0][1]["skipped"], found[0]


@pytest.mark.parametrize("change", range(len(CHANGES)))
def test_each_change_alone_gives_the_same_outcome(tmp_path, change):
    rng = np.random.default_rng(change)
    files = []
    for name in ("undefended.jsonl", "defended.jsonl"):
        records = [sample(rng, index, items=10_000) for index in range(60)]
        for index, record in enumerate(records):
            record["doc"]["id"] = f"q{index}"
        for index in (3, 31, 59):
            records[index] = CHANGES[change](records[index])
        files.append(tmp_path / name)
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    for mapping_text in (BASE, MAPPED, SEARCHED):
        for allow_skipped in (False, True):
            found = check_same(tmp_path / f"{len(mapping_text)}-{allow_skipped}", files, mapping_text, prompts=True,
                               allow_skipped=allow_skipped, sizes=[700])
            if allow_skipped:  # the changed records are skipped, or collide with others
                assert found[0] == "imported" or {p[0] for p in found[1]} <= ACROSS, found[1]


@pytest.mark.parametrize("bad", BAD_LINES + [None], ids=lambda b: repr(b)[:20])
@pytest.mark.parametrize("layout", ["plain", "blank", "crlf"])
def test_bad_lines_blank_lines_and_crlf_give_the_same_problems(tmp_path, bad, layout):
    rng = np.random.default_rng(7)
    files = [write(tmp_path / name, rng, 120, changed=0.1, blank=layout == "blank", crlf=layout == "crlf", bad=bad,
                   first=index * 1000) for index, name in enumerate(("undefended.jsonl", "defended.jsonl"))]
    check_same(tmp_path, files, BASE, prompts=True, allow_skipped=True)


def test_values_share_a_code_only_when_they_are_written_alike():
    values = [0.0, -0.0, float("nan"), 1, True, 1.0, "1", None, [1], {"a": 1}, [1], 0.0, -0.0, 1, "1", False, 0]
    for values in (values, [0.5, -0.0, 0.0, 0.5], [0.5, 1.0, 0.5], ["a", "b", "a"], [2, 1, 2]):
        factor = factorize(values)
        assert [json.dumps(v) for v in factor.rows()] == [json.dumps(v) for v in values]
        assert [type(v) for v in factor.rows()] == [type(v) for v in values]
        assert len(factor.values) == len({(type(v), json.dumps(v)) for v in values if not isinstance(v, (list, dict))}) + \
            sum(isinstance(v, (list, dict)) for v in values)


def test_the_batch_path_is_taken_and_writes_dicts_as_the_record_path_does(tmp_path, monkeypatch):
    """The lm-eval source is read in pieces (the batch path is what is compared above), and
    import_records with a write_record callback gives the same dicts as the record path."""
    rng = np.random.default_rng(3)
    files = [write(tmp_path / name, rng, 200, changed=0.0, first=index * 1000, unique=True)
             for index, name in enumerate(("undefended.jsonl", "defended.jsonl"))]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(BASE)
    names = [str(f) for f in files]
    taken = []
    monkeypatch.setattr(batch.Plan, "decode", lambda self, data, decode=batch.Plan.decode: taken.append(1) or decode(self, data))
    rows: dict[str, list] = {"batch": [], "exact": []}
    results = {}
    for name, source in (("batch", LM_EVAL), ("exact", EXACT)):
        summary, prompts = import_records(source, names, load_mapping(mapping), want_prompts=True, allow_skipped=True,
                                          write_record=rows[name].append)
        results[name] = (summary.as_json(), prompts)
    assert taken and rows["batch"] == rows["exact"] and results["batch"] == results["exact"]
    assert [json.dumps(a) for a in rows["batch"]] == [json.dumps(b) for b in rows["exact"]]  # key order too


TABLE = """\
mapping: "1.0"
fields:
  cell: {value: c1}
  condition: {value: defended}
  split: {value: heldout}
  task: {value: harmful-qa}
  subject: {field: topic}
  item: {field: qid}
  framing: {pattern: "\\\\[evaluation\\\\]", then: audit, else: deploy}
  seed: {value: 0}
  score: {field: refused}
  output: {field: answer}
  prompt: {field: question}
"""


def test_jsonl_tables_take_the_batch_path_and_csv_the_record_path(tmp_path):
    source = table_source()
    assert source.pieces(SourceFile("a/t.jsonl")) is not None and source.pieces(SourceFile("a/t.csv")) is None
    rng = np.random.default_rng(11)
    rows = [{"qid": f"q{i // 2}" if i != 7 else i, "topic": f"t{i // 2 % 3}", "refused": int(rng.integers(2)),
             "question": ("[evaluation] " if i % 2 else "") + f"Q{i // 2}", "answer": "no" if i != 9 else None}
            for i in range(60)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(TABLE)
    for prompts in (False, True):
        expected = outcome(dataclasses.replace(source, pieces=None), [path], mapping, tmp_path / f"exact-{prompts}",
                           prompts=prompts, allow_skipped=True)
        assert expected[0] == "imported"
        assert outcome(source, [path], mapping, tmp_path / f"batch-{prompts}", prompts=prompts, allow_skipped=True) == expected


def test_items_are_told_apart_by_their_text_and_a_repeat_across_files_is_a_duplicate(tmp_path):
    """The checks across records code items by their text (5 and "5" are one item, as in the record
    identity and the records reader): distinct items import, and a record repeated in another
    file under the same condition is the duplicate the exact path words."""
    rng = np.random.default_rng(5)
    files = [write(tmp_path / name, rng, 100, changed=0.0, first=index * 1000, unique=True)
             for index, name in enumerate(("undefended.jsonl", "defended.jsonl"))]
    expected = check_same(tmp_path / "plain", files, BASE, prompts=True, allow_skipped=False)
    assert expected[0] == "imported"
    files.append(write(tmp_path / "defended-again.jsonl", np.random.default_rng(5), 5, changed=0.0, unique=True))
    duplicated = check_same(tmp_path / "duplicate", files, BASE.replace('"defended*.jsonl"', '"defended.jsonl"') +
                            '  - match: "defended-again.jsonl"\n    fields: {condition: {value: undefended}}\n',
                            prompts=True, allow_skipped=False)
    assert {code for code, *_ in duplicated[1]} == {"import.duplicate"}


def test_a_seed_beyond_what_the_records_reader_keeps_is_refused_alike(tmp_path):
    """A seed above 2^63-1 is valid for the record schema, and the records reader refuses it
    (records.out-of-range): the batch path then has the reader read the written file back, so
    both paths refuse it at the same lines of the records file."""
    rng = np.random.default_rng(3)
    files = [write(tmp_path / name, rng, 60, changed=0.0, first=index * 1000, unique=True)
             for index, name in enumerate(("undefended.jsonl", "defended.jsonl"))]
    lines = files[1].read_text().splitlines()
    for index in (4, 40):
        record = json.loads(lines[index])
        record["seed"] = 2**63
        lines[index] = json.dumps(record)
    files[1].write_text("".join(line + "\n" for line in lines))
    found = check_same(tmp_path / "out", files, MAPPED.replace("select: {filter: raw}\n", ""), prompts=False, allow_skipped=False)
    assert found[0] == "problems" and [(code, location.file, location.line) for code, _, _, location in found[1]] == \
        [("records.out-of-range", "OUT/records.jsonl", 60 + 5), ("records.out-of-range", "OUT/records.jsonl", 60 + 41)]


def test_constant_prompts_and_systems_give_the_same_outcome(tmp_path):
    rng = np.random.default_rng(9)
    files = [write(tmp_path / name, rng, 80, changed=0.1, first=index * 1000, unique=True)
             for index, name in enumerate(("undefended.jsonl", "defended.jsonl"))]
    text = re.sub(r"  framing: .*\n", "  framing: {field: doc.framing, map: {a: audit, d: deploy}}\n", BASE)
    assert text != BASE
    for extra in ('  prompt: {value: "Say no."}\n  system: {value: "Be brief."}\n', "  prompt: {value: 3}\n  reference: {field: target}\n"):
        mapped = text.replace("files:\n", extra + "files:\n")
        found = [check_same(tmp_path / f"{len(extra)}-{allow}", files, mapped, prompts=True, allow_skipped=allow)
                 for allow in (False, True)]
        assert found[1][0] == "imported" and found[1][1]["prompts"], found[1]
