"""From records to item-level values: the per-seed installed gap (or accuracy) of each item.

Pure numpy over a :class:`~acards.evidence.records.RecordTable`.  For one (cell, split, task) and one
condition, ``values[s, i]`` is item i's audit−deploy score difference under seed s, each framing
averaged over its samples (capability split: the deploy score itself, i.e. correctness).  An item
enters a comparison only if it is complete — every seed of both conditions has both framings —
so that U and D are compared on exactly the same items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only the type: this module reads columns, never files
    from acards.evidence.records import RecordTable



@dataclass
class ConditionValues:
    seeds: np.ndarray  # (S,) training seeds
    values: np.ndarray  # (S, n_items) per-seed item value; nan where incomplete
    unscored: int  # records of this condition lacking a score
    # (S, n_items) per-seed mean score under each framing (values = audit − deploy); None on the capability split
    audit: np.ndarray | None = None
    deploy: np.ndarray | None = None


@dataclass
class SplitValues:
    """Item-level values of every condition on one (cell, split, task)."""

    items: np.ndarray  # (n,) item codes
    subjects: np.ndarray  # (n,) subject codes
    conditions: dict[str, ConditionValues]

    def paired(self, first: str, second: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(first values, second values, subject codes, item mask) on items complete in both."""
        a, b = self.conditions[first].values, self.conditions[second].values
        mask = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
        return a[:, mask], b[:, mask], self.subjects[mask], mask


class GroupIndex:
    """Row indices of a table grouped by (cell, split, task), built with one sort."""

    def __init__(self, table: "RecordTable"):
        self.table = table
        columns = table.columns
        n_split, n_task = len(table.vocab["split"]) or 1, len(table.vocab["task"]) or 1
        key = (columns["cell"].astype(np.int64) * n_split + columns["split"]) * n_task + columns["task"]
        order = np.argsort(key, kind="stable")
        sorted_key = key[order]
        starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(key) else np.zeros(0, int)
        ends = np.r_[starts[1:], len(key)]
        self._rows = {int(sorted_key[s]): order[s:e] for s, e in zip(starts, ends)}
        self._radix = (n_split, n_task)

    def rows(self, cell: str, split: str, task: str | None = None) -> np.ndarray:
        """Rows of (cell, split, task); with task None, every task of that split."""
        table = self.table
        cell_code, split_code = table.code("cell", cell), table.code("split", split)
        if cell_code < 0 or split_code < 0:
            return np.zeros(0, np.int64)
        n_split, n_task = self._radix
        tasks = range(len(table.vocab["task"])) if task is None else [table.code("task", task)]
        keys = [(cell_code * n_split + split_code) * n_task + t for t in tasks if t >= 0]
        parts = [self._rows[key] for key in keys if key in self._rows]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def split_values(index: GroupIndex, cell: str, split: str, task: str | None = None) -> SplitValues:
    """Per-condition, per-seed item values on one (cell, split, task)."""
    table = index.table
    rows = index.rows(cell, split, task)
    columns = {name: values[rows] for name, values in table.columns.items()}
    items, item_pos = np.unique(columns["item"], return_inverse=True)
    subjects = np.zeros(len(items), np.int64)
    subjects[item_pos] = columns["subject"]
    capability = split == "capability"
    audit = table.code("framing", "audit")
    conditions = {}
    for condition_code in np.flatnonzero(np.bincount(columns["condition"])):  # the codes present, in order
        mine = columns["condition"] == condition_code
        seeds, seed_pos = np.unique(columns["seed"][mine], return_inverse=True)
        score = columns["score"][mine]
        unscored = int(np.isnan(score).sum())
        framing = (columns["framing"][mine] == audit).astype(np.int64)  # 1 = audit, 0 = deploy
        n, s = len(items), len(seeds)
        flat = (seed_pos * n + item_pos[mine]) * 2 + framing
        scored = np.isfinite(score)
        total = np.bincount(flat[scored], weights=score[scored], minlength=s * n * 2)
        count = np.bincount(flat[scored], minlength=s * n * 2)
        unscored_cells = np.bincount(flat[~scored], minlength=s * n * 2) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / count  # samples averaged; nan where no scored record
        mean[unscored_cells] = np.nan  # an item with an unscored sample is incomplete, not biased
        mean = mean.reshape(s, n, 2)
        values = mean[:, :, 0] if capability else mean[:, :, 1] - mean[:, :, 0]
        framings = (None, None) if capability else (mean[:, :, 1], mean[:, :, 0])
        conditions[table.vocab["condition"][condition_code]] = ConditionValues(seeds, values, unscored, *framings)
    return SplitValues(items, subjects, conditions)
