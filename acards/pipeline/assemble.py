"""Step 5 of the pipeline: the verification report (SPEC §7), checked against its own schema."""

from __future__ import annotations

import math
import sys

from msgspec import UNSET

from acards import __version__
from acards.card.model import Card
from acards.diagnostics.verdict import audit_summary
from acards.errors import AcardsError, Location, Problem
from acards.evidence.records import RecordTable, records_summary
from acards.generate.backends.base import package_versions, platform_name
from acards.pipeline.load import Loaded
from acards.report.model import CardRef, Cell, Claim, EnvelopeRef, EvidenceCheck, Report, as_builtins
from acards.schemas import validate

PACKAGES = ("numpy", "scipy", "jsonschema", "ruamel.yaml", "msgspec", "safetensors", "torch", "transformers", "peft")


def environment(device: str | None) -> dict:
    """Where the report was made: Python, platform, the versions of the packages that decide numbers."""
    return {"python": sys.version.split()[0], "platform": platform_name(), "packages": package_versions(*PACKAGES),
            "device": device}


def settings(card: Card, bootstrap: int, seed: int) -> dict:
    """The report's settings; ``standard`` names the rules that ran when they are not 1.0's (a 1.0
    report stays as it was, byte for byte)."""
    found = {"bootstrap": bootstrap, "seed": seed, "coding_mode": card.data.get("coding_mode", "strict"), "confidence": 0.95}
    if card.standard != "1.0":
        found["standard"] = card.standard
    return found


def assemble(loaded: Loaded, table: RecordTable, cells: list[Cell], claims: list[Claim], generation: dict, *,
             bootstrap: int, seed: int) -> Report:
    """The report of a card: what was checked, every cell and claim, the audit summary, the generation."""
    card = loaded.card
    report = Report(
        acards_version=__version__,
        reproduced=all(c.reproduced for c in claims),
        card=CardRef(id=card.data["id"], version=card.data["version"], sha256=card.sha256, title=card.data["title"]),
        evidence=[EvidenceCheck(**r.as_json()) for r in loaded.pointers],
        environment=environment(generation["provenance"].get("device_name")),
        settings=settings(card, bootstrap, seed),
        cells=cells,
        claims=claims,
        audit=audit_summary(cells),
        generation={**generation, "provenance": {**generation["provenance"], "records": records_summary(table)}},
        envelope=EnvelopeRef(**loaded.signed) if loaded.signed else UNSET,
    )
    check_report_shape(report)
    return report


def check_report_shape(report: Report) -> None:
    """A report that does not match its own schema is a bug: refuse to hand it out.  The types
    hold the shape; the schema also holds the values (enums, patterns, minimums)."""
    document = as_builtins(report)
    problems = validate(document, "report-1.0", code="internal.report-invalid",
                        message="the report does not match report-1.0: {message} at {at}",
                        hint="this is a bug in acards: rerun with --debug and report it")
    # JSON has no infinity or NaN, and a verdict must not rest on one: text and JSON output agree.
    problems += [Problem("internal.report-invalid", f"the report holds the non-finite number {value!r} at {pointer}",
                         "this is a bug in acards (an input that overflows should have been refused with its own "
                         "code): rerun with --debug and report it", Location(pointer=pointer))
                 for pointer, value in _non_finite(document, "")]
    if problems:
        raise AcardsError.collect(problems)


def _non_finite(node, pointer: str):
    """(JSON pointer, value) of every infinite or NaN float in a builtins document."""
    if isinstance(node, float):
        if not math.isfinite(node):
            yield pointer or "/", node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from _non_finite(value, f"{pointer}/{index}")
