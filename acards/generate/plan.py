"""Which outputs must be produced: records lacking both output and score, and missing controls.

``missing_requests`` and ``control_requests`` turn records, the card's prompts file (read by
:func:`acards.evidence.prompts.read_prompts`) and the card's cells into
:class:`~acards.generate.Request` lists, sorted by record identity so that every run sees the
same order.
"""

from __future__ import annotations

import numpy as np

from acards.errors import AcardsError, Location, Problem
from acards.evidence.prompts import Prompt, Prompts
from acards.evidence.seeds import pair_seeds
from acards.generate.requests import Request
from acards.vocabulary import CONTROL_SHRINKAGE

MAX_PROBLEMS = 20
FRAMINGS = ("audit", "deploy")


def _request(cell: str, condition: str, split: str, task: str, item: str, framing: str, seed: int, sample: int,
             prompt: Prompt) -> Request:
    return Request(cell=cell, condition=condition, split=split, task=task, item=item, framing=framing,
                   seed=int(seed), sample=int(sample), prompt=prompt.prompt, system=prompt.system,
                   reference=prompt.reference, subject=prompt.subject)


def _no_prompt(prompts: Prompts, split: str, task: str, item: str, framing: str, where: Location) -> Problem:
    if prompts.file is None:
        return Problem("evidence.prompts-missing",
                       f"a record of item {item!r} ({split}/{task}, {framing}) has neither output nor score, and the card points at no prompts file",
                       "add evidence.prompts (a JSONL of item, split, task, subject, framing, prompt) so acards can regenerate the output, or supply the output",
                       where)
    return Problem("evidence.prompt-not-found",
                   f"no prompt for item {item!r} (split {split}, task {task}, framing {framing}) in {prompts.file}",
                   "add the prompt to the prompts file, or supply the record's output", where)


def _decoded(table, name: str, rows: np.ndarray) -> list:
    """The values of a coded column at ``rows``, a column at a time (a re-verify asks for every row)."""
    vocab = table.vocab[name]
    return [vocab[code] for code in table.columns[name][rows].tolist()]


def missing_requests(table, prompts: Prompts) -> list[Request]:
    """One request per record that has neither an output nor a score, in identity order."""
    score, has_output = table.columns["score"], table.columns["has_output"]
    rows = np.flatnonzero(np.isnan(score) & ~has_output)
    requests, problems = [], []
    names = ("cell", "condition", "split", "task", "item", "framing")
    columns = [_decoded(table, name, rows) for name in names]
    seeds, samples = table.columns["seed"][rows].tolist(), table.columns["sample"][rows].tolist()
    # Each row's identity (Request.identity's fields, in its order) made once, sorted before any
    # Request exists: the requests come out in identity order without a key call per request.
    identities = sorted(zip(*columns, seeds, samples, rows.tolist()))
    for cell, condition, split, task, item, framing, seed, sample, row in identities:
        prompt = prompts.get(split, task, item, framing)
        if prompt is None:
            problems.append((row, split, task, item, framing))
            continue
        requests.append(Request(cell, condition, split, task, item, framing, seed, sample, prompt.prompt, prompt.system,
                                prompt.reference, prompt.subject))
    if problems:  # the first rows of the file, as they are read
        raise AcardsError.collect([_no_prompt(prompts, split, task, item, framing, table.where(row))
                                   for row, split, task, item, framing in sorted(problems)[:MAX_PROBLEMS]])
    return requests


def sample_indices(card) -> range:
    """The sample indices a condition is generated with: ``num_samples`` when sampling, else [0]."""
    settings = card.section("generation")
    return range(int(settings["num_samples"])) if settings["do_sample"] else range(1)


def control_requests(card, table, prompts: Prompts) -> list[Request]:
    """control:shrinkage requests for every cell that has a base checkpoint and, for some training
    seed, undefended and defended checkpoints, but no control:shrinkage heldout records: each heldout
    item × both framings × the sample indices, for every such seed (each seed's control is built
    from its own pair, acards.generate.models).

    The heldout items are those of the cell's heldout records (so the control is paired with D1's
    items); a cell without heldout records takes the prompts file's heldout items of its task.
    """
    requests, problems = [], []
    samples = sample_indices(card)
    columns = table.columns
    split_code, control_code = table.code("split", "heldout"), table.code("condition", CONTROL_SHRINKAGE)
    for index, cell in enumerate(card.cells):
        checkpoints = cell.get("checkpoints") or {}
        seeds = [entry.seed for entry in pair_seeds(cell)]
        if not (checkpoints.get("base") and seeds):
            continue  # the control is U scaled on the base model: without base, U and D it cannot be built
        cell_code = table.code("cell", cell["id"])
        in_cell = (columns["cell"] == cell_code) & (columns["split"] == split_code) if len(table) else np.zeros(0, bool)
        if cell_code >= 0 and control_code >= 0 and np.any(in_cell & (columns["condition"] == control_code)):
            continue
        pairs: dict[tuple[str, str], None] = {}
        rows = np.flatnonzero(in_cell)
        if len(rows):  # each (task, item) at its first row, in row order: a row at a time would decode thousands
            pair_codes = columns["task"][rows].astype(np.int64) * len(table.vocab["item"]) + columns["item"][rows]
            firsts = rows[np.sort(np.unique(pair_codes, return_index=True)[1])]
            for task, item in zip(_decoded(table, "task", firsts), _decoded(table, "item", firsts)):
                pairs.setdefault((task, item), None)
        if not pairs:
            for item in prompts.items_of("heldout", cell["task"]):
                pairs.setdefault((cell["task"], item), None)
        where = card.source.locate(f"/cells/{index}/checkpoints")
        for task, item in pairs:
            for framing in FRAMINGS:
                prompt = prompts.get("heldout", task, item, framing)
                if prompt is None:
                    if len(problems) < MAX_PROBLEMS:
                        problems.append(_no_prompt(prompts, "heldout", task, item, framing, where))
                    continue
                for seed in seeds:
                    for sample in samples:
                        requests.append(_request(cell["id"], CONTROL_SHRINKAGE, "heldout", task, item, framing, seed, sample, prompt))
    if problems:
        raise AcardsError.collect(problems)
    return sorted(requests, key=Request.identity)


def to_records(requests: list[Request], outputs: list[str | None],
               scores: list[float] | None = None) -> dict[tuple, dict]:
    """Records (schema/record-1.0) for generated outputs, keyed by their request's identity.

    ``outputs[i]`` and ``scores[i]`` belong to ``requests[i]``; a request without an output (one
    outside the shard that was run) has no record, so a caller finds each request's record by
    ``request.identity()`` and never by position.  Insertion order is request order."""
    records: dict[tuple, dict] = {}
    for position, (request, output) in enumerate(zip(requests, outputs, strict=True)):
        if output is None:
            continue
        identity = request.identity()
        if identity in records:
            raise ValueError(f"two requests share the record identity {identity}")
        record = {"cell": request.cell, "condition": request.condition, "split": request.split, "task": request.task,
                  "subject": request.subject, "item": request.item, "framing": request.framing, "seed": request.seed,
                  "sample": request.sample, "prompt": request.prompt, "output": output}
        if scores is not None and scores[position] == scores[position]:  # not NaN
            record["score"] = float(scores[position])
        records[identity] = record
    return records
