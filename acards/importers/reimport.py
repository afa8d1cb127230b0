"""`evidence.records: {from: import}` (and `evidence.prompts: {from: import}`): a card whose records
(and prompts) are imported again, at every verification, from the raw logs it pins under
`evidence.sources`, under the mapping it pins there.

The import is the one `acards import` runs (acards.importers.run), on the sources in the card's
order, in one pass that writes the records and, when the card asks for them, the prompts, so both
are the bytes `acards import ... --prompts` writes; every source and the mapping must still have
the digest the card pins, checked on the bytes the import read.  A source kind's reader
(inspect_ai, pyarrow) is imported only when a card imports that kind.

:func:`check_import` is what `acards check` can tell without reading a source: the sources are one
import, the mapping loads under its pin, and its rules resolve for the pinned file names (with a
`prompt` rule when the prompts are imported), with the codes `acards verify` gives.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from acards.errors import AcardsError, Location
from acards.importers.source import Source, SourceFile

if TYPE_CHECKING:
    from acards.card.model import Card
    from acards.evidence.prompts import Prompts
    from acards.evidence.records import RecordTable
    from acards.importers.mapping import Mapping
    from acards.importers.run import Summary

MAPPING = "mapping"
# How the re-imported files are named in messages (they exist only for the verification).
IMPORTED = "records imported from evidence.sources"
IMPORTED_PROMPTS = "prompts imported from evidence.sources"
HINT = ("pin the source files of one `acards import` and its mapping under evidence.sources, each with its kind "
        "(docs/importing.md#verifying-from-the-sources)")


def imports(card: Card, name: str) -> bool:
    """Whether the card's ``evidence.<name>`` (records or prompts) is `{from: import}` rather than files."""
    value = card.data["evidence"].get(name)
    return isinstance(value, dict) and value.get("from") == "import"


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


@dataclass
class PinnedImport:
    """The import a card's evidence names: the source files (index in evidence.sources, pointer) in
    the card's order, their one kind, the mapping's, and what the import writes."""

    kind: str
    files: list[tuple[int, dict]]
    mapping: tuple[int, dict]
    allow_skipped: bool
    prompts: bool  # the prompts are imported too

    @property
    def names(self) -> list[str]:
        return [pointer["path"] for _, pointer in self.files]


def pinned_import(card: Card) -> PinnedImport | None:
    """The card's import, checked without reading a file; None when the card imports nothing."""
    evidence = card.data["evidence"]
    where = card.source.locate
    if not imports(card, "records"):
        if imports(card, "prompts"):
            raise AcardsError("import.prompts-without-records",
                              "evidence.prompts is {from: import}, and evidence.records is not: the prompts are "
                              "imported with the records, in one import",
                              "make evidence.records {from: import} too, or pin the prompts file `acards import "
                              "--prompts` wrote (docs/importing.md#verifying-from-the-sources)",
                              where("/evidence/prompts", at_key=True))
        return None
    sources = evidence.get("sources") or []
    files = [(index, pointer) for index, pointer in enumerate(sources) if pointer["kind"] != MAPPING]
    mappings = [(index, pointer) for index, pointer in enumerate(sources) if pointer["kind"] == MAPPING]
    kinds = sorted({pointer["kind"] for _, pointer in files})
    if not files or len(mappings) != 1 or len(kinds) != 1:
        found = (f"{len(files)} source file{'s' if len(files) != 1 else ''}"
                 + (f" of kinds {', '.join(kinds)}" if len(kinds) > 1 else "")
                 + f" and {len(mappings)} mapping{'s' if len(mappings) != 1 else ''}")
        raise AcardsError("import.bad-sources", f"evidence.records is {{from: import}}, and evidence.sources holds {found}; "
                          "an import needs one mapping and source files of one kind", HINT,
                          where("/evidence/sources" if sources else "/evidence/records", at_key=True))
    return PinnedImport(kinds[0], files, mappings[0], bool(evidence["records"].get("allow_skipped", False)),
                        imports(card, "prompts"))


