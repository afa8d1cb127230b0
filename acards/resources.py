"""Where the schemas and templates are, installed or in a source checkout.

The wheel carries them under ``acards/_data/`` (pyproject's force-include); a source checkout or
an editable install reads the top-level ``schema/`` and ``templates/`` folders directly.  Loading
and validating schemas is acards.schemas' work.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """The folder holding ``kind`` ("schema" or "templates")."""
    packaged = _PACKAGE / "_data" / kind
    if packaged.is_dir():
        return packaged
    return _PACKAGE.parent / kind
