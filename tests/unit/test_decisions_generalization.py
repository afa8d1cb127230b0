"""D2 fresh and D4 transfer (the shared ``generalization``) and the freshness check (SPEC §4 D2, D4).

Pass iff Δ − z·SE > 0 (strict) and ρ / ρ_heldout ≥ min_retention (equality passes).  Retention is
undefined when ρ_heldout is missing, not finite or not positive, or when ρ itself is undefined (no
reliable installed gap on this split): then the outcome is insufficient, unless the reduction
already failed.  A failed freshness check is a fail whatever else is missing.
"""

from __future__ import annotations

import math

import pytest
from decision_inputs import JUST, codes, comparison, missing, plain

from acards.diagnostics.fresh import Freshness, fresh, freshness
from acards.diagnostics.transfer import transfer

FRESH_TH = {"z": 2.0, "min_retention": 0.5, "max_shared_ngram": 8}
TRANSFER_TH = {"z": 2.0, "min_retention": 0.5}
CLEAN = Freshness(shared_subjects=[], ngram_checked=True, prompts_sharing=0, examples=[])


def run_fresh(c, held, th=None, unavailable=(), check=CLEAN):
    return plain(fresh(c, list(unavailable), held, check, {**FRESH_TH, **(th or {})}))


def run_transfer(c, held, th=None, unavailable=()):
    return plain(transfer(c, list(unavailable), held, {**TRANSFER_TH, **(th or {})}, "sentiment-flip", ["format"]))


RUNNERS = {"fresh": run_fresh, "transfer": run_transfer}

# Base: G_U = 0.5 with SE 1/16 (ρ is defined), Δ = 0.25 with SE 1/16, so Δ − 2·SE = 0.125 and
# ρ = Δ/G_U = 0.5.  With ρ_heldout = 0.5 the retention is 1.
ROWS = [
    # id, comparison(...) overrides, ρ_heldout, threshold overrides, outcome, reason codes
    ("base-passes", {}, 0.5, {}, "pass", set()),
    # Δ − z·SE > 0, strict.
    ("reduction-lower-just-above-0", {"difference": 0.25 + JUST, "se_cluster": 0.125}, 0.5, {}, "pass", set()),
    ("reduction-lower-exactly-0", {"difference": 0.25, "se_cluster": 0.125}, 0.5, {}, "fail", {"reduction-not-reliable"}),
    ("reduction-lower-just-below-0", {"difference": 0.25 - JUST, "se_cluster": 0.125}, 0.5, {}, "fail", {"reduction-not-reliable"}),
    # SE is SE_tot, seed term included: sqrt((3/32)² + 7/1024) = 1/8.
    ("seed-term-enters-se", {"difference": 0.25, "se_cluster": 3 / 32, "seed_term": 7 / 1024}, 0.5, {}, "fail", {"reduction-not-reliable"}),
    ("z-is-read-from-thresholds", {"difference": 0.25, "se_cluster": 0.125}, 0.5, {"z": 1.0}, "pass", set()),
    # Retention ρ/ρ_heldout ≥ min_retention: ρ = 0.5 over ρ_heldout = 1 is exactly 0.5 and passes.
    ("retention-equals-min", {}, 1.0, {}, "pass", set()),
    ("retention-just-above-min", {"difference": 0.25 + JUST}, 1.0, {}, "pass", set()),
    ("retention-just-below-min", {"difference": 0.25 - JUST}, 1.0, {}, "fail", {"low-retention"}),  # ρ = 0.5 − 2**-9
    ("retention-min-from-thresholds", {}, 1.0, {"min_retention": 0.5 + JUST}, "fail", {"low-retention"}),
    ("retention-above-one-passes", {}, 0.25, {}, "pass", set()),  # ρ = 2·ρ_heldout
    ("both-rules-fail", {"difference": 0.25, "se_cluster": 0.125}, 2.0, {}, "fail", {"reduction-not-reliable", "low-retention"}),
    # ρ_heldout undefined or not positive: retention cannot be computed.
    ("heldout-relative-none", {}, None, {}, "insufficient", {"heldout-relative-undefined"}),
    ("heldout-relative-nan", {}, math.nan, {}, "insufficient", {"heldout-relative-undefined"}),
    ("heldout-relative-inf", {}, math.inf, {}, "insufficient", {"heldout-relative-undefined"}),
    ("heldout-relative-zero", {}, 0.0, {}, "insufficient", {"heldout-relative-undefined"}),
    ("heldout-relative-negative", {}, -0.25, {}, "insufficient", {"heldout-relative-undefined"}),
    ("heldout-relative-tiny-positive", {}, 2.0**-20, {}, "pass", set()),  # > 0 is enough (huge retention)
    # ... but a failed reduction is still a fail.
    ("heldout-undefined-reduction-fails", {"difference": 0.25, "se_cluster": 0.125}, None, {}, "fail",
     {"reduction-not-reliable", "heldout-relative-undefined"}),
    # ρ on this split undefined (G_U − 2·SE(G_U) = 0 is not > 0): insufficient, or fail with a failed reduction.
    ("split-gap-lower-exactly-0", {"se_a": 0.25}, 0.5, {}, "insufficient", {"no-installed-gap"}),
    ("split-gap-lower-just-above-0", {"se_a": 0.25 - JUST / 2}, 0.5, {}, "pass", set()),
    ("split-gap-undefined-reduction-fails", {"se_a": 0.25, "difference": 0.25, "se_cluster": 0.125}, 0.5, {}, "fail",
     {"reduction-not-reliable", "no-installed-gap"}),
    # A clustered SE needs 2 subjects: 2 is enough, 1 is insufficient (whatever the numbers).
    ("two-subjects-enough", {"n_subjects": 2}, 0.5, {}, "pass", set()),
    ("one-subject-insufficient", {"n_subjects": 1}, 0.5, {}, "insufficient", {"too-few-subjects"}),
    ("one-subject-beats-fail", {"n_subjects": 1, "difference": 0.0}, 0.5, {}, "insufficient", {"too-few-subjects"}),
]


