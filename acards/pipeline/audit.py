"""`acards audit`: the diagnostics of every cell of several cards, with the summary across them."""

from __future__ import annotations

from pathlib import Path

from msgspec.structs import asdict

from acards import __version__
from acards.diagnostics.verdict import audit_summary
from acards.pipeline.verify import verify
from acards.report.model import Audit, AuditCell
from acards.vocabulary import DEFAULT_BOOTSTRAP, DEFAULT_SEED


def audit(card_paths: list[str | Path], *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
          device: str | None = None, digests=None, cache_dir: Path | None = None) -> Audit:
    """Every cell of every card, named ``<card id>:<cell id>``, and the audit summary over all of them."""
    rows = []
    for path in card_paths:
        report = verify(path, bootstrap=bootstrap, seed=seed, device=device, digests=digests, cache_dir=cache_dir)
        for cell in report.cells:
            rows.append(AuditCell(**{**asdict(cell), "id": f"{report.card.id}:{cell.id}"}, card=report.card.id))
    return Audit(acards_version=__version__, cells=rows, summary=audit_summary(rows))
