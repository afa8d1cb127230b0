"""Verdicts: full-card passes per cell, claim verdicts, and the audit summary (SPEC §4)."""

from __future__ import annotations

from typing import Sequence

from acards.report.model import AuditSummary, Cell, Diagnostic, Diagnostics, FullCard, FullCardCounts, NearMiss
from acards.vocabulary import DIAGNOSTICS, FOUR


def full_card(diagnostics: Diagnostics) -> FullCard:
    """A cell passes the full card iff D1–D4 all pass; strict and permissive differ only in D3."""
    others = all(diagnostics.by_name(name).outcome == "pass" for name in ("reliability", "fresh", "transfer"))
    mechanism = diagnostics.mechanism
    return FullCard(strict=others and mechanism.strict == "pass", permissive=others and mechanism.permissive == "pass")


def combine(outcomes: list[str]) -> str:
    """Intersection over cells: fail if any fails, else insufficient if any is, else pass."""
    if "fail" in outcomes:
        return "fail"
    if "insufficient" in outcomes or not outcomes:
        return "insufficient"
    return "pass"


def claim_verdict(outcomes: dict[str, dict[str, str]]) -> str:
    """Supported iff every required diagnostic passes in every covered cell (intersection–union)."""
    combined = combine([outcome for per_cell in outcomes.values() for outcome in per_cell.values()])
    return {"pass": "supported", "fail": "unsupported", "insufficient": "insufficient"}[combined]


def all_scorers_verdict(verdicts: list[str]) -> str:
    """A claim that must hold under every scorer: unsupported if it is under one, else insufficient
    if it is under one, else supported (the intersection again, over scorers)."""
    outcome = {"supported": "pass", "unsupported": "fail", "insufficient": "insufficient"}
    combined = combine([outcome[v] for v in verdicts])
    return {"pass": "supported", "fail": "unsupported", "insufficient": "insufficient"}[combined]


def _shortfall(diagnostic: Diagnostic) -> float | None:
    """How far a failing diagnostic's bounds fall short (a heuristic: score units plus retention
    shortfall); None when the failure is categorical (a class, missing evidence)."""
    if diagnostic.outcome == "insufficient":
        return None
    e = diagnostic.estimates
    th = diagnostic.thresholds
    gaps = []
    if e.get("reduction_lower") is not None:
        gaps.append(max(0.0, th.get("margin", 0.0) - e["reduction_lower"]))
    if e.get("retention") is not None and "min_retention" in th:
        gaps.append(max(0.0, th["min_retention"] - e["retention"]))
    if e.get("delta_lower") is not None:
        gaps.append(max(0.0, -th["margin"] - e["delta_lower"]))
    return sum(gaps) if gaps else None


def audit_summary(cells: Sequence[Cell]) -> AuditSummary:
    """Counts of passes per diagnostic and of full-card passes; near misses ranked by the number of
    D1–D4 passed, then by the smallest shortfall."""
    passes = {name: sum(c.diagnostics.by_name(name).outcome == "pass" for c in cells) for name in DIAGNOSTICS}
    near = []
    for cell in cells:
        if cell.full_card.headline:
            continue
        failed = [name for name in FOUR if cell.diagnostics.by_name(name).outcome != "pass"]
        shortfalls = [_shortfall(cell.diagnostics.by_name(name)) for name in failed]
        shortfall = sum(s for s in shortfalls if s is not None) if all(s is not None for s in shortfalls) else None
        near.append(NearMiss(cell=cell.id, passed=len(FOUR) - len(failed), failed=failed, shortfall=shortfall))
    near.sort(key=lambda n: (-n.passed, n.shortfall is None, n.shortfall or 0.0, n.cell))
    return AuditSummary(
        cells=len(cells),
        passes=passes,
        full_card=FullCardCounts(strict=sum(c.full_card.strict for c in cells),
                                 permissive=sum(c.full_card.permissive for c in cells)),
        near_misses=near,
    )
