"""A card's analysis plan, and the deviations between a pre-registered plan and a card (pure).

The plan is what `acards preregister` signs before any evidence exists (docs/preregistering.md):
everything that decides a verdict and can be fixed in advance, and nothing that only exists once
the experiment ran. It is computed from the card's data alone, plus the subjects of each split
read from the prompts file when the card pins one, so the same function gives the plan of the
pre-registered card and of the finished card, and ``deviations`` compares the two::

    format       PLAN_FORMAT
    card         {id, standard}: the card id and the version of the standard whose rules apply
    coding_mode  the card's coding mode (strict unless it says permissive)
    claims       {claim id: {statement, cells, requires (sorted), require_all_scorers,
                  family_correction, thresholds: {diagnostic: {name: value}}}}: every threshold
                  in force for the claim (the standard's defaults, the card's, the claim's)
    cells        {cell id: {family, configuration, declared_mechanism, coding_mode, task,
                  transfer: {task, differs_in}, seeds}}: seeds are the training seeds the cell
                  pins checkpoints for (their digests may still be placeholders)
    scorers      {scorer, capability_scorer, judges}: the scorer with its defaults, or null
    prompts      {sha256}: the prompts file's digest as the card pins it, or null
    splits       {split: {count, sha256, subjects}} from the prompts file, or null without one;
                 sha256 is that of the RFC 8785 list of sorted subjects, and ``subjects`` is left
                 out of a plan that keeps them private (only the digest and count are public)

Not in the plan: evidence files and checkpoint digests, reported numbers and verdicts, titles,
authors, the card's version, generation settings. The plan is a JSON value whose RFC 8785 bytes
(acards.canonical) are its identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from acards.canonical import canonical_bytes
from acards.card.model import thresholds_in_force
from acards.card.validate import card_standard, section_defaults, threshold_defaults
from acards.card.yaml import child
from acards.evidence.seeds import seed_checkpoints

PLAN_FORMAT = 1
DEFAULT_REQUIRES = ("reliability", "fresh", "mechanism", "transfer")


def _thresholds(data: dict, claim: dict, standard: str) -> dict[str, dict[str, Any]]:
    """Every diagnostic's thresholds in force for ``claim``."""
    return {group: thresholds_in_force(data, group, claim) for group in threshold_defaults(standard)}


def _claim(data: dict, claim: dict, standard: str) -> dict:
    return {
        "statement": claim["statement"],
        "cells": list(claim["cells"]),
        "requires": sorted(claim.get("requires") or DEFAULT_REQUIRES),
        "require_all_scorers": bool(claim.get("require_all_scorers", False)),
        "family_correction": claim.get("family_correction", "none"),
        "thresholds": _thresholds(data, claim, standard),
    }


def _cell(data: dict, cell: dict) -> dict:
    transfer = cell.get("transfer") or {}
    return {
        "family": cell["family"],
        "configuration": cell.get("configuration"),
        "declared_mechanism": cell["declared_mechanism"],
        "coding_mode": cell.get("coding_mode") or data.get("coding_mode") or "strict",
        "task": cell["task"],
        "transfer": {"task": transfer.get("task"), "differs_in": sorted(transfer.get("differs_in") or [])},
        "seeds": sorted({entry.seed for entry in seed_checkpoints(cell)}),
    }


def _scorer(data: dict, name: str) -> dict | None:
    value = data.get(name)
    return None if value is None else {**section_defaults("scorer"), **value}


def subjects_digest(subjects: Iterable[str]) -> str:
    """The sha256 of the RFC 8785 list of a split's subjects, sorted and each once."""
    return hashlib.sha256(canonical_bytes(sorted(set(subjects)))).hexdigest()


def _splits(subjects: Mapping[str, Iterable[str]], private: bool) -> dict:
    found = {}
    for split in sorted(subjects):
        names = sorted(set(subjects[split]))
        found[split] = {"count": len(names), "sha256": subjects_digest(names)}
        if not private:
            found[split]["subjects"] = names
    return found


