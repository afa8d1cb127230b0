"""`acards migrate`: a card written for standard 1.0 rewritten for 1.1 (SPEC §10.10), and what that
changes.

The new text differs from the old in the ``acard:`` value alone (acards.card.edit.set_standard).
Both versions are judged from the same evidence, completed once, through verify's own steps
(complete → recompute → claims → assemble), so the comparison shows the effect of the rules and
nothing else (acards.report.diff).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from acards.card.edit import set_standard
from acards.card.model import Card, load_card, validate_document
from acards.card.yaml import read_text
from acards.errors import AcardsError, Problem
from acards.pipeline.assemble import assemble
from acards.pipeline.claims import judge_claims
from acards.pipeline.complete import complete_evidence
from acards.pipeline.judges import declared, judge_scorers
from acards.pipeline.load import load, read_training
from acards.pipeline.recompute import recompute
from acards.report.diff import ReportDiff, diff_reports
from acards.report.model import Report
from acards.vocabulary import DEFAULT_BOOTSTRAP, DEFAULT_SEED

MIGRATIONS = {"1.0": "1.1"}  # from → to; the newest standard migrates nowhere


@dataclass
class Migration:
    """The migrated card's bytes, the reports under the old and the new rules, and what differs."""

    source: str  # the standard the card was written for
    target: str
    data: bytes  # the migrated card file
    before: Report
    after: Report
    diff: ReportDiff


def migrated_card(card: Card, raw: bytes, text: str) -> tuple[Card, bytes]:
    """The card rewritten for the next standard, validated under that standard's rules, and its bytes.

    A card valid under 1.0 can be invalid under 1.1 (a threshold that restated a 1.0 default, such
    as ``min_seeds: 1``, now differs from the 1.1 one and needs a justification): then every
    problem is raised, said to be the 1.1 card's, and nothing is written.
    """
    source = card.standard
    if source not in MIGRATIONS:
        raise AcardsError("card.already-current", f"the card already follows standard {source}, the newest this acards "
                          "reads: there is nothing to migrate", f"verify it as it is: `acards verify {card.path}`",
                          card.source.locate("/acard"))
    target = MIGRATIONS[source]
    new_text = set_standard(text, card.source, target)
    new_raw = (b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b"") + new_text.encode("utf-8")
    try:
        new_card = validate_document(new_raw, new_text, card.path)
    except AcardsError as error:
        raise AcardsError.collect([dataclasses.replace(p, message=f"under standard {target}: {p.message}")
                                   for p in error.problems]) from None
    if {**new_card.data, "acard": source} != card.data:  # the rewrite changed nothing but the version
        raise AcardsError.collect([Problem("internal.error", "the migrated card differs from the card in more than its version",
                                           "this is a bug in acards: report it with the card", card.source.locate("/acard"))])
    return new_card, new_raw


def migrate(card_path: str | Path, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
            use_cache: bool = True, generate: bool = True, device: str | None = None, progress: bool | None = None,
            digests=None, cache_dir: Path | None = None) -> Migration:
    """The card at ``card_path`` migrated to the next standard, with both reports (nothing is written)."""
    card_path = Path(card_path)
    raw, text = read_text(card_path)
    card = load_card(card_path)  # refuses an unknown version (card.unknown-version)
    new_card, new_raw = migrated_card(card, raw, text)  # refused before any evidence is read
    loaded = load(card_path, use_cache=use_cache, digests=digests, cache_dir=cache_dir)
    # The evidence is completed once (generation does not depend on the standard), then judged twice.
    table, generation = complete_evidence(loaded.card, loaded.table, loaded.prompts, generate=generate, device=device,
                                          progress=progress, digests=digests, cache_dir=cache_dir)
    training = read_training(loaded.card)
    reports = []
    for judged in (loaded.card, new_card):
        recomputed = recompute(judged, table, loaded.prompts, training, bootstrap=bootstrap, seed=seed)
        cells, scorers = judge_scorers(judged, declared(judged), table, recomputed, bootstrap=bootstrap, seed=seed)
        claims = judge_claims(judged, recomputed, scorers)
        reports.append(assemble(dataclasses.replace(loaded, card=judged), table, cells, claims, generation,
                                bootstrap=bootstrap, seed=seed))
    before, after = reports
    return Migration(card.standard, new_card.standard, new_raw, before, after, diff_reports(before, after))
