"""`evidence.records: {from: import}`: a card whose records are imported again, at every
verification, from the raw logs it pins under `evidence.sources`, under the mapping it pins there.

The import is the one `acards import` runs (acards.importers.run), on the sources in the card's
order, so it writes byte-identical records; every source and the mapping must still have the
digest the card pins, checked on the bytes the import read.  A source kind's reader (inspect_ai,
pyarrow) is imported only when a card imports that kind.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from acards.errors import AcardsError
from acards.importers.source import Source

if TYPE_CHECKING:
    from acards.card.model import Card
    from acards.evidence.records import RecordTable
    from acards.importers.run import Summary

MAPPING = "mapping"
# How the re-imported records are named in messages (they exist only for the verification).
IMPORTED = "records imported from evidence.sources"


def imports_records(card: Card) -> bool:
    """Whether the card's records are `{from: import}` rather than files."""
    records = card.data["evidence"]["records"]
    return isinstance(records, dict) and records.get("from") == "import"


def source_of(kind: str) -> Source:
    """The reader of one source kind, imported only now."""
    if kind == "inspect":
        from acards.importers.inspect_log import INSPECT

        return INSPECT
    if kind == "lm-eval":
        from acards.importers.lm_eval import LM_EVAL

        return LM_EVAL
    if kind == "eee":
        from acards.importers.eee import EEE

        return EEE
    if kind == "table":
        from acards.importers.table import table_source

        return table_source()
    raise AcardsError("import.bad-sources", f"acards cannot import sources of kind {kind!r} yet",
                      "import them with `acards import`, and point evidence.records at the records file")


def reimport(card: Card, records_path: Path) -> Summary:
    """Import the card's sources again into ``records_path`` (the summary holds the records read
    back); a source or mapping that no longer has its pinned digest is refused."""
    from acards.evidence.digests import digest_mismatch
    from acards.importers.mapping import load_mapping
    from acards.importers.run import run_import

    spec = card.data["evidence"]["records"]
    sources = card.data["evidence"].get("sources") or []
    where = card.source.locate
    files = [(index, pointer) for index, pointer in enumerate(sources) if pointer["kind"] != MAPPING]
    mappings = [(index, pointer) for index, pointer in enumerate(sources) if pointer["kind"] == MAPPING]
    kinds = sorted({pointer["kind"] for _, pointer in files})
    hint = ("pin the source files of one `acards import` and its mapping under evidence.sources, each with its kind "
            "(docs/importing.md#verifying-from-the-sources)")
    if not files or len(mappings) != 1 or len(kinds) != 1:
        found = (f"{len(files)} source file{'s' if len(files) != 1 else ''}"
                 + (f" of kinds {', '.join(kinds)}" if len(kinds) > 1 else "")
                 + f" and {len(mappings)} mapping{'s' if len(mappings) != 1 else ''}")
        raise AcardsError("import.bad-sources", f"evidence.records is {{from: import}}, and evidence.sources holds {found}; "
                          "an import needs one mapping and source files of one kind", hint,
                          where("/evidence/sources" if sources else "/evidence/records", at_key=True))
    at, pinned_mapping = mappings[0]
    mapping = load_mapping(card.folder / pinned_mapping["path"], pinned_mapping["sha256"], where(f"/evidence/sources/{at}/path"))
    summary = run_import(source_of(kinds[0]), [pointer["path"] for _, pointer in files], mapping, records_path,
                         allow_skipped=bool(spec.get("allow_skipped", False)), root=card.folder)
    # the digests of the bytes the import read: a source replaced after the card's digests were checked is refused
    changed = [digest_mismatch(read.path, pointer["sha256"], read.sha256 or "", False, where(f"/evidence/sources/{index}/path"))
               for read, (index, pointer) in zip(summary.files, files) if read.sha256 != pointer["sha256"]]
    if changed:
        records_path.unlink(missing_ok=True)
        raise AcardsError.collect(changed)
    return summary


def reimported_table(card: Card) -> RecordTable:
    """The card's records, imported again from its sources (see :func:`reimport`)."""
    with tempfile.TemporaryDirectory(prefix="acards-import-") as folder:
        table = reimport(card, Path(folder) / "records.jsonl").table
    table.files = [IMPORTED]
    return table

