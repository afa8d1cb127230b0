"""A validated card: its data, source map and digest, the thresholds in force, and loading one from a file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acards import SUPPORTED_CARD_VERSIONS, __version__
from acards.card.validate import (
    SCHEMA_NAME,
    _field_hint,
    card_standard,
    comment_in_text_warnings,
    evidence_pointers,
    placeholders,
    schema_at,
    schema_problems,
    section_defaults,
    semantic_problems,
    threshold_defaults,
)
from acards.card.yaml import SourceMap, parse_yaml, read_text
from acards.errors import AcardsError, Location, Problem
from acards.schemas import load_schema


@dataclass
class Card:
    """A validated card: its plain data (shaped by the schema), source map, file and digest."""

    path: Path
    data: dict
    source: SourceMap
    sha256: str

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def cells(self) -> list[dict]:
        return self.data["cells"]

    @property
    def claims(self) -> list[dict]:
        return self.data["claims"]

    def cell(self, cell_id: str) -> dict:
        return next(c for c in self.cells if c["id"] == cell_id)

    def pointers(self) -> list[tuple[str, str, str, Location]]:
        return list(evidence_pointers(self.data, self.source))

    @property
    def standard(self) -> str:
        """The version of the standard whose rules verify this card: "1.0" or "1.1" (SPEC §10.10)."""
        return card_standard(self.data)

    def coding_mode(self, cell: dict) -> str:
        return cell.get("coding_mode") or self.data.get("coding_mode") or "strict"

    def thresholds(self, group: str, claim: dict | None = None) -> dict[str, Any]:
        """Defaults, then the card's values, then the claim's: the thresholds in force."""
        return thresholds_in_force(self.data, group, claim)

    def overrides(self) -> list[dict]:
        """Every threshold that differs from its default, where it is set, with its justification."""
        defaults = threshold_defaults(self.standard)
        found = []
        scopes = [("card", self.data.get("thresholds") or {})]
        scopes += [(f"claim {c['id']}", c.get("thresholds") or {}) for c in self.claims]
        for scope, groups in scopes:
            for group, values in groups.items():
                for key, value in values.items():
                    if key != "justification" and value != defaults[group].get(key):
                        found.append({"scope": scope, "diagnostic": group, "name": key, "value": value,
                                      "default": defaults[group].get(key), "justification": values.get("justification")})
        return found

    def section(self, name: str) -> dict[str, Any]:
        """A settings section (generation, scorer) with the schema's defaults filled in."""
        return {**section_defaults(name), **(self.data.get(name) or {})}


def thresholds_in_force(data: dict, group: str, claim: dict | None = None) -> dict[str, Any]:
    """A diagnostic's thresholds in force for card ``data`` (and ``claim``): the standard's defaults,
    then the card's values, then the claim's (``Card.thresholds``; the analysis plan reads it too)."""
    merged = dict(threshold_defaults(card_standard(data))[group])
    for source in (data.get("thresholds") or {}, (claim or {}).get("thresholds") or {}):
        merged.update({k: v for k, v in (source.get(group) or {}).items() if k != "justification"})
    return merged


def validate_document(raw: bytes, text: str, path: Path) -> Card:
    """Validate card text; raise every problem found, together."""
    file = str(path)
    data, source = parse_yaml(text, file)
    if not isinstance(data, dict):
        raise AcardsError("schema.type", "a card is a YAML mapping of fields", "start from `acards init`", source.locate(""))
    version = data.get("acard")
    if version is not None and version not in SUPPORTED_CARD_VERSIONS and version not in (1.0, 1.1):
        raise AcardsError("card.unknown-version", f"this card follows version {version!r} of the standard",
                          f"acards {__version__} reads versions: {', '.join(SUPPORTED_CARD_VERSIONS)}; "
                          "upgrade acards or write the card for a supported version", source.locate("/acard"))
    comment_in_text_warnings(source)  # recorded for the command to print; never fatal
    todo = list(placeholders(data))
    problems = [Problem("card.placeholder", "this value is still a TODO placeholder",
                        "replace it with the real value: " + _field_hint(load_schema(SCHEMA_NAME), schema_at(p)),
                        source.locate(p)) for p in todo]
    problems += schema_problems(data, source, set(todo))
    problems += semantic_problems(data, source)
    if problems:
        problems.sort(key=lambda p: (p.location.line or 0, p.location.column or 0, p.code))
        raise AcardsError.collect(problems)
    return Card(path=path, data=data, source=source, sha256=hashlib.sha256(raw).hexdigest())


def load_card(path: str | Path) -> Card:
    path = Path(path)
    raw, text = read_text(path)
    return validate_document(raw, text, path)
