"""Golden verify cases: tests/cases/verify/<case>/{card.yaml, evidence/, expected.json}.

Each case is a small card with scored records (outputs and scores present, no checkpoints), run
through `acards verify --no-generate` as a user would; the per-cell outcomes, full-card passes,
claim verdicts, reproduction and the exit code must be those the case was designed to give
(tests/integration/make_verify_cases.py wrote the files; expected.json comes from the design, and
the script checked the deciding numbers with its own numpy).  No torch, transformers or peft.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.cli import main

CASES = Path(__file__).resolve().parents[1] / "cases" / "verify"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "expected.json").exists())
BOOTSTRAP = "200"  # the CI does not enter any decision; keep it cheap


def run_case(name: str, tmp_path: Path) -> tuple[int, dict]:
    folder = tmp_path / name
    shutil.copytree(CASES / name, folder)  # verify never writes into a case, but keep the sources pristine
    result = CliRunner().invoke(main, ["verify", str(folder / "card.yaml"), "--format", "json", "--no-generate",
                                       "--bootstrap", BOOTSTRAP, "--spot-check", "0"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """Each case verified once per module: name -> (exit code, report)."""
    done = {}

    def get(name: str) -> tuple[int, dict]:
        if name not in done:
            done[name] = run_case(name, tmp_path_factory.mktemp("verify-case"))
        return done[name]

    return get


def test_there_are_cases():
    assert len(NAMES) >= 8


@pytest.mark.parametrize("name", NAMES)
def test_verify_case(name, verified):
    expected = json.loads((CASES / name / "expected.json").read_text())
    exit_code, report = verified(name)

    cells = {c["id"]: c for c in report["cells"]}
    assert sorted(cells) == sorted(expected["cells"])
    for cell_id, want in expected["cells"].items():
        cell = cells[cell_id]
        diagnostics = cell["diagnostics"]
        assert {n: d["outcome"] for n, d in diagnostics.items()} == want["outcomes"], cell_id
        assert cell["full_card"] == want["full_card"], cell_id
        for diagnostic, codes in want["reasons"].items():
            found = {r["code"] for r in diagnostics[diagnostic]["reasons"]}
            assert set(codes) <= found, (cell_id, diagnostic, found)
        if "measurable_cost" in want:
            assert diagnostics["cost"]["measurable_cost"] is want["measurable_cost"]
        if "relabel" in want:
            assert diagnostics["mechanism"]["relabel"] == want["relabel"]
        if "prompts_sharing_ngram" in want:
            assert diagnostics["fresh"]["estimates"]["prompts_sharing_ngram"] == want["prompts_sharing_ngram"]

    claims = {c["id"]: c for c in report["claims"]}
    assert sorted(claims) == sorted(expected["claims"])
    for claim_id, want in expected["claims"].items():
        claim = claims[claim_id]
        assert claim["verdict"] == want["verdict"], claim_id
        assert claim["reproduced"] is want["reproduced"], (claim_id, claim["discrepancies"])
        assert [[d["cell"], d["diagnostic"], d["field"]] for d in claim["discrepancies"]] == want["discrepancies"], claim_id

    assert report["reproduced"] is expected["reproduced"]
    assert exit_code == expected["exit_code"]
    # The audit summary counts what the cells say.
    audit = report["audit"]
    assert audit["full_card"] == {k: sum(c["full_card"][k] for c in expected["cells"].values()) for k in ("strict", "permissive")}
    assert audit["passes"] == {n: sum(c["outcomes"][n] == "pass" for c in expected["cells"].values())
                               for n in ("reliability", "fresh", "mechanism", "transfer", "cost")}


@pytest.mark.parametrize("name", NAMES)
def test_design_numbers_are_the_recomputed_ones(name, verified):
    """The script's own numpy (SPEC §3 formulas) and acards agree on Δ and SE_tot of every split."""
    expected = json.loads((CASES / name / "expected.json").read_text())
    _, report = verified(name)
    for cell in report["cells"]:
        design = expected["design_statistics"][cell["id"]]
        for diagnostic, split in (("reliability", "heldout"), ("fresh", "fresh"), ("transfer", "transfer")):
            e = cell["diagnostics"][diagnostic]["estimates"]
            assert e["reduction"] == pytest.approx(design[split]["difference"], abs=1e-4)
            assert e["se_total"] == pytest.approx(design[split]["se"], abs=1e-4)
        e = cell["diagnostics"]["cost"]["estimates"]
        assert e["delta"] == pytest.approx(design["capability"]["difference"], abs=1e-4)
        assert e["se"] == pytest.approx(design["capability"]["se"], abs=1e-4)


def verify_without_model_libraries(card: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`acards verify CARD ARGS` in a fresh process where torch, transformers, peft and vllm are unimportable."""
    script = ("import sys\n"
              "for name in ('torch', 'transformers', 'peft', 'vllm'): sys.modules[name] = None  # import raises\n"
              "from acards.cli import main\n"
              f"main({['verify', str(card), '--bootstrap', BOOTSTRAP, *args]!r})\n")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ACARDS_CACHE_DIR": str(tmp_path / "cache")})


def test_cases_need_no_model_libraries(tmp_path):
    """verify --no-generate on scored records runs with torch, transformers and peft unimportable."""
    folder = tmp_path / "full-pass"
    shutil.copytree(CASES / "full-pass", folder)
    done = verify_without_model_libraries(folder / "card.yaml", tmp_path, "--no-generate", "--format", "json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["reproduced"] is True


def test_a_reviewer_without_torch_is_told_what_to_install(tmp_path):
    """A card whose outputs must be regenerated, verified where torch is not installed: a coded
    error (generate.missing-extra, exit 4) naming the extra and --no-generate, not internal.error."""
    folder = tmp_path / "tiny-regenerated"
    shutil.copytree(CASES.parents[1].parent / "examples" / "tiny-regenerated", folder)
    done = verify_without_model_libraries(folder / "card.yaml", tmp_path)
    assert done.returncode == 4, done.stderr[-2000:]
    assert "generate.missing-extra" in done.stderr and "--no-generate" in done.stderr
    assert "internal.error" not in done.stderr
