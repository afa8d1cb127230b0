"""The user cache folder acards keeps digests and generated outputs in."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$ACARDS_CACHE_DIR`` if set, else the platform's user cache folder for acards."""
    override = os.environ.get("ACARDS_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("acards", appauthor=False))
