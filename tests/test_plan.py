"""`acards plan` against the real verify path: the planned design passes as often as plan predicted.

plan predicts pass rates by simulating its variance model in memory through the diagnostics
(acards.diagnostics.planning).  Here cells of the planned design are drawn by a separate generator
of the same model, written as binary records of multi-cell `acard: "1.1"` cards, and run through
`acards.pipeline.verify.verify` (card validation, digests, records parsing, item values, every
diagnostic), as benchmarks/bench_calibration.py does; D1's pass rate must lie within 3 points of
plan's prediction.  The design has three seeds with seed noise, where the pass rate varies most
from cell to cell.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from acards.card.validate import threshold_defaults
from acards.cli import main
from acards.diagnostics import planning
from acards.evidence.digests import digest_path

DEPLOY, GAP_U = 0.15, 0.6
CELLS_PER_CARD = 100


def _thresholds() -> dict:
    found = threshold_defaults("1.1")
    return {name: found[name] for name in ("reliability", "fresh", "transfer")}


def _cell_lines(rng: np.random.Generator, cell: str, comp: planning.Components, design: planning.Design, reduction: float) -> list[str]:
    """Held-out records of one cell: subject shifts h_c (shared) and r_kc, per-fine-tune shifts η_ks,
    audit refusals drawn at clip(DEPLOY + gap + shifts), deploy refusals at DEPLOY."""
    c, m, s = design.subjects, design.items_per_subject, design.seeds
    subject = np.repeat(np.arange(c), m)
    keys = [f'"subject":"s{k:03d}","item":"i{k:03d}-{j}"' for k in range(c) for j in range(m)]
    shared = rng.normal(0, comp.subject_sd / math.sqrt(2), c)
    lines = []
    for condition, gap in (("undefended", GAP_U), ("defended", GAP_U - reduction)):
        own = rng.normal(0, comp.subject_sd / math.sqrt(2), c)
        head = f'{{"cell":"{cell}","condition":"{condition}","split":"heldout","task":"main-task",'
        for seed in range(s):
            audit = np.clip(DEPLOY + gap + (shared + own)[subject] + rng.normal(0, comp.seed_sd / math.sqrt(2)), 0, 1)
            for framing, p in (("audit", audit), ("deploy", np.full(c * m, DEPLOY))):
                tail = f',"framing":"{framing}","seed":{seed},"sample":0,"score":'
                lines.extend(f"{head}{key}{tail}{'1.0' if hit else '0.0'}}}\n" for key, hit in zip(keys, rng.random(c * m) < p))
    return lines


def _verify_d1(folder, rng, n_cells: int, comp, design, reduction: float) -> list[bool]:
    from acards.pipeline.verify import verify

    if isinstance(rng, int):  # a chunk run in a worker process: its own stream of the test's master seed
        rng = np.random.default_rng(np.random.SeedSequence([20260527, rng]))
    (folder / "evidence").mkdir(parents=True)
    cells = [f"cell-{i:04d}" for i in range(n_cells)]
    records = folder / "evidence" / "records.jsonl"
    with open(records, "w", encoding="utf-8") as handle:
        for cell in cells:
            handle.writelines(_cell_lines(rng, cell, comp, design, reduction))
    card = {
        "acard": "1.1", "id": "plan-check", "version": 1, "title": "Planned cells (simulated)", "authors": [{"name": "tests"}],
        "limitations": "Simulated records.", "model": {"name": "simulated"},
        "protocol": {"behavior": "refusal", "higher_score_means": "safer", "framings": {"audit": "cue", "deploy": "none"}},
        "evidence": {"records": [{"path": "evidence/records.jsonl", "sha256": digest_path(records)}]},
        "cells": [{"id": cell, "family": "simulated", "declared_mechanism": "projection", "task": "main-task",
                   "transfer": {"task": "transfer-task", "differs_in": ["format"]}} for cell in cells],
        "claims": [{"id": "C1", "statement": "It works.", "cells": cells, "requires": ["reliability"]}],
    }
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    report = verify(folder / "card.json", bootstrap=100, seed=1, use_cache=False, generate=False, progress=False,
                    cache_dir=folder / "cache")
    return [cell.diagnostics.reliability.outcome == "pass" for cell in report.cells]


@pytest.mark.slow
def test_planned_design_passes_d1_as_often_as_predicted(tmp_path):
    """2,000 verified cells against 10,000 simulated by plan: the difference has a Monte-Carlo sd of
    about 1.1 points, so 3 points is 2.8 sd (seeds fixed before the first run)."""
    comp = planning.Components(gap_undefended=GAP_U, subject_sd=0.15, seed_sd=0.06, base_rate=DEPLOY)
    found = planning.plan(comp, _thresholds(), planning.Design(0, 3, 3), 0.35, planning.Setting(0.35), cells=10_000,
                          seed=20260527, splits=())
    predicted = found.pass_probability["reliability"].value
    assert 0.3 < found.expected.mde <= 0.35
    chunks = range(20)
    with ProcessPoolExecutor(max_workers=2) as pool:  # CI has two cores
        runs = pool.map(_verify_d1, [tmp_path / f"card-{chunk}" for chunk in chunks], chunks, [CELLS_PER_CARD] * len(chunks),
                        [comp] * len(chunks), [found.design] * len(chunks), [0.35] * len(chunks))
        passes = [hit for run in runs for hit in run]
    assert len(passes) == 2000
    observed = float(np.mean(passes))
    assert abs(observed - predicted) <= 0.03, (observed, predicted, found.design)


# --- the command --------------------------------------------------------------------------------

STATED = ["--subject-sd", "0.15", "--seed-sd", "0.06", "--base-rate", "0.15", "--gap", "0.6"]


def test_plan_prints_a_design_and_its_pass_probabilities():
    runner = CliRunner()
    out = runner.invoke(main, ["plan", "--mde", "0.35", "--items-per-subject", "3", "--cells", "60", *STATED, "--format", "json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    subjects = plan["design"]["subjects"]
    # every held-out item is generated under U and D, in both framings, for every seed
    assert plan["design"] == {"subjects": subjects, "items_per_subject": 3, "seeds": 3, "samples": 1, "generations": subjects * 3 * 3 * 4}
    assert plan["expected"]["mde"] <= 0.35 and plan["components"]["binary"] is True
    assert set(plan["pass_probability"]) == {"reliability", "fresh", "transfer", "all"}
    assert plan["simulation"]["cells"] == 60 and plan["alternatives"]
    text = runner.invoke(main, ["plan", "--mde", "0.35", "--items-per-subject", "3", "--cells", "60", *STATED])
    assert text.exit_code == 0 and f"subjects            {subjects}" in text.output and "D1+D2+D4" in text.output


def test_plan_evaluates_a_given_design_and_takes_a_cards_thresholds(tmp_path):
    from simulate import CellSpec, build_card

    card = build_card(tmp_path / "card", [CellSpec("c1", seeds=(0, 1, 2))], acard="1.1",
                      thresholds={"reliability": {"margin": 0.05, "justification": "A reduction below 0.05 does not matter here."}})
    out = CliRunner().invoke(main, ["plan", "--subjects", "30", "--true-reduction", "0.3", "--cells", "40", "--card", str(card),
                                    *STATED, "--format", "json"])
    assert out.exit_code == 0, out.output
    plan = json.loads(out.output)
    assert plan["design"]["subjects"] == 30 and plan["target_mde"] is None and plan["alternatives"] == []
    assert plan["thresholds"]["reliability"]["margin"] == 0.05


def test_plan_estimates_the_components_from_a_pilot(tmp_path):
    from simulate import CellSpec, build_card

    build_card(tmp_path / "pilot", [CellSpec("c1", seeds=(0, 1, 2), subjects={"heldout": 16, "fresh": 4, "transfer": 4, "capability": 4},
                                             items_per_subject=6)])
    records = tmp_path / "pilot" / "evidence" / "records.jsonl"
    out = CliRunner().invoke(main, ["plan", "--pilot", str(records), "--mde", "0.3", "--cells", "40", "--format", "json"])
    assert out.exit_code == 0, out.output
    components = json.loads(out.output)["components"]
    assert components["source"] == "pilot" and components["binary"] is True
    assert components["gap_undefended"] == pytest.approx(0.4, abs=0.08) and components["base_rate"] == pytest.approx(0.3, abs=0.06)


@pytest.mark.parametrize("arguments, code", [
    (["--mde", "0.3", "--subject-sd", "0.1"], "plan.bad-components"),
    (["--mde", "0.3", "--seeds", "2", *STATED], "plan.bad-design"),
    ([*STATED], "plan.bad-design"),
    (["--subjects", "20", *STATED], "plan.bad-design"),
    (["--mde", "0.05", *STATED], "plan.unreachable"),
])
def test_bad_input_is_a_coded_error(arguments, code):
    out = CliRunner().invoke(main, ["plan", "--cells", "10", *arguments, "--format", "json"])
    assert out.exit_code == 2
    problem = json.loads(out.output)["problems"][0]
    assert problem["code"] == code and problem["hint"]


def test_a_pilot_with_several_cells_needs_one_named(tmp_path):
    from simulate import CellSpec, build_card

    build_card(tmp_path / "pilot", [CellSpec("c1", seeds=(0, 1)), CellSpec("c2", seeds=(0, 1))])
    records = tmp_path / "pilot" / "evidence" / "records.jsonl"
    out = CliRunner().invoke(main, ["plan", "--pilot", str(records), "--mde", "0.3", "--format", "json"])
    assert out.exit_code == 2 and json.loads(out.output)["problems"][0]["code"] == "plan.pilot-too-small"


# --- powerless in verify ---------------------------------------------------------------------------

def test_verify_marks_a_failure_below_the_claimed_reduction_powerless(tmp_path):
    from simulate import CellSpec, build_card

    from acards.pipeline.verify import verify

    spec = CellSpec("c1", seeds=(0, 1, 2), gaps={"heldout": (0.4, 0.38), "fresh": (0.4, 0.38), "transfer": (0.35, 0.33)},
                    subjects={"heldout": 10, "fresh": 10, "transfer": 10, "capability": 10}, items_per_subject=3)
    claims = [{"id": "C1", "statement": "A small reduction.", "cells": ["c1"], "requires": ["reliability"],
               "reported": {"reliability": {"reduction": 0.05}}},
              {"id": "C2", "statement": "A large reduction.", "cells": ["c1"], "requires": ["reliability"],
               "reported": {"reliability": {"reduction": 0.9}}}]
    card = build_card(tmp_path / "weak", [spec], claims=claims[:1], acard="1.1")
    d1 = verify(card, bootstrap=100, use_cache=False, generate=False, progress=False, cache_dir=tmp_path / "cache").cells[0].diagnostics.reliability
    codes = [r.code for r in d1.reasons]
    assert d1.outcome == "fail" and d1.estimates["mde"] > 0.05
    assert "reduction-not-reliable" in codes and "powerless" in codes
    card = build_card(tmp_path / "bold", [spec], claims=claims[1:], acard="1.1")
    d1 = verify(card, bootstrap=100, use_cache=False, generate=False, progress=False, cache_dir=tmp_path / "cache").cells[0].diagnostics.reliability
    assert d1.outcome == "fail" and "powerless" not in [r.code for r in d1.reasons]
