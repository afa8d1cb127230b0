"""Hostile text and hostile patterns: a verdict is bound to the bytes that were hashed.

- regular expressions from evidence (PEFT rank_pattern/alpha_pattern keys) cannot make acards run
  for ever: catastrophic ones are refused with a code, and the subprocess timeouts turn a regression
  into a failure instead of a hang (the card's regex scorer: tests/hostile/test_hostile_regex.py);
- the site build waits for a held lock only so long (registry.locked, exit 4);
- card text on the Markdown pages makes no autolink, and a bidirectional control in card text
  cannot reverse what follows it (HTML isolates it in <bdi>, Markdown shows it as [U+XXXX]);
- card text reads exactly as YAML defines it, in every scalar style, checked against PyYAML.
"""

from __future__ import annotations

import copy
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml as pyyaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    PlainScalarString,
    SingleQuotedScalarString,
)

from acards.card.model import load_card
from acards.card.yaml import parse_yaml
from acards.cli import main
from acards.errors import AcardsError
from acards.pipeline.verify import verify
from acards.present.render import render_card

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "tiny-defense"
ACARDS = [sys.executable, "-m", "acards.cli"] if not (Path(sys.executable).parent / "acards").exists() \
    else [str(Path(sys.executable).parent / "acards")]
TIMEOUT = 60  # seconds; a catastrophic pattern would run for hours


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ACARDS_KEY_PASSPHRASE"}
    return subprocess.run([*ACARDS, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, env=env)


def copy_example(tmp_path: Path) -> Path:
    folder = tmp_path / "card"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("build.py", "__pycache__"))
    return folder


def repin(folder: Path) -> None:
    result = run_cli("check", "card.yaml", "--write-digests", cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr


# --- 1. regular expressions from evidence and from the card ------------------------------------

CATASTROPHIC_KEYS = ["((.*)*)*zz", "(a|a)*$x", "(q_proj+)+x", r"(\w+\.?)+z"]


@pytest.mark.parametrize("field", ["rank_pattern", "alpha_pattern"])
@pytest.mark.parametrize("key", CATASTROPHIC_KEYS[:2])
def test_a_catastrophic_adapter_pattern_is_refused_through_verify(tmp_path, field, key):
    folder = copy_example(tmp_path)
    config_path = folder / "ckpt" / "seed0" / "undefended" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config[field] = {key: 2}
    config_path.write_text(json.dumps(config))
    repin(folder)
    result = run_cli("verify", "card.yaml", cwd=folder)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "weights.unsupported-pattern" in result.stdout + result.stderr


@pytest.mark.parametrize("key", CATASTROPHIC_KEYS + ["[qk]_proj", r"layers\.\d+\.q_proj", "(q|k)_proj", "q_proj$", "",
                                                     "x" * 1001, "a|", "a\nb"])
def test_adapter_pattern_keys_beyond_module_name_suffixes_are_refused(tmp_path, key):
    from acards.evidence.adapters import read_adapter_config

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                              "rank_pattern": {key: 2}}))
    with pytest.raises(AcardsError) as raised:
        read_adapter_config(tmp_path)
    assert raised.value.code == "weights.unsupported-pattern"


@pytest.mark.parametrize("key,module,matches", [
    ("v_proj", "model.layers.0.self_attn.v_proj", True),
    ("model.layers.1.mlp.down_proj", "model.layers.1.mlp.down_proj", True),
    ("model.layers.1.mlp.down_proj", "model.layers.11.mlp.down_proj", False),
    ("^model.decoder.layers.0.encoder_attn.k_proj", "model.decoder.layers.0.encoder_attn.k_proj", True),
    ("q_proj|v_proj", "model.layers.0.self_attn.v_proj", True),
    (r"layers\.0\.self_attn\.q_proj", "model.layers.0.self_attn.q_proj", True),
    ("proj", "model.layers.0.self_attn.q_proj", False),
])
def test_plain_adapter_pattern_keys_match_as_peft_matches_them(tmp_path, key, module, matches):
    from acards.evidence.adapters import _pattern_value, read_adapter_config

    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                              "rank_pattern": {key: 2}}))
    config = read_adapter_config(tmp_path)
    assert _pattern_value(config["rank_pattern"], module, 4) == (2 if matches else 4)
    assert (re.match(rf"(.*\.)?({key})$", module) is not None) == matches  # PEFT's get_pattern_key


# The regex scorer's patterns: tests/hostile/test_hostile_regex.py.


# --- 2. the site build's lock ---------------------------------------------------------------------

