"""parse_yaml reads a card once (its events checked as the composer takes them), and falls back to
reading it twice (events, then nodes) on anything unusual: both ways give the same data, source
map and problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml.error import YAMLError

from acards.card import yaml as card_yaml
from acards.errors import AcardsError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tiny-defense" / "card.yaml"

TEXTS = [
    "a: 1\nb: [x, y]\nc: {d: 'e'}\n",
    "a: &x 1\nb: *x\n",  # anchor and alias
    "a: *nowhere\n",  # an alias with no anchor: the composer refuses it
    "a: !!str 1\nb: !custom x\n",  # tags
    "a: 1\n---\nb: 2\n",  # two documents
    "a: [1, 2\n",  # syntax
    "",  # empty
    "# only a comment\n",
    "a: 1\na: 2\n",  # duplicate key
    "x: " + "[" * 200 + "]" * 200 + "\n",  # too deep
    "list:\n  - &a {k: v}\n  - *a\n  - *a\n",
]


def outcome(text: str):
    try:
        data, source = card_yaml.parse_yaml(text, "card.yaml")
    except AcardsError as error:
        return "problems", [(p.code, p.location.line, p.location.column, p.message) for p in error.problems]
    return "data", data, source.values, source.keys


def test_one_reading_and_two_readings_agree(monkeypatch):
    texts = TEXTS + ([EXAMPLE.read_text()] if EXAMPLE.exists() else [])
    once = [outcome(text) for text in texts]

    def refuse(*args, **kwargs):
        raise YAMLError("forced: read the text twice")

    monkeypatch.setattr(card_yaml, "_compose_checked", refuse)
    twice = [outcome(text) for text in texts]
    for text, a, b in zip(texts, once, twice):
        assert a == b, text[:80]
    assert {kind for kind, *_ in once} == {"data", "problems"}


@pytest.mark.parametrize("text", ["a: &x 1\nb: *x\n", "a: !!str 1\n"])
def test_the_one_reading_reports_what_it_sees(text, monkeypatch):
    calls = []
    original = card_yaml._compose_checked
    monkeypatch.setattr(card_yaml, "_compose_checked", lambda *a: calls.append(1) or original(*a))
    with pytest.raises(AcardsError):
        card_yaml.parse_yaml(text, "card.yaml")
    assert calls == [1]
