"""What a card page says of the card's pre-registration (pure; docs/preregistering.md).

The date is the one this registry's log gives the plan the card names (``plan_times``); the
deviations are those of the signed report the card was published with. A card naming a plan this
registry does not log says so instead of a date. Read leniently, like the index's summary
(acards.site.view.summary): a registry accepts predicates of any shape.
"""

from __future__ import annotations

import json
from typing import Any, Mapping


def _text(value: Any) -> str:
    text = "—" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 200 else text[:199] + "…"


def plan_times(log_entries: list[dict]) -> dict[str, str]:
    """When each pre-registered plan of the log (read through acards.registry.reader) was logged."""
    times: dict[str, str] = {}
    for entry in log_entries:
        if entry["kind"] == "preregister":
            times.setdefault(entry["digest"], entry["time"])
    return times


def preregistration_view(statement: dict, plan_times: Mapping[str, str]) -> dict | None:
    """{entry, logged_at, date, matched, deviations: [{kind, pointer, planned, actual} as text]} of a
    published statement, or None when its card names no pre-registration."""
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    predicate = predicate if isinstance(predicate, dict) else {}
    card = predicate.get("card") if isinstance(predicate.get("card"), dict) else {}
    named = card.get("preregistration")
    if not isinstance(named, dict) or not isinstance(named.get("entry"), str):
        return None
    report = predicate.get("report") if isinstance(predicate.get("report"), dict) else {}
    block = report.get("preregistration") if isinstance(report.get("preregistration"), dict) else {}
    deviations = [d for d in block.get("deviations", []) if isinstance(d, dict)] if isinstance(block.get("deviations"), list) else []
    logged_at = plan_times.get(named["entry"])
    return {
        "entry": named["entry"],
        "logged_at": logged_at,
        "date": logged_at[:10] if logged_at else None,
        "matched": block.get("matched") if isinstance(block.get("matched"), bool) else None,
        "deviations": [{"kind": str(d.get("kind")), "pointer": str(d.get("pointer")),
                        "planned": _text(d.get("planned")), "actual": _text(d.get("actual"))} for d in deviations],
    }
