"""Step 3 of the pipeline: recompute every cell.

First the threshold-free statistics of each cell (:func:`cell_evidence`: the paired comparisons
with their bootstraps, computed once), then the five diagnostics under one set of thresholds
(:func:`diagnose`), for the card's thresholds here and for each claim's own in
:mod:`acards.pipeline.claims`.  Every number comes from the pure modules (acards.stats,
acards.diagnostics, acards.mechanism); the one read done here is of the checkpoints, for the weight
signature, computed once per set of mechanism thresholds and kept in the records cache
(acards.evidence.records_cache) under the digest of what it depends on: the pinned digests of the
checkpoints it reads (checked against the files when the card was loaded), the thresholds, the
standard, the reference rank and acards' version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from msgspec.structs import replace

from acards import stats
from acards.card.model import Card
from acards.diagnostics.common import Comparison, availability, compare
from acards.diagnostics.cost import cost
from acards.diagnostics.fresh import Freshness, fresh, freshness
from acards.diagnostics.mechanism import NO_CONTROL, mechanism
from acards.diagnostics.reliability import reliability
from acards.diagnostics.transfer import transfer
from acards.diagnostics.values import GroupIndex, SplitValues, split_values
from acards.diagnostics.verdict import full_card
from acards.errors import Problem
from acards.evidence.cachekey import record_warning
from acards.evidence.paths import resolve_inside
from acards.evidence.prompts import Prompts
from acards.evidence.records import RecordTable
from acards.evidence.records_cache import DERIVED
from acards.evidence.seeds import FINE_TUNED, has_pair, pair_seeds
from acards.report.model import Cell, Diagnostic, Diagnostics, Reason
from acards.vocabulary import CONTROL_SHRINKAGE, DIAGNOSTICS

Training = tuple[set[str], list[str]]  # subjects and texts of the fine-tuning data


@dataclass
class CellEvidence:
    """Threshold-free statistics of one cell, computed once and reused for every claim."""

    cell: dict
    comparisons: dict[str, Comparison | None]  # heldout, fresh, transfer, capability, control
    unavailable: dict[str, list[Reason]]  # per comparison: why it cannot be made
    control_reduction: float | None  # Δ_C = G_U − G_C on the held-out split
    freshness_inputs: dict
    signatures: dict = field(default_factory=dict)  # thresholds key -> [(seed, signature)] of the pinned seeds
    fine_tuned_seeds: list[int] = field(default_factory=list)  # seeds of the cell's undefended and defended records
    cache: Any = None  # the RecordsCache that keeps weight signatures (None: computed on every run)


@dataclass
class Recomputed:
    """Every cell's evidence and its diagnostics under the card's thresholds, with what the claims
    step needs to diagnose a cell again under a claim's own thresholds."""

    evidence: dict[str, CellEvidence]  # by cell id
    thresholds: dict[str, dict]  # the card's, per diagnostic
    training: Training | None
    file_prompts: dict[str, list[str]]  # fresh prompts per task from the prompts file
    cells: list[Cell]  # the report's cells, in the card's order


def thresholds_for(card: Card, claim: dict | None = None) -> dict[str, dict]:
    """The thresholds in force for every diagnostic: the card's, or a claim's.  Under standard 1.1,
    D2 and D4 also need the reliability group's ``min_seeds`` (one setting for the three)."""
    thresholds = {name: card.thresholds(name, claim) for name in DIAGNOSTICS}
    if card.standard == "1.1":
        for name in ("fresh", "transfer"):
            thresholds[name]["min_seeds"] = thresholds["reliability"]["min_seeds"]
    return thresholds


def _compare_split(values: SplitValues, first: str, second: str, rng, bootstrap: int, split: str,
                   standard: str) -> tuple[Comparison | None, list[Reason]]:
    missing = availability(split, values.conditions, (first, second))
    if missing:
        return None, missing
    a, b, subjects, mask = values.paired(first, second)
    one, other = values.conditions[first], values.conditions[second]
    framings = {}
    if one.audit is not None and other.audit is not None:  # a gap split: each framing's mean, for the pages
        framings = {"framings_a": (one.audit[:, mask], one.deploy[:, mask]),
                    "framings_b": (other.audit[:, mask], other.deploy[:, mask])}
    return compare(a, b, subjects, one.seeds, other.seeds, rng, bootstrap, standard, **framings), []


