"""acards.report.diff: which results differ between two reports of one card (what `acards migrate` prints).

Hand-made reports: every kind of change on its own, nothing reported where nothing changed, the
reasons that explain a change (only the new ones), and the cells short of seeds.
"""

from __future__ import annotations

from decision_inputs import as_cell, as_diagnostic, as_diagnostics

from acards.report import model
from acards.report.diff import diff_reports, seed_shortfalls


def reason(code: str) -> model.Reason:
    return model.Reason(code=code, message=code)


def report(cells: list[model.Cell], claims: list[model.Claim]) -> model.Report:
    return model.Report(
        acards_version="test", reproduced=all(c.reproduced for c in claims),
        card=model.CardRef(id="card", version=1, sha256="0" * 64), evidence=[], environment={}, settings={},
        cells=cells, claims=claims,
        audit=model.AuditSummary(cells=len(cells), passes={}, full_card=model.FullCardCounts(), near_misses=[]),
        generation={})


def claim(verdict: str, outcomes: dict, *, reproduced: bool = True, thresholds: dict | None = None,
          discrepancies: tuple[str, ...] = ()) -> model.Claim:
    return model.Claim(id="C1", verdict=verdict, outcomes=outcomes, thresholds=thresholds or {}, reproduced=reproduced,
                       discrepancies=[model.Discrepancy(field=f, reported="x", recomputed="y") for f in discrepancies])


def cell(reliability: str = "pass", reasons: tuple[str, ...] = (), *, observed: str | None = "shrinkage",
         strict: bool = True, seeds: int = 3, min_seeds: int = 3) -> model.Cell:
    d1 = as_diagnostic(reliability, {"n_seeds_undefended": seeds, "n_seeds_defended": seeds}, {"min_seeds": min_seeds},
                       reasons=[reason(code) for code in reasons])
    mechanism = as_diagnostic("pass", name="mechanism", observed=observed, declared="shrinkage")
    return as_cell("c1", as_diagnostics(reliability=d1, fresh="pass", mechanism=mechanism, transfer="pass"),
                   strict=strict, permissive=strict)


def test_identical_reports_have_no_changes():
    same = report([cell()], [claim("supported", {"c1": {"reliability": "pass"}})])
    diff = diff_reports(same, same)
    assert diff.changes == [] and diff.seed_shortfalls == [] and not diff.verdicts_change


def test_too_few_seeds_changes_verdict_outcome_and_full_card_with_its_reason():
    before = report([cell("pass", ("seed-variance-not-included",), seeds=1, min_seeds=1)],
                    [claim("supported", {"c1": {"reliability": "pass", "fresh": "pass"}})])
    after = report([cell("insufficient", ("seed-variance-not-included", "too-few-seeds"), strict=False, seeds=1)],
                   [claim("insufficient", {"c1": {"reliability": "insufficient", "fresh": "pass"}})])
    diff = diff_reports(before, after)
    found = [(c.what, c.claim, c.cell, c.diagnostic, c.before, c.after, c.reasons) for c in diff.changes]
    assert found == [
        ("verdict", "C1", None, None, "supported", "insufficient", ()),
        # only the reason the old result did not give: the one that explains the change
        ("outcome", "C1", "c1", "reliability", "pass", "insufficient", ("too-few-seeds",)),
        ("outcome", None, "c1", "reliability", "pass", "insufficient", ("too-few-seeds",)),
        ("full-card", None, "c1", "strict", True, False, ()),
        ("full-card", None, "c1", "permissive", True, False, ()),
    ]
    assert diff.verdicts_change
    [short] = diff.seed_shortfalls
    assert (short.cell, short.seeds_undefended, short.seeds_defended, short.min_seeds, short.diagnostics) == \
        ("c1", 1, 1, 3, ("reliability",))


def test_observed_class_and_reproduction_changes():
    before = report([cell(observed="projection")], [claim("supported", {"c1": {"mechanism": "pass"}})])
    after = report([cell(observed="reflection")],
                   [claim("supported", {"c1": {"mechanism": "pass"}}, reproduced=False, discrepancies=("observed", "observed"))])
    found = [(c.what, c.before, c.after, c.reasons) for c in diff_reports(before, after).changes]
    assert found == [("reproduced", True, False, ("observed",)), ("observed", "projection", "reflection", ())]


def test_a_claim_with_its_own_thresholds_gets_no_reasons_from_the_card_level_cell():
    """The cell's reasons were found under the card's thresholds, not the claim's: none are borrowed."""
    before = report([cell("pass")], [claim("supported", {"c1": {"reliability": "pass"}}, thresholds={"reliability": {}})])
    after = report([cell("fail", ("reduction-not-reliable",), strict=False)],
                   [claim("unsupported", {"c1": {"reliability": "fail"}}, thresholds={"reliability": {"z": 3}})])
    outcome = [c for c in diff_reports(before, after).changes if c.what == "outcome" and c.claim]
    assert [(c.before, c.after, c.reasons) for c in outcome] == [("pass", "fail", ())]


def test_seed_shortfalls_only_where_the_report_says_too_few_seeds():
    enough = report([cell("pass", seeds=3)], [])
    short = report([cell("insufficient", ("too-few-seeds",), seeds=2)], [])
    assert seed_shortfalls(enough) == []
    assert [s.cell for s in seed_shortfalls(short)] == ["c1"]