@pytest.mark.parametrize("name", ["fresh", "transfer"])
@pytest.mark.parametrize("row_id, overrides, held, th, outcome, reasons", ROWS, ids=[r[0] for r in ROWS])
def test_generalization_rules(name, row_id, overrides, held, th, outcome, reasons):
    d = RUNNERS[name](comparison(**overrides), held, th)
    assert d["outcome"] == outcome
    assert reasons <= codes(d)
    if outcome == "pass":
        assert not codes(d) & {"reduction-not-reliable", "low-retention", "heldout-relative-undefined", "no-installed-gap",
                               "too-few-subjects", "not-fresh"}


def test_retention_estimate():
    d = run_transfer(comparison(difference=0.25), 1.0)
    assert d["estimates"]["retention"] == 0.5
    assert d["estimates"]["relative_reduction_heldout"] == 1.0
    assert d["estimates"]["reduction_lower"] == 0.125
    assert d["details"]["transfer_task"] == "sentiment-flip" and d["details"]["differs_in"] == ["format"]
    assert run_transfer(comparison(), None)["estimates"]["retention"] is None


@pytest.mark.parametrize("name", ["fresh", "transfer"])
@pytest.mark.parametrize("c, unavailable, reason", [
    (None, [], "no-paired-items"),
    (comparison(n_items=0), [], "no-paired-items"),
    (comparison(), missing("unscored-records", "3 records"), "unscored-records"),
])
def test_no_comparison_is_insufficient(name, c, unavailable, reason):
    d = RUNNERS[name](c, 0.5, unavailable=unavailable)
    assert d["outcome"] == "insufficient"
    assert reason in codes(d)


# --- D2 only: the freshness check turns any outcome into fail.

SHARED = Freshness(shared_subjects=["chemistry"], ngram_checked=True, prompts_sharing=0, examples=[])
LEAKED = Freshness(shared_subjects=[], ngram_checked=True, prompts_sharing=1, examples=["a leaked prompt"])

FRESH_ROWS = [
    # id, comparison (None: none), ρ_heldout, unavailable, check, outcome
    ("shared-subject-otherwise-pass", comparison(), 0.5, [], SHARED, "fail"),
    ("leaked-prompt-otherwise-pass", comparison(), 0.5, [], LEAKED, "fail"),
    # Whatever else is missing, a failed freshness check is a fail, not insufficient.
    ("shared-subject-no-comparison", None, 0.5, [], SHARED, "fail"),
    ("shared-subject-unavailable", comparison(), 0.5, missing("missing-condition"), SHARED, "fail"),
    ("shared-subject-one-subject", comparison(n_subjects=1), 0.5, [], SHARED, "fail"),
    ("shared-subject-heldout-undefined", comparison(), None, [], SHARED, "fail"),
    ("leaked-prompt-no-comparison", None, 0.5, [], LEAKED, "fail"),
    # A skipped n-gram check (no training data) is reported but does not change the outcome.
    ("ngram-check-skipped-pass", comparison(), 0.5, [], Freshness([], False, 0, []), "pass"),
    ("ngram-check-skipped-insufficient", None, 0.5, [], Freshness([], False, 0, []), "insufficient"),
]


@pytest.mark.parametrize("row_id, c, held, unavailable, check, outcome", FRESH_ROWS, ids=[r[0] for r in FRESH_ROWS])
def test_fresh_freshness_decides(row_id, c, held, unavailable, check, outcome):
    d = run_fresh(c, held, unavailable=unavailable, check=check)
    assert d["outcome"] == outcome
    if check.shared_subjects or check.prompts_sharing:
        assert "not-fresh" in codes(d)
        assert d["reasons"][0]["code"] == "not-fresh"  # the freshness reason leads
    if not check.ngram_checked:
        assert d["estimates"]["prompts_sharing_ngram"] is None
        # Reported with a comparison; without one only the missing evidence is reported (as the code is now).
        assert ("ngram-check-skipped" in codes(d)) is (c is not None)
    for r in plain(unavailable):  # the missing evidence is still reported
        assert r in d["reasons"]


