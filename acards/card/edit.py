"""Round-trip edits of a card file that keep the author's comments, key order and quoting."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from acards.card.reported import Span, scalar_spans, splice
from acards.card.validate import evidence_pointers
from acards.card.yaml import SourceMap, parse_yaml, read_text
from acards.errors import AcardsError


def write_digests(path: str | Path, cache=None) -> int:
    """Set every evidence pointer's sha256 in the card file to the evidence's current digest.

    The card is edited with ruamel's round-trip loader, so comments, key order and quoting stay as
    the author wrote them.  Returns how many digests changed.
    """
    from io import StringIO

    from acards.evidence.digests import digest_path
    from acards.evidence.paths import resolve_inside
    from acards.files import atomic_write

    path = Path(path)
    _raw, text = read_text(path)
    data, source = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise AcardsError("schema.type", "a card is a YAML mapping of fields", "start from `acards init`", source.locate(""))
    digests, problems = {}, []
    for json_pointer, relative, _old, location in evidence_pointers(data, source):
        try:
            digests[json_pointer] = digest_path(resolve_inside(path.parent, relative, location), cache, relative)
        except AcardsError as error:
            problems.extend(error.problems)
    if problems:
        raise AcardsError.collect(problems)
    yaml = round_trip_yaml()
    document = yaml.load(text)
    changed = 0
    for json_pointer, value in digests.items():
        node = document
        for part in json_pointer.split("/")[1:]:
            node = node[int(part)] if isinstance(node, list) else node[part.replace("~1", "/").replace("~0", "~")]
        if node.get("sha256") != value:
            node["sha256"] = value
            changed += 1
    if changed:
        buffer = StringIO()
        yaml.dump(document, buffer)
        atomic_write(path, buffer.getvalue().encode("utf-8"))
    return changed


def round_trip_yaml() -> YAML:
    """A ruamel round-trip YAML set up to re-emit cards as `acards init` lays them out."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def set_standard(text: str, source: SourceMap, version: str) -> str:
    """The card text with its ``acard:`` value replaced by ``version``, and nothing else changed.

    The value is spliced in where ruamel's parse located it (acards.card.reported, the same
    mechanism `acards fill` writes with), in its own quoting (an unquoted value becomes
    double-quoted, as the schema wants a string), so every other byte (comments, key order, flow or
    block style, line ends) stays as the author wrote it; `acards migrate` relies on this.
    """
    span = scalar_spans(text, source.file, "/acard")["/acard"]
    return splice(text, {Span(span.start, span.end, span.style or '"'): version})
