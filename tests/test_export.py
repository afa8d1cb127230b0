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


# --- acards export hf-eval-results ---------------------------------------------------------------

HF = ("--dataset", "acards-tests/harmful-qa", "--source-url", "https://example.org/cards/tiny-defense/card.yaml")


def test_hf_eval_results_read_back_through_huggingface_hub(report_path, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    if not hasattr(hub, "parse_eval_result_entries"):
        pytest.skip("this huggingface_hub has no .eval_results support")
    import yaml

    folder = tmp_path / ".eval_results"
    code, out = run("export", "hf-eval-results", report_path, *HF, "--task-id", "refusal", "-o", folder)
    assert code == 0, out
    report = json.loads(report_path.read_text())
    card = report["card"]
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == sorted(f"{card['id']}__{c['id']}.yaml".replace("/", "__") for c in report["cells"])
    for cell in report["cells"]:
        path = folder / f"{card['id']}__{cell['id']}.yaml".replace("/", "__")
        assert f"wrote {path}" in out
        [entry] = hub.parse_eval_result_entries(yaml.safe_load(path.read_text(encoding="utf-8")))
        assert (entry.dataset_id, entry.task_id, entry.dataset_revision) == ("acards-tests/harmful-qa", "refusal", None)
        assert entry.value == cell["diagnostics"]["reliability"]["estimates"]["reduction"]  # exact
        assert entry.source_url == HF[3] and entry.source_name == f"Acceptance Card {card['id']} v{card['version']}"
        assert cell["id"] in entry.notes and card["sha256"] in entry.notes
        assert entry.notes.split("(outcome ")[1].startswith(cell["diagnostics"]["reliability"]["outcome"])
    # another estimate; existing files are kept without --force
    kept = CliRunner().invoke(main, ["export", "hf-eval-results", str(report_path), *HF, "-o", str(folder), "--estimate", "cost.delta"])
    assert kept.exit_code == 2 and "usage.exists" in kept.output
    code, out = run("export", "hf-eval-results", report_path, *HF, "-o", folder, "--estimate", "cost.delta", "--force")
    assert code == 0, out
    [entry] = hub.parse_eval_result_entries(yaml.safe_load(files[0].read_text(encoding="utf-8")))
    cell = next(c for c in report["cells"] if files[0].name.endswith(c["id"].replace("/", "__") + ".yaml"))
    assert entry.value == cell["diagnostics"]["cost"]["estimates"]["delta"] and entry.task_id == "default"


@pytest.mark.parametrize("change, code", [
    (("--dataset", "not a dataset id"), "export.bad-option"),
    (("--estimate", "reliability.nonsense"), "export.bad-option"),
    (("--estimate", "mechanism.reduction"), "export.no-value"),  # the mechanism diagnostic has no reduction
])
def test_hf_eval_results_refusals(report_path, tmp_path, change, code):
    pytest.importorskip("huggingface_hub")
    args = list(HF)
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += change
    result = CliRunner().invoke(main, ["export", "hf-eval-results", str(report_path), *args, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and code in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_hf_eval_results_refuse_a_report_that_was_not_reproduced(report_path, tmp_path):
    pytest.importorskip("huggingface_hub")
    data = json.loads(report_path.read_text())
    data["reproduced"] = False
    changed = tmp_path / "report.json"
    changed.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["export", "hf-eval-results", str(changed), *HF, "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "export.not-reproduced" in result.output


# --- acards export eee ---------------------------------------------------------------------------

EEE = ("--model-id", "acards-tests/tiny-defended", "--organization", "acards tests", "--evaluator-relationship", "third_party")


def test_eee_export_is_valid_under_every_eval_evers_validator(report_path, tmp_path):
    pytest.importorskip("every_eval_ever", reason="needs every-eval-ever (docs/importing.md#every-eval-ever)")
    import uuid

    from every_eval_ever.eval_types import EvaluationLog
    from every_eval_ever.validator import validate_file

    # where an EEE datastore keeps an aggregate log: data/<benchmark>/<developer>/<model>/<uuid>.json
    relative = f"data/tiny-defense/acards-tests/tiny-defended/{uuid.uuid4()}.json"
    output = tmp_path / relative
    output.parent.mkdir(parents=True)
    code, out = run("export", "eee", report_path, *EEE, "-o", output)
    assert code == 0 and f"wrote {output}" in out, out
    checked = validate_file(output, repo_path=relative, run_semantic_checks=True)
    assert checked.valid, checked.errors
    log = EvaluationLog.model_validate_json(output.read_text(encoding="utf-8"))
    assert log.source_metadata.evaluator_relationship.value == "third_party"
    assert log.model_info.id == "acards-tests/tiny-defended" and log.eval_library.name == "acards"
    report = json.loads(report_path.read_text())
    results = {r.evaluation_result_id: r for r in log.evaluation_results}
    compared = 0
    for cell in report["cells"]:
        for name, (estimate, se) in {"reliability": ("reduction", "se_total"), "cost": ("delta", "se")}.items():
            found = cell["diagnostics"][name]["estimates"]
            result = results[f"{cell['id']}/{name}"]
            assert result.score_details.score == found[estimate]  # exact
            assert result.score_details.uncertainty.standard_error.value == found[se]
            assert result.score_details.details["outcome"] == cell["diagnostics"][name]["outcome"]
            compared += 1
        interval = results[f"{cell['id']}/reliability"].score_details.uncertainty.confidence_interval
        estimates = cell["diagnostics"]["reliability"]["estimates"]
        assert (interval.lower, interval.upper) == (estimates["ci_low"], estimates["ci_high"])
    assert compared == 2 * len(report["cells"])
    # an existing file is kept without --force
    kept = CliRunner().invoke(main, ["export", "eee", str(report_path), *EEE, "-o", str(output)])
    assert kept.exit_code == 2 and "usage.exists" in kept.output


def test_eee_export_refuses_a_model_id_without_a_developer(report_path, tmp_path):
    pytest.importorskip("every_eval_ever")
    args = list(EEE)
    args[1] = "tiny-defended"
    result = CliRunner().invoke(main, ["export", "eee", str(report_path), *args, "-o", str(tmp_path / "log.json")])
    assert result.exit_code == 2 and "export.bad-option" in result.output and not (tmp_path / "log.json").exists()
