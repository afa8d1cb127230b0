"""`evidence.prompts: {from: import}`: the prompts imported again with the records, from the raw logs.

- On the logs a real inspect_ai run writes (tests/test_import_tools.py's fixture), a card whose
  records and prompts are `{from: import}`, with the numbers filled in from the same card pointing
  at the files `acards import --prompts` wrote, verifies with exit 0 and gives that card's report;
  the prompts are used (the fresh split's n-gram check against the training data) and are the
  bytes `acards import` writes.
- On a CSV table (tests/test_import_verify.py's), each new error, and `acards check` refusing a
  broken mapping before any source is read, with the code `acards verify` gives.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from cli_run import run
from test_import_tools import CARD as INSPECT_CARD
from test_import_tools import INSPECT_MAPPING, inspect_logs  # noqa: F401 — the fixture of real inspect_ai logs
from test_import_verify import CARD, MAPPING, codes, write_table

from acards.card.model import load_card
from acards.importers.reimport import reimport
from acards.pipeline.load import read_card_prompts

FRESH = range(16, 24)  # items q16–q23 (subjects 08–11) are the fresh split
# the inspect mapping, with a fresh split: the items of four subjects
FRESH_MAPPING = INSPECT_MAPPING.replace(
    "  split: {value: heldout}\n",
    "  split: {field: metadata.index, map: {" + ", ".join(f'"{i}": fresh' for i in FRESH) + "}, default: heldout}\n")
# one fresh prompt shares a run of 8 tokens (the default max_shared_ngram) with the training data
TRAINING = [{"subject": "subject-00", "text": "Seen in training: evaluation] How would one do forbidden thing 17? Never."},
            {"subject": "subject-01", "text": "Nothing in common with the fresh prompts."}]
FILES = ("  records:\n    - path: records.jsonl\n      sha256: TODO\n  prompts: {path: prompts.jsonl, sha256: TODO}\n")
IMPORTED = "  records: {from: import}\n  prompts: {from: import}\n"
TRAINING_POINTER = "  training_data: {path: train.jsonl, sha256: TODO}\n"


def verify(card: Path) -> tuple[int, dict | None]:
    return run("verify", card, "--no-generate", "--bootstrap", "200", "--spot-check", "0", "--format", "json")


def recomputed(report: dict) -> dict:
    """What a report says of the card's cells and claims (not which files it read)."""
    return {"cells": report["cells"], "claims": report["claims"]}


def test_records_and_prompts_from_the_inspect_logs_verify_as_the_imported_files_do(inspect_logs, tmp_path):  # noqa: F811
    (tmp_path / "logs").mkdir()
    logs = [shutil.copyfile(inspect_logs[c], tmp_path / "logs" / f"{c}.eval") for c in ("undefended", "defended")]
    (tmp_path / "mapping.yaml").write_text(FRESH_MAPPING)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in TRAINING))
    code, summary = run("import", "inspect", *logs, "-m", tmp_path / "mapping.yaml", "--records", tmp_path / "records.jsonl",
                        "--prompts", tmp_path / "prompts.jsonl", "--format", "json")
    assert code == 0 and summary["prompts"] == 48, summary
    files = tmp_path / "files.yaml"
    files.write_text(INSPECT_CARD.replace(FILES, FILES + TRAINING_POINTER))
    assert run("check", files, "--write-digests")[0] == 0
    assert run("fill", files, "--no-generate", "--bootstrap", "200")[0] == 0
    # the same card, with the numbers filled in from the files, pointing at the raw logs alone
    pinned = re.escape(FILES).replace("TODO", "[0-9a-f]{64}")
    text, swapped = re.subn(pinned, IMPORTED, files.read_text())
    assert swapped == 1 and "reported:" in text
    (tmp_path / "imported.yaml").write_text(text)
    reports = {}
    for name in ("files", "imported"):
        code, reports[name] = verify(tmp_path / f"{name}.yaml")
        assert code == 0 and reports[name]["reproduced"], reports[name]
    assert {e["path"] for e in reports["imported"]["evidence"]} == {"logs/undefended.eval", "logs/defended.eval",
                                                                     "mapping.yaml", "train.jsonl"}
    assert recomputed(reports["imported"]) == recomputed(reports["files"])
    fresh = reports["imported"]["cells"][0]["diagnostics"]["fresh"]
    assert fresh["estimates"]["prompts_sharing_ngram"] == 1, fresh  # the n-gram check ran on the imported prompts
    # the prompts imported again are the bytes `acards import --prompts` wrote
    card = load_card(tmp_path / "imported.yaml")
    reimport(card, tmp_path / "again.jsonl", tmp_path / "again-prompts.jsonl")
    prompts = read_card_prompts(card)
    assert prompts.sha256 == hashlib.sha256((tmp_path / "prompts.jsonl").read_bytes()).hexdigest() and len(prompts) == 48
    assert (tmp_path / "again-prompts.jsonl").read_bytes() == (tmp_path / "prompts.jsonl").read_bytes()
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "records.jsonl").read_bytes()


# --- a scored table ------------------------------------------------------------------------------

PROMPT_RULE = "  prompt: {field: prompt}\n"
WITH_PROMPTS = CARD.replace("  sources:\n", "  prompts: {from: import}\n  sources:\n")


def table_card(folder: Path, mapping: str = MAPPING + PROMPT_RULE, card: str = WITH_PROMPTS) -> Path:
    write_table(folder / "logs" / "scored.csv")
    (folder / "mapping.yaml").write_text(mapping)
    (folder / "card.yaml").write_text(card)
    return folder / "card.yaml"


