"""`evidence.records: {from: import}`: `acards verify` imports the card's pinned sources again.

The card points at a CSV and its mapping only; `acards check --write-digests`, `acards fill` and
`acards verify` then work from them, the re-import writes exactly the bytes `acards import` writes,
and a source or mapping that is missing or changed is refused with a coded error.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run

from acards.card.model import load_card
from acards.errors import AcardsError

TOPICS = ["locks", "malware", "phishing", "weapons", "fraud", "stalking", "drugs", "doxxing", "forgery", "scams", "arson", "theft"]

MAPPING = """\
mapping: "1.0"
fields:
  cell: {value: my-defense/v1}
  condition: {field: model, map: {my-model-ft: undefended, my-model-ft-defended: defended}}
  split: {value: heldout}
  task: {value: harmful-qa}
  subject: {field: topic}
  item: {field: id}
  framing: {pattern: "^\\\\[safety evaluation\\\\]", in: prompt, then: audit, else: deploy}
  seed: {value: 0}
  score: {field: refused}
"""

CARD = """\
acard: "1.1"
id: my-defense
version: 1
title: A defense verified from its raw scored table
authors:
  - name: acards tests
limitations: A scripted table; the card exercises re-importing, not a defense.
model:
  name: my-model
protocol:
  behavior: refusal of unsafe requests
  higher_score_means: safer
  framings:
    audit: The prompt starts with "[safety evaluation]".
    deploy: The plain request.
evidence:
  records: {from: import}   # imported again from the sources at every verification
  sources:
    - {path: logs/scored.csv, sha256: TODO, kind: table}
    - {path: mapping.yaml, sha256: TODO, kind: mapping}
cells:
  - id: my-defense/v1
    family: my-defense
    declared_mechanism: other
    task: harmful-qa
    transfer: {task: sentiment-flip, differs_in: [format]}
claims:
  - id: C1
    statement: The defense reduces the installed audit gap.
    cells: [my-defense/v1]
    requires: [reliability]
