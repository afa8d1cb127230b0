"""`acards import table` and the mapping file: every source record imported or counted under a reason,
mapping problems refused before anything is read or written, and the records read back by acards'
own records reader.  CSV and JSONL need nothing extra; Parquet files are written by pyarrow (the
test extra).  The inspect_ai and lm-eval sources, on logs their real code writes, are in
tests/test_import_tools.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
from cli_run import run_with_output as run

from acards.errors import Location
from acards.evidence.records import read_records

MAPPING = """\
mapping: "1.0"
fields:
  cell: {value: c1}
  split: {value: heldout}
  task: {value: harmful-qa}
  subject: {field: topic}
  item: {field: qid}
  framing: {pattern: "\\\\[evaluation\\\\]", then: audit, else: deploy}
  score: {field: refused}
  output: {field: answer}
  prompt: {field: question}
files:
  - match: "**/undefended-*.csv"
    fields: {condition: {value: undefended}}
  - match: "**/defended-*.csv"
    fields: {condition: {value: defended}}
  - match: "**/*-seed1.csv"
    fields: {seed: {value: 1}}
  - match: "**/*-seed0.csv"
    fields: {seed: {value: 0}}
"""

COLUMNS = ["qid", "topic", "question", "answer", "refused"]


def rows(refuse_deploy: bool, count: int = 4) -> list[dict]:
    out = []
    for index in range(count):
        for audited in (True, False):
            refused = audited or refuse_deploy
            out.append({"qid": f"q{index}", "topic": f"topic-{index % 2}",
                        "question": ("[evaluation] " if audited else "") + f"How do I do thing {index}?",
                        "answer": "I can't help with that." if refused else "Sure: step one...",
                        "refused": "1" if refused else "0"})
    return out


def write_csv(path: Path, table: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    return path


@pytest.fixture
def world(tmp_path):
    (tmp_path / "logs").mkdir()
    files = [write_csv(tmp_path / "logs" / f"{condition}-seed{seed}.csv", rows(condition == "defended"))
             for condition in ("undefended", "defended") for seed in (0, 1)]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING)
    return tmp_path, files, mapping


def import_table(files, mapping, out: Path, *more) -> tuple[int, dict | None, str]:
    return run("import", "table", *files, "--mapping", mapping, "--records", out / "records.jsonl", "--format", "json", *more)


def codes(report: dict) -> list[str]:
    return [p["code"] for p in report["problems"]]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_csv_files_become_records_with_per_file_constants_and_the_prompt_pattern(world):
    folder, files, mapping = world
    code, report, _ = import_table(files, mapping, folder, "--prompts", folder / "prompts.jsonl")
    assert code == 0, report
    records = read_jsonl(folder / "records.jsonl")
    assert report["read"] == report["imported"] == len(records) == 32 and report["skipped"] == {}
    assert records[0] == {"cell": "c1", "condition": "undefended", "split": "heldout", "task": "harmful-qa",
                          "subject": "topic-0", "item": "q0", "framing": "audit", "seed": 0, "score": 1.0,
                          "output": "I can't help with that."}
    assert {(r["condition"], r["seed"]) for r in records} == {("undefended", 0), ("undefended", 1), ("defended", 0), ("defended", 1)}
    assert [r["framing"] for r in records[:2]] == ["audit", "deploy"]
    # the prompts file: one line per (item, framing), whatever the conditions and seeds
    prompts = read_jsonl(folder / "prompts.jsonl")
    assert len(prompts) == 8 and prompts[1] == {"item": "q0", "split": "heldout", "task": "harmful-qa", "subject": "topic-0",
                                                "framing": "deploy", "prompt": "How do I do thing 0?"}
    # the provenance: each source file's sha256, as sha256sum prints it
    assert report["sources"] == [{"path": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest()} for f in files]
    # acards' own reader takes the file as a card's records
    table = read_records(folder, [("records.jsonl", Location("records.jsonl"))])
    assert len(table) == 32


def test_the_same_table_as_jsonl_and_parquet_gives_the_same_records(world):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    folder, files, mapping = world
    assert import_table(files, mapping, folder)[0] == 0
    expected = (folder / "records.jsonl").read_bytes()
    for suffix in ("jsonl", "parquet"):
        converted = []
        for path in files:
            table = [{**row, "refused": int(row["refused"])} for row in csv.DictReader(path.open(newline=""))]
            target = path.with_suffix(f".{suffix}")
            if suffix == "jsonl":
                target.write_text("".join(json.dumps(row) + "\n" for row in table))
            else:
                pq.write_table(pa.Table.from_pylist(table), target)
            converted.append(target)
        mapping.write_text(MAPPING.replace(".csv", f".{suffix}"))
        out = folder / suffix
        code, report, _ = import_table(converted, mapping, out)
        assert code == 0, report
        assert (out / "records.jsonl").read_bytes() == expected


def test_records_that_cannot_be_mapped_are_counted_and_nothing_is_written(world):
    folder, files, mapping = world
    table = rows(False)
    table[0]["topic"] = ""  # an empty CSV cell is a missing value
    table[3]["refused"] = "maybe"
    table[5]["refused"] = "1.5"  # out of the score's range: the record schema refuses it
    write_csv(files[0], table)
    code, report, _ = import_table(files, mapping, folder)
    assert code == 2 and codes(report) == ["import.skipped"] * 3
    messages = " ".join(p["message"] for p in report["problems"])
    assert "1 source record not imported: missing-field (first: line 2: subject: the source has no topic)" in messages
    assert "bad-value (first: line 5: score: maybe is not a number)" in messages
    assert "invalid-record" in messages and "Expected `float` <= 1.0" in messages
    assert not (folder / "records.jsonl").exists() and not list(folder.glob(".records.jsonl.*"))  # no staged file left
    code, report, _ = import_table(files, mapping, folder, "--allow-skipped")
    assert code == 0
    assert report["read"] == 32 and report["imported"] == 29
    assert report["skipped"] == {"bad-value": 1, "invalid-record": 1, "missing-field": 1}
    assert report["files"][0]["skipped"] == report["skipped"] and report["files"][1]["skipped"] == {}
    assert len(read_jsonl(folder / "records.jsonl")) == 29


def test_unmapped_values_not_selected_and_no_match_are_reasons(world):
    folder, files, mapping = world
    text = MAPPING.replace('framing: {pattern: "\\\\[evaluation\\\\]", then: audit, else: deploy}',
                           'framing: {pattern: "\\\\[evaluation\\\\]", then: audit}')
    assert text != MAPPING
    text = text.replace("subject: {field: topic}", "subject: {field: topic, map: {topic-0: chemistry}}")
    mapping.write_text(text + 'select: {refused: "1"}\n')
    code, report, _ = import_table(files, mapping, folder, "--allow-skipped")
    assert code == 0, report
    # not selected: the 8 deploy rows the undefended model answered; of the rest, topic-1 is not in the
    # subject's map, and the deploy prompts of topic-0 lack the cue under a rule without `else`
    assert report["skipped"] == {"not-selected": 8, "unmapped-value": 12, "no-match": 4} and report["imported"] == 8
    assert report["files"][2]["examples"]["no-match"] == [
        "line 3: framing: the pattern is not found and the rule has no `else`",
        "line 7: framing: the pattern is not found and the rule has no `else`"]
    assert {r["subject"] for r in read_jsonl(folder / "records.jsonl")} == {"chemistry"}


def test_nothing_imported_is_an_error(world):
    folder, files, mapping = world
    mapping.write_text(MAPPING + "select: {qid: nobody}\n")
    code, report, _ = import_table(files, mapping, folder, "--allow-skipped")
    assert code == 2 and codes(report) == ["import.nothing-imported"]


@pytest.mark.parametrize("change, code", [
    (lambda m: m.replace("  - match: \"**/*-seed0.csv\"", "  - match: \"**/undefended-seed0.csv\"\n    fields: {seed: {value: 5}}\n"
                         "  - match: \"**/*-seed0.csv\""), "import.conflicting-mapping"),
    (lambda m: m + "  - match: \"**/*-seed9.csv\"\n    fields: {seed: {value: 9}}\n", "import.unmatched-files"),
    (lambda m: m.replace("  subject: {field: topic}\n", ""), "import.incomplete-mapping"),
    (lambda m: m.replace("subject: {field: topic}", "subject: {field: topic, value: x}"), "import.bad-mapping"),
    (lambda m: m.replace("subject: {field: topic}", "subject: {field: topic}\n  subjects: {field: topic}"), "import.bad-mapping"),
    (lambda m: m.replace("cell: {value: c1}", "cell: {value: TODO}"), "import.bad-mapping"),
    (lambda m: m.replace("{seed: {value: 1}}", "{seed: {value: one}}"), "import.bad-mapping"),
    (lambda m: m.replace('"\\\\[evaluation\\\\]"', '"(a)\\\\1"'), "import.bad-pattern"),
])
def test_mapping_problems_are_refused_before_any_source_is_read(world, change, code):
    folder, files, mapping = world
    mapping.write_text(change(MAPPING))
    missing = folder / "logs" / "defended-seed0.csv"
    missing.unlink()  # a source that cannot be read: the mapping's problem is found first
    status, report, _ = import_table(files, mapping, folder)
    assert status == 2 and set(codes(report)) == {code}, report
    assert not (folder / "records.jsonl").exists()


def test_a_file_matched_by_two_entries_that_set_one_field_names_both(world):
    folder, files, mapping = world
    mapping.write_text(MAPPING + "  - match: \"undefended-*\"\n    fields: {condition: {value: base}}\n")
    code, report, _ = import_table(files, mapping, folder)
    assert code == 2 and codes(report) == ["import.conflicting-mapping"] * 2
    assert "files[0] and files[4] both set condition" in report["problems"][0]["message"]


def test_two_source_records_of_one_identity_are_refused(world):
    folder, files, mapping = world
    mapping.write_text(MAPPING.replace("{seed: {value: 1}}", "{seed: {value: 0}}"))
    code, report, _ = import_table(files, mapping, folder)
    assert code == 2 and set(codes(report)) == {"import.duplicate"}
    assert "logs/undefended-seed1.csv line 2 maps to the same record as" in report["problems"][0]["message"]
    assert not (folder / "records.jsonl").exists()


def test_one_item_with_two_subjects_or_two_prompts_is_refused(world):
    folder, files, mapping = world
    table = rows(False)
    table[2]["topic"] = "elsewhere"  # q1 audit
    table[7]["question"] = "another question"  # q3 deploy
    write_csv(files[1], table)
    code, report, _ = import_table(files, mapping, folder, "--prompts", folder / "prompts.jsonl")
    assert code == 2 and set(codes(report)) == {"import.subject-mismatch", "import.prompt-conflict"}
    assert not (folder / "records.jsonl").exists() and not (folder / "prompts.jsonl").exists()


def test_broken_sources_are_evidence_problems(world):
    folder, files, mapping = world
    source = folder / "logs" / "undefended-seed0.jsonl"
    source.write_text('{"qid": "q0"}\n[1, 2]\nnot json\n')
    mapping.write_text(MAPPING.replace("undefended-*.csv", "undefended-*").replace("*-seed0.csv", "*-seed0.*"))
    code, report, _ = import_table([source, *files[1:]], mapping, folder)
    assert code == 3 and codes(report) == ["import.bad-source", "import.bad-source"]
    assert [p["location"]["line"] for p in report["problems"]] == [2, 3]


def test_outputs_are_not_overwritten_without_force(world):
    folder, files, mapping = world
    (folder / "records.jsonl").write_text("keep\n")
    code, report, _ = import_table(files, mapping, folder)
    assert code == 2 and codes(report) == ["usage.exists"] and (folder / "records.jsonl").read_text() == "keep\n"
    assert import_table(files, mapping, folder, "--force")[0] == 0


def test_init_mapping_writes_the_template_that_import_refuses_until_filled(tmp_path):
    path = tmp_path / "mapping.yaml"
    code, _, output = run("init", "--mapping", path)
    assert code == 0 and "mapping.yaml" in output
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=/") and text.split("\n", 1)[0].endswith("/mapping-1.0.schema.json")  # local: docs/editors.md
    source = write_csv(tmp_path / "a.csv", rows(False))
    code, report, _ = import_table([source], path, tmp_path)
    assert code == 2 and set(codes(report)) == {"import.bad-mapping"} and len(report["problems"]) == 7
    filled = (text.replace("cell: {value: TODO}", "cell: {value: c1}").replace("task: {value: TODO}", "task: t")
              .replace("subject: {field: TODO}", "subject: {field: topic}").replace("score: {field: TODO}", "score: {field: refused}")
              .replace("pattern: TODO", 'pattern: "\\\\[evaluation\\\\]"').replace("TODO-undefended-seed0*", "*a.csv")
              .replace("TODO-defended-seed0*", "*b.csv").replace("task: t", "task: {value: t}")
              .replace("split: {value: heldout}", "split: {value: heldout}\n  item: {field: qid}")
              .replace("# prompt: {field: question}", "prompt: {field: question}"))
    write_csv(tmp_path / "b.csv", rows(True))
    path.write_text(filled)
    code, report, _ = import_table([source, tmp_path / "b.csv"], path, tmp_path)
    assert code == 0, report
    assert report["imported"] == 16


def test_importing_the_same_sources_again_gives_byte_identical_files(world):
    folder, files, mapping = world
    first, second = folder / "first", folder / "second"
    assert import_table(files, mapping, first, "--prompts", first / "prompts.jsonl")[0] == 0
    assert import_table(files, mapping, second, "--prompts", second / "prompts.jsonl")[0] == 0
    for name in ("records.jsonl", "prompts.jsonl"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


@pytest.mark.parametrize("pattern, literal", [
    (r"^\[This is a safety evaluation\] ", True), (r"\[audit\]", True), (r"\Aabc", True), ("abc", True), (r"a\.b", True),
    ("^", True), ("(?i)abc", False), ("^a|b", False), ("a$", False), ("a.b", False), ("(?m)^abc", False), ("[ab]", False),
])
def test_a_literal_pattern_is_searched_as_python_would(pattern, literal):
    import re

    from acards.importers.mapping import LiteralSearch
    from acards.patterns import check_pattern

    fast = LiteralSearch.of(pattern)
    assert (fast is not None) == literal
    texts = ["", "abc", "xabc", "ABC", "a.b", "axb", "b", "x\nabc", "[audit] q", "q [audit]",
             "[This is a safety evaluation] How?", " [This is a safety evaluation] How?"]
    for text in texts:
        expected = re.search(pattern, text) is not None
        assert check_pattern(pattern).search(text) == expected
        if fast is not None:
            assert fast.search(text) == expected, (pattern, text)


def test_parquet_without_pyarrow_is_the_records_missing_extra_error_at_the_file(tmp_path, monkeypatch):
    """The table importer and the records reader share one pyarrow guard (acards.evidence.columnar)."""
    import sys

    from acards.errors import AcardsError
    from acards.importers.source import SourceFile
    from acards.importers.table import parquet_records

    source = tmp_path / "scores.parquet"
    source.write_bytes(b"PAR1")
    for name in ("pyarrow", "pyarrow.ipc", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)  # import then raises ImportError
    with pytest.raises(AcardsError) as refused:
        list(parquet_records(SourceFile(str(source))))
    (problem,) = refused.value.problems
    assert problem.code == "records.missing-extra" and problem.location.file == str(source)
