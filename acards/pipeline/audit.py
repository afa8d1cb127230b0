"""`acards audit`: the diagnostics of every cell of several cards, with the summary across them."""

from __future__ import annotations

from pathlib import Path

from acards import __version__
from acards.diagnostics.verdict import audit_summary
from acards.pipeline.verify import DEFAULT_BOOTSTRAP, DEFAULT_SEED, verify


def audit(card_paths: list[str | Path], *, bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_SEED,
          device: str | None = None, digests=None, cache_dir: Path | None = None) -> dict:
    """Every cell of every card, named ``<card id>:<cell id>``, and the audit summary over all of them."""
    rows = []
    for path in card_paths:
        report = verify(path, bootstrap=bootstrap, seed=seed, device=device, digests=digests, cache_dir=cache_dir)
        for cell in report["cells"]:
            rows.append({**cell, "card": report["card"]["id"], "id": f"{report['card']['id']}:{cell['id']}"})
    return {"acards_version": __version__, "cells": rows, "summary": audit_summary(rows)}
