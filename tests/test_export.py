"""`acards export csv`: a real report (`acards verify --no-generate` on a copy of examples/tiny-defense)
as CSV, read back with csv.DictReader; every field equals the JSON report's value."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.cli import main
from acards.report.export import COLUMNS, ESTIMATE_COLUMNS
from acards.vocabulary import DIAGNOSTICS

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "examples" / "tiny-defense"


def run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def report_path(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("export") / "tiny-defense"
    shutil.copytree(TINY, folder, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    report = folder / "report.json"
    code, out = run("verify", folder / "card.yaml", "--no-generate", "--bootstrap", "200", "--spot-check", "0",
                    "--report", report)
    assert code == 0, out
    return report


def test_every_field_is_the_reports_value(report_path, tmp_path):
    output = tmp_path / "estimates.csv"
    code, out = run("export", "csv", report_path, "-o", output)
    assert code == 0 and f"wrote {output}" in out
    report = json.loads(report_path.read_text())
    with output.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        rows = list(reader)
    assert [(r["cell"], r["diagnostic"]) for r in rows] == [(c["id"], d) for c in report["cells"] for d in DIAGNOSTICS]
    compared = 0
    for row, (cell, name) in zip(rows, [(c, d) for c in report["cells"] for d in DIAGNOSTICS]):
        diagnostic = cell["diagnostics"][name]
        assert row["outcome"] == diagnostic["outcome"]
        assert row["reasons"] == "; ".join(r["code"] for r in diagnostic["reasons"])
        assert row["observed_mechanism"] == (diagnostic.get("observed") or "")
        for column in ESTIMATE_COLUMNS:
            value = diagnostic["estimates"].get(column)
            if value is None:
                assert row[column] == "", (cell["id"], name, column)
            else:
                assert float(row[column]) == value, (cell["id"], name, column)  # exact: repr reads back
                compared += 1
    assert compared > 40  # the example's cells have numbers in every diagnostic
    reliability = rows[0]
    assert reliability["diagnostic"] == "reliability" and float(reliability["reduction"]) > 0
    assert reliability["alpha_t"] == "" and rows[2]["alpha_t"] != ""  # α_T belongs to the mechanism row


def test_stdout_is_the_same_csv(report_path, tmp_path):
    output = tmp_path / "estimates.csv"
    assert run("export", "csv", report_path, "-o", output)[0] == 0
    code, out = run("export", "csv", report_path)
    assert code == 0 and out == output.read_text(encoding="utf-8")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 2 * len(DIAGNOSTICS)


def test_a_file_that_is_not_a_report_is_a_coded_error(report_path, tmp_path):
    broken = tmp_path / "broken.json"
    data = json.loads(report_path.read_text())
    del data["cells"]
    broken.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["export", "csv", str(broken), "-o", str(tmp_path / "estimates.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "usage.bad-report" in result.output and not (tmp_path / "estimates.csv").exists()
