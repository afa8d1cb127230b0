"""Step 2 of the pipeline: make the evidence complete before anything is recomputed.

Supplied outputs that lack a score are scored; outputs that are missing, and the shrinkage control
(SPEC §5.3), are regenerated and scored; a seeded subset of supplied outputs is regenerated and
compared (the spot check).  Without a scorer in the card, outputs cannot become scores and the
affected diagnostics stay insufficient.
"""

from __future__ import annotations

from typing import Any

from acards.card.model import Card
from acards.evidence.prompts import Prompts
from acards.evidence.records import RecordTable, append_records, fill_identified_scores
from acards.generate import GenerationResult, Request, run, spot_check
from acards.generate.plan import control_requests, missing_requests, to_records
from acards.generate.provenance import report_section
from acards.generate.scorers import score_for_card

REGENERATED_CONTROL = "<regenerated control:shrinkage>"  # where appended control records come from, in messages


def score_supplied(card: Card, table: RecordTable, prompts: Prompts, *, device: str | None = None,
                   progress: bool | None = None, digests=None) -> tuple[int, dict | None]:
    """Score every supplied output in place (the card has a scorer); returns (how many, scorer provenance)."""
    rows = sorted(table.outputs)
    keys = [tuple(table.vocab[name][table.columns[name][row]] for name in ("split", "task", "item", "framing")) for row in rows]
    found = [prompts.get(*key) for key in keys]
    scores, provenance = score_for_card(card, [key[0] for key in keys], [table.outputs[row] for row in rows],
                                        [p.reference if p else None for p in found], device=device, progress=progress,
                                        digests=digests)
    table.columns["score"][rows] = scores
    return len(rows), provenance


def regenerate(card: Card, requests: list[Request], *, device: str | None = None, progress: bool | None = None,
               digests=None, cache_dir=None) -> tuple[GenerationResult, dict[tuple, dict], dict | None]:
    """Generate (or fetch from the output cache) and score every request: the result, its records
    keyed by request identity (see :func:`acards.generate.plan.to_records`), the scorer provenance."""
    result = run(card, requests, device=device, progress=progress, digests=digests, cache_dir=cache_dir)
    scores, provenance = score_for_card(card, [r.split for r in requests], result.outputs, [r.reference for r in requests],
                                        device=device, progress=progress, digests=digests)
    return result, to_records(requests, result.outputs, scores), provenance


def place_regenerated(table: RecordTable, missing: list[Request], controls: list[Request],
                      made: dict[tuple, dict]) -> tuple[RecordTable, int]:
    """Each regenerated record back where its request came from, found by the request's identity:
    the scores of ``missing`` rows are filled in place, the ``controls`` are appended as new rows.
    A request that has no record in ``made`` is left out; it never moves another's record.
    Returns the table (a new one when controls were appended) and how many records were scored."""
    found = ((identity, made.get(identity)) for identity in map(Request.identity, missing))
    filled = fill_identified_scores(table, {identity: record.get("score") for identity, record in found if record is not None})
    control_records = [record for record in map(made.get, map(Request.identity, controls)) if record is not None]
    return append_records(table, control_records, REGENERATED_CONTROL), filled + len(control_records)


def complete_evidence(card: Card, table: RecordTable, prompts: Prompts, *, generate: bool = True,
                      device: str | None = None, spot_check_n: int = 0,
                      progress: bool | None = None, digests=None, cache_dir=None) -> tuple[RecordTable, dict[str, Any]]:
    """The completed table and the report's ``generation`` section.  ``digests``: the command's
    DigestCache; ``cache_dir``: the folder of the output cache (defaults: acards.settings)."""
    has_scorer = bool(card.data.get("scorer"))
    scored, scorer_provenance, result, supplied = 0, None, None, table
    if table.outputs and has_scorer:
        scored, scorer_provenance = score_supplied(card, table, prompts, device=device, progress=progress, digests=digests)
    if generate and has_scorer:
        missing = missing_requests(table, prompts)
        # The control is optional evidence: it is built only where the card gives the prompts.
        controls = control_requests(card, table, prompts) if len(prompts) else []
        if missing or controls:
            result, made, scorer_provenance = regenerate(card, missing + controls, device=device, progress=progress,
                                                         digests=digests, cache_dir=cache_dir)
            # `supplied` stays the authors' table: the spot check compares with their outputs only.
            table, added = place_regenerated(table, missing, controls, made)
            scored += added
    section = report_section(result, scored=scored, scorer=scorer_provenance)
    if generate and spot_check_n > 0 and supplied.columns["has_output"].any():
        section["provenance"]["spot_check"] = spot_check(card, supplied, prompts, n=spot_check_n, seed=0, device=device,
                                                         progress=progress, digests=digests, cache_dir=cache_dir)
    return table, section