def analysis_plan(
    data: dict, subjects: Mapping[str, Iterable[str]] | None = None, *, private_subjects: bool = False,
    prompts_sha256: str | None = None,
) -> dict:
    """The analysis plan of card ``data`` (schema-valid, placeholders allowed outside the plan).

    ``subjects``: split -> the subjects the prompts file lists for it, or None without a prompts
    file; ``private_subjects``: keep only each split's digest and count (see the module docstring);
    ``prompts_sha256``: the digest of the prompts read, for prompts the card does not pin (`{from:
    import}`: the bytes the import writes, as in the prompts file `acards import --prompts` writes)."""
    standard = card_standard(data)
    prompts = (data.get("evidence") or {}).get("prompts")
    return {
        "format": PLAN_FORMAT,
        "card": {"id": data["id"], "standard": standard},
        "coding_mode": data.get("coding_mode") or "strict",
        "claims": {claim["id"]: _claim(data, claim, standard) for claim in data["claims"]},
        "cells": {cell["id"]: _cell(data, cell) for cell in data["cells"]},
        "scorers": {
            "scorer": {**section_defaults("scorer"), **(data.get("scorer") or {})},
            "capability_scorer": _scorer(data, "capability_scorer"),
            "judges": data.get("judges"),
        },
        "prompts": {"sha256": prompts.get("sha256", prompts_sha256) if isinstance(prompts, dict) else None},
        "splits": None if subjects is None else _splits(subjects, private_subjects),
    }


def plan_bytes(plan: dict) -> bytes:
    return canonical_bytes(plan)


# --- deviations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deviation:
    """One way a card departs from its pre-registered plan: where in the plan, and the two values
    (``planned`` None: added since; ``actual`` None: dropped since)."""

    kind: str
    pointer: str
    planned: Any
    actual: Any

    def as_json(self) -> dict:
        return {"kind": self.kind, "pointer": self.pointer, "planned": self.planned, "actual": self.actual}


# What a changed value at each place of the plan is called; the first pattern that matches wins
# ("*" matches one key).
_KINDS = (
    (("claims", "*", "thresholds"), "threshold-moved"),
    (("claims", "*", "requires"), "diagnostics-changed"),
    (("claims", "*"), "claim-changed"),
    (("cells", "*", "seeds"), "seed-changed"),
    (("cells", "*", "declared_mechanism"), "mechanism-changed"),
    (("cells", "*", "coding_mode"), "coding-mode-changed"),
    (("cells", "*"), "cell-changed"),
    (("coding_mode",), "coding-mode-changed"),
    (("scorers",), "scorer-changed"),
    (("prompts",), "prompts-changed"),
    (("splits", "*"), "subjects-changed"),
    (("splits",), "splits-changed"),
    (("card",), "card-changed"),
)
# Keys of these mappings are ids: one present on one side only is an addition or a drop.
_COLLECTIONS: dict[tuple[str, ...], str] = {("claims",): "claim", ("cells",): "cell", ("splits",): "split"}


def _kind(path: tuple[str, ...]) -> str:
    for pattern, kind in _KINDS:
        if len(path) >= len(pattern) and all(p in ("*", key) for p, key in zip(pattern, path)):
            return kind
    return "plan-changed"


def _pointer(path: tuple[str, ...]) -> str:
    pointer = ""
    for key in path:
        pointer = child(pointer, key)
    return pointer


def _walk(planned: Any, actual: Any, path: tuple[str, ...]) -> Iterable[Deviation]:
    if planned == actual:
        return
    if path[-1:] == ("subjects",) and len(path) == 3 and isinstance(planned, list) and isinstance(actual, list):
        for subject in sorted(set(actual) - set(planned)):
            yield Deviation("subject-added", _pointer(path), None, subject)
        for subject in sorted(set(planned) - set(actual)):
            yield Deviation("subject-dropped", _pointer(path), subject, None)
        return
    if isinstance(planned, dict) and isinstance(actual, dict):
        noun = _COLLECTIONS.get(path)
        for key in sorted(set(planned) | set(actual)):
            here = (*path, key)
            if noun and key not in actual:
                yield Deviation(f"{noun}-dropped", _pointer(here), planned[key], None)
            elif noun and key not in planned:
                yield Deviation(f"{noun}-added", _pointer(here), None, actual[key])
            elif path[:1] == ("splits",) and key in ("count", "sha256") and "subjects" in planned and "subjects" in actual:
                continue  # the subjects themselves say what changed
            else:
                yield from _walk(planned.get(key), actual.get(key), here)
        return
    yield Deviation(_kind(path), _pointer(path), planned, actual)


def deviations(planned: dict, actual: dict) -> list[Deviation]:
    """Every way plan ``actual`` (of the card as it is) departs from ``planned`` (pre-registered),
    in plan order. A plan that keeps its subjects private is compared by digest and count only."""
    if planned.get("splits") and actual.get("splits"):
        private = any("subjects" not in split for split in planned["splits"].values())
        if private:  # compare like with like: the card's subjects become digests too
            actual = {**actual, "splits": {name: {k: v for k, v in split.items() if k != "subjects"}
                                           for name, split in actual["splits"].items()}}
    return list(_walk(planned, actual, ()))
