"""Several scorers (judges) of the same outputs: the card's ``judges``, the records' ``scores``.

- :func:`resolve_judges` (as the records are read, acards.pipeline.load, so before any scorer
  runs and for every command that reads them) checks that every scorer
  the card names is carried by the records (``records.unknown-scorer``), that a record giving the
  primary's score twice gives it once (``records.score-conflict``), and takes the primary's score
  from ``scores`` where ``score`` is absent: from then on ``score`` is the primary's, as always.
- :func:`judge_scorers` (after recomputing under the primary) recomputes every cell under each
  other scorer, with the same code (the scorer's scores in place of ``score``; the weight
  signatures, which do not depend on a scorer, shared), and adds to each report cell its
  ``judges`` block: every scorer's outcomes and reduction numbers, and Cohen's κ between every
  two scorers per split (acards.diagnostics.agreement).
- The claims step judges a claim with ``require_all_scorers`` under each scorer
  (acards.pipeline.claims).

Scores come from the records only: outputs the card's ``scorer`` scores (supplied without a score,
or regenerated) get the primary's score alone, so under another scorer they are unscored, and a
comparison with unscored records is ``insufficient`` (reason ``unscored-records``), as it is under
the primary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from msgspec.structs import replace

from acards.card.model import Card
from acards.diagnostics.agreement import THRESHOLD, pairwise
from acards.diagnostics.values import GroupIndex
from acards.diagnostics.verdict import full_card
from acards.errors import AcardsError, Problem
from acards.evidence.records import SCORES, RecordTable
from acards.pipeline.recompute import Recomputed, apply_holm, cell_evidence, diagnose_cell
from acards.report.model import Cell, Diagnostics
from acards.vocabulary import DIAGNOSTICS

MAX_PROBLEMS = 20
# The report's numbers of each scorer, per diagnostic (the primary's diagnostics hold them all).
NUMBERS = {
    "reliability": ("reduction", "se_total", "reduction_lower", "ci_low", "ci_high", "relative_reduction", "n_items"),
    "fresh": ("reduction", "se_total", "reduction_lower", "relative_reduction", "retention", "n_items"),
    "transfer": ("reduction", "se_total", "reduction_lower", "relative_reduction", "retention", "n_items"),
    "cost": ("delta", "se", "delta_lower", "n_items"),
}
SPLITS = {"reliability": "heldout", "fresh": "fresh", "transfer": "transfer", "cost": "capability"}


@dataclass(frozen=True)
class Judges:
    """The card's scorers: the primary, then the others, as the card names them."""

    primary: str
    others: list[str]

    @property
    def names(self) -> list[str]:
        return [self.primary, *self.others]


def declared(card: Card) -> Judges | None:
    found = card.data.get("judges")
    return Judges(found["primary"], list(found["others"])) if found else None


def resolve_judges(card: Card, table: RecordTable) -> Judges | None:
    """The card's judges checked against the records, the primary's scores moved into ``score``
    (in place); None when the card declares no judges (the records' ``scores`` are then unused)."""
    judges = declared(card)
    if judges is None:
        return None
    carried = table.scorers()
    problems = []
    for position, name in enumerate(judges.names):
        if name not in carried:
            pointer = "/judges/primary" if position == 0 else f"/judges/others/{position - 1}"
            problems.append(Problem("records.unknown-scorer", f"no record carries a score of the scorer {name!r} in `scores`",
                                    "the records' scores name: " + (", ".join(carried) or "no scorer"), card.source.locate(pointer)))
    if problems:
        raise AcardsError.collect(problems)
    score, primary = table.columns["score"], table.columns[SCORES + judges.primary]
    both = ~np.isnan(score) & ~np.isnan(primary)
    conflicts = np.flatnonzero(both & (score != primary))
    if len(conflicts):
        raise AcardsError.collect([Problem(
            "records.score-conflict", f"score {score[row]} differs from scores.{judges.primary} {primary[row]}, "
            f"the primary scorer's score", "give the primary's score once (`score` or `scores`), or the same value in both",
            table.where(int(row))) for row in conflicts[:MAX_PROBLEMS]])
    taken = np.flatnonzero(np.isnan(score) & ~np.isnan(primary))
    score[taken] = primary[taken]
    for row in taken.tolist():  # scored now: the card's scorer must not score them again
        table.outputs.pop(row, None)
    return judges