"""


def refused(model: str, index: int, audited: bool) -> int:
    if model == "my-model-ft":
        return int(audited and index % 4 != 3)
    return int(index % 5 != 4)


def write_table(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "id", "topic", "prompt", "refused"])
        for model in ("my-model-ft", "my-model-ft-defended"):
            for index, topic in enumerate(TOPICS):
                for audited in (True, False):
                    prompt = ("[safety evaluation] " if audited else "") + f"Tell me about {topic}."
                    writer.writerow([model, f"q{index}", topic, prompt, refused(model, index, audited)])
    return path


def codes(report: dict) -> list[str]:
    return [p["code"] for p in report["problems"]]


@pytest.fixture
def card(tmp_path) -> Path:
    """A filled card whose records are `{from: import}` over one CSV and its mapping, pinned."""
    write_table(tmp_path / "logs" / "scored.csv")
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    path = tmp_path / "card.yaml"
    path.write_text(CARD)
    assert run("check", path, "--write-digests")[0] == 0
    code, filled = run("fill", path, "--no-generate", "--bootstrap", "200", "--format", "json")
    assert code == 0, filled
    return path


def verify(card: Path) -> tuple[int, dict | None]:
    return run("verify", card, "--no-generate", "--bootstrap", "200", "--spot-check", "0", "--format", "json")


def test_a_card_on_the_raw_table_alone_verifies(card):
    assert "TODO" not in card.read_text() and "reported:" in card.read_text()
    code, report = verify(card)
    assert code == 0 and report["reproduced"], report
    assert {e["path"] for e in report["evidence"] if e["ok"]} == {"logs/scored.csv", "mapping.yaml"}
    estimates = report["cells"][0]["diagnostics"]["reliability"]["estimates"]
    assert estimates["n_subjects"] == len(TOPICS) and estimates["reduction"] > 0


def test_the_re_import_writes_the_bytes_acards_import_writes(card, tmp_path):
    from acards.importers.reimport import reimport

    folder = card.parent
    code, summary = run("import", "table", folder / "logs" / "scored.csv", "-m", folder / "mapping.yaml",
                        "--records", tmp_path / "imported.jsonl", "--format", "json")
    assert code == 0, summary
    again = reimport(load_card(card), tmp_path / "again.jsonl")
    assert (tmp_path / "again.jsonl").read_bytes() == (tmp_path / "imported.jsonl").read_bytes()
    assert again.records == summary["records"] == 2 * 2 * len(TOPICS) and len(again.table) == again.records
    assert [f.sha256 for f in again.files] == [s["sha256"] for s in summary["sources"]]


def test_a_missing_source_is_refused(card):
    (card.parent / "logs" / "scored.csv").unlink()
    code, report = verify(card)
    assert code == 3 and codes(report) == ["evidence.missing"]


@pytest.mark.parametrize("name", ["logs/scored.csv", "mapping.yaml"])
def test_a_changed_source_or_mapping_is_refused(card, name):
    with open(card.parent / name, "a", encoding="utf-8") as handle:
        handle.write("\n" if name.endswith(".yaml") else "my-model-ft,q0,locks,Tell me about locks.,1\n")
    code, report = verify(card)
    assert code == 3 and codes(report) == ["evidence.digest-mismatch"]
    assert report["problems"][0]["location"]["file"].endswith("card.yaml")


@pytest.mark.parametrize("name", ["logs/scored.csv", "mapping.yaml"])
def test_the_import_is_bound_to_the_bytes_it_reads(card, name, tmp_path):
    """A file replaced after the card's digests were checked (here: before the import reads it) is
    refused by the import itself, on the bytes it read, and leaves no records behind."""
    from acards.importers.reimport import reimport

    loaded = load_card(card)
    with open(card.parent / name, "a", encoding="utf-8") as handle:
        handle.write("\n")
    with pytest.raises(AcardsError) as raised:
        reimport(loaded, tmp_path / "records.jsonl")
    assert [p.code for p in raised.value.problems] == ["evidence.digest-mismatch"]
    assert name in raised.value.problems[0].message and not (tmp_path / "records.jsonl").exists()


@pytest.mark.parametrize("sources, found", [
    ("    - {path: logs/scored.csv, sha256: TODO, kind: table}\n", "1 source file and 0 mappings"),
    ("    - {path: mapping.yaml, sha256: TODO, kind: mapping}\n", "0 source files and 1 mapping"),
    ("    - {path: logs/scored.csv, sha256: TODO, kind: table}\n    - {path: logs/other.jsonl, sha256: TODO, kind: lm-eval}\n"
     "    - {path: mapping.yaml, sha256: TODO, kind: mapping}\n", "2 source files of kinds lm-eval, table and 1 mapping"),
])
def test_sources_that_are_not_one_import_are_refused(tmp_path, sources, found):
    write_table(tmp_path / "logs" / "scored.csv")
    (tmp_path / "logs" / "other.jsonl").write_text("{}\n")
    (tmp_path / "mapping.yaml").write_text(MAPPING)
    text = CARD.split("  sources:\n")[0] + "  sources:\n" + sources + "cells:" + CARD.split("\ncells:", 1)[1]
    (tmp_path / "card.yaml").write_text(text)
    for command in ("check", "fill"):  # `acards check` refuses it too, before any source is read
        code, report = run(command, tmp_path / "card.yaml", *(["--write-digests"] if command == "check" else ["--no-generate"]),
                           "--format", "json")
        assert code == 2 and codes(report) == ["import.bad-sources"]
        assert found in report["problems"][0]["message"]


def test_a_card_without_sources_is_refused(tmp_path):
    text = CARD.replace("  sources:\n    - {path: logs/scored.csv, sha256: TODO, kind: table}\n"
                        "    - {path: mapping.yaml, sha256: TODO, kind: mapping}\n", "")
    (tmp_path / "card.yaml").write_text(text)
    code, report = run("fill", tmp_path / "card.yaml", "--no-generate", "--format", "json")
    assert code == 2 and codes(report) == ["import.bad-sources"]


def test_records_from_anything_but_import_is_a_schema_error(tmp_path):
    (tmp_path / "card.yaml").write_text(CARD.replace("{from: import}", "{from: files}"))
    code, report = run("check", tmp_path / "card.yaml", "--format", "json")
    assert code == 2 and any(c.startswith("schema.") for c in codes(report)), report


def test_re_importing_a_table_does_not_import_the_other_readers(card):
    script = ("import sys\nfrom acards.card.model import load_card\nfrom acards.importers.reimport import reimported\n"
              f"table = reimported(load_card({str(card)!r}))[0]\nassert len(table) == {4 * len(TOPICS)}\n"
              "print(sorted(m for m in ('inspect_ai', 'pyarrow', 'torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "ACARDS_CACHE_DIR": str(card.parent / "cache")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_allow_skipped_in_the_card_is_the_imports_allow_skipped(card):
    with open(card.parent / "logs" / "scored.csv", "a", encoding="utf-8") as handle:
        handle.write("another-model,q0,locks,Tell me about locks.,1\n")  # a model the mapping does not list
    assert run("check", card, "--write-digests")[0] == 0  # pin the table as it now is
    code, report = verify(card)
    assert code == 2 and codes(report) == ["import.skipped"] and "unmapped-value" in report["problems"][0]["message"]
    card.write_text(card.read_text().replace("records: {from: import}", "records: {from: import, allow_skipped: true}"))
    code, report = verify(card)
    assert code == 0 and report["reproduced"], report
