"""Several scorers (judges) of the same outputs, end to end through `acards verify`.

Simulated records (tests/simulate.py) get three scorers: ``kw`` (the primary, the simulated score),
``guard`` (``kw`` with 5% of outputs flipped) and ``lax`` (scores a defended output as its undefended
twin, so under ``lax`` the defense reduces nothing).  Each scorer's numbers must be those of a
plain card whose `score` is that scorer's; κ must be the one counted from the records by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from simulate import CellSpec, build_card, redigest

from acards.cli import main
from acards.errors import Location
from acards.evidence import flatjson, records
from acards.evidence.digests import digest_path
from acards.evidence.records_cache import RecordsCache

B = 200
CLAIMS = [
    {"id": "C1", "statement": "It works.", "cells": ["c1"], "requires": ["reliability"]},
    {"id": "C2", "statement": "It works whoever scores.", "cells": ["c1"], "requires": ["reliability"],
     "require_all_scorers": True},
]
JUDGES = {"primary": "kw", "others": ["guard", "lax"]}


def _scored(rows: list[dict], seed: int = 1) -> list[dict]:
    """The records with ``scores`` of the three scorers (``score`` kept as the primary's)."""
    rng = np.random.default_rng(seed)
    undefended = {(r["split"], r["item"], r["framing"], r["seed"]): r["score"] for r in rows if r["condition"] == "undefended"}
    for r in rows:
        score = r["score"]
        twin = undefended[(r["split"], r["item"], r["framing"], r["seed"])] if r["condition"] == "defended" else score
        r["scores"] = {"kw": score, "guard": float(abs(score - (rng.random() < 0.05))), "lax": twin}
    return rows


def _read(card: Path) -> list[dict]:
    return [json.loads(line) for line in (card.parent / "evidence" / "records.jsonl").read_text().splitlines()]


def _write(card: Path, rows: list[dict]) -> None:
    (card.parent / "evidence" / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    redigest(card)


def _edit_card(card: Path, **fields) -> None:
    data = json.loads(card.read_text())
    data.update(fields)
    card.write_text(json.dumps(data, indent=2))


def make_card(folder: Path, rows_edit=None, **card_fields) -> Path:
    card = build_card(folder, [CellSpec("c1", seeds=(0, 1))], claims=CLAIMS, judges=JUDGES, **card_fields)
    rows = _scored(_read(card))
    _write(card, rows_edit(rows) if rows_edit else rows)
    return card


def verify(card: Path, tmp: Path, *extra) -> tuple[int, dict | None, str]:
    out = tmp / f"report-{card.parent.name}.json"
    out.unlink(missing_ok=True)
    result = CliRunner().invoke(main, ["verify", str(card), "--bootstrap", str(B), "--no-generate", "--spot-check", "0",
                                       "--report", str(out), *extra], env={"ACARDS_CACHE_DIR": str(tmp / "cache")})
    return result.exit_code, json.loads(out.read_text()) if out.exists() else None, result.output


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("judges")
    card = make_card(tmp / "card")
    code, report, output = verify(card, tmp)
    assert report is not None, output
    return tmp, card, code, report, output


def test_each_scorer_has_the_numbers_of_a_card_scored_by_it_alone(judged):
    tmp, card, _code, report, _ = judged
    block = report["cells"][0]["judges"]
    assert block["primary"] == "kw" and list(block["scorers"]) == ["kw", "guard", "lax"]
    primary = report["cells"][0]["diagnostics"]["reliability"]["estimates"]
    assert block["scorers"]["kw"]["estimates"]["heldout"]["reduction"] == primary["reduction"]
    for name in ("guard", "lax"):
        alone = build_card(tmp / f"alone-{name}", [CellSpec("c1", seeds=(0, 1))], claims=CLAIMS[:1])
        _write(alone, [{**{k: v for k, v in r.items() if k != "scores"}, "score": r["scores"][name]} for r in _read(card)])
        _code, plain, output = verify(alone, tmp)
        assert plain is not None, output
        for diagnostic, split in (("reliability", "heldout"), ("fresh", "fresh"), ("transfer", "transfer"), ("cost", "capability")):
            expected = plain["cells"][0]["diagnostics"][diagnostic]
            found = block["scorers"][name]
            assert found["outcomes"][diagnostic] == expected["outcome"], (name, diagnostic)
            for key, value in found["estimates"][split].items():
                assert value == expected["estimates"].get(key), (name, diagnostic, key)
    assert block["scorers"]["lax"]["estimates"]["heldout"]["reduction"] == 0.0
    assert block["scorers"]["lax"]["outcomes"]["reliability"] == "fail"


def test_kappa_per_split_is_the_one_counted_from_the_records(judged):
    _tmp, card, _code, report, _ = judged
    agreement = report["cells"][0]["judges"]["agreement"]
    assert list(agreement) == ["heldout", "fresh", "transfer", "capability"]
    rows = _read(card)
    for split, pairs in agreement.items():
        mine = [r["scores"] for r in rows if r["split"] == split]
        assert [p["scorers"] for p in pairs] == [["kw", "guard"], ["kw", "lax"], ["guard", "lax"]]
        for pair in pairs:
            first, second = pair["scorers"]
            n = len(mine)
            agree = sum(s[first] == s[second] for s in mine) / n
            p1, p2 = sum(s[first] for s in mine) / n, sum(s[second] for s in mine) / n
            chance = p1 * p2 + (1 - p1) * (1 - p2)
            assert pair["n"] == n
            assert pair["kappa"] == pytest.approx((agree - chance) / (1 - chance), abs=1e-12)
    kw_guard, kw_lax = agreement["heldout"][0]["kappa"], agreement["heldout"][1]["kappa"]
    assert kw_guard > 0.8 > kw_lax  # 5% flips agree far better than a scorer blind to the defense


def test_a_claim_that_needs_every_scorer_is_broken_by_one(judged):
    _tmp, _card, code, report, output = judged
    plain, everyone = report["claims"]
    assert plain["verdict"] == "supported" and "scorers" not in plain and "broken_by" not in plain
    assert everyone["verdict"] == "unsupported"
    assert everyone["scorers"] == {"kw": "supported", "guard": "supported", "lax": "unsupported"}
    assert everyone["broken_by"] == ["lax"]
    assert everyone["outcomes"] == {"c1": {"reliability": "pass"}}  # the primary's outcomes
    assert code == 0  # nothing reported, nothing to reproduce
    assert "claim C2: unsupported (not supported under lax)" in output
    assert "judges (primary kw)" in output


def test_the_verdict_reported_is_checked_against_every_scorer(tmp_path):
    card = make_card(tmp_path / "card")
    data = json.loads(card.read_text())
    data["claims"][1]["reported"] = {"verdict": "supported"}
    card.write_text(json.dumps(data, indent=2))
    code, report, _ = verify(card, tmp_path)
    assert code == 1
    (found,) = report["claims"][1]["discrepancies"]
    assert (found["reported"], found["recomputed"]) == ("supported", "unsupported")


def test_parquet_records_carry_the_same_scorers(judged, tmp_path):
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    _tmp, card, _code, report, _ = judged
    rows = _read(card)
    folder = tmp_path / "parquet"
    copy = make_card(folder)
    columns = {name: [r.get(name) for r in rows] for name in rows[0] if name != "scores"}
    # a struct column, one float field per scorer
    table = pa.table({**columns, "scores": pa.array([r["scores"] for r in rows])})
    parquet.write_table(table, folder / "evidence" / "records.parquet")
    data = json.loads(copy.read_text())
    data["evidence"]["records"] = [{"path": "evidence/records.parquet", "format": "parquet", "sha256": "0" * 64}]
    copy.write_text(json.dumps(data, indent=2))
    redigest(copy)
    _code, found, output = verify(copy, tmp_path)
    assert found is not None, output
    assert found["cells"][0]["judges"] == report["cells"][0]["judges"]
    assert found["claims"] == report["claims"]
    # a map column (scorer name -> score) reads the same
    mapped = pa.array([list(r["scores"].items()) for r in rows], type=pa.map_(pa.string(), pa.float64()))
    parquet.write_table(pa.table({**columns, "scores": mapped}), folder / "evidence" / "records.parquet")
    redigest(copy)
    _code, again, output = verify(copy, tmp_path)
    assert again is not None, output
    assert again["cells"][0]["judges"] == report["cells"][0]["judges"]


def test_the_primary_may_be_given_in_scores_alone(judged, tmp_path):
    _tmp, _card, _code, report, _ = judged
    card = make_card(tmp_path / "card", lambda rows: [{k: v for k, v in r.items() if k != "score"} for r in rows])
    _code, found, output = verify(card, tmp_path)
    assert found is not None, output
    assert found["cells"] == report["cells"] and found["claims"] == report["claims"]


def test_an_unknown_primary_scorer_is_refused(tmp_path):
    card = make_card(tmp_path / "card")
    _edit_card(card, judges={"primary": "keywords", "others": ["guard"]})
    code, report, output = verify(card, tmp_path)
    assert code == 3 and report is None
    assert "records.unknown-scorer" in output and "'keywords'" in output and "kw, guard, lax" in output


def test_an_unknown_other_scorer_is_refused(tmp_path):
    card = make_card(tmp_path / "card")
    _edit_card(card, judges={"primary": "kw", "others": ["guard", "gpt"]})
    code, _report, output = verify(card, tmp_path)
    assert code == 3 and "records.unknown-scorer" in output and "'gpt'" in output


def test_judges_the_card_cannot_mean_are_refused(tmp_path):
    card = make_card(tmp_path / "card")
    _edit_card(card, judges={"primary": "kw", "others": ["guard", "kw"]})
    code, _report, output = verify(card, tmp_path)
    assert code == 2 and "card.bad-judges" in output and "also listed among the others" in output
    data = json.loads(card.read_text())
    del data["judges"]
    card.write_text(json.dumps(data, indent=2))
    code, _report, output = verify(card, tmp_path)
    assert code == 2 and "card.bad-judges" in output and "declares no judges" in output


def test_a_score_given_twice_must_agree(tmp_path):
    def conflict(rows):
        rows[7]["scores"]["kw"] = 1 - rows[7]["score"]
        return rows

    card = make_card(tmp_path / "card", conflict)
    code, _report, output = verify(card, tmp_path)
    assert code == 3 and "records.score-conflict" in output and "records.jsonl:8" in output


def test_a_scorer_missing_on_some_records_leaves_its_diagnostics_insufficient(tmp_path):
    def drop(rows):
        heldout = [r for r in rows if r["split"] == "heldout"]
        for r in heldout[:5]:
            del r["scores"]["guard"]
        return rows

    card = make_card(tmp_path / "card", drop)
    code, report, output = verify(card, tmp_path)
    assert report is not None, output
    guard = report["cells"][0]["judges"]["scorers"]["guard"]
    assert guard["unscored"] == {"heldout": 5, "fresh": 0, "transfer": 0, "capability": 0}
    assert guard["outcomes"]["reliability"] == "insufficient"
    assert guard["estimates"]["heldout"]["reduction"] is None
    assert guard["estimates"]["capability"]["delta"] is not None  # the other splits are complete
    assert report["cells"][0]["judges"]["agreement"]["heldout"][0]["n"] == \
        report["cells"][0]["judges"]["agreement"]["heldout"][1]["n"] - 5  # κ on the outputs both scored
    everyone = report["claims"][1]
    assert everyone["scorers"]["guard"] == "insufficient" and everyone["verdict"] == "unsupported"  # lax still breaks it
    assert everyone["broken_by"] == ["guard", "lax"]


def test_without_judges_the_scores_change_nothing(judged, tmp_path):
    _tmp, _card, _code, report, _ = judged
    card = make_card(tmp_path / "card")
    data = json.loads(card.read_text())
    del data["judges"]
    data["claims"] = data["claims"][:1]
    card.write_text(json.dumps(data, indent=2))
    _code, found, output = verify(card, tmp_path)
    assert found is not None, output
    assert "judges" not in found["cells"][0]
    assert found["cells"][0]["diagnostics"] == report["cells"][0]["diagnostics"]


def test_the_fast_decoder_declines_scores_and_the_cache_keeps_them(judged, tmp_path):
    _tmp, card, _code, _report, _ = judged
    raw = (card.parent / "evidence" / "records.jsonl").read_bytes()
    plan = flatjson.plan(records._struct(), records.TEXT)
    assert flatjson.decode_columns(raw, plan) is None  # nested scores: the exact reader reads them
    plain = b"".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "scores"}).encode() + b"\n"
                     for line in raw.splitlines())
    assert flatjson.decode_columns(plain, plan) is not None  # without scores the fast path is taken
    cache = RecordsCache(tmp_path / "records-cache")
    where = [("evidence/records.jsonl", Location("card"))]
    pinned = [digest_path(card.parent / "evidence" / "records.jsonl")]
    first = records.read_records(card.parent, where, sha256=pinned, cache=cache)
    second = records.read_records(card.parent, where, sha256=pinned, cache=cache)
    assert first.scorers() == second.scorers() == ["kw", "guard", "lax"]
    for name in first.columns:
        np.testing.assert_array_equal(first.columns[name], second.columns[name])
    entry = cache.get(card.parent, "evidence/records.jsonl", pinned[0], "jsonl")
    assert entry is not None and {"scores.kw", "scores.guard", "scores.lax"} <= set(entry["columns"])


