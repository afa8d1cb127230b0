"""Spot check: when the authors supplied outputs, regenerate a seeded random subset and compare.

Eligible records carry an output, belong to a condition acards can build for their cell
(``base`` needs ``checkpoints.base``; ``undefended``/``defended`` their checkpoint pinned for the
record's training seed; ``control:shrinkage`` both of that seed) and have a prompt: any pinned seed
may be drawn.  ``n`` of them are
drawn with ``numpy.random.default_rng(seed)``; their supplied outputs are read back from the
records files, regenerated through :func:`acards.generate.run` (so through the cache), and
compared exactly.  With sampling (``do_sample: true``) a match needs the authors to have used the
same backend and seeding, so a low rate is expected there and the result says so.
"""

from __future__ import annotations

from typing import Any

import msgspec
import numpy as np

from acards.evidence.prompts import Prompts
from acards.evidence.seeds import for_seed
from acards.generate.requests import Request
from acards.vocabulary import CONTROL_SHRINKAGE

MAX_LISTED = 10


def _eligible_condition(card, cell_id: str, condition: str, seed: int) -> bool:
    cell = next((c for c in card.cells if c["id"] == cell_id), None)
    if cell is None:
        return False
    checkpoints = cell.get("checkpoints") or {}
    if not checkpoints.get("base"):
        return False
    if condition == "base":
        return True
    pinned = for_seed(cell, seed)
    if pinned is None:
        return False
    if condition in ("undefended", "defended"):
        return pinned.pointer(condition) is not None
    return condition == CONTROL_SHRINKAGE and pinned.pair


def _supplied_outputs(card, table, rows: list[int]) -> dict[int, str]:
    """The output field of each chosen record, read back from its file and line."""
    from acards import jsonl
    from acards.errors import AcardsError
    from acards.evidence.paths import open_inside
    from acards.schemas import schema_struct

    decoder = msgspec.json.Decoder(schema_struct("record-1.0"))
    wanted: dict[int, dict[int, int]] = {}
    for row in rows:
        wanted.setdefault(int(table.file_index[row]), {})[int(table.line[row])] = row
    found: dict[int, str] = {}
    for file_index, lines in wanted.items():
        problems = jsonl.Problems()
        with open_inside(card.folder, table.files[file_index]) as handle:
            for number, raw in jsonl.raw_lines(handle, table.files[file_index], problems):
                if number in lines:
                    found[lines[number]] = decoder.decode(raw).output
        if problems:  # the file was read once already: it changed since
            raise AcardsError.collect(problems)
    return found


def spot_check(card, table, prompts: Prompts, n: int = 20, seed: int = 0, *, device=None, progress=None,
               backend=None, digests=None, cache_dir=None) -> dict[str, Any]:
    from acards.generate.runner import run_local

    settings = card.section("generation")
    columns, vocab = table.columns, table.vocab
    eligible = []
    for row in np.flatnonzero(columns["has_output"]):
        cell, condition = vocab["cell"][columns["cell"][row]], vocab["condition"][columns["condition"][row]]
        split, task = vocab["split"][columns["split"][row]], vocab["task"][columns["task"][row]]
        item, framing = vocab["item"][columns["item"][row]], vocab["framing"][columns["framing"][row]]
        if _eligible_condition(card, cell, condition, int(columns["seed"][row])) and prompts.get(split, task, item, framing):
            eligible.append(int(row))
    base = {"requested": n, "seed": seed, "eligible": len(eligible), "do_sample": bool(settings["do_sample"])}
    if not eligible or n <= 0:
        return {**base, "checked": 0, "matches": 0, "exact_match_rate": None, "stripped_match_rate": None, "mismatches": [],
                "note": "no supplied output can be regenerated (needs an output, a prompt, and the condition's checkpoints)"}
    rng = np.random.default_rng(seed)
    chosen = sorted(int(r) for r in rng.choice(np.asarray(eligible), size=min(n, len(eligible)), replace=False))
    supplied = _supplied_outputs(card, table, chosen)
    requests = []
    for row in chosen:
        split, task = vocab["split"][columns["split"][row]], vocab["task"][columns["task"][row]]
        item, framing = vocab["item"][columns["item"][row]], vocab["framing"][columns["framing"][row]]
        prompt = prompts.get(split, task, item, framing)
        requests.append(Request(cell=vocab["cell"][columns["cell"][row]], condition=vocab["condition"][columns["condition"][row]],
                                split=split, task=task, item=item, framing=framing, seed=int(columns["seed"][row]),
                                sample=int(columns["sample"][row]), prompt=prompt.prompt, system=prompt.system,
                                reference=prompt.reference, subject=prompt.subject))
    result = run_local(card, requests, device=device, progress=progress, backend=backend, digests=digests, cache_dir=cache_dir)
    matches = stripped = 0
    mismatches = []
    for request, row, regenerated in zip(requests, chosen, result.outputs):
        original = supplied[row]
        if regenerated == original:
            matches += 1
        if regenerated is not None and regenerated.strip() == original.strip():
            stripped += 1
        elif len(mismatches) < MAX_LISTED:
            where = table.where(row)
            mismatches.append({**request.identity_dict(), "location": f"{where.file}:{where.line}",
                               "supplied": original[:200], "regenerated": (regenerated or "")[:200]})
    checked = len(requests)
    out = {**base, "checked": checked, "matches": matches, "exact_match_rate": matches / checked,
           "stripped_match_rate": stripped / checked, "mismatches": mismatches,
           "generation": result.counts, "provenance": result.provenance}
    if settings["do_sample"]:
        out["note"] = ("outputs are sampled: they match only if the authors generated them with acards' backend and "
                       "per-request seeding; a low rate here is not by itself evidence of a problem")
    return out
