"""A card whose prompts are `{from: import}`, filled and pre-registered: `acards fill` reads the
prompts with the records, in one import, and writes the numbers of the same card pointing at the
files `acards import --prompts` wrote; the card's analysis plan binds the digest of the prompts
the import writes, so it is the plan of that card (no deviation), and signing it names no file."""

from __future__ import annotations

import hashlib
import re

from cli_run import run
from test_import_prompts import WITH_PROMPTS, table_card

from acards.card.analysis_plan import deviations
from acards.card.model import load_card
from acards.pipeline.preregistration import card_plan, plan_payload

PINNED = "  records:\n    - {path: records.jsonl, sha256: TODO}\n  prompts: {path: prompts.jsonl, sha256: TODO}\n"
IMPORTED = "  records: {from: import}\n  prompts: {from: import}\n"
CARD = re.sub(r" *#.*", "", WITH_PROMPTS)  # without comments: the two cards differ in their evidence only


def test_fill_and_the_plan_of_imported_prompts_are_those_of_the_imported_files(tmp_path):
    card = table_card(tmp_path, card=CARD)
    assert run("import", "table", tmp_path / "logs" / "scored.csv", "-m", tmp_path / "mapping.yaml", "--records",
               tmp_path / "records.jsonl", "--prompts", tmp_path / "prompts.jsonl")[0] == 0
    files = tmp_path / "files.yaml"
    assert IMPORTED in CARD
    files.write_text(CARD.replace(IMPORTED, PINNED))
    for path in (card, files):
        assert run("check", path, "--write-digests")[0] == 0
        assert run("fill", path, "--no-generate", "--bootstrap", "200")[0] == 0
    pinned = re.escape(PINNED).replace("TODO", "[0-9a-f]{64}")
    assert re.sub(pinned, IMPORTED, files.read_text()) == card.read_text()
    imported, from_files = card_plan(load_card(card)), card_plan(load_card(files))
    assert imported["prompts"]["sha256"] == hashlib.sha256((tmp_path / "prompts.jsonl").read_bytes()).hexdigest()
    assert imported["splits"]["heldout"] and deviations(from_files, imported) == [] and imported == from_files
    assert b"prompts.jsonl" in plan_payload(load_card(files)) and b"prompts.jsonl" not in plan_payload(load_card(card))