def cell_evidence(cell: dict, index: GroupIndex, master_seed: int, bootstrap: int, standard: str = "1.0",
                  cache=None) -> CellEvidence:
    """The threshold-free statistics of one cell under the rules of ``standard``; each split
    bootstraps from its own stream.  ``cache``: the RecordsCache that keeps its weight signatures."""
    cell_id = cell["id"]
    splits = {
        "heldout": split_values(index, cell_id, "heldout", cell["task"]),
        "fresh": split_values(index, cell_id, "fresh", cell["task"]),
        "transfer": split_values(index, cell_id, "transfer", cell["transfer"]["task"]),
        "capability": split_values(index, cell_id, "capability"),
    }
    comparisons, unavailable = {}, {}
    for split in ("heldout", "fresh", "transfer"):
        rng = stats.cell_rng(master_seed, cell_id, split)
        comparisons[split], unavailable[split] = _compare_split(splits[split], "undefended", "defended", rng, bootstrap, split, standard)
    comparisons["capability"], unavailable["capability"] = _compare_split(splits["capability"], "defended", "undefended", None, 0,
                                                                          "capability", standard)
    comparisons["control"], unavailable["control"], control_reduction = None, [], None
    if CONTROL_SHRINKAGE in splits["heldout"].conditions:
        # The margin Δ_D − Δ_C = G_C − G_D, and the control's own reduction Δ_C = G_U − G_C.
        comparisons["control"], unavailable["control"] = _compare_split(splits["heldout"], CONTROL_SHRINKAGE, "defended", None, 0,
                                                                        "heldout", standard)
        control_u, _ = _compare_split(splits["heldout"], "undefended", CONTROL_SHRINKAGE, None, 0, "heldout", standard)
        control_reduction = control_u.difference if control_u else None
    elif "base" in (cell.get("checkpoints") or {}) and has_pair(cell):
        # The control could have been built: say that the mechanism was judged without it.
        unavailable["control"] = [NO_CONTROL]
    table = index.table
    heldout_subjects = {table.vocab["subject"][s] for s in splits["heldout"].subjects}
    fresh_subjects = {table.vocab["subject"][s] for s in splits["fresh"].subjects}
    fresh_rows = index.rows(cell_id, "fresh", cell["task"])
    fresh_prompts = sorted({table.prompts[int(r)] for r in fresh_rows if int(r) in table.prompts})
    inputs = {"fresh_subjects": fresh_subjects, "heldout_subjects": heldout_subjects,
              "fresh_prompts": fresh_prompts or None}
    return CellEvidence(cell, comparisons, unavailable, control_reduction, inputs,
                        fine_tuned_seeds=_fine_tuned_seeds(table, cell_id), cache=cache)


def _fine_tuned_seeds(table: RecordTable, cell_id: str) -> list[int]:
    """The training seeds of the cell's undefended and defended records."""
    if not len(table) or table.code("cell", cell_id) < 0:
        return []
    codes = [table.code("condition", name) for name in FINE_TUNED]
    rows = (table.columns["cell"] == table.code("cell", cell_id)) & np.isin(table.columns["condition"], codes)
    return sorted(set(table.columns["seed"][rows].tolist()))


def unpinned_seeds(evidence: CellEvidence) -> list[int]:
    """Seeds with fine-tuned records but no pinned checkpoints, in a cell that pins some (else [])."""
    pinned = {entry.seed for entry in pair_seeds(evidence.cell)}
    return [seed for seed in evidence.fine_tuned_seeds if seed not in pinned] if pinned else []


def warn_unpinned_seeds(card: Card, evidence: dict[str, CellEvidence]) -> None:
    """The evidence.unpinned-seed warning, once per cell (D3 also names the seeds in its reasons)."""
    for index, cell in enumerate(card.cells):
        missing = unpinned_seeds(evidence[cell["id"]])
        if missing:
            pinned = ", ".join(str(entry.seed) for entry in pair_seeds(cell))
            record_warning(Problem(
                "evidence.unpinned-seed",
                f"cell {cell['id']}: records hold undefended/defended outputs of training seed(s) "
                f"{', '.join(map(str, missing))}, whose checkpoints the card does not pin; D3 uses seed(s) {pinned} only",
                "pin every training seed's undefended and defended checkpoints under checkpoints.seeds",
                card.source.locate(f"/cells/{index}/checkpoints")))


