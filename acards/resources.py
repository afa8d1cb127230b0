"""Where the schemas and templates are, installed or in a source checkout.

The wheel carries them under ``acards/_data/`` (pyproject's force-include); a source checkout or
an editable install reads the top-level ``schema/`` and ``templates/`` folders directly.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """The folder holding ``kind`` ("schema" or "templates")."""
    packaged = _PACKAGE / "_data" / kind
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / kind


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A schema from schema/, e.g. ``load_schema("acard-1.0")``."""
    with open(data_dir("schema") / f"{name}.schema.json", encoding="utf-8") as handle:
        return json.load(handle)
