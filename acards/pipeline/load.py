"""Step 1 of the pipeline: the card, its signed envelope, every evidence digest, the records, the prompts.

Nothing here computes a statistic: a card that loads is a card whose evidence is exactly the
evidence it names (SPEC §5), read into a :class:`~acards.evidence.records.RecordTable`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from acards.card.model import Card, load_card
from acards.errors import AcardsError
from acards.evidence.digests import DigestCache, PointerResult, check_pointers
from acards.evidence.prompts import Prompts, read_prompts
from acards.evidence.records import RecordTable, read_objects, read_records
from acards.evidence.records_cache import RecordsCache
from acards.pipeline.judges import resolve_judges


@dataclass
class Loaded:
    """A card with its evidence checked and read."""

    card: Card
    pointers: list[PointerResult]  # one digest check per evidence pointer, in the card's order
    table: RecordTable
    prompts: Prompts  # the card's prompts file (empty when it names none)
    signed: dict | None = None  # {"digest", "signers"} of the envelope checked first, if any


def check_envelope(card: Card, envelope: bytes, trusted_keys: dict) -> dict:
    """The envelope's signatures against ``trusted_keys``; the card file and its evidence pointers
    must be the ones the signed statement names."""
    # imported here: the signature code is only needed for a signed card (and costs ~0.1 s to import)
    from acards.attest.card_statement import check_card_against_statement, open_card_envelope

    statement, digest, signers = open_card_envelope(envelope, trusted_keys)
    check_card_against_statement(card, statement)
    return {"digest": digest, "signers": list(signers)}


def read_evidence_and_prompts(card: Card, cache: DigestCache, records_cache: RecordsCache | None = None,
                              ) -> tuple[list[PointerResult], RecordTable, Prompts]:
    """Check every digest (every problem collected), then read the records and the prompts: the
    pinned files, or, for `{from: import}` records (and prompts), one import of the card's sources."""
    from acards.importers.reimport import pinned_import, reimported

    imported = pinned_import(card)  # records (and prompts) {from: import}: one import, checked before any file is hashed
    results, problems = check_pointers(card.folder, card.pointers(), cache)
    if problems:
        raise AcardsError.collect(problems)
    prompts = None
    if imported is not None:  # imported again from the pinned sources
        table, prompts = reimported(card)
    else:
        pointers = card.data["evidence"]["records"]
        paths = [(p["path"], card.source.locate(f"/evidence/records/{i}/path")) for i, p in enumerate(pointers)]
        # the records are hashed again as they are parsed: a file replaced since its digest was checked is refused
        table = read_records(card.folder, paths, sha256=[p.get("sha256") for p in pointers],
                             formats=[p.get("format", "jsonl") for p in pointers], cache=records_cache)
    resolve_judges(card, table)  # several scorers: checked, the primary's scores in `score` before anything scores outputs
    return results, table, read_prompts(card) if prompts is None else prompts


def read_card_prompts(card: Card) -> Prompts:
    """The card's prompts alone: its pinned prompts file, or, when `{from: import}`, imported again
    (with its records, which are then not kept)."""
    from acards.importers.reimport import imports, reimported

    return (reimported(card)[1] or Prompts()) if imports(card, "prompts") else read_prompts(card)


def load(card_path: str | Path, *, use_cache: bool = True, envelope: bytes | None = None,
         trusted_keys: dict | None = None, digests: DigestCache | None = None, cache_dir: Path | None = None) -> Loaded:
    """Validate the card, check its envelope (when given), check every digest, read records and
    prompts.  ``use_cache=False`` bypasses the digest and records caches (``cache_dir``: the
    folder of the records cache, default acards.settings)."""
    card = load_card(card_path)
    signed = check_envelope(card, envelope, trusted_keys or {}) if envelope is not None else None
    cache = DigestCache.or_default(digests, use_cache)  # the command's cache, else one for this call
    try:
        pointers, table, prompts = read_evidence_and_prompts(card, cache, RecordsCache.default(cache_dir) if use_cache else None)
    finally:
        cache.close()
    return Loaded(card, pointers, table, prompts, signed)


def read_training(card: Card) -> tuple[set[str], list[str]] | None:
    """(subjects, texts) of the fine-tuning data the card points at, for the freshness check (D2)."""
    pointer = card.data["evidence"].get("training_data")
    if not pointer:
        return None
    rows = read_objects(card.folder, pointer["path"], card.source.locate("/evidence/training_data/path"), "training-1.0",
                        pointer.get("sha256"))
    return {r.subject for r in rows}, [r.text for r in rows]
