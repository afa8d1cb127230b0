"""The badge of each published card version on the site's index and card pages (acards.present.badge;
docs/badges-and-latex.md).

Read leniently from the signed predicate, like the index's summary (acards.site.view.summary): a
registry accepts predicates of any shape, and an odd one only gives a badge that says less.
"""

from __future__ import annotations

import os

import markupsafe

from acards.present.badge import BadgeFacts, badge_svg, preregistration_state
from acards.registry import reader


def statement_facts(statement: dict, state: str, reproductions: int = 0) -> BadgeFacts:
    """BadgeFacts of a published statement (a card and its report in the predicate)."""
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    predicate = predicate if isinstance(predicate, dict) else {}
    card = predicate.get("card") if isinstance(predicate.get("card"), dict) else {}
    report = predicate.get("report") if isinstance(predicate.get("report"), dict) else {}
    cells = [c for c in report.get("cells", []) if isinstance(c, dict)] if isinstance(report.get("cells"), list) else []

    def passes(cell: dict, coding: str) -> bool:
        return isinstance(cell.get("full_card"), dict) and cell["full_card"].get(coding) is True

    version = card.get("version")
    return BadgeFacts(
        card_id=str(card.get("id", "")),
        version=version if isinstance(version, int) and not isinstance(version, bool) else 0,
        cells=len(cells),
        strict_passes=sum(1 for c in cells if passes(c, "strict")),
        permissive_passes=sum(1 for c in cells if passes(c, "permissive")),
        reproduced=report.get("reproduced") is True,
        reproductions=reproductions,
        preregistration=preregistration_state(report),
        state=state,
    )


def site_badges(directory: str | os.PathLike, digest: str, statement: dict, state: str) -> dict[str, markupsafe.Markup]:
    """The inline SVG badges of one version: ``card`` (the card pages, naming the card) and ``row``
    (the index, whose row names it already). Markup: badge_svg escapes every text itself."""
    facts = statement_facts(statement, state, reader.reproductions(directory, digest))  # distinct reviewers
    return {"card": markupsafe.Markup(badge_svg(facts)), "row": markupsafe.Markup(badge_svg(facts, label=False))}
