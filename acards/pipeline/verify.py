"""`acards verify`: validate → check digests → read records → recompute → compare → report.

This module does the I/O and the bookkeeping; every number comes from the pure modules
(acards.stats, acards.diagnostics.values, acards.diagnostics, acards.mechanism.signature).
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acards import __version__, stats
from acards.card.model import Card, load_card
from acards.diagnostics.common import Comparison, availability, compare
from acards.diagnostics.cost import cost
from acards.diagnostics.discrepancies import claim_discrepancies
from acards.diagnostics.fresh import Freshness, fresh, freshness
from acards.diagnostics.mechanism import mechanism
from acards.diagnostics.reliability import holm_gate, reliability
from acards.diagnostics.transfer import transfer
from acards.diagnostics.values import GroupIndex, SplitValues, split_values
from acards.diagnostics.verdict import (
    audit_summary,
    claim_verdict,
    full_card,
)
from acards.errors import AcardsError
from acards.evidence.digests import DigestCache, check_pointers
from acards.evidence.paths import resolve_inside
from acards.evidence.records import (
    RecordTable,
    append_records,
    fill_scores,
    read_objects,
    read_records,
    records_summary,
)
from acards.vocabulary import CONTROL_SHRINKAGE, DIAGNOSTICS, FOUR

DEFAULT_BOOTSTRAP = 10_000
DEFAULT_SEED = 20260527
PACKAGES = ("numpy", "scipy", "jsonschema", "ruamel.yaml", "msgspec", "safetensors", "torch", "transformers", "peft")


@dataclass
class CellEvidence:
    """Threshold-free statistics of one cell, computed once and reused for every claim."""

    cell: dict
    comparisons: dict[str, Comparison | None]  # heldout, fresh, transfer, capability, control
    unavailable: dict[str, list[dict]]  # per comparison: why it cannot be made
    control_reduction: float | None  # Δ_C = G_U − G_C on the held-out split
    freshness_inputs: dict
    signatures: dict = field(default_factory=dict)  # thresholds key -> signature (or None)


def _compare_split(values: SplitValues, first: str, second: str, rng, bootstrap: int, split: str) -> tuple[Comparison | None, list[dict]]:
    missing = availability(split, values.conditions, (first, second))
    if missing:
        return None, missing
    a, b, subjects, _ = values.paired(first, second)
    return compare(a, b, subjects, values.conditions[first].seeds, values.conditions[second].seeds, rng, bootstrap), []


def cell_evidence(card: Card, cell: dict, index: GroupIndex, master_seed: int, bootstrap: int) -> CellEvidence:
    cell_id = cell["id"]
    rng = lambda purpose: stats.cell_rng(master_seed, cell_id, purpose)  # noqa: E731 — one stream per split
    splits = {
        "heldout": split_values(index, cell_id, "heldout", cell["task"]),
        "fresh": split_values(index, cell_id, "fresh", cell["task"]),
        "transfer": split_values(index, cell_id, "transfer", cell["transfer"]["task"]),
        "capability": split_values(index, cell_id, "capability"),
    }
    comparisons, unavailable = {}, {}
    for split in ("heldout", "fresh", "transfer"):
        comparisons[split], unavailable[split] = _compare_split(splits[split], "undefended", "defended", rng(split), bootstrap, split)
    comparisons["capability"], unavailable["capability"] = _compare_split(splits["capability"], "defended", "undefended", None, 0, "capability")
    comparisons["control"], unavailable["control"], control_reduction = None, [], None
    if CONTROL_SHRINKAGE in splits["heldout"].conditions:
        # The margin Δ_D − Δ_C = G_C − G_D, and the control's own reduction Δ_C = G_U − G_C.
        comparisons["control"], unavailable["control"] = _compare_split(splits["heldout"], CONTROL_SHRINKAGE, "defended", None, 0, "heldout")
        control_u, _ = _compare_split(splits["heldout"], "undefended", CONTROL_SHRINKAGE, None, 0, "heldout")
        control_reduction = control_u.difference if control_u else None
    table = index.table
    heldout_subjects = {table.vocab["subject"][s] for s in splits["heldout"].subjects}
    fresh_subjects = {table.vocab["subject"][s] for s in splits["fresh"].subjects}
    fresh_rows = index.rows(cell_id, "fresh", cell["task"])
    fresh_prompts = sorted({table.prompts[int(r)] for r in fresh_rows if int(r) in table.prompts})
    inputs = {"fresh_subjects": fresh_subjects, "heldout_subjects": heldout_subjects,
              "fresh_prompts": fresh_prompts or None}
    return CellEvidence(cell, comparisons, unavailable, control_reduction, inputs)


def _signature(card: Card, evidence: CellEvidence, th: dict):
    """The weight signature under these mechanism thresholds (cached: SVDs are not free)."""
    checkpoints = evidence.cell.get("checkpoints") or {}
    if not ("undefended" in checkpoints and "defended" in checkpoints):
        return None
    key = tuple(sorted((k, v) for k, v in th.items() if k not in ("z", "justification")))
    if key not in evidence.signatures:
        from acards.evidence.checkpoints import read_reference, read_update_pair
        from acards.mechanism.signature import weight_signature

        def path(name):
            pointer = f"/cells/{card.cells.index(evidence.cell)}/checkpoints/{name}/path"
            return resolve_inside(card.folder, checkpoints[name]["path"], card.source.locate(pointer))

        base = path("base") if "base" in checkpoints else None
        undefended, defended = read_update_pair(path("undefended"), path("defended"), base)
        reference = read_reference(path("reference_subspace")) if "reference_subspace" in checkpoints else None
        evidence.signatures[key] = weight_signature(undefended, defended, reference, th)
    return evidence.signatures[key]


def diagnose(card: Card, evidence: CellEvidence, thresholds: dict[str, dict], freshness_check: Freshness) -> dict:
    """All five diagnostics of one cell under one set of thresholds."""
    c, u = evidence.comparisons, evidence.unavailable
    d1 = reliability(c["heldout"], u["heldout"], thresholds["reliability"])
    heldout_relative = d1["estimates"].get("relative_reduction")
    cell = evidence.cell
    return {
        "reliability": d1,
        "fresh": fresh(c["fresh"], u["fresh"], heldout_relative, freshness_check, thresholds["fresh"]),
        "mechanism": mechanism(_signature(card, evidence, thresholds["mechanism"]), c["control"], u["control"],
                               evidence.control_reduction, cell["declared_mechanism"],
                               card.coding_mode(cell), thresholds["mechanism"]),
        "transfer": transfer(c["transfer"], u["transfer"], heldout_relative, thresholds["transfer"],
                             cell["transfer"]["task"], cell["transfer"]["differs_in"]),
        "cost": cost(c["capability"], u["capability"], thresholds["cost"]),
    }


def _training(card: Card) -> tuple[set[str], list[str]] | None:
    pointer = card.data["evidence"].get("training_data")
    if not pointer:
        return None
    rows = read_objects(card.folder, pointer["path"], card.source.locate("/evidence/training_data/path"), "training-1.0")
    return {r.subject for r in rows}, [r.text for r in rows]


def _fresh_prompts(prompts) -> dict[str, list[str]]:
    """Fresh prompts per task from the prompts file, for cells whose records carry no prompt."""
    found: dict[str, set[str]] = {}
    for (split, task, _item, _framing), prompt in prompts.index.items():
        if split == "fresh":
            found.setdefault(task, set()).add(prompt.prompt)
    return {task: sorted(texts) for task, texts in found.items()}


def _environment() -> dict:
    from acards.generate.backends.base import package_versions

    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": package_versions(*PACKAGES)}


def load_evidence(card: Card, cache: DigestCache) -> tuple[list, RecordTable]:
    """Check every digest, then read the records."""
    results, problems = check_pointers(card.folder, card.pointers(), cache)
    if problems:
        raise AcardsError.collect(problems)
    paths = [(p["path"], card.source.locate(f"/evidence/records/{i}/path")) for i, p in enumerate(card.data["evidence"]["records"])]
    return results, read_records(card.folder, paths)


def recompute(card: Card, table: RecordTable, prompts, *, bootstrap: int = DEFAULT_BOOTSTRAP,
              seed: int = DEFAULT_SEED) -> tuple[list[dict], list[dict]]:
    """Every cell's diagnostics under the card's thresholds, and every claim's verdict.

    ``prompts`` is the card's prompts file as acards.generate.plan.read_prompts gives it."""
    index = GroupIndex(table)
    training = _training(card)
    file_prompts = _fresh_prompts(prompts)
    evidence = {cell["id"]: cell_evidence(card, cell, index, seed, bootstrap) for cell in card.cells}

    def check_freshness(ev: CellEvidence, th: dict) -> Freshness:
        inputs = ev.freshness_inputs
        others = inputs["heldout_subjects"] | (training[0] if training else set())
        prompts = inputs["fresh_prompts"] or file_prompts.get(ev.cell["task"])
        return freshness(inputs["fresh_subjects"], others, prompts, training[1] if training else None, th["max_shared_ngram"])

    def thresholds(claim=None):
        return {name: card.thresholds(name, claim) for name in DIAGNOSTICS}

    card_thresholds = thresholds()
    cells = []
    for cell in card.cells:
        ev = evidence[cell["id"]]
        diagnostics = diagnose(card, ev, card_thresholds, check_freshness(ev, card_thresholds["fresh"]))
        verdicts = full_card(diagnostics)
        verdicts["headline"] = verdicts[card.coding_mode(cell)]
        cells.append({"id": cell["id"], "coding_mode": card.coding_mode(cell), "diagnostics": diagnostics, "full_card": verdicts})
    _apply_holm(cells)

    def claim_holm(claim_th: dict) -> dict[str, float | None]:
        """Holm over all the card's cells, with p-values under this claim's reliability margin."""
        if claim_th["reliability"] == card_thresholds["reliability"]:
            return {c["id"]: c["diagnostics"]["reliability"]["estimates"].get("p_holm") for c in cells}
        rows = [{"diagnostics": {"reliability": reliability(evidence[cell["id"]].comparisons["heldout"],
                                                             evidence[cell["id"]].unavailable["heldout"], claim_th["reliability"])}}
                for cell in card.cells]
        _apply_holm(rows)
        return {cell["id"]: row["diagnostics"]["reliability"]["estimates"].get("p_holm") for cell, row in zip(card.cells, rows)}

    claims = []
    by_id = {c["id"]: c for c in cells}
    for claim in card.claims:
        claim_th = thresholds(claim)
        requires = claim.get("requires") or list(FOUR)
        holm_values = claim_holm(claim_th) if claim_th != card_thresholds else None
        outcomes, per_cell = {}, {}
        for cell_id in claim["cells"]:
            if holm_values is None:
                diagnostics = by_id[cell_id]["diagnostics"]
            else:
                ev = evidence[cell_id]
                diagnostics = diagnose(card, ev, claim_th, check_freshness(ev, claim_th["fresh"]))
                diagnostics["reliability"]["estimates"]["p_holm"] = holm_values[cell_id]
            if claim.get("family_correction") == "holm":
                diagnostics = dict(diagnostics, reliability=holm_gate(diagnostics["reliability"], claim_th["reliability"]["alpha"]))
            per_cell[cell_id] = diagnostics
            outcomes[cell_id] = {name: diagnostics[name]["outcome"] for name in requires}
        claims.append({
            "id": claim["id"], "statement": claim["statement"], "cells": claim["cells"], "requires": requires,
            "verdict": claim_verdict(outcomes), "outcomes": outcomes,
            "thresholds": {name: th for name, th in claim_th.items() if th != card_thresholds[name]},
            "_diagnostics": per_cell,
        })
    return cells, claims


