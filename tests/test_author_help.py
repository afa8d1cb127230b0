"""Author help in the terminal (issue 13, item 7) and the empty registry (item 5):

- `acards verify`'s text shows each cell's numbers (Δ ± SE_tot, standard 1.1's t critical value
  and df, retention ρ, α_T/α_A, the control margin, δ ± SE) and each failed diagnostic's reason
  with its value and threshold;
- `acards validate` warns (yaml.comment-in-text, on stderr, exit status unchanged) when a ` #`
  cuts an unquoted free-text value short, and only then;
- `registry verify` and `registry build` exit 0 and say "empty registry" on an initialised
  registry with no card, keep registry.not-a-registry on a plain folder, and registry/README.md's
  scratch commands work as written.

Real cards (a golden verify case, the worked example), real keys and registries; no torch.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.card.validate import comment_in_text_warnings
from acards.card.yaml import parse_yaml
from acards.cli import main
from acards.numbers import format_number
from acards.present.text import INFORMATIONAL

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "cases" / "verify"
VERIFY = ["--no-generate", "--bootstrap", "200", "--spot-check", "0"]


def verify(folder: Path, *options: str):
    result = CliRunner().invoke(main, ["verify", str(folder / "card.yaml"), *VERIFY, *options])
    assert "Traceback" not in result.output, result.output
    return result


@pytest.fixture(scope="module")
def capability_cost(tmp_path_factory) -> tuple[str, dict]:
    """The golden case `capability-cost` (standard 1.0, no checkpoints), verified: its text and its report."""
    folder = tmp_path_factory.mktemp("case") / "capability-cost"
    shutil.copytree(CASES / "capability-cost", folder)
    text, report = verify(folder), verify(folder, "--format", "json")
    assert text.exit_code == 0 and report.exit_code == 0, text.output
    return text.stdout, json.loads(report.stdout)


def test_verify_text_shows_each_cells_numbers(capability_cost):
    text, _ = capability_cost
    lines = text.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("c1    reliability Δ")))
    assert lines[at:at + 2] == [
        "c1    reliability Δ 0.604 ± 0.129 · fresh Δ 0.594 ± 0.17, ρ 1.06 · transfer Δ 0.562 ± 0.188, ρ 1.38",
        "      mechanism α_T/α_A — (no weights), Δ_D − Δ_C 0.125 ± 0.0948 · cost δ -0.4 ± 0.0667",
    ]
    # each failed diagnostic's reason, with its value and the threshold it misses
    assert "  c1 cost: δ − z·SE = -0.5333 is below −margin = -0.02" in lines


def test_verify_text_numbers_are_the_reports(capability_cost):
    text, report = capability_cost
    diagnostics = report["cells"][0]["diagnostics"]
    for name in ("reliability", "fresh", "transfer"):
        estimates = diagnostics[name]["estimates"]
        assert f"{name} Δ {format_number(estimates['reduction'])} ± {format_number(estimates['se_total'])}" in text
    for name in ("fresh", "transfer"):
        assert f"ρ {format_number(diagnostics[name]['estimates']['retention'])}" in text
    cost = diagnostics["cost"]["estimates"]
    assert f"cost δ {format_number(cost['delta'])} ± {format_number(cost['se'])}" in text
    assert "[t(" not in text  # standard 1.0: z, no critical value to show


def test_verify_text_standard_1_1_shows_critical_values_and_the_weight_signature(tmp_path):
    """The worked example (standard 1.1, checkpoints); every number is read back from its own report,
    so the test holds however the example is rebuilt."""
    folder = tmp_path / "tiny-defense"
    shutil.copytree(ROOT / "examples" / "tiny-defense", folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = verify(folder)
    report = json.loads(verify(folder, "--format", "json").stdout)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    cells = {cell["id"]: cell["diagnostics"] for cell in report["cells"]}
    signatures = 0
    for cell_id, diagnostics in cells.items():
        fresh, mechanism = diagnostics["fresh"]["estimates"], diagnostics["mechanism"]["estimates"]
        critical = f"t({fresh['df']:.1f})={fresh['critical_value']:.2f}"
        assert (f"fresh Δ {format_number(fresh['reduction'])} ± {format_number(fresh['se_total'])} [{critical}], "
                f"ρ {format_number(fresh['retention'])}") in text.stdout, cell_id
        if mechanism.get("alpha_t") is not None:
            signatures += 1
            assert f"mechanism α_T {format_number(mechanism['alpha_t'])}, α_A {format_number(mechanism['alpha_a'])}" in text.stdout
        for name, diagnostic in diagnostics.items():  # a failed diagnostic's reasons, each on its line
            if diagnostic["outcome"] == "fail":
                first = next(r for r in diagnostic["reasons"] if r["code"] not in INFORMATIONAL)
                assert f"  {cell_id} {name}: {first['message']}" in lines
    assert signatures, "the worked example pins checkpoints: its cells show α_T and α_A"
    assert any(d["outcome"] == "fail" for ds in cells.values() for d in ds.values()), "the example has a failing cell"
    # two lines of numbers per cell, whatever the number of cells
    assert sum(line.lstrip().startswith("mechanism α_") for line in lines) == len(cells)


# --- yaml.comment-in-text --------------------------------------------------------------------------

def warned(text: str) -> dict[str, tuple[int | None, int | None]]:
    """The free-text fields a ` #` cuts short: pointer -> (line, column) of the warning."""
    _, source = parse_yaml(text, "card.yaml")
    return {p.location.pointer: (p.location.line, p.location.column) for p in comment_in_text_warnings(source)}


def test_a_comment_after_unquoted_free_text_is_warned():
    text = ("title: Reduces refusals #1 result\n"
            "limitations: few seeds   # and a small model\n"
            "claims:\n"
            "  - id: c1\n"
            "    statement: the gap closes\n"
            "      on every split # mostly\n")
    assert warned(text) == {"/title": (1, 25), "/limitations": (2, 26), "/claims/0/statement": (6, 22)}


@pytest.mark.parametrize("text", [
    'title: "Reduces refusals #1 result"\n',              # double-quoted
    "title: 'Reduces refusals #1 result'\n",              # single-quoted
    "title: Reduces refusals#1\n",                        # no blank before the '#': text, not a comment
    "# a comment on its own line\ntitle: Reduces refusals\n  # another\n",
    "title: |\n  Reduces refusals # all of this is text\n",  # a block scalar keeps the ' #'
    "version: 1  # a number, not text\n",
    "id: my-card  # a pattern-checked id: a comment here cuts nothing meant\n",
    "cells:\n  - id: c1\n    checkpoints:\n      base: {path: ckpt/base, sha256: abc}  # a digest\n",
])
def test_no_warning_when_no_text_is_cut(text):
    assert warned(text) == {}


def test_validate_prints_the_warning_on_stderr_and_keeps_its_exit_status(tmp_path):
    folder = tmp_path / "full-pass"
    shutil.copytree(CASES / "full-pass", folder)
    card = folder / "card.yaml"
    clean = CliRunner().invoke(main, ["validate", str(card)])
    assert clean.exit_code == 0 and clean.stderr == ""
    text = card.read_text()
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("title:"))
    card.write_text(re.sub(r"(?m)^title: .*$", "title: Golden case #1 of the suite", text))
    result = CliRunner().invoke(main, ["validate", str(card)])
    assert result.exit_code == 0 and "valid" in result.stdout
    assert f"warning: {card}:{line}:20 at /title: yaml.comment-in-text:" in result.stderr
    assert "hint: if the ' #' belongs to the text, put the value in double quotes" in result.stderr
    assert result.stderr.count("yaml.comment-in-text") == 1


# --- the empty registry ----------------------------------------------------------------------------

def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_an_initialised_registry_with_no_card_verifies_and_builds_as_empty(tmp_path):
    assert run("key", "new", "--out", str(tmp_path / "r.key"), "--no-passphrase").exit_code == 0
    registry = tmp_path / "registry"
    assert run("registry", "init", str(registry), "--origin", "example.org/acards", "--key", str(tmp_path / "r.key")).exit_code == 0
    checked = run("registry", "verify", str(registry))
    assert checked.exit_code == 0 and "empty registry: no card published yet" in checked.stdout, checked.output
    as_json = run("registry", "verify", str(registry), "--format", "json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["empty"] is True
    built = run("registry", "build", str(registry))
    assert built.exit_code == 0 and f"empty registry {registry}" in built.stdout, built.output
    assert "No card is published yet." in (registry / "site" / "index.html").read_text()


@pytest.mark.parametrize("command", ["verify", "build"])
def test_a_folder_that_is_not_a_registry_keeps_its_coded_error(tmp_path, command):
    (tmp_path / "plain").mkdir()
    result = run("registry", command, str(tmp_path / "plain"))
    assert result.exit_code == 2 and "registry.not-a-registry" in result.stderr
    assert "empty registry" not in result.output


def test_the_registry_readmes_scratch_commands_work_as_written(tmp_path, monkeypatch):
    readme = (ROOT / "registry" / "README.md").read_text()
    block = readme.split("## Trying the commands on a scratch registry", 1)[1]
    commands = [shlex.split(line.strip().split("#", 1)[0]) for line in block.splitlines() if line.startswith("    acards ")]
    assert [c[1:3] for c in commands] == [["key", "new"], ["registry", "init"], ["registry", "verify"], ["registry", "build"]]
    monkeypatch.chdir(tmp_path)  # relative paths, as a reader types them
    for command in commands:
        result = run(*command[1:])
        assert result.exit_code == 0, (command, result.output)
    assert "empty registry" in result.stdout and (tmp_path / "scratch-registry" / "site" / "index.html").is_file()
