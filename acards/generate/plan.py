"""Which outputs must be produced: records lacking both output and score, and missing controls.

``read_prompts`` reads the card's ``evidence.prompts`` JSONL (schema/prompt-1.0.schema.json) into
an index keyed by ``(split, task, item, framing)``; ``missing_requests`` and ``control_requests``
turn records and the card's cells into :class:`~acards.generate.Request` lists, sorted by record
identity so that every run sees the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import msgspec
import numpy as np

from acards.errors import AcardsError, Location, Problem
from acards.generate import Request
from acards.vocabulary import CONTROL_SHRINKAGE

MAX_PROBLEMS = 20
FRAMINGS = ("audit", "deploy")


@dataclass
class Prompt:
    item: str
    split: str
    task: str
    subject: str
    framing: str
    prompt: str
    system: str | None = None
    reference: str | None = None


@dataclass
class Prompts:
    """The prompts file as ``{(split, task, item, framing): Prompt}``; ``file`` is its card path."""

    index: dict[tuple[str, str, str, str], Prompt] = field(default_factory=dict)
    file: str | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key) -> bool:
        return key in self.index

    def get(self, split: str, task: str, item: str, framing: str) -> Prompt | None:
        return self.index.get((split, task, str(item), framing))

    def items_of(self, split: str, task: str) -> list[str]:
        """Item ids of one split and task, in file order, each once."""
        seen: dict[str, None] = {}
        for (s, t, item, _framing) in self.index:
            if s == split and t == task:
                seen.setdefault(item, None)
        return list(seen)


def _unset(value):
    return None if value is msgspec.UNSET else value


def read_prompts(card) -> Prompts:
    """The card's prompts file as an index; an empty index when the card points at none.

    Every line is validated against the prompt schema; up to 20 problems are collected before
    raising, and a repeated ``(split, task, item, framing)`` is refused.
    """
    from acards.evidence.paths import open_inside
    from acards.evidence.records import schema_struct

    pointer = (card.data.get("evidence") or {}).get("prompts")
    if not pointer:
        return Prompts({}, None)
    relative = pointer["path"]
    location = card.source.locate("/evidence/prompts/path")
    decoder = msgspec.json.Decoder(schema_struct("prompt-1.0"))
    index: dict[tuple[str, str, str, str], Prompt] = {}
    problems: list[Problem] = []
    first_line: dict[tuple, int] = {}
    with open_inside(card.folder, relative, location) as handle:
        data = handle.read()
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            row = decoder.decode(raw)
        except msgspec.ValidationError as error:
            if len(problems) < MAX_PROBLEMS:
                problems.append(Problem("records.invalid-prompt", f"prompt line {number}: {error}",
                                        "each line of the prompts file follows schema/prompt-1.0.schema.json "
                                        "(item, split, task, subject, framing, prompt; optional system, reference)",
                                        Location(relative, number)))
            continue
        except msgspec.DecodeError as error:
            if len(problems) < MAX_PROBLEMS:
                problems.append(Problem("records.invalid-prompt", f"prompt line {number} is not valid JSON ({error})",
                                        "each line of the prompts file is one JSON object", Location(relative, number)))
            continue
        prompt = Prompt(str(row.item), row.split, row.task, row.subject, row.framing, row.prompt,
                        _unset(row.system), _unset(row.reference))
        key = (prompt.split, prompt.task, prompt.item, prompt.framing)
        if key in index:
            if len(problems) < MAX_PROBLEMS:
                problems.append(Problem("records.duplicate-prompt",
                                        f"prompt line {number} repeats (split, task, item, framing) of line {first_line[key]}",
                                        "give each item one prompt per framing", Location(relative, number)))
            continue
        index[key] = prompt
        first_line[key] = number
    if problems:
        raise AcardsError.collect(problems)
    return Prompts(index, relative)


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


def _rows(table, names: tuple[str, ...], rows: np.ndarray) -> Iterator[tuple[int, dict]]:
    for row in rows:
        row = int(row)
        yield row, {name: table.vocab[name][table.columns[name][row]] for name in names}


def missing_requests(card, table, prompts: Prompts) -> list[Request]:
    """One request per record that has neither an output nor a score, in identity order."""
    score, has_output = table.columns["score"], table.columns["has_output"]
    rows = np.flatnonzero(np.isnan(score) & ~has_output)
    requests, problems = [], []
    names = ("cell", "condition", "split", "task", "item", "framing")
    for row, values in _rows(table, names, rows):
        prompt = prompts.get(values["split"], values["task"], values["item"], values["framing"])
        if prompt is None:
            if len(problems) < MAX_PROBLEMS:
                problems.append(_no_prompt(prompts, values["split"], values["task"], values["item"], values["framing"], table.where(row)))
            continue
        requests.append(_request(values["cell"], values["condition"], values["split"], values["task"], values["item"],
                                 values["framing"], table.columns["seed"][row], table.columns["sample"][row], prompt))
    if problems:
        raise AcardsError.collect(problems)
    return sorted(requests, key=Request.identity)


def sample_indices(card) -> range:
    """The sample indices a condition is generated with: ``num_samples`` when sampling, else [0]."""
    settings = card.section("generation")
    return range(int(settings["num_samples"])) if settings["do_sample"] else range(1)


def control_requests(card, table, prompts: Prompts) -> list[Request]:
    """control:shrinkage requests for every cell that has base, undefended and defended checkpoints but no
    control:shrinkage heldout records: each heldout item × both framings × the sample indices,
    filed under the cell's ``checkpoints.seed``.

    The heldout items are those of the cell's heldout records (so the control is paired with D1's
    items); a cell without heldout records takes the prompts file's heldout items of its task.
    """
    requests, problems = [], []
    samples = sample_indices(card)
    columns = table.columns
    split_code, control_code = table.code("split", "heldout"), table.code("condition", CONTROL_SHRINKAGE)
    for index, cell in enumerate(card.cells):
        checkpoints = cell.get("checkpoints") or {}
        if not (checkpoints.get("base") and checkpoints.get("undefended") and checkpoints.get("defended")):
            continue  # the control is U's adapter on the base model: without all three it cannot be built
        cell_code = table.code("cell", cell["id"])
        in_cell = (columns["cell"] == cell_code) & (columns["split"] == split_code) if len(table) else np.zeros(0, bool)
        if cell_code >= 0 and control_code >= 0 and np.any(in_cell & (columns["condition"] == control_code)):
            continue
        pairs: dict[tuple[str, str], None] = {}
        for row in np.flatnonzero(in_cell):
            pairs.setdefault((table.vocab["task"][columns["task"][row]], table.vocab["item"][columns["item"][row]]), None)
        if not pairs:
            for item in prompts.items_of("heldout", cell["task"]):
                pairs.setdefault((cell["task"], item), None)
        seed = int(checkpoints.get("seed", 0))
        where = card.source.locate(f"/cells/{index}/checkpoints")
        for task, item in pairs:
            for framing in FRAMINGS:
                prompt = prompts.get("heldout", task, item, framing)
                if prompt is None:
                    if len(problems) < MAX_PROBLEMS:
                        problems.append(_no_prompt(prompts, "heldout", task, item, framing, where))
                    continue
                for sample in samples:
                    requests.append(_request(cell["id"], CONTROL_SHRINKAGE, "heldout", task, item, framing, seed, sample, prompt))
    if problems:
        raise AcardsError.collect(problems)
    return sorted(requests, key=Request.identity)


def to_records(requests: list[Request], outputs: list[str | None], scores: list[float] | None = None) -> list[dict]:
    """Records (schema/record-1.0) for generated outputs, ready to be written as JSONL."""
    records = []
    for position, (request, output) in enumerate(zip(requests, outputs)):
        if output is None:
            continue
        record = {"cell": request.cell, "condition": request.condition, "split": request.split, "task": request.task,
                  "subject": request.subject, "item": request.item, "framing": request.framing, "seed": request.seed,
                  "sample": request.sample, "prompt": request.prompt, "output": output}
        if scores is not None and scores[position] == scores[position]:  # not NaN
            record["score"] = float(scores[position])
        records.append(record)
    return records