def _apply_holm(cells: list[dict]) -> None:
    """Holm-adjust the reliability p-values across the card's cells."""
    estimates = [c["diagnostics"]["reliability"]["estimates"] for c in cells]
    pvalues = np.array([e.get("p_value") if e.get("p_value") is not None else np.nan for e in estimates], float)
    adjusted = stats.holm(pvalues) if len(pvalues) else pvalues
    for e, p in zip(estimates, adjusted):
        if "p_value" in e:
            e["p_holm"] = float(p) if np.isfinite(p) else None


def complete_evidence(card: Card, table: RecordTable, *, generate: bool = True, device: str | None = None,
                      spot_check: int = 0, progress: bool | None = None) -> tuple[RecordTable, object, dict]:
    """Score supplied outputs that lack a score, regenerate missing outputs and the shrinkage
    control (SPEC §5.3), and spot-check supplied outputs; returns the table, the prompts file and
    the report's ``generation`` section.  Without a scorer in the card, outputs cannot become scores and the
    affected diagnostics stay insufficient."""
    from acards.generate import plan, scorers
    from acards.generate.provenance import report_section

    prompts = plan.read_prompts(card)
    scorer = card.data.get("scorer")
    scored, scorer_provenance, result, supplied = 0, None, None, table

    def score(splits: list[str], outputs: list, references: list) -> list[float]:
        nonlocal scorer_provenance
        scores, scorer_provenance = scorers.score_for_card(card, splits, outputs, references, device=device, progress=progress)
        return scores

    if table.outputs and scorer:
        rows = sorted(table.outputs)
        keys = [tuple(table.vocab[name][table.columns[name][row]] for name in ("split", "task", "item", "framing")) for row in rows]
        found = [prompts.get(*key) for key in keys]
        table.columns["score"][rows] = score([key[0] for key in keys], [table.outputs[row] for row in rows],
                                             [p.reference if p else None for p in found])
        scored += len(rows)
    if generate and scorer:
        missing = plan.missing_requests(card, table, prompts)
        # The control is optional evidence: it is built only where the card gives the prompts.
        controls = plan.control_requests(card, table, prompts) if len(prompts) else []
        if missing or controls:
            from acards.generate import run

            requests = missing + controls
            result = run(card, requests, device=device, progress=progress)
            scores = score([r.split for r in requests], result.outputs, [r.reference for r in requests])
            records = plan.to_records(requests, result.outputs, scores)
            scored += fill_scores(table, records[: len(missing)])
            supplied = table  # the spot check compares regenerated outputs with the authors' only
            table = append_records(table, records[len(missing):], "<regenerated control:shrinkage>")
            scored += len(records) - len(missing)
    section = report_section(result, scored=scored, scorer=scorer_provenance)
    if generate and spot_check > 0 and supplied.columns["has_output"].any():
        from acards.generate import spot_check as check

        section["provenance"]["spot_check"] = check(card, supplied, prompts, n=spot_check, seed=0, device=device, progress=progress)
    return table, prompts, section