def under_scorer(table: RecordTable, name: str) -> RecordTable:
    """The table as the scorer ``name`` scores it (its scores in place of ``score``)."""
    return dataclasses.replace(table, columns={**table.columns, "score": table.columns[SCORES + name]})


def recompute_under(card: Card, table: RecordTable, primary: Recomputed, *, bootstrap: int, seed: int) -> Recomputed:
    """Every cell recomputed from ``table`` (one scorer's scores) exactly as under the primary
    (same thresholds, bootstrap streams and freshness inputs), sharing the primary's weight signatures."""
    index = GroupIndex(table)
    evidence = {}
    for cell in card.cells:
        found = cell_evidence(cell, index, seed, bootstrap, card.standard)
        found.signatures = primary.evidence[cell["id"]].signatures  # the weights do not depend on the scorer
        evidence[cell["id"]] = found
    per_cell = [diagnose_cell(card, evidence[cell["id"]], primary.thresholds, primary.training, primary.file_prompts)
                for cell in card.cells]
    cells = []
    for cell, diagnostics, d1 in zip(card.cells, per_cell, apply_holm([d.reliability for d in per_cell])):
        verdicts, mode = full_card(diagnostics), card.coding_mode(cell)
        cells.append(Cell(id=cell["id"], coding_mode=mode, diagnostics=replace(diagnostics, reliability=d1),
                          full_card=replace(verdicts, headline=verdicts.strict if mode == "strict" else verdicts.permissive)))
    return Recomputed(evidence, primary.thresholds, primary.training, primary.file_prompts, cells)


def scorer_summary(diagnostics: Diagnostics, headline: bool) -> dict:
    """One scorer's outcomes and numbers in one cell, as the judges block gives them."""
    numbers = {}
    for name, keys in NUMBERS.items():
        estimates = diagnostics.by_name(name).estimates
        numbers[SPLITS[name]] = {key: estimates.get(key) for key in keys}
    return {"outcomes": {name: diagnostics.by_name(name).outcome for name in DIAGNOSTICS}, "full_card": headline,
            "estimates": numbers}


def split_rows(index: GroupIndex, cell: dict) -> dict[str, np.ndarray]:
    """The rows of each split of a cell, as the diagnostics select them (task per split)."""
    return {"heldout": index.rows(cell["id"], "heldout", cell["task"]), "fresh": index.rows(cell["id"], "fresh", cell["task"]),
            "transfer": index.rows(cell["id"], "transfer", cell["transfer"]["task"]),
            "capability": index.rows(cell["id"], "capability")}


def judges_block(judges: Judges, cell: dict, index: GroupIndex, by_scorer: dict[str, Recomputed]) -> dict:
    """A report cell's ``judges``: each scorer's summary and unscored records per split, κ per split."""
    table = index.table
    columns = {name: table.columns["score"] if name == judges.primary else table.columns[SCORES + name] for name in judges.names}
    rows = split_rows(index, cell)
    scorers = {}
    for name in judges.names:
        found = next(c for c in by_scorer[name].cells if c.id == cell["id"])
        scorers[name] = {**scorer_summary(found.diagnostics, bool(found.full_card.headline)),
                         "unscored": {split: int(np.isnan(columns[name][r]).sum()) for split, r in rows.items()}}
    agreement = {split: pairwise({name: column[r] for name, column in columns.items()}) for split, r in rows.items()}
    return {"primary": judges.primary, "binarised_at": THRESHOLD, "scorers": scorers, "agreement": agreement}


def judge_scorers(card: Card, judges: Judges | None, table: RecordTable, recomputed: Recomputed, *, bootstrap: int,
                  seed: int) -> tuple[list[Cell], dict[str, Recomputed]]:
    """The report cells with their ``judges`` blocks, and each scorer's recomputation (the primary's
    is ``recomputed``); without judges, the cells as they are and {}."""
    if judges is None:
        return recomputed.cells, {}
    by_scorer = {judges.primary: recomputed}
    for name in judges.others:
        by_scorer[name] = recompute_under(card, under_scorer(table, name), recomputed, bootstrap=bootstrap, seed=seed)
    index = GroupIndex(table)
    cells = [replace(cell, judges=judges_block(judges, card.cell(cell.id), index, by_scorer)) for cell in recomputed.cells]
    return cells, by_scorer
