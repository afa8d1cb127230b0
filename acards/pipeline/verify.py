"""`acards verify`: load → complete → recompute → claims → assemble (see acards/pipeline/).

Each step is its own module; this one only composes them.  Every number comes from the pure
modules (acards.stats, acards.diagnostics, acards.mechanism).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from acards.evidence.records_cache import RecordsCache
from acards.pipeline.assemble import assemble, check_report_shape
from acards.pipeline.claims import judge_claims
from acards.pipeline.complete import complete_evidence
from acards.pipeline.judges import declared, judge_scorers
from acards.pipeline.load import load, read_training
from acards.pipeline.preregistration import check_preregistration
from acards.pipeline.recompute import recompute
from acards.report.model import Report
from acards.vocabulary import DEFAULT_BOOTSTRAP, DEFAULT_SEED


def verify(card_path: str | Path, *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
           use_cache: bool = True, envelope: bytes | None = None, trusted_keys: dict | None = None,
           generate: bool = True, device: str | None = None, spot_check: int = 20, progress: bool | None = None,
           digests=None, cache_dir: Path | None = None, registry: Path | None = None) -> Report:
    """The full verification report of a card (SPEC §7).

    With ``envelope``, its signatures are checked against ``trusted_keys`` first, and the card
    file and evidence pointers must be the ones the signed statement names.  ``digests`` is the
    command's DigestCache and ``cache_dir`` the folder of the output cache (defaults: acards.settings).
    ``use_cache=False`` bypasses the digest and records caches, with what the records cache keeps
    besides records (the completed table, weight signatures); the output cache is still read.
    A card that names a pre-registration is compared with its plan, read from ``registry`` when
    given (acards.pipeline.preregistration); one that deviates from it is not reproduced.
    """
    loaded = load(card_path, use_cache=use_cache, envelope=envelope, trusted_keys=trusted_keys, digests=digests,
                  cache_dir=cache_dir)
    card = loaded.card
    preregistration = check_preregistration(card, loaded.prompts, registry, trusted_keys)  # before the costly steps
    cache = RecordsCache.default(cache_dir) if use_cache else None  # keeps the completed table and weight signatures
    table, generation = complete_evidence(card, loaded.table, loaded.prompts, generate=generate, device=device,
                                          spot_check_n=spot_check, progress=progress, digests=digests, cache_dir=cache_dir,
                                          cache=cache)
    recomputed = recompute(card, table, loaded.prompts, read_training(card), bootstrap=bootstrap, seed=seed, cache=cache)
    cells, scorers = judge_scorers(card, declared(card), table, recomputed, bootstrap=bootstrap, seed=seed)
    claims = judge_claims(card, recomputed, scorers)
    report = assemble(loaded, table, cells, claims, generation, bootstrap=bootstrap, seed=seed)
    if preregistration is None:
        return report
    report = msgspec.structs.replace(report, preregistration=preregistration,
                                     reproduced=report.reproduced and preregistration.matched)
    check_report_shape(report)
    return report