def verify(card_path: str | Path, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
           use_cache: bool = True, envelope: bytes | None = None, trusted_keys: dict | None = None,
           generate: bool = True, device: str | None = None, spot_check: int = 20, progress: bool | None = None) -> dict:
    """The full verification report of a card (SPEC §7).

    With ``envelope``, its signatures are checked against ``trusted_keys`` first, and the card
    file and evidence pointers must be the ones the signed statement names.
    """
    card = load_card(card_path)
    signed = None
    if envelope is not None:
        from acards.attest.card_statement import (
            check_card_against_statement,
            open_card_envelope,
        )

        statement, digest, signers = open_card_envelope(envelope, trusted_keys or {})
        check_card_against_statement(card, statement)
        signed = {"digest": digest, "signers": list(signers)}
    cache = DigestCache(DigestCache.default_path() if use_cache else None)
    try:
        pointer_results, table = load_evidence(card, cache)
    finally:
        cache.close()
    table, prompts, generation = complete_evidence(card, table, generate=generate, device=device, spot_check=spot_check,
                                                   progress=progress)
    cells, claims = recompute(card, table, prompts, bootstrap=bootstrap, seed=seed)
    for claim, source in zip(claims, card.claims):
        per_cell = claim.pop("_diagnostics")
        claim["discrepancies"] = claim_discrepancies(source, claim, per_cell)
        claim["reproduced"] = not claim["discrepancies"]
    summary = records_summary(table)
    report = {
        "acards_version": __version__,
        "reproduced": all(c["reproduced"] for c in claims),
        "card": {"id": card.data["id"], "version": card.data["version"], "sha256": card.sha256, "title": card.data["title"]},
        "evidence": [r.as_json() for r in pointer_results],
        "environment": {**_environment(), "device": generation["provenance"].get("device_name")},
        "settings": {"bootstrap": bootstrap, "seed": seed, "coding_mode": card.data.get("coding_mode", "strict"), "confidence": 0.95},
        "cells": cells,
        "claims": claims,
        "audit": audit_summary(cells),
        "generation": {**generation, "provenance": {**generation["provenance"], "records": summary}},
    }
    if signed:
        report["envelope"] = signed
    _check_report_shape(report)
    return report


def _check_report_shape(report: dict) -> None:
    """A report that does not match its own schema is a bug: refuse to hand it out."""
    from jsonschema import Draft202012Validator

    from acards.resources import load_schema

    error = next(Draft202012Validator(load_schema("report-1.0")).iter_errors(report), None)
    if error is not None:
        raise AcardsError("internal.report-invalid", f"the report does not match report-1.0: {error.message} at /{'/'.join(map(str, error.absolute_path))}",
                          "this is a bug in acards: rerun with --debug and report it")


def audit(card_paths: list, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED) -> dict:
    """Diagnostics of every cell of several cards, with the summary across all of them."""
    rows = []
    for path in card_paths:
        report = verify(path, bootstrap=bootstrap, seed=seed)
        for cell in report["cells"]:
            rows.append({**cell, "card": report["card"]["id"], "id": f"{report['card']['id']}:{cell['id']}"})
    return {"acards_version": __version__, "cells": rows, "summary": audit_summary(rows)}