def test_fresh_estimates_count_the_check():
    d = run_fresh(comparison(), 0.5, check=Freshness(["a", "b"], True, 3, ["p"]))
    assert d["estimates"]["subjects_shared_with_training"] == 2
    assert d["estimates"]["prompts_sharing_ngram"] == 3


# --- freshness(): subjects must be disjoint; no fresh prompt may share a run of n tokens.

def words(prefix: str, k: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(k)]


RUN8 = " ".join(words("w", 8))  # a run of exactly 8 tokens
RUN7 = " ".join(words("w", 7))
TRAINING = ["intro " + RUN8 + " outro"]

NGRAM_ROWS = [
    # id, fresh prompts, training texts, n, prompts sharing
    ("exactly-n-tokens-shared", ["say " + RUN8 + " now"], TRAINING, 8, 1),
    ("n-minus-1-tokens-shared", ["say " + RUN7 + " now"], TRAINING, 8, 0),
    ("prompt-is-the-run", [RUN8], TRAINING, 8, 1),
    ("n-tokens-broken-in-the-middle", ["w0 w1 w2 w3 x w4 w5 w6 w7"], TRAINING, 8, 0),
    ("n-is-a-parameter", ["say " + RUN7 + " now"], TRAINING, 7, 1),
    ("prompt-shorter-than-n", ["w0 w1"], TRAINING, 8, 0),
    ("whitespace-tokens", ["say\t" + "  ".join(words("w", 8)) + "\nnow"], TRAINING, 8, 1),
    ("case-and-punctuation-matter", ["say " + RUN8.upper() + " now"], TRAINING, 8, 0),
    ("duplicate-prompts-count-once", ["say " + RUN8] * 3, TRAINING, 8, 1),
    # Boilerplate: with ≥ 4 prompts, a run in more than half of them is not counted.
    ("boilerplate-in-3-of-4-ignored", [f"p{i} {RUN8}" for i in range(3)] + ["other prompt"], TRAINING, 8, 0),
    ("run-in-2-of-4-counts", [f"p{i} {RUN8}" for i in range(2)] + ["other prompt", "a fourth prompt"], TRAINING, 8, 2),
    ("run-in-all-of-3-counts", [f"p{i} {RUN8}" for i in range(3)], TRAINING, 8, 3),  # < 4 prompts: no boilerplate rule
    ("boilerplate-in-4-of-4-ignored", [f"p{i} {RUN8}" for i in range(4)], TRAINING, 8, 0),
    # Boilerplate only removes the shared run: other content still counts.
    ("boilerplate-plus-own-leak", [f"p{i} {RUN8}" for i in range(3)] + ["q " + " ".join(words("v", 8))],
     TRAINING + [" ".join(words("v", 8))], 8, 1),
]


@pytest.mark.parametrize("row_id, prompts, training, n, sharing", NGRAM_ROWS, ids=[r[0] for r in NGRAM_ROWS])
def test_ngram_check(row_id, prompts, training, n, sharing):
    check = freshness({"f1"}, {"h1"}, prompts, training, n)
    assert check.ngram_checked is True
    assert check.prompts_sharing == sharing
    assert len(check.examples) == min(sharing, 3)


def test_subjects_must_be_disjoint():
    check = freshness({"b", "a", "c"}, {"c", "a", "z"}, None, None, 8)
    assert check.shared_subjects == ["a", "c"]  # sorted
    assert freshness({"a"}, {"b"}, None, None, 8).shared_subjects == []


@pytest.mark.parametrize("prompts, training", [(None, TRAINING), (["say " + RUN8], None), (None, None)])
def test_ngram_check_needs_prompts_and_training(prompts, training):
    check = freshness({"a"}, set(), prompts, training, 8)
    assert (check.ngram_checked, check.prompts_sharing, check.examples) == (False, 0, [])


def test_examples_are_short_and_few():
    prompts = [f"p{i} {RUN8} " + "x" * 100 for i in range(3)]  # 3 prompts: no boilerplate rule
    check = freshness(set(), set(), prompts, TRAINING, 8)
    assert check.prompts_sharing == 3
    assert check.examples == [p[:80] for p in sorted(prompts)]
    many = freshness(set(), set(), [f"p{i} {RUN8}" for i in range(2)] + [f"q{i} {' '.join(words('v', 8))}" for i in range(2)],
                     TRAINING + [" ".join(words("v", 8))], 8)
    assert many.prompts_sharing == 4 and len(many.examples) == 3
