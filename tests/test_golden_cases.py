"""Golden cases: tests/cases/<case>/{card.yaml, expected.json}.

Each bad card must give exactly the expected problem codes at the expected locations, the
expected exit code, and no traceback.  `expected.json` may carry a `setup` that the test applies
to a copy of the case folder first (links, FIFOs and deletions cannot live in git portably).
Regenerate after an intended change with ACARDS_UPDATE_GOLDEN=1, then review the diff.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.cli import main

CASES = Path(__file__).parent / "cases"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "expected.json").exists())


def apply_setup(folder: Path, setup: dict) -> None:
    for name in setup.get("delete", []):
        target = folder / name
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    for source, target in setup.get("move", {}).items():
        (folder / source).rename(folder / target)
    for name, text in setup.get("append", {}).items():
        with open(folder / name, "a") as handle:
            handle.write(text)
    for name, text in setup.get("write", {}).items():
        (folder / name).write_text(text)
    for name, target in setup.get("symlink", {}).items():
        os.symlink(target, folder / name)
    for name in setup.get("fifo", []):
        os.mkfifo(folder / name)


def run_case(name: str, tmp_path: Path) -> tuple[int, dict, str]:
    expected = json.loads((CASES / name / "expected.json").read_text())
    folder = tmp_path / name
    shutil.copytree(CASES / name, folder)
    # Links in setups may point at the valid case, as a sibling folder.
    shutil.copytree(CASES / "valid", tmp_path / "valid", dirs_exist_ok=True)
    apply_setup(folder, expected.get("setup", {}))
    result = CliRunner().invoke(main, [expected["command"], str(folder / "card.yaml"), "--format", "json"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout), str(folder)


def simplify(problems: list[dict], folder: str) -> list[dict]:
    return [
        {"code": p["code"], "line": p["location"]["line"], "column": p["location"]["column"], "pointer": p["location"]["pointer"]}
        for p in problems
    ]


@pytest.mark.parametrize("name", NAMES)
def test_golden_case(name, tmp_path):
    exit_code, output, folder = run_case(name, tmp_path)
    actual = {"exit_code": exit_code, "problems": simplify(output["problems"], folder)}
    expected_path = CASES / name / "expected.json"
    expected = json.loads(expected_path.read_text())
    if os.environ.get("ACARDS_UPDATE_GOLDEN"):
        expected.update(actual)
        expected_path.write_text(json.dumps(expected, indent=2) + "\n")
    assert actual == {"exit_code": expected["exit_code"], "problems": expected["problems"]}
    for problem in output["problems"]:
        assert problem["hint"], problem
        assert problem["location"]["file"].endswith("card.yaml") or problem["code"].startswith("evidence."), problem


def test_there_are_enough_bad_cases():
    bad = [n for n in NAMES if json.loads((CASES / n / "expected.json").read_text())["exit_code"] != 0]
    assert len(bad) >= 25