def test_registry_build_times_out_on_a_held_lock(tmp_path, monkeypatch):
    from acards.registry import reader

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], env={"ACARDS_KEY_PASSPHRASE": None})

    assert invoke("key", "new", "--out", tmp_path / "registry.key", "--no-passphrase").exit_code == 0
    directory = tmp_path / "registry"
    assert invoke("registry", "init", directory, "--origin", "example.org/hostile", "--key",
                  tmp_path / "registry.key").exit_code == 0
    monkeypatch.setattr(reader, "LOCK_TIMEOUT", 0.2)
    descriptor = os.open(directory / ".site.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        result = invoke("registry", "build", directory)
        assert result.exit_code == 4, result.output
        assert "registry.locked" in result.output
    finally:
        os.close(descriptor)
    result = invoke("registry", "build", directory)
    assert result.exit_code == 0, result.output


# --- 3. pages: no autolink, no reordering --------------------------------------------------------

@pytest.fixture(scope="module")
def verified() -> tuple[dict, object]:
    card_path = EXAMPLE / "card.yaml"
    return load_card(card_path).data, verify(card_path, bootstrap=50, use_cache=False)


FREE_TEXT = {
    "title": lambda card, text: card.update(title=text),
    "limitations": lambda card, text: card.update(limitations=text),
    "author name": lambda card, text: card["authors"][0].update(name=text),
    "author email": lambda card, text: card["authors"][0].update(email=text),
    "paper title": lambda card, text: card.setdefault("paper", {}).update(title=text),
    "behavior": lambda card, text: card["protocol"].update(behavior=text),
    "higher score means": lambda card, text: card["protocol"].update(higher_score_means=text),
    "audit framing": lambda card, text: card["protocol"]["framings"].update(audit=text),
    "deploy framing": lambda card, text: card["protocol"]["framings"].update(deploy=text),
    "claim statement": lambda card, text: card["claims"][0].update(statement=text),
    "cell family": lambda card, text: card["cells"][0].update(family=text),
    "cell configuration": lambda card, text: card["cells"][0].update(configuration=text),
}
AUTOLINKS = "see https://evil.example/x and http://plain.example, WWW.shout.example, www.quiet.example, " \
            "mailto:someone@evil.example, a.person@evil.example and @octocat"


def unescaped_autolinks(md: str) -> list[str]:
    """What GitHub would autolink in ``md``: '://', 'www.' and '@' not preceded by a backslash, outside
    the one paper link ``](<https://…>)``."""
    md = re.sub(r"\]\(<https://[^>\s]*>\)", "](<>)", md)
    return re.findall(r"(?<!\\)(?::(?=//)|@)|(?i:www)(?<!\\)\.(?=\w)", md)


@pytest.mark.parametrize("field", FREE_TEXT)
def test_markdown_makes_no_autolink_from_card_text(verified, field):
    card = copy.deepcopy(verified[0])
    FREE_TEXT[field](card, AUTOLINKS)
    md = render_card(card, verified[1], "md")
    assert unescaped_autolinks(md) == []
    assert r"https\://evil.example/x" in md and r"www\.quiet.example" in md and r"a.person\@evil.example" in md


def test_the_https_paper_url_is_still_the_one_link(verified):
    card = copy.deepcopy(verified[0])
    card["paper"] = {"title": "Paper at https://other.example", "url": "https://arxiv.org/abs/2605.10575"}
    md, html = render_card(card, verified[1], "md"), render_card(card, verified[1], "html")
    assert "[Paper at https\\://other.example](<https://arxiv.org/abs/2605.10575>)" in md
    assert re.findall(r'href="(https?:[^"]*)"', html) == ["https://arxiv.org/abs/2605.10575"]


BIDI = "\u202e"


def bidi_outside_bdi(html: str) -> list[int]:
    """Positions of bidirectional controls in ``html`` that no <bdi> element isolates."""
    bad = []
    for match in re.finditer("[\u200e\u200f\u202a-\u202e\u2066-\u2069]", html):
        before = html[: match.start()]
        if before.rfind("<bdi>") <= before.rfind("</bdi>"):
            bad.append(match.start())
    return bad


@pytest.mark.parametrize("field", ["title", "claim statement", "limitations", "author name", "cell configuration"])
def test_a_right_to_left_override_reverses_nothing_after_it(verified, field):
    card = copy.deepcopy(verified[0])
    FREE_TEXT[field](card, f"harmless {BIDI}txet desrever")
    html, md = render_card(card, verified[1], "html"), render_card(card, verified[1], "md")
    assert bidi_outside_bdi(html) == []
    assert f"<bdi>harmless {BIDI}txet desrever</bdi>" in html
    title = re.search(r"<title>(.*?)</title>", html, re.S)[1]
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", title)
    assert not re.search("[\u200e\u200f\u202a-\u202e\u2066-\u2069]", md)
    assert r"harmless \[U+202E\]txet desrever" in md


def test_every_bidi_control_is_neutralised_in_markdown(verified):
    card = copy.deepcopy(verified[0])
    controls = "".join(map(chr, [0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
    card["limitations"] = f"a{controls}b"
    md, html = render_card(card, verified[1], "md"), render_card(card, verified[1], "html")
    assert not any(ch in md for ch in controls) and bidi_outside_bdi(html) == []
    assert r"\[U+2069\]b" in md


# --- 4. YAML reads as YAML defines it --------------------------------------------------------------

def both_readers(text: str):
    return parse_yaml(text, "card.yaml")[0]["k"], pyyaml.safe_load(text)["k"]


BLOCK_BODY = "one two\n  more indented\nthree\n\nfour after a blank\n"


@pytest.mark.parametrize("header", ["|", "|-", "|+", ">", ">-", ">+", "|2", ">2-"])
@pytest.mark.parametrize("trailing", ["", "\n", "\n\n"])
def test_block_scalars_read_as_pyyaml_reads_them(header, trailing):
    text = "k: " + header + "\n" + "".join(f"  {line}\n" if line else "\n" for line in BLOCK_BODY.splitlines()) + trailing
    ours, theirs = both_readers(text)
    assert ours == theirs and "\a" not in ours


@pytest.mark.parametrize("text,expected", [
    ("k: plain words\n", "plain words"),
    ("k: plain\n  over\n\n  lines\n", "plain over\nlines"),
    ("k: 'single ''quoted''\n  folded'\n", "single 'quoted' folded"),
    ('k: "double \\"quoted\\"\\t\\u00e9\n  folded"\n', 'double "quoted"\t\u00e9 folded'),
    ("k: >-\n  folded\n  text\n", "folded text"),
    ("k: |-\n  literal\n  text\n", "literal\ntext"),
])
def test_each_scalar_style_reads_exactly(text, expected):
    assert both_readers(text) == (expected, expected)


YAML_TEXT = st.lists(st.characters(categories=("L", "N", "P", "S", "Zs"), exclude_characters="\x85\u2028\u2029\ufeff\t")
                     | st.sampled_from(["\n", " ", "  ", "\n\n", "#", ": ", " #", "'", '"', "\\", "word", "a b"]),
                     max_size=30).map("".join)
STYLES = [PlainScalarString, SingleQuotedScalarString, DoubleQuotedScalarString, LiteralScalarString,
          FoldedScalarString]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=YAML_TEXT, style=st.sampled_from(STYLES))
def test_every_scalar_style_reads_as_pyyaml_reads_it(value, style):
    from io import StringIO

    emitter = YAML(typ="rt")
    emitter.width = 20  # folds long lines, so folded and plain scalars span several lines
    stream = StringIO()
    try:
        emitter.dump({"k": style(value)}, stream)
    except Exception:  # a style that cannot hold this value
        assume(False)
    text = stream.getvalue()
    try:
        theirs = pyyaml.safe_load(text)["k"]
    except pyyaml.YAMLError:
        assume(False)
    try:
        ours = parse_yaml(text, "card.yaml")[0]["k"]
    except AcardsError as error:
        if error.code == "yaml.tab":  # acards refuses tabs in indentation
            assume(False)
        raise
    assume(isinstance(theirs, str) and isinstance(ours, str))  # YAML 1.1 and 1.2 resolve some plain words apart
    assert ours == theirs, text


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(st.text(st.characters(categories=("L", "N", "P", "Zs"), exclude_characters="\u3000"), max_size=12)
                      .map(str.rstrip), max_size=6),
       header=st.sampled_from(["|", "|-", "|+", ">", ">-", ">+"]), more=st.lists(st.booleans(), min_size=6, max_size=6),
       trailing=st.sampled_from(["", "\n", "\n\n"]))
def test_hand_built_block_scalars_read_as_pyyaml_reads_them(lines, header, more, trailing):
    assume(lines and lines[0].strip())
    body = "".join(("   " if extra else "  ") + line + "\n" if line else "\n" for line, extra in zip(lines, more))
    text = "k: " + header + "\n" + body + trailing
    try:
        theirs = pyyaml.safe_load(text)["k"]
    except pyyaml.YAMLError:
        assume(False)
    assert parse_yaml(text, "card.yaml")[0]["k"] == theirs, text


CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def strings(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("card", sorted(REPO.glob("examples/*/card.yaml")), ids=lambda p: p.parent.name)
def test_the_shipped_examples_hold_no_control_characters(card):
    data = load_card(card).data
    found = [s for s in strings(data) if CONTROL.search(s)]
    assert found == []
    raw = card.read_text(encoding="utf-8")
    if ">-" in raw:  # the folded blocks read as PyYAML reads them
        assert data == json.loads(json.dumps(pyyaml.safe_load(raw), default=str))


def test_validate_refuses_a_scorer_pattern_it_cannot_run_before_any_evidence_is_read(tmp_path):
    """`acards validate` runs the scorer-pattern check too, with the pattern's line in the card."""
    from click.testing import CliRunner

    from acards.cli import main

    card = tmp_path / "card.yaml"
    text = (Path(__file__).resolve().parents[1] / "cases" / "verify" / "full-pass" / "card.yaml").read_text()
    assert "\nscorer:" not in text  # the base card has no scorer: give it one RE2 cannot run (a lookbehind)
    card.write_text(text.rstrip("\n") + "\nscorer: {kind: regex, pattern: '(?<!not )safe'}\n")
    result = CliRunner().invoke(main, ["validate", str(card), "--format", "json"])
    problems = json.loads(result.output)["problems"]
    assert result.exit_code == 2
    refused = [p for p in problems if p["code"] == "card.unsupported-pattern"]
    assert refused and refused[0]["location"]["pointer"] == "/scorer/pattern" and refused[0]["location"]["line"]
