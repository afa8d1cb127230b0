"""Where the public test vectors are: the copies in tests/vectors, else ../shared/vectors."""

from __future__ import annotations

from pathlib import Path

import pytest


def _vectors_dir() -> Path | None:
    for candidate in (
        Path(__file__).resolve().parent / "vectors",
        Path(__file__).resolve().parents[2] / "shared" / "vectors",
    ):
        if candidate.is_dir():
            return candidate
    return None


VECTORS = _vectors_dir()
needs_vectors = pytest.mark.skipif(
    VECTORS is None, reason="no test vectors: neither tests/vectors nor ../shared/vectors exists"
)