def fresh_prompts_by_task(prompts: Prompts) -> dict[str, list[str]]:
    """Fresh prompts per task from the prompts file, for cells whose records carry no prompt."""
    found: dict[str, set[str]] = {}
    for (split, task, _item, _framing), prompt in prompts.index.items():
        if split == "fresh":
            found.setdefault(task, set()).add(prompt.prompt)
    return {task: sorted(texts) for task, texts in found.items()}


def check_freshness(evidence: CellEvidence, training: Training | None, file_prompts: dict[str, list[str]],
                    max_shared_ngram: int) -> Freshness:
    """D2's freshness check of one cell: subjects disjoint from held-out and training, no shared n-gram."""
    inputs = evidence.freshness_inputs
    others = inputs["heldout_subjects"] | (training[0] if training else set())
    prompts = inputs["fresh_prompts"] or file_prompts.get(evidence.cell["task"])
    return freshness(inputs["fresh_subjects"], others, prompts, training[1] if training else None, max_shared_ngram)


def signatures(card: Card, evidence: CellEvidence, th: dict) -> list[tuple[int, dict]]:
    """The weight signature of every pinned seed (in the card's order) under these mechanism
    thresholds; computed once, since SVDs are not free.  [] when no seed pins both checkpoints."""
    checkpoints = evidence.cell.get("checkpoints") or {}
    key = tuple(sorted((k, v) for k, v in th.items() if k not in ("z", "justification")))
    if key not in evidence.signatures:
        at = f"/cells/{card.cells.index(evidence.cell)}/checkpoints"
        shared = {n: (checkpoints[n], f"{at}/{n}") for n in ("base", "reference_subspace") if n in checkpoints}
        found = []
        for entry in pair_seeds(evidence.cell):
            own = {n: (entry.pointer(n), f"{at}{entry.at}/{n}") for n in FINE_TUNED}
            if entry.reference is not None:  # the seed's own reference subspace replaces the cell's
                own["reference_subspace"] = (entry.reference, f"{at}{entry.at}/reference_subspace")
            rank = (entry.reference or checkpoints.get("reference_subspace") or {}).get("rank")
            found.append((entry.seed, cached_signature(card, evidence.cache, {**shared, **own}, th, rank)))
        evidence.signatures[key] = found
    return evidence.signatures[key]


SIGNATURE_KEY = "acards/weight-signature-key/1"
SIGNATURE_LIMIT = 64 * 1024 * 1024  # the largest signature entry read: a few numbers per module


def cached_signature(card: Card, cache, pointers: dict[str, tuple[dict, str]], th: dict, rank: int | None) -> dict:
    """The weight signature of one seed's checkpoints (``pointers``: name -> (the card's pointer,
    its JSON pointer)), read by :func:`~acards.evidence.checkpoints.read_signature` (every file
    hashed as read and checked against the digest the card pins; full weights streamed) and kept in
    ``cache`` (a RecordsCache, or None) under the digest of the pinned digests, the thresholds, the
    standard, the reference rank and acards' version: a re-verify of the same checkpoints neither
    reads them again nor imports what reads them."""
    from acards import __version__
    from acards.evidence.cachekey import framed

    key = None
    if cache is not None and all(pointer.get("sha256") for pointer, _ in pointers.values()):
        key = hashlib.sha256(framed(
            SIGNATURE_KEY, DERIVED["signature"][1], __version__, card.standard, rank,
            json.dumps(sorted((name, pointer["sha256"]) for name, (pointer, _) in pointers.items())),
            json.dumps({k: v for k, v in th.items() if k != "justification"}, sort_keys=True))).hexdigest()
        entry = cache.get_derived("signature", key, SIGNATURE_LIMIT)
        if entry is not None:
            return entry["extra"]
    from acards.evidence.checkpoints import Pinned, read_signature

    pinned = {}
    for name, (pointer, at) in pointers.items():
        location = card.source.locate(f"{at}/path")
        pinned[name] = Pinned(resolve_inside(card.folder, pointer["path"], location), pointer.get("sha256"), pointer["path"], location)
    signature = read_signature(pinned, th, card.standard, rank)
    try:  # the signature as a cached entry gives it back (lists, floats), whether it is cached or not
        signature = json.loads(json.dumps(signature))
    except (TypeError, ValueError):
        return signature  # not plain JSON data: never cached
    if key is not None:
        cache.put_derived("signature", key, {"columns": {}, "vocab": {}, "outputs": {}, "prompts": {}, "extra": signature},
                          SIGNATURE_LIMIT)
    return signature


