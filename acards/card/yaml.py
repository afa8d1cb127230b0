"""Safe YAML: card text to plain data with a source map, refusing aliases, tags, merge keys, duplicate keys
and everything else two YAML readers could read differently."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, DocumentStartEvent, NodeEvent
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from acards.errors import AcardsError, Location, Problem

MAX_CARD_BYTES = 1024 * 1024

MAX_DEPTH = 64

_TAG = "tag:yaml.org,2002:"
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")  # YAML's line breaks, as the reader's marks count them
_COMMENT_NEXT = re.compile(r"[ \t]+#")


def child(pointer: str, key: str | int) -> str:
    return f"{pointer}/{str(key).replace('~', '~0').replace('/', '~1')}"


@dataclass
class SourceMap:
    """Where each value (and each mapping key) of a YAML document starts."""

    file: str
    values: dict[str, tuple[int, int]]
    keys: dict[str, tuple[int, int]]
    # Plain (unquoted) text values that a same-line comment follows: pointer -> (line, column) of
    # its '#'.  YAML ends a plain value at ' #', so `title: A #1 result` reads as "A"; validation
    # warns (yaml.comment-in-text) where the schema says the value is free text.
    comment_after: dict[str, tuple[int, int]] = field(default_factory=dict)

    def locate(self, pointer: str, at_key: bool = False) -> Location:
        """The location of ``pointer``, or of its nearest ancestor that has one."""
        probe = pointer
        while True:
            mark = (self.keys.get(probe) if at_key else None) or self.values.get(probe)
            if mark is not None:
                return Location(self.file, mark[0], mark[1], pointer)
            if not probe:
                return Location(self.file, None, None, pointer)
            probe = probe.rsplit("/", 1)[0]


def _mark(mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def read_text(path: Path, max_bytes: int = MAX_CARD_BYTES) -> tuple[bytes, str]:
    """The card's bytes and text: bounded size, strict UTF-8."""
    from acards.files import read_input

    raw = read_input(path, max_bytes, what="card", missing="card.not-found", unreadable="card.unreadable",
                     too_large="yaml.too-large", folder="card.not-found")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise AcardsError("yaml.encoding", f"the card is not valid UTF-8 (byte {error.start})",
                          "save the card as UTF-8", Location(str(path), line)) from None
    return raw, text.removeprefix("\ufeff")


