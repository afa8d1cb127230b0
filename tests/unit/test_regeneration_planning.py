"""The re-verify's per-request work done a column at a time gives what the row-at-a-time code gave:
the missing requests (their order, and which rows a missing prompt is reported for), regenerated
scores placed by identity, and scores computed once per distinct output."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from acards.errors import AcardsError, Location
from acards.evidence.prompts import Prompt, Prompts
from acards.evidence.records import fill_identified_scores, fill_scores, read_records
from acards.generate.plan import MAX_PROBLEMS, missing_requests
from acards.generate.requests import Request
from acards.generate.scorers import _fold, refusal_scores, regex_scores


def _table(tmp_path, count: int = 3000):
    """Records in shuffled identity order; a third lack both output and score."""
    rng = np.random.default_rng(11)
    rows = []
    for i in rng.permutation(count).tolist():
        record = {"cell": f"cell-{i % 3}", "condition": ["undefended", "defended", "base"][i % 3], "split": "heldout",
                  "task": f"t{i % 2}", "subject": f"s{i // 12 % 7}", "item": i // 12 if i % 4 else f"item-{i // 12}",
                  "framing": ["audit", "deploy"][(i // 3) % 2], "seed": (i // 6) % 2, "sample": 0}
        kind = rng.integers(0, 3)
        if kind == 0:
            record["score"] = float(rng.integers(0, 2))
        elif kind == 1:
            record["output"] = f"output {i}"
        rows.append(record)
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return read_records(tmp_path, [("r.jsonl", Location())]), rows


def _prompts(rows, leave_out=frozenset()) -> Prompts:
    prompts = Prompts(file="prompts.jsonl")
    for r in rows:
        key = (r["split"], r["task"], str(r["item"]), r["framing"])
        if key not in leave_out:
            prompts.index[key] = Prompt(item=str(r["item"]), split=r["split"], task=r["task"], subject=r["subject"],
                                        framing=r["framing"], prompt=f"prompt {key}", system="sys" if r["seed"] else None)
    return prompts


def _one_row_at_a_time(table, prompts) -> list[Request]:
    requests = []
    for row in range(len(table)):
        if not (math.isnan(table.columns["score"][row]) and not table.columns["has_output"][row]):
            continue
        cell, condition, split, task, item, framing = (table.vocab[n][table.columns[n][row]]
                                                       for n in ("cell", "condition", "split", "task", "item", "framing"))
        p = prompts.get(split, task, item, framing)
        requests.append(Request(cell, condition, split, task, item, framing, int(table.columns["seed"][row]),
                                int(table.columns["sample"][row]), p.prompt, p.system, p.reference, p.subject))
    return sorted(requests, key=Request.identity)


def test_missing_requests_are_those_of_the_rows_in_identity_order(tmp_path):
    table, rows = _table(tmp_path)
    prompts = _prompts(rows)
    made = missing_requests(table, prompts)
    expected = _one_row_at_a_time(table, prompts)
    assert len(made) > 500 and made == expected
    assert [r.subject for r in made] == [r.subject for r in expected]  # not compared by ==
    assert [r.identity() for r in made] == sorted(r.identity() for r in made)


def test_a_missing_prompt_is_reported_for_the_first_rows_of_the_file(tmp_path):
    table, rows = _table(tmp_path)
    lacking = [r for r in rows if "score" not in r and "output" not in r]
    gone = {(r["split"], r["task"], str(r["item"]), r["framing"]) for r in lacking[::3]}
    with pytest.raises(AcardsError) as raised:
        missing_requests(table, _prompts(rows, leave_out=gone))
    lines = [i + 1 for i, r in enumerate(rows) if "score" not in r and "output" not in r
             and (r["split"], r["task"], str(r["item"]), r["framing"]) in gone]
    assert len(lines) > MAX_PROBLEMS
    assert [p.location.line for p in raised.value.problems] == lines[:MAX_PROBLEMS]
    assert {p.code for p in raised.value.problems} == {"evidence.prompt-not-found"}


def test_scores_keyed_by_request_identity_land_where_fill_scores_puts_them(tmp_path):
    table, rows = _table(tmp_path)
    other, _ = _table(tmp_path)
    requests = missing_requests(table, _prompts(rows))
    scores = {r.identity(): (i % 3) / 2 for i, r in enumerate(requests[:-5])}
    scores[requests[0].identity()] = None  # no score: left out
    scores[("cell-0", "defended", "heldout", "t0", "nowhere", "audit", 0, 0)] = 1.0  # identifies no row
    records = [dict(zip(("cell", "condition", "split", "task", "item", "framing", "seed", "sample"), identity), score=score)
               for identity, score in scores.items()]
    filled = fill_identified_scores(table, scores)
    assert filled == fill_scores(other, records) == len(requests) - 6
    assert np.array_equal(table.columns["score"], other.columns["score"], equal_nan=True)
    assert fill_identified_scores(table, {}) == 0


def test_each_distinct_output_is_scored_as_it_would_be_alone():
    outputs = ["I can\u2019t help with that", None, "Sure, here", "I CAN'T HELP", "Sure, here", None, "I can\u2019t help with that"]
    keywords = ["I can't help"]
    assert refusal_scores(outputs, keywords) == pytest.approx(
        [math.nan if o is None else float(any(_fold(k) in _fold(o) for k in keywords)) for o in outputs], nan_ok=True)
    assert refusal_scores(outputs, keywords)[:5] == pytest.approx([1.0, math.nan, 0.0, 1.0, 0.0], nan_ok=True)
    scored = regex_scores(outputs, r"^Sure")
    assert scored == pytest.approx([0.0, math.nan, 1.0, 0.0, 1.0, math.nan, 0.0], nan_ok=True)
    assert all(type(s) is float for s in scored)