def diagnose(card: Card, evidence: CellEvidence, thresholds: dict[str, dict], freshness_check: Freshness) -> Diagnostics:
    """All five diagnostics of one cell under one set of thresholds."""
    c, u = evidence.comparisons, evidence.unavailable
    d1 = reliability(c["heldout"], u["heldout"], thresholds["reliability"], card.claims, evidence.cell["id"])
    heldout_relative = d1.estimates.get("relative_reduction")
    cell = evidence.cell
    return Diagnostics(
        reliability=d1,
        fresh=fresh(c["fresh"], u["fresh"], heldout_relative, freshness_check, thresholds["fresh"]),
        mechanism=mechanism(None, c["control"], u["control"], evidence.control_reduction, cell["declared_mechanism"],
                            card.coding_mode(cell), thresholds["mechanism"],
                            seeds=signatures(card, evidence, thresholds["mechanism"]), unpinned=unpinned_seeds(evidence)),
        transfer=transfer(c["transfer"], u["transfer"], heldout_relative, thresholds["transfer"],
                          cell["transfer"]["task"], cell["transfer"]["differs_in"]),
        cost=cost(c["capability"], u["capability"], thresholds["cost"]),
    )


def diagnose_cell(card: Card, evidence: CellEvidence, thresholds: dict[str, dict], training: Training | None,
                  file_prompts: dict[str, list[str]]) -> Diagnostics:
    """:func:`diagnose` with the cell's freshness check under the same thresholds."""
    check = check_freshness(evidence, training, file_prompts, thresholds["fresh"]["max_shared_ngram"])
    return diagnose(card, evidence, thresholds, check)


def apply_holm(reliabilities: list[Diagnostic]) -> list[Diagnostic]:
    """The reliability results of the card's cells with their p-values Holm-adjusted across the
    cells (``p_holm``, where a ``p_value`` is reported); nothing else changes."""
    pvalues = np.array([d.estimates.get("p_value") if d.estimates.get("p_value") is not None else np.nan for d in reliabilities], float)
    adjusted = stats.holm(pvalues) if len(pvalues) else pvalues
    return [with_p_holm(d, float(p) if np.isfinite(p) else None) if "p_value" in d.estimates else d
            for d, p in zip(reliabilities, adjusted)]


def with_p_holm(diagnostic: Diagnostic, p_holm: float | None) -> Diagnostic:
    """A reliability result with ``p_holm`` set (in its place among the estimates, when there)."""
    return replace(diagnostic, estimates={**diagnostic.estimates, "p_holm": p_holm})


def recompute(card: Card, table: RecordTable, prompts: Prompts, training: Training | None, *, bootstrap: int,
              seed: int, cache=None) -> Recomputed:
    """Every cell's statistics, and its diagnostics and full-card verdicts under the card's thresholds.

    ``prompts`` is the card's prompts file, ``training`` its fine-tuning data
    (:func:`acards.pipeline.load.read_training`); ``cache``: the RecordsCache that keeps weight
    signatures (None: none is read or written)."""
    index = GroupIndex(table)
    file_prompts = fresh_prompts_by_task(prompts)
    evidence = {cell["id"]: cell_evidence(cell, index, seed, bootstrap, card.standard, cache) for cell in card.cells}
    warn_unpinned_seeds(card, evidence)
    thresholds = thresholds_for(card)
    per_cell = [diagnose_cell(card, evidence[cell["id"]], thresholds, training, file_prompts) for cell in card.cells]
    adjusted = apply_holm([diagnostics.reliability for diagnostics in per_cell])
    cells = []
    for cell, diagnostics, d1 in zip(card.cells, per_cell, adjusted):
        verdicts = full_card(diagnostics)
        mode = card.coding_mode(cell)
        cells.append(Cell(id=cell["id"], coding_mode=mode, diagnostics=replace(diagnostics, reliability=d1),
                          full_card=replace(verdicts, headline=verdicts.strict if mode == "strict" else verdicts.permissive)))
    return Recomputed(evidence, thresholds, training, file_prompts, cells)
