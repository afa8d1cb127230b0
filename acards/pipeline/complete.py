"""Step 2 of the pipeline: make the evidence complete before anything is recomputed.

Supplied outputs that lack a score are scored; outputs that are missing, and the shrinkage control
(SPEC §5.3), are regenerated and scored; a seeded subset of supplied outputs is regenerated and
compared (the spot check).  Without a scorer in the card, outputs cannot become scores and the
affected diagnostics stay insufficient.

A re-verify need not do that again: the completed table and the report's generation section are
kept in the records cache (acards.evidence.records_cache, MAC'd under this user's cache key) under
the digest of everything they depend on (:func:`completion_key`), and only when every output came
from the output cache (no model call, nothing rejected): what such a run reports is what any fully
cached run reports, timing aside.  The spot check is never cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from typing import Any

from acards.card.model import Card
from acards.evidence.prompts import Prompts
from acards.evidence.records import RecordTable, append_records, fill_identified_scores
from acards.evidence.records_cache import DERIVED, READER_VERSION, RecordsCache, entry_limit
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
                      device: str | None = None, spot_check_n: int = 0, progress: bool | None = None, digests=None,
                      cache_dir=None, cache: RecordsCache | None = None) -> tuple[RecordTable, dict[str, Any]]:
    """The completed table and the report's ``generation`` section.  ``digests``: the command's
    DigestCache; ``cache_dir``: the folder of the output cache (defaults: acards.settings);
    ``cache``: the records cache, where the completed table is kept (None: neither read nor written)."""
    supplied = table  # the authors' table: the spot check compares with their outputs only
    key = completion_key(card, device, cache_dir) if cache is not None and generate and _cacheable(card) else None
    limit = entry_limit(_records_size(card)) if key else 0
    started = time.time()
    entry = cache.get_derived("completed", key, limit) if key else None
    if entry is not None:
        table, section = _from_entry(entry, time.time() - started)
    else:
        table, section, result = _complete(card, table, prompts, generate=generate, device=device, progress=progress,
                                           digests=digests, cache_dir=cache_dir)
        if key and _fully_cached(result):
            cache.put_derived("completed", key, _to_entry(table, section), limit)
    if generate and spot_check_n > 0 and supplied.columns["has_output"].any():
        section["provenance"]["spot_check"] = spot_check(card, supplied, prompts, n=spot_check_n, seed=0, device=device,
                                                         progress=progress, digests=digests, cache_dir=cache_dir)
    return table, section


def _complete(card: Card, table: RecordTable, prompts: Prompts, *, generate: bool, device: str | None,
              progress: bool | None, digests, cache_dir) -> tuple[RecordTable, dict[str, Any], GenerationResult | None]:
    """Score, regenerate and place (everything :func:`complete_evidence` does but the spot check)."""
    has_scorer = bool(card.data.get("scorer"))
    scored, scorer_provenance, result = 0, None, None
    if table.outputs and has_scorer:
        scored, scorer_provenance = score_supplied(card, table, prompts, device=device, progress=progress, digests=digests)
    if generate and has_scorer:
        missing = missing_requests(table, prompts)
        # The control is optional evidence: it is built only where the card gives the prompts.
        controls = control_requests(card, table, prompts) if len(prompts) else []
        if missing or controls:
            result, made, scorer_provenance = regenerate(card, missing + controls, device=device, progress=progress,
                                                         digests=digests, cache_dir=cache_dir)
            table, added = place_regenerated(table, missing, controls, made)
            scored += added
    return table, report_section(result, scored=scored, scorer=scorer_provenance), result


# --- the completed table, cached ------------------------------------------------------------------

KEY_FORMAT = "acards/completed-evidence-key/1"


def _cacheable(card: Card) -> bool:
    """Whether completing this card's evidence may be cached: records read from files (not imported
    again from their sources) and a card scorer that needs no model (a classifier's scores depend on
    the device it runs on)."""
    scorers = [card.data.get(name) for name in ("scorer", "capability_scorer")]
    return (bool(scorers[0]) and isinstance(card.data["evidence"]["records"], list)
            and not any(s and s.get("kind") == "classifier" for s in scorers))


def completion_key(card: Card, device: str | None, cache_dir) -> str:
    """The digest of everything the completed table and the generation section depend on: the card's
    bytes (its generation and scorer settings, and the sha256 of every evidence file and checkpoint,
    each checked against its file when the card was loaded: records, prompts, base, adapters, the
    tokenizer files inside the base folder), its folder, acards' version with the versions of the
    completion and of the records reader, the versions of every package the output cache keys and
    the report name, Python (its version and executable) and the system (what the report's
    ``platform`` is made of), the device asked for, and the output cache files read."""
    from acards import __version__
    from acards.evidence.cachekey import framed
    from acards.generate import prompting, provenance
    from acards.generate.backends.base import package_versions
    from acards.generate.cache import main_path, shard_files

    pointers = [[pointer, path, sha256] for pointer, path, sha256, _location in card.pointers()]
    packages = package_versions(*sorted(set(provenance.PACKAGES) | set(prompting.PACKAGES)))
    read = [str(main_path(cache_dir)), *map(str, shard_files(cache_dir))]
    system = platform.uname()  # its fields, not its processor (`uname -p`, run in a subprocess)
    return hashlib.sha256(framed(
        KEY_FORMAT, DERIVED["completed"][1], READER_VERSION, __version__, card.sha256, str(card.folder.resolve()),
        json.dumps(pointers), json.dumps(packages, sort_keys=True), sys.version, sys.executable,
        json.dumps([system.system, system.release, system.version, system.machine]), device, json.dumps(read))).hexdigest()


def _records_size(card: Card) -> int:
    """The bytes of the card's records files: what bounds a completed entry (as it bounds a records entry)."""
    size = 0
    for pointer in card.data["evidence"]["records"]:
        try:
            size += os.stat(card.folder / pointer["path"]).st_size
        except OSError:
            pass
    return size


def _fully_cached(result: GenerationResult | None) -> bool:
    """Nothing generated and nothing rejected: the section is what every fully cached run reports."""
    if result is None:
        return True
    counts = result.counts
    return (counts["generated"] == counts["model_calls"] == counts["cache_misses"] == counts["skipped"] == 0
            and not counts.get("cache_rejected") and "cache_rejected" not in result.provenance)


def _to_entry(table: RecordTable, section: dict[str, Any]) -> dict[str, Any]:
    return {"columns": {**table.columns, "line": table.line, "file_index": table.file_index}, "vocab": table.vocab,
            "outputs": table.outputs, "prompts": table.prompts, "extra": {"files": table.files, "section": section}}


def _from_entry(entry: dict[str, Any], seconds: float) -> tuple[RecordTable, dict[str, Any]]:
    """The table and section of a verified entry; the section's time is this run's."""
    columns = dict(entry["columns"])
    line, file_index = columns.pop("line"), columns.pop("file_index")
    table = RecordTable(columns, entry["vocab"], entry["extra"]["files"], file_index, line, entry["outputs"], entry["prompts"])
    section = entry["extra"]["section"]
    if section["provenance"].get("seconds") is not None:
        section["provenance"]["seconds"] = round(seconds, 3)
    return table, section