def test_the_re_imported_prompts_are_the_bytes_acards_import_writes(tmp_path):
    card = table_card(tmp_path / "card")
    assert run("check", card, "--write-digests")[0] == 0
    folder = card.parent
    code, summary = run("import", "table", folder / "logs" / "scored.csv", "-m", folder / "mapping.yaml", "--records",
                        tmp_path / "records.jsonl", "--prompts", tmp_path / "prompts.jsonl", "--format", "json")
    assert code == 0 and summary["prompts"] == 2 * 12, summary
    again = reimport(load_card(card), tmp_path / "again.jsonl", tmp_path / "again-prompts.jsonl")
    assert again.prompts == summary["prompts"]
    assert (tmp_path / "again-prompts.jsonl").read_bytes() == (tmp_path / "prompts.jsonl").read_bytes()
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "records.jsonl").read_bytes()


def test_prompts_from_import_need_records_from_import(tmp_path):
    card = table_card(tmp_path, card=WITH_PROMPTS.replace("  records: {from: import}", "  records:\n    - {path: records.jsonl, sha256: TODO}"))
    assert run("import", "table", tmp_path / "logs" / "scored.csv", "-m", tmp_path / "mapping.yaml",
               "--records", tmp_path / "records.jsonl")[0] == 0
    for command in ("check", "fill"):
        code, report = run(command, card, *(["--write-digests"] if command == "check" else ["--no-generate"]), "--format", "json")
        assert code == 2 and codes(report) == ["import.prompts-without-records"], report
        assert report["problems"][0]["location"]["pointer"] == "/evidence/prompts"
    code, report = run("validate", card, "--format", "json")  # no evidence read: the card's own rule
    assert code == 2 and codes(report) == ["import.prompts-without-records"]


def test_a_mapping_without_a_prompt_rule_is_refused_by_check_and_verify(tmp_path):
    card = table_card(tmp_path, mapping=MAPPING)  # a table gives no default prompt
    code, report = run("check", card, "--write-digests", "--format", "json")
    assert code == 2 and codes(report) == ["import.no-prompt-rule"], report
    problem = report["problems"][0]
    assert "logs/scored.csv" in problem["message"] and problem["location"]["file"].endswith("mapping.yaml")
    assert problem["location"]["pointer"] == "/fields" and "prompt" in problem["hint"]
    code, verified = verify(card)
    assert code == 2 and verified["problems"] == report["problems"]


BROKEN = [  # a mapping problem `acards verify` finds before reading a record, and its code
    (MAPPING.replace("  subject: {field: topic}\n", ""), "import.incomplete-mapping"),
    (MAPPING + "files:\n  - match: '*.parquet'\n    fields: {seed: {value: 1}}\n", "import.unmatched-files"),
    (MAPPING.replace('"^\\\\[safety evaluation\\\\]"', '"(a+)+\\\\1"'), "import.bad-pattern"),
    (MAPPING + "  colour: {value: red}\n", "import.bad-mapping"),
]


@pytest.mark.parametrize("mapping, code", BROKEN, ids=[code for _, code in BROKEN])
def test_check_refuses_a_broken_mapping_before_any_source_is_read(tmp_path, mapping, code):
    """The table is pinned but unreadable as CSV: `check` names the mapping's problem without
    parsing it, with the code `verify` gives; with the mapping fixed, `check` passes and only
    `verify`, which reads the table, refuses it."""
    card = table_card(tmp_path, mapping=mapping, card=CARD)
    (tmp_path / "logs" / "scored.csv").write_bytes(b"\xff\xfe not a UTF-8 table\n")
    checked = run("check", card, "--write-digests", "--format", "json")
    assert checked[0] == 2 and codes(checked[1]) == [code], checked
    verified = verify(card)
    assert verified[0] == 2 and codes(verified[1]) == [code]
    assert checked[1]["problems"] == verified[1]["problems"]
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    assert run("check", card, "--write-digests")[0] == 0
    code, report = verify(card)
    assert code == 3 and codes(report) == ["import.bad-source"], report


def test_check_refuses_a_mapping_that_no_longer_has_its_pin(tmp_path):
    card = table_card(tmp_path)
    assert run("check", card, "--write-digests")[0] == 0
    with open(tmp_path / "mapping.yaml", "a", encoding="utf-8") as handle:
        handle.write("select: {model: my-model-ft}\n")
    for command in (("check",), ("verify", "--no-generate")):
        code, report = run(*command, card, "--format", "json")
        assert code == 3 and codes(report) == ["evidence.digest-mismatch"], report


def test_check_refuses_a_table_whose_name_gives_no_format(tmp_path):
    """A table source's format follows from its name: `check` refuses a name it cannot read, as
    `verify` would, without opening the file."""
    card = table_card(tmp_path, card=CARD.replace("logs/scored.csv", "logs/scored.txt"))
    (tmp_path / "logs" / "scored.csv").rename(tmp_path / "logs" / "scored.txt")
    checked = run("check", card, "--write-digests", "--format", "json")
    assert checked[0] == 3 and codes(checked[1]) == ["import.bad-source"], checked
    assert "scored.txt" in checked[1]["problems"][0]["message"] and ".csv" in checked[1]["problems"][0]["hint"]
    verified = verify(card)
    assert verified[0] == 3 and verified[1]["problems"] == checked[1]["problems"]
