"""Round-trip edits of a card file that keep the author's comments, key order and quoting."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from acards.card.reported import Span, scalar_spans, scalar_text, splice
from acards.card.validate import evidence_pointers
from acards.card.yaml import SourceMap, parse_yaml, read_text
from acards.errors import AcardsError, Location


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


def set_preregistration(text: str, file: str, fields: dict[str, str]) -> str:
    """The card text naming its pre-registration (``fields``: ``entry``, and ``envelope`` when the
    signed plan sits in the card's folder), every other byte as the author wrote it.

    An existing ``preregistration`` mapping keeps its layout and comments: its ``entry`` and
    ``envelope`` values are spliced in where they are, in their own quoting, and a missing one is
    added as a line after the block's last (a flow mapping ``{...}`` without it is refused). A card
    without the field gets the block appended at its end, in the layout `acards init` writes.
    The result is parsed back and must be the card's data with exactly that pre-registration.
    """
    from ruamel.yaml.nodes import MappingNode

    from acards.card.reported import _compose, _last_leaf

    def refuse(message: str, line: int | None = None) -> AcardsError:
        return AcardsError("preregistration.cannot-write", message,
                           "add the printed `preregistration:` lines to the card by hand (run without --write)",
                           Location(file, line, None, "/preregistration"))

    def as_text(value: str, style: str | None = None) -> str:
        # A plain scalar that YAML reads as something else (a digest of digits only is a number) is quoted.
        plain_reads_back = style is not None or YAML(typ="safe", pure=True).load(value) == value
        return scalar_text(value, style if plain_reads_back else '"')

    before, _ = parse_yaml(text, file)
    root = _compose(text, file)
    if not isinstance(root, MappingNode) or root.flow_style:
        raise refuse("the card is not a block mapping of fields")
    newline = "\r\n" if "\r\n" in text else "\n"
    node = next((value for key, value in root.value if key.value == "preregistration"), None)
    if node is None:
        indent = " " * root.value[0][0].start_mark.column
        lines = [f"{indent}preregistration:", *(f"{indent}  {key}: {as_text(value)}" for key, value in fields.items())]
        edited = text + ("" if not text or text.endswith("\n") else newline) + newline.join(lines) + newline
    elif not isinstance(node, MappingNode):
        raise refuse("the card's `preregistration` is not a mapping", node.start_mark.line + 1)
    else:
        spans = scalar_spans(text, file, "/preregistration")
        found = {key: spans[f"/preregistration/{key}"] for key in fields if f"/preregistration/{key}" in spans}
        edited = "".join(_pieces(text, {span: as_text(fields[key], span.style) for key, span in found.items()}))
        missing = [key for key in fields if f"/preregistration/{key}" not in spans]
        if missing and (node.flow_style or not node.value):
            raise refuse(f"the card's `preregistration` is a flow mapping without {missing[0]}", node.start_mark.line + 1)
        if missing:
            # Insert after the block's last line; the splice above only changed text before it or
            # inside it, so find that line in the edited text again.
            root = _compose(edited, file)
            node = next(value for key, value in root.value if key.value == "preregistration")
            indent = " " * node.value[0][0].start_mark.column
            end = _last_leaf(node).end_mark.index
            line_end = edited.find("\n", max(end - 1, 0))
            added = newline.join(f"{indent}{key}: {as_text(fields[key])}" for key in missing) + newline
            edited = (edited + newline + added if line_end == -1
                      else edited[:line_end + 1] + added + edited[line_end + 1:])
    after, _ = parse_yaml(edited, file)
    expected = {**before, "preregistration": {**(before.get("preregistration") or {}), **fields}}
    if after != expected:  # never write a card that says anything else
        raise refuse("the edited card would not read back as the card with its pre-registration")
    return edited


def _pieces(text: str, replaced: dict[Span, str]):
    """``text`` in pieces, each span replaced by its (already YAML) text."""
    at = 0
    for span in sorted(replaced, key=lambda s: s.start):
        yield text[at:span.start]
        yield replaced[span]
        at = span.end
    yield text[at:]
