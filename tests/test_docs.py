"""The user documentation stays in step with the code.

- (error codes: every code, its exit status and its section of docs/errors.md are checked against
  the catalogue acards/errors/codes.py in tests/unit/test_error_catalogue.py);
- every threshold of the card schema is in docs/diagnostics.md with the schema's default;
- every `reasons` code a diagnostic emits is explained in docs/diagnostics.md, and no other;
- every top-level field and estimate of the report schema is explained in docs/report.md;
- the annotated example of docs/card-format.md is a valid card;
- every relative link in README.md and docs/*.md points at a file (and heading) that exists.

These tests read files only; they fail when code gains a code, threshold or reason that the docs
do not explain, so a new one is documented in the same change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "acards"
DOCS = REPO / "docs"
DIAGNOSTICS_MD = DOCS / "diagnostics.md"
REPORT_MD = DOCS / "report.md"
CARD_FORMAT_MD = DOCS / "card-format.md"

# A row of a Markdown table whose first cell is a code in backticks.
ROW = re.compile(r"^\|\s*`(?P<first>[^`]+)`\s*\|(?P<rest>.*)$", re.MULTILINE)


# --- thresholds --------------------------------------------------------------------------------

def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        target = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def schema_thresholds() -> dict[str, object]:
    """`group.name` -> default, for every threshold of the card schema's threshold groups."""
    schema = json.loads((REPO / "schema" / "acard-1.0.schema.json").read_text(encoding="utf-8"))
    found = {}
    for group, ref in _resolve(schema, schema["$defs"]["thresholdSet"])["properties"].items():
        for name, spec in _resolve(schema, ref)["properties"].items():
            spec = _resolve(schema, spec)
            if "default" in spec:
                found[f"{group}.{name}"] = spec["default"]
    return found


def test_every_threshold_is_documented_with_its_default():
    rows = {m["first"]: m["rest"] for m in ROW.finditer(DIAGNOSTICS_MD.read_text(encoding="utf-8"))}
    thresholds = schema_thresholds()
    assert len(thresholds) >= 20, "the threshold scan found too few thresholds"
    problems = []
    for name, default in thresholds.items():
        if name not in rows:
            problems.append(f"{name} has no row in docs/diagnostics.md")
            continue
        cells = [cell.strip() for cell in rows[name].split("|")]
        if cells[0] != f"`{json.dumps(default)}`":
            problems.append(f"{name}: docs say {cells[0]}, the schema's default is {json.dumps(default)}")
    groups = {name.split(".")[0] for name in thresholds}
    for first in rows:
        if first.split(".")[0] in groups and "." in first and first not in thresholds:
            problems.append(f"docs/diagnostics.md documents {first}, which the schema does not have")
    assert not problems, "\n".join(problems)


# --- reasons -----------------------------------------------------------------------------------

REASON = re.compile(r"""\breason\(\s*["'](?P<code>[a-z0-9-]+)["']""")


def emitted_reasons() -> set[str]:
    found = set()
    for path in sorted((SOURCE / "diagnostics").glob("*.py")):
        found |= {m["code"] for m in REASON.finditer(path.read_text(encoding="utf-8"))}
    return found


def documented_reasons() -> set[str]:
    """Codes in the first column of the tables of docs/diagnostics.md whose header is `reason`."""
    found, in_reasons = set(), False
    for line in DIAGNOSTICS_MD.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            in_reasons = False
            continue
        first = line.split("|")[1].strip()
        if first == "reason":
            in_reasons = True
        elif in_reasons:
            found |= set(re.findall(r"`([a-z0-9-]+)`", first))
    return found


def test_every_reason_is_documented():
    emitted = emitted_reasons()
    assert {"reduction-not-reliable", "not-fresh", "mechanism-mismatch", "not-non-inferior"} <= emitted
    missing = sorted(emitted - documented_reasons())
    assert not missing, f"reasons emitted in acards/diagnostics but not explained in docs/diagnostics.md: {missing}"


def test_every_documented_reason_is_emitted():
    stale = sorted(documented_reasons() - emitted_reasons())
    assert not stale, f"docs/diagnostics.md explains reasons acards never emits: {stale}"


# --- report estimates and the card example -------------------------------------------------------

def test_every_report_field_and_estimate_is_documented():
    report = json.loads((REPO / "schema" / "report-1.0.schema.json").read_text(encoding="utf-8"))
    text = REPORT_MD.read_text(encoding="utf-8")
    names = set(report["properties"]) | {name for group in report["$defs"]["estimates"].values() for name in group["properties"]}
    missing = sorted(name for name in names if f"`{name}`" not in text)
    assert not missing, f"fields and estimates of the report schema not explained in docs/report.md: {missing}"


def test_card_format_example_is_a_valid_card(tmp_path):
    from acards.card.model import validate_document

    text = CARD_FORMAT_MD.read_text(encoding="utf-8")
    example = re.search(r"^```yaml\n(# yaml-language-server:.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert example, "docs/card-format.md has no complete example card"
    card = example.group(1)
    path = tmp_path / "card.yaml"
    path.write_text(card, encoding="utf-8")
    loaded = validate_document(card.encode("utf-8"), card, path)
    assert len(loaded.cells) >= 2 and len(loaded.claims) >= 2


# --- links -------------------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(?P<target>\S+)", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def markdown_pages() -> list[Path]:
    return [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, -1, -2 for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    targets = [m["target"] for m in LINK.finditer(text)] + [m["target"] for m in REFERENCE.finditer(text)]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no file {destination.relative_to(REPO) if destination.is_relative_to(REPO) else destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: {destination.name} has no heading #{anchor}")
    assert not broken, f"broken links in {page.relative_to(REPO)}:\n" + "\n".join(f"  {b}" for b in broken)


def test_docs_pages_exist():
    for name in ("standard", "card-format", "diagnostics", "evidence", "report", "errors"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"