def parse_yaml(text: str, file: str) -> tuple[Any, SourceMap]:
    """Plain JSON-like data from YAML text, refusing anchors, aliases, tags and duplicate keys."""
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), 1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(Problem("yaml.tab", "a tab in the indentation", "indent with spaces; YAML does not allow tabs there",
                                    Location(file, number, indent.index("\t") + 1)))
    if problems:
        raise AcardsError.collect(problems)

    try:
        root = _compose_checked(text, file, problems)
    except Exception:  # anything unusual: the two readings below meet it again and word it as before
        root = None
    if problems:
        problems.sort(key=lambda p: (p.location.line, p.location.column))
        raise AcardsError.collect(problems)
    try:
        if root is None:
            yaml = YAML(typ="rt")
            checks = _EventChecks(file, problems)
            for event in yaml.parse(text):
                checks.see(event)
            checks.finish()
            if problems:
                problems.sort(key=lambda p: (p.location.line, p.location.column))
                raise AcardsError.collect(problems)
            root = yaml.compose(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Location(file, *_mark(mark)) if mark else Location(file)
        message = " ".join(str(part) for part in (error.context, error.problem) if part)
        raise AcardsError("yaml.syntax", f"YAML syntax error: {message}", "fix the YAML at this position", where) from None
    except YAMLError as error:
        raise AcardsError("yaml.syntax", f"YAML error: {error}", "fix the YAML", Location(file)) from None
    except RecursionError:
        raise AcardsError("yaml.too-deep", "the YAML nests too deeply", f"a card nests at most {MAX_DEPTH} levels", Location(file)) from None

    source = SourceMap(file, {}, {})
    if root is None:
        raise AcardsError("yaml.empty", "the card is empty", "start from `acards init`", Location(file, 1, 1))
    data = _plain(root, "", source, 0, problems)
    if problems:
        raise AcardsError.collect(problems)
    _find_comments_after(text, source)
    return data, source


def _find_comments_after(text: str, source: SourceMap) -> None:
    """Keep, of the plain text values (their ends, which :func:`_plain` put in ``comment_after``),
    those followed on their last line by blanks then '#': a comment that may have cut the text."""
    lines = _LINE_BREAK.split(text)
    ends, source.comment_after = source.comment_after, {}
    for pointer, (line, column) in ends.items():
        found = _COMMENT_NEXT.match(lines[line], column) if line < len(lines) else None
        if found:
            source.comment_after[pointer] = (line + 1, found.end())


class _EventChecks:
    """The checks made on the parser's events: one document, no anchors, aliases or tags."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file, self.problems = file, problems
        self.documents = 0
        self.aliases: dict[str, list[Location]] = {}  # one problem per anchor name, at its first use

    def see(self, event) -> None:
        where = Location(self.file, *_mark(event.start_mark))
        if isinstance(event, DocumentStartEvent):
            self.documents += 1
            if self.documents == 2:
                self.problems.append(Problem("yaml.multiple-documents", "the file holds more than one YAML document",
                                             "a card is one document: remove the '---' separators", where))
        elif isinstance(event, AliasEvent):
            self.aliases.setdefault(event.anchor, []).append(where)
        elif isinstance(event, NodeEvent):
            if event.anchor is not None:
                self.problems.append(Problem("yaml.anchor", f"anchor &{event.anchor}", "remove the anchor and write values out in full", where))
            if getattr(event, "tag", None) is not None:
                self.problems.append(Problem("yaml.tag", f"explicit tag {event.tag}",
                                             "remove the tag; quote a value to make it a string", where))

    def finish(self) -> None:
        for anchor, uses in self.aliases.items():
            more = f" (and {len(uses) - 1} more uses)" if len(uses) > 1 else ""
            self.problems.append(Problem("yaml.alias", f"alias *{anchor}{more}",
                                         "write the value out in full; aliases are refused so a small card cannot expand into a huge one", uses[0]))


def _compose_checked(text: str, file: str, problems: list[Problem]):
    """The document's node tree from one reading of the text: each event is checked as the composer
    takes it from the parser.  Raises the reader's error on anything unusual (a second document, an
    undefined alias, bad syntax); the caller then reads the text twice, events then nodes, and words
    the problem as before."""
    yaml = YAML(typ="rt")
    parser = yaml.parser
    checks = _EventChecks(file, [])
    take = parser.get_event

    def checked():
        event = take()
        checks.see(event)
        return event

    parser.get_event = checked
    root = yaml.compose(text)
    checks.finish()
    problems.extend(checks.problems)
    return root


def _plain(node, pointer: str, source: SourceMap, depth: int, problems: list[Problem]) -> Any:
    source.values[pointer] = _mark(node.start_mark)
    where = Location(source.file, *_mark(node.start_mark), pointer)
    if depth > MAX_DEPTH:
        problems.append(Problem("yaml.too-deep", "the YAML nests too deeply", f"a card nests at most {MAX_DEPTH} levels", where))
        return None
    if isinstance(node, MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key_where = Location(source.file, *_mark(key_node.start_mark), pointer)
            if not isinstance(key_node, ScalarNode) or key_node.tag != _TAG + "str":
                kind = "merge key '<<'" if key_node.tag == _TAG + "merge" else f"key of type {key_node.tag.removeprefix(_TAG)}"
                problems.append(Problem("yaml.key-type", f"a {kind}", "mapping keys are plain strings", key_where))
                continue
            key = key_node.value
            path = child(pointer, key)
            if key in result:
                first = source.keys[path][0]
                problems.append(Problem("yaml.duplicate-key", f"duplicate key '{key}' (first on line {first})",
                                        "keep one of the two; duplicate keys would silently drop a value",
                                        Location(source.file, *_mark(key_node.start_mark), path)))
                continue
            source.keys[path] = _mark(key_node.start_mark)
            result[key] = _plain(value_node, path, source, depth + 1, problems)
        return result
    if isinstance(node, SequenceNode):
        return [_plain(item, child(pointer, index), source, depth + 1, problems) for index, item in enumerate(node.value)]
    if node.style is None and node.tag == _TAG + "str":  # a plain text value: where it ends, for _find_comments_after
        source.comment_after[pointer] = (node.end_mark.line, node.end_mark.column)
    return _scalar(node, where, problems)


def _scalar(node: ScalarNode, where: Location, problems: list[Problem]) -> Any:
    tag, text = node.tag.removeprefix(_TAG), node.value
    if node.style == ">":  # ruamel's round-trip scanner marks each fold of a folded block with '\a' (BEL);
        text = text.replace("\a", "")  # its constructor drops them, and so do we (YAML allows no raw BEL)
    if tag in ("str", "timestamp"):  # dates stay text: a card has no date fields to interpret
        return text
    if tag == "null":
        return None
    if tag == "bool":
        return text.lower() == "true"
    if tag == "int":
        digits = text.replace("_", "")
        return int(digits, 0) if digits.lstrip("+-")[:2].lower() in ("0x", "0o", "0b") else int(digits)
    if tag == "float":
        lowered = text.lower()
        if lowered.lstrip("+-") in (".inf", ".nan"):
            problems.append(Problem("yaml.non-finite", f"the number {text} is not finite",
                                    "write a finite number; NaN and infinity cannot be compared against thresholds", where))
            return None
        return float(text.replace("_", ""))
    problems.append(Problem("yaml.tag", f"a value of type {tag}", "use strings, numbers, booleans, lists and mappings", where))
    return None