def _prepared(card: Card, pinned: PinnedImport) -> tuple[Source, Mapping]:
    """The source reader and the mapping (loaded under its pin), after every problem of the mapping
    for the pinned file names: the rules resolve, and give each file a prompt when prompts are
    imported, and a table's format follows from its name.  No source file is read."""
    from acards.importers.mapping import load_mapping

    at, pointer = pinned.mapping
    mapping = load_mapping(card.folder / pointer["path"], pointer["sha256"], card.source.locate(f"/evidence/sources/{at}/path"))
    source = source_of(pinned.kind)
    rules = mapping.rules_for(pinned.names, source.defaults)  # every mapping problem, before any record is read
    if pinned.prompts:
        unposed = [name for name, file_rules in zip(pinned.names, rules) if "prompt" not in file_rules]
        if unposed:
            raise AcardsError("import.no-prompt-rule",
                              f"evidence.prompts is {{from: import}}, and the mapping gives no `prompt` rule for "
                              f"{', '.join(unposed)} (the {pinned.kind} source has no default for it)",
                              "map `prompt` under `fields` (e.g. `prompt: {field: prompt}`) or for those files under "
                              "`files`, or pin the prompts file instead", mapping.locate("/fields", at_key=True))
    if pinned.kind == "table":  # a table's format comes from its file's name: known before it is read
        from acards.importers.table import table_format

        problems = []
        for name in pinned.names:
            try:
                table_format(SourceFile(name, root=card.folder), None)
            except AcardsError as error:
                problems += error.problems
        if problems:
            raise AcardsError.collect(problems)
    return source, mapping


def check_import(card: Card) -> PinnedImport | None:
    """Everything about the card's import that can be checked without reading a source file (see
    :func:`_prepared`); None when the card imports nothing."""
    pinned = pinned_import(card)
    if pinned is not None:
        _prepared(card, pinned)
    return pinned


def reimport(card: Card, records_path: Path, prompts_path: Path | None = None) -> Summary:
    """Import the card's sources again into ``records_path`` (and the prompts into ``prompts_path``;
    the summary holds the records read back); a source or mapping that no longer has its pinned
    digest is refused."""
    from acards.evidence.digests import digest_mismatch
    from acards.importers.run import run_import

    pinned = pinned_import(card)
    if pinned is None:
        raise AcardsError("import.bad-sources", "evidence.records is not {from: import}", HINT,
                          card.source.locate("/evidence/records", at_key=True))
    source, mapping = _prepared(card, pinned)
    summary = run_import(source, pinned.names, mapping, records_path, prompts_path, allow_skipped=pinned.allow_skipped,
                         root=card.folder)
    # the digests of the bytes the import read: a source replaced after the card's digests were checked is refused
    where = card.source.locate
    changed = [digest_mismatch(read.path, pointer["sha256"], read.sha256 or "", False, where(f"/evidence/sources/{index}/path"))
               for read, (index, pointer) in zip(summary.files, pinned.files) if read.sha256 != pointer["sha256"]]
    if changed:
        records_path.unlink(missing_ok=True)
        if prompts_path is not None:
            prompts_path.unlink(missing_ok=True)
        raise AcardsError.collect(changed)
    return summary


def reimported(card: Card) -> tuple[RecordTable, Prompts | None]:
    """The card's records, and its prompts when they are `{from: import}` too, imported again from
    its sources in one pass (see :func:`reimport`)."""
    from acards.evidence.prompts import read_prompts_file

    with tempfile.TemporaryDirectory(prefix="acards-import-") as name:
        folder = Path(name)
        prompts_path = folder / "prompts.jsonl" if imports(card, "prompts") else None
        table = reimport(card, folder / "records.jsonl", prompts_path).table
        # read back by the reader of a pinned prompts file, as the file `acards import --prompts` writes would be
        prompts = read_prompts_file(folder, prompts_path.name, Location(IMPORTED_PROMPTS)) if prompts_path else None
    table.files = [IMPORTED]
    if prompts is not None:
        prompts.file = IMPORTED_PROMPTS
    return table, prompts