def test_the_card_scorer_does_not_rescore_what_the_primary_scored(judged, tmp_path):
    _tmp, _card, _code, report, _ = judged

    def outputs_without_score(rows):
        return [{**{k: v for k, v in r.items() if k != "score"}, "output": "I can't help with that."} for r in rows]

    # every output reads as a refusal: had the keyword scorer scored them, every score would be 1
    card = make_card(tmp_path / "card", outputs_without_score, scorer={"kind": "refusal-keywords"})
    _code, found, output = verify(card, tmp_path)
    assert found is not None, output
    assert found["cells"][0]["judges"] == report["cells"][0]["judges"]
    assert found["generation"]["provenance"]["records"]["unscored"] == 0


def test_fill_and_migrate_judge_a_claim_under_every_scorer(tmp_path):
    """fill writes the verdict verify recomputes (under every scorer where the claim asks), and
    migrate compares verdicts the same way."""
    from acards.pipeline.migrate import migrate

    card = make_card(tmp_path / "card")  # a 1.0 card (simulate.build_card's default), written as JSON
    data = json.loads(card.read_text())
    data["claims"][1]["reported"] = {"verdict": "supported"}  # the primary's verdict; fill must correct it
    card.write_text(json.dumps(data, indent=2))
    result = CliRunner().invoke(main, ["fill", str(card), "--claim", "C2", "--bootstrap", str(B), "--no-generate"],
                                env={"ACARDS_CACHE_DIR": str(tmp_path / "cache")})
    assert result.exit_code == 0, result.output
    assert "unsupported" in json.dumps(yaml_claims(card)[1]["reported"])
    code, report, output = verify(card, tmp_path)
    assert code == 0 and report["claims"][1]["reproduced"], output
    moved = migrate(card, bootstrap=B, generate=False, use_cache=False, cache_dir=tmp_path / "cache")
    assert moved.before.claims[1].verdict == "unsupported" and moved.before.claims[1].broken_by == ["lax"]
    assert set(moved.after.claims[1].scorers) == {"kw", "guard", "lax"}  # 1.1: two seeds are too few, under each scorer


def yaml_claims(card: Path) -> list[dict]:
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(card.read_text(encoding="utf-8"))["claims"]
