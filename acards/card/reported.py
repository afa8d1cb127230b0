"""Writing values into a card's `reported` blocks (`acards fill`) without touching anything else.

Values are spliced into the card text at the spans ruamel's parser gives each scalar, so every
other byte (comments, key order, quoting, flow or block style, line ends) stays as the author wrote
it.  A claim without a `reported` block gets one, inserted after the claim's last line in the
layout `acards init` writes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from acards.card.yaml import child
from acards.errors import AcardsError, Location
from acards.numbers import number_text


@dataclass(frozen=True)
class Span:
    """Where one scalar sits in the card text: [start, end) and its quoting style (None: plain)."""

    start: int
    end: int
    style: str | None


def scalar_text(value: str | float | int, style: str | None = None) -> str:
    """A value as YAML text: numbers plain, words in the quoting the old value had (plain if none)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"a reported value is a word or a number, not {type(value).__name__}")
    if not isinstance(value, str):
        return number_text(value)
    quote = style if style in ("'", '"') else ""
    return f"{quote}{value}{quote}"


def _compose(text: str, file: str):
    root = YAML(typ="rt").compose(text)
    if root is None:
        raise AcardsError("yaml.empty", "the card is empty", "start from `acards init`", Location(file, 1, 1))
    return root


def scalar_spans(text: str, file: str, under: str = "") -> dict[str, Span]:
    """The span of every scalar below the JSON pointer ``under``, by pointer (the card text has
    already been read by acards.card.yaml.parse_yaml, so it is known to be safe YAML)."""
    spans: dict[str, Span] = {}

    def walk(node: Node, pointer: str) -> None:
        if isinstance(node, MappingNode):
            for key, value in node.value:
                walk(value, child(pointer, key.value))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, child(pointer, index))
        elif pointer == under or pointer.startswith(under + "/"):
            spans[pointer] = Span(node.start_mark.index, node.end_mark.index, node.style)

    walk(_compose(text, file), "")
    return spans


def splice(text: str, values: dict[Span, str | float | int]) -> str:
    """``text`` with each span replaced by its value's YAML text."""
    pieces, at = [], 0
    for span in sorted(values, key=lambda s: s.start):
        pieces += [text[at:span.start], scalar_text(values[span], span.style)]
        at = span.end
    return "".join(pieces) + text[at:]


def _last_leaf(node: Node) -> Node:
    """The node whose end is the end of ``node`` in the text: the last scalar or flow collection."""
    while isinstance(node, (MappingNode, SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return node


def insert_reported(text: str, file: str, claim_index: int, block: dict[str, dict | str]) -> str:
    """``text`` with a `reported` block added to claim ``claim_index``, after the claim's last line,
    indented as the claim's keys.  ``block`` maps diagnostic names to {key: value} and `verdict` to
    a word; each diagnostic is written as one flow mapping, as `acards init` writes them."""
    claims = next((value for key, value in _compose(text, file).value if key.value == "claims"), None)
    claim = claims.value[claim_index] if isinstance(claims, SequenceNode) else None
    if not isinstance(claim, MappingNode) or claim.flow_style:
        raise AcardsError("fill.flow-claim", f"claim {claim_index} is written as a flow mapping ({{...}})",
                          "write the claim as a block mapping, one key per line, or add `reported: {verdict: TODO}` "
                          "by hand; fill then writes its values",
                          Location(file, claim.start_mark.line + 1 if claim else None, None, f"/claims/{claim_index}"))
    newline = "\r\n" if "\r\n" in text else "\n"
    indent = " " * claim.value[0][0].start_mark.column
    lines = [f"{indent}reported:"]
    for name, values in block.items():
        if isinstance(values, dict):
            inner = ", ".join(f"{key}: {scalar_text(value)}" for key, value in values.items())
            lines.append(f"{indent}  {name}: {{{inner}}}")
        else:
            lines.append(f"{indent}  {name}: {scalar_text(values)}")
    end = _last_leaf(claim).end_mark.index
    line_end = text.find("\n", max(end - 1, 0))
    if text[end - 1:end] == "\n":  # a block scalar ends after its own line break
        line_end = end - 1
    if line_end == -1:  # the claim's last line is the file's last, without a line break
        return text + newline + newline.join(lines) + newline
    return text[:line_end + 1] + newline.join(lines) + newline + text[line_end + 1:]
