"""Pre-registration end to end: `acards preregister` signs a card's plan before its evidence exists
and logs it in a real registry; `acards verify` compares the finished card with it.

Cards are simulated (tests/simulate.py): real records, a real prompts file, real Ed25519 keys, real
DSSE envelopes, a real registry; crashes are real SIGKILLs of a forked child.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner
from simulate import CellSpec, build_card

from acards.attest.dsse import PAYLOAD_TYPE, sign_envelope
from acards.attest.keys import load_private_key, new_key
from acards.canonical import canonical_bytes
from acards.cli import main
from acards.errors import AcardsError
from acards.evidence.cachekey import collected_warnings
from acards.evidence.digests import digest_path
from acards.evidence.prompts import read_prompts
from acards.pipeline.preregistration import check_preregistration, plan_card, plan_payload
from acards.pipeline.verify import verify
from acards.registry import audit, reader, store
from acards.registry.preregistrations import preregister

B = 200  # bootstrap replicates: the plan, not the numbers, is under test


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def write_prompts(folder: Path) -> dict:
    """A prompts file listing every (split, task, item, framing) of the records, pinned."""
    seen = {}
    for line in (folder / "evidence" / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        key = (record["split"], record["task"], record["item"], record["framing"])
        seen.setdefault(key, {"item": record["item"], "split": record["split"], "task": record["task"],
                              "subject": record["subject"], "framing": record["framing"],
                              "prompt": f"Question {record['item']} ({record['framing']})"})
    path = folder / "evidence" / "prompts.jsonl"
    path.write_text("".join(json.dumps(prompt) + "\n" for prompt in seen.values()))
    return {"path": "evidence/prompts.jsonl", "sha256": digest_path(path)}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A registry trusting an author; a card pre-registered before its records existed; the
    finished card naming the logged plan."""
    root = tmp_path_factory.mktemp("prereg")
    for name in ("author.key", "registry.key", "stranger.key"):
        new_key(root / name)
    store.init_registry(root / "registry", "acards.test/prereg", root / "registry.key")
    store.add_trusted_key(root / "registry", root / "author.key.pub")
    finished = root / "finished"
    spec = CellSpec("cell-a", items_per_subject=3, subjects={"heldout": 12, "fresh": 10, "transfer": 10, "capability": 10})
    card_path = build_card(finished, [spec])
    card = json.loads(card_path.read_text())
    card["evidence"]["prompts"] = write_prompts(finished)
    # Before the experiment: the prompts exist, the records do not (their digest is a placeholder).
    planned = root / "planned"
    (planned / "evidence").mkdir(parents=True)
    shutil.copy(finished / "evidence" / "prompts.jsonl", planned / "evidence" / "prompts.jsonl")
    before = json.loads(json.dumps(card))
    before["evidence"]["records"][0]["sha256"] = "TODO"
    (planned / "card.yaml").write_text(json.dumps(before, indent=2))
    result = invoke("preregister", planned / "card.yaml", "--key", root / "author.key", "--registry", root / "registry",
                    "--registry-key", root / "registry.key")
    assert result.exit_code == 0, result.output
    digest = next(line.split()[1] for line in result.output.splitlines() if line.startswith("digest "))
    shutil.copy(planned / "card.plan.envelope.json", finished / "card.plan.envelope.json")
    card["preregistration"] = {"entry": digest, "envelope": "card.plan.envelope.json"}
    card_path.write_text(json.dumps(card, indent=2))
    return {"root": root, "registry": root / "registry", "card": card_path, "data": card, "digest": digest,
            "output": result.output}


def variant(world, tmp_path, edit=None, prompts_edit=None) -> Path:
    """A copy of the finished card folder with ``edit(card data)`` and ``prompts_edit(prompt rows)``."""
    folder = tmp_path / "variant"
    shutil.copytree(world["card"].parent, folder)
    card = json.loads(json.dumps(world["data"]))
    if prompts_edit:
        path = folder / "evidence" / "prompts.jsonl"
        rows = prompts_edit([json.loads(line) for line in path.read_text().splitlines()])
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        card["evidence"]["prompts"]["sha256"] = digest_path(path)
    if edit:
        edit(card)
    (folder / "card.yaml").write_text(json.dumps(card, indent=2))
    return folder / "card.yaml"


def compared(card_path: Path, registry: Path | None):
    """The pre-registration step of verify alone (no recomputation)."""
    card = plan_card(card_path)
    return check_preregistration(card, read_prompts(card), registry)


# --- round trip -------------------------------------------------------------------------------


def test_preregister_logs_the_plan_and_says_what_to_add_to_the_card(world):
    entries = reader.entries(world["registry"])
    assert [(e["kind"], e["card_id"], e["digest"]) for e in entries] == [("preregister", "simulated", world["digest"])]
    assert f"entry: {world['digest']}" in world["output"] and "envelope: card.plan.envelope.json" in world["output"]
    result = audit.verify_registry(world["registry"])
    assert result.ok and result.warnings == [], [str(p) for p in result.problems]


def test_verify_with_the_registry_matches_and_reports_the_logged_time(world):
    report = verify(world["card"], bootstrap=B, registry=world["registry"])
    found = report.preregistration
    logged = reader.entries(world["registry"])[0]["time"]
    assert (found.entry, found.logged_at, found.matched, found.deviations, found.source) == (
        world["digest"], logged, True, [], "registry")
    assert found.signers == [json.loads(world["card"].with_name("card.plan.envelope.json").read_text())["signatures"][0]["keyid"]]
    assert report.reproduced


def test_verify_offline_reads_the_local_copy_without_a_logged_time(world, tmp_path):
    with collected_warnings() as warnings:
        found = compared(world["card"], None)
    assert (found.matched, found.logged_at, found.source, found.signers) == (True, None, "card folder", [])
    assert {w.code for w in warnings} == {"preregistration.unverified", "preregistration.not-logged-here"}


def test_verify_on_the_command_line_lists_each_deviation_and_exits_1(world, tmp_path):
    def move(card):
        card["claims"][0]["thresholds"] = {"reliability": {"z": 1.5, "justification": "looser, after the fact"}}
    card = variant(world, tmp_path, move)
    result = invoke("verify", card, "--registry", world["registry"], "--bootstrap", B, "--no-generate",
                    "--report", tmp_path / "report.json")
    assert result.exit_code == 1, result.output
    assert "threshold-moved at /claims/C1/thresholds/reliability/z: planned 2, now 1.5" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reproduced"] is False and report["preregistration"]["matched"] is False
    assert report["preregistration"]["deviations"] == [
        {"kind": "threshold-moved", "pointer": "/claims/C1/thresholds/reliability/z", "planned": 2, "actual": 1.5}]
    assert all(claim["reproduced"] for claim in report["claims"])  # the deviation alone makes it not reproduced


# --- each kind of deviation, through the registry ----------------------------------------------


def _add_subject(rows):
    extra = dict(rows[0], subject="heldout-s99", item="heldout-99-00")
    return rows + [extra]


@pytest.mark.parametrize("edit, prompts_edit, expected", [
    (lambda c: c["claims"].append({"id": "C2", "statement": "Also this.", "cells": ["cell-a"]}), None,
     [("claim-added", "/claims/C2")]),
    (lambda c: c["claims"].__setitem__(0, dict(c["claims"][0], id="C9")), None,
     [("claim-dropped", "/claims/C1"), ("claim-added", "/claims/C9")]),
    (lambda c: c.__setitem__("scorer", {"kind": "exact"}), None, [("scorer-changed", "/scorers/scorer/kind")]),
    (None, _add_subject, [("prompts-changed", "/prompts/sha256"), ("subject-added", "/splits/heldout/subjects")]),
])
def test_each_deviation_is_found_against_the_logged_plan(world, tmp_path, edit, prompts_edit, expected):
    found = compared(variant(world, tmp_path, edit, prompts_edit), world["registry"])
    assert not found.matched
    assert [(d.kind, d.pointer) for d in found.deviations] == expected


def test_a_seed_changed_against_the_logged_plan(world, tmp_path):
    def pin_seed(card):  # a seed the plan did not name (its digests still placeholders)
        card["cells"][0]["checkpoints"] = {"seed": 3, "undefended": {"path": "u", "sha256": "TODO"},
                                           "defended": {"path": "d", "sha256": "TODO"}}
    found = compared(variant(world, tmp_path, pin_seed), world["registry"])
    assert [(d.kind, d.planned, d.actual) for d in found.deviations] == [("seed-changed", [], [3])]


# --- the plan itself --------------------------------------------------------------------------


def test_a_tampered_plan_is_refused_by_verify_and_reported_by_registry_verify(world, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(world["registry"], registry)
    stored = registry / "plans" / world["digest"] / "envelope.json"
    original = stored.read_bytes()
    envelope = json.loads(original)
    for position in (0, 10, len(original) // 2, len(original) - 3):  # a few byte flips anywhere
        data = bytearray(original)
        data[position] ^= 0x01
        stored.write_bytes(bytes(data))
        with pytest.raises(AcardsError):
            compared(world["card"], registry)
        assert "registry.bad-envelope" in {p.code for p in audit.verify_registry(registry).problems}
    # A validly signed plan of another payload, by a trusted key, in place of the logged one.
    other = json.loads(plan_payload(plan_card(world["card"])))
    other["predicate"]["plan"]["coding_mode"] = "permissive"
    other["subject"][0]["digest"]["sha256"] = __import__("hashlib").sha256(canonical_bytes(other["predicate"]["plan"])).hexdigest()
    forged = canonical_bytes(sign_envelope(PAYLOAD_TYPE, canonical_bytes(other), load_private_key(world["root"] / "author.key")))
    stored.write_bytes(forged)
    with pytest.raises(AcardsError) as error:
        compared(world["card"], registry)
    assert error.value.code == "preregistration.digest-mismatch"
    assert "registry.digest-mismatch" in {p.code for p in audit.verify_registry(registry).problems}
    assert envelope["signatures"]  # the original envelope was a signed one


def test_a_tampered_local_copy_is_refused(world, tmp_path):
    card = variant(world, tmp_path)
    copy = card.with_name("card.plan.envelope.json")
    envelope = json.loads(copy.read_text())
    envelope["payload"] = envelope["payload"][:-8] + ("A" * 8 if not envelope["payload"].endswith("A" * 8) else "B" * 8)
    copy.write_text(json.dumps(envelope))
    with pytest.raises(AcardsError):
        compared(card, None)


def test_a_card_naming_a_plan_that_cannot_be_read(world, tmp_path):
    no_copy = variant(world, tmp_path, lambda c: c.__setitem__("preregistration", {"entry": world["digest"]}))
    with pytest.raises(AcardsError) as error:
        compared(no_copy, None)
    assert error.value.code == "preregistration.unavailable"
    (tmp_path / "variant" / "card.yaml").unlink()
    shutil.rmtree(tmp_path / "variant")
    unknown = variant(world, tmp_path, lambda c: c.__setitem__("preregistration", {"entry": "0" * 64}))
    with pytest.raises(AcardsError) as error:
        compared(unknown, world["registry"])
    assert error.value.code == "preregistration.not-logged"


def test_preregistering_twice_is_refused(world, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(world["registry"], registry)
    envelope = (world["root"] / "planned" / "card.plan.envelope.json").read_bytes()
    with pytest.raises(AcardsError) as error:
        preregister(registry, envelope, load_private_key(world["root"] / "registry.key"))
    assert error.value.code == "registry.duplicate-digest"
    result = invoke("preregister", world["root"] / "planned" / "card.yaml", "--key", world["root"] / "author.key",
                    "--registry", registry, "--registry-key", world["root"] / "registry.key", "--out", tmp_path / "again.json")
    assert result.exit_code == 3 and "registry.duplicate-digest" in result.output, result.output
    assert len(reader.entries(registry)) == 1


def test_a_plan_by_an_untrusted_key_or_with_placeholders_is_refused(world, tmp_path):
    result = invoke("preregister", world["root"] / "planned" / "card.yaml", "--key", world["root"] / "stranger.key",
                    "--registry", world["registry"], "--registry-key", world["root"] / "registry.key",
                    "--out", tmp_path / "plan.json")
    assert result.exit_code == 3 and "envelope.unknown-keyid" in result.output, result.output
    card = json.loads((world["root"] / "planned" / "card.yaml").read_text())
    card["claims"][0]["statement"] = "TODO"
    (tmp_path / "card.yaml").write_text(json.dumps(card))
    shutil.copytree(world["root"] / "planned" / "evidence", tmp_path / "evidence")
    result = invoke("preregister", tmp_path / "card.yaml", "--key", world["root"] / "author.key",
                    "--registry", world["registry"], "--registry-key", world["root"] / "registry.key")
    assert result.exit_code == 2 and "preregistration.placeholder" in result.output and "/claims/C1/statement" in result.output
    assert len(reader.entries(world["registry"])) == 1 and "Traceback" not in result.output


def _killed(function) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            function()
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


@pytest.mark.parametrize("point", ["card-staged", "card-placed", "append-written", "appended", "checkpointed", "indexed"])
def test_a_preregistration_killed_at_any_point_is_finished_by_its_retry(world, tmp_path, point):
    registry = tmp_path / "registry"
    store.init_registry(registry, "acards.test/prereg", world["root"] / "registry.key")
    store.add_trusted_key(registry, world["root"] / "author.key.pub")
    key = load_private_key(world["root"] / "registry.key")
    envelope = (world["root"] / "planned" / "card.plan.envelope.json").read_bytes()

    def hook(reached):
        if reached == point:
            os.kill(os.getpid(), signal.SIGKILL)

    status = _killed(lambda: preregister(registry, envelope, key, crash_at=hook))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    result = audit.verify_registry(registry)
    assert result.ok, [str(p) for p in result.problems]
    entry = preregister(registry, envelope, key)  # the retry finishes it, or logs it when nothing landed
    assert entry["digest"] == world["digest"] and entry["index"] == 0
    result = audit.verify_registry(registry)
    assert result.ok and result.warnings == [] and len(reader.entries(registry)) == 1, point


# --- the site ---------------------------------------------------------------------------------


def test_the_card_page_says_when_the_card_was_pre_registered(world, tmp_path):
    from acards.site.build import build_site

    registry = tmp_path / "registry"
    shutil.copytree(world["registry"], registry)
    folder = tmp_path / "card"
    shutil.copytree(world["card"].parent, folder)
    card = folder / "card.yaml"
    result = invoke("verify", card, "--registry", registry, "--bootstrap", B, "--no-generate", "--report", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    assert "pre-registration" in result.output and "matched" in result.output
    result = invoke("sign", card, "--key", world["root"] / "author.key", "--report", tmp_path / "report.json")
    assert result.exit_code == 0, result.output
    result = invoke("publish", card.with_name("card.envelope.json"), "--registry", registry, "--key", world["root"] / "registry.key")
    assert result.exit_code == 0, result.output
    digest = next(line.split()[1] for line in result.output.splitlines() if line.startswith("digest "))
    build_site(registry)
    page = (registry / "site" / "cards" / f"{digest}.html").read_text()
    logged = reader.entries(registry)[0]["time"]
    assert f'Pre-registered on <time datetime="{logged}">{logged[:10]}</time>' in page and "kept as planned" in page
    log = (registry / "site" / "log.html").read_text()
    assert "pre-registered analysis plan" in log and world["digest"] in log


def test_the_card_page_lists_the_deviations_and_escapes_them(world, tmp_path):
    """A published card whose signed report lists deviations (the registry accepts any predicate):
    each is shown with its two values, hostile text escaped."""
    import hashlib

    from acards.attest import in_toto
    from acards.site.build import build_site

    registry = tmp_path / "registry"
    shutil.copytree(world["registry"], registry)
    hostile = "<script>alert(1)</script>"
    predicate = {
        "card": {"id": "simulated", "version": 1, "title": "Deviating", "preregistration": {"entry": world["digest"]}},
        "report": {"reproduced": False, "claims": [], "cells": [], "preregistration": {
            "entry": world["digest"], "logged_at": None, "matched": False, "source": "card folder", "signers": [],
            "deviations": [{"kind": "threshold-moved", "pointer": "/claims/C1/thresholds/reliability/z", "planned": 2, "actual": 1.5},
                           {"kind": "claim-added", "pointer": "/claims/C2", "planned": None, "actual": {"statement": hostile}}]}},
    }
    subjects = [("card.yaml", hashlib.sha256(b"deviating").hexdigest())]
    payload = canonical_bytes(in_toto.statement(subjects, in_toto.PREDICATE_TYPE, predicate))
    envelope = canonical_bytes(sign_envelope(PAYLOAD_TYPE, payload, load_private_key(world["root"] / "author.key")))
    digest = store.publish(registry, envelope, load_private_key(world["root"] / "registry.key"))["digest"]
    build_site(registry)
    page = (registry / "site" / "cards" / f"{digest}.html").read_text()
    assert "Pre-registered on" in page and "deviates from it" in page
    assert "threshold-moved at <code>/claims/C1/thresholds/reliability/z</code>: planned <code>2</code>, now <code>1.5</code>" in page
    assert hostile not in page and "&lt;script&gt;" in page


def test_a_plan_with_private_subjects_names_none_and_still_catches_a_new_one(world, tmp_path):
    registry = tmp_path / "registry"
    shutil.copytree(world["registry"], registry)
    result = invoke("preregister", world["root"] / "planned" / "card.yaml", "--key", world["root"] / "author.key",
                    "--registry", registry, "--registry-key", world["root"] / "registry.key",
                    "--out", tmp_path / "private.json", "--private-subjects", "--format", "json")
    assert result.exit_code == 0, result.output
    digest = json.loads(result.output)["entry"]["digest"]
    stored = (registry / "plans" / digest / "statement.json").read_text()
    assert "heldout-s00" not in stored and '"count":12' in stored
    names = {"preregistration": {"entry": digest}}
    assert compared(variant(world, tmp_path, lambda c: c.update(names)), registry).matched
    shutil.rmtree(tmp_path / "variant")
    found = compared(variant(world, tmp_path, lambda c: c.update(names), _add_subject), registry)
    assert [(d.kind, d.pointer) for d in found.deviations] == [
        ("prompts-changed", "/prompts/sha256"), ("subjects-changed", "/splits/heldout/count"),
        ("subjects-changed", "/splits/heldout/sha256")]
    assert (found.deviations[1].planned, found.deviations[1].actual) == (12, 13)


# --- `acards preregister --write`: the card names its plan, every other byte kept ---------------


def _block_yaml(data: dict) -> str:
    from io import StringIO

    from ruamel.yaml import YAML

    buffer = StringIO()
    YAML(typ="safe", pure=True).dump(data, buffer)
    return buffer.getvalue()


def test_preregister_write_names_the_plan_in_the_card_keeping_its_comments(world, tmp_path):
    planned = tmp_path / "planned"
    shutil.copytree(world["root"] / "planned" / "evidence", planned / "evidence")
    data = json.loads((world["root"] / "planned" / "card.yaml").read_text())
    data["title"] = "Changed so the plan is new"  # another plan digest than the world's
    text = "# my card: keep this comment\n" + _block_yaml(data).replace("\nid: ", "\nid:   ", 1).rstrip("\n") + "  # last\n"
    (planned / "card.yaml").write_text(text)
    registry = tmp_path / "registry"
    store.init_registry(registry, "acards.test/prereg-write", world["root"] / "registry.key")
    store.add_trusted_key(registry, world["root"] / "author.key.pub")
    result = invoke("preregister", planned / "card.yaml", "--key", world["root"] / "author.key", "--registry", registry,
                    "--registry-key", world["root"] / "registry.key", "--write")
    assert result.exit_code == 0, result.output
    digest = next(line.split()[1] for line in result.output.splitlines() if line.startswith("digest "))
    assert "named it in card.yaml" in result.output
    added = f"preregistration:\n  entry: {digest}\n  envelope: card.plan.envelope.json\n"
    assert (planned / "card.yaml").read_text() == text + added  # every byte before it as written
    found = compared(planned / "card.yaml", registry)
    assert (found.entry, found.matched) == (digest, True)


def test_preregister_write_splices_into_an_existing_block_and_adds_a_missing_key():
    from acards.card.edit import set_preregistration

    text = ("id: c  # the id\npreregistration:   # pre-registered on paper first\n"
            "  entry: 'aaaa'  # old digest\n# trailing comment\ntitle: t\n")
    edited = set_preregistration(text, "card.yaml", {"entry": "b" * 64, "envelope": "plan.json"})
    assert edited == ("id: c  # the id\npreregistration:   # pre-registered on paper first\n"
                      f"  entry: '{'b' * 64}'  # old digest\n  envelope: plan.json\n# trailing comment\ntitle: t\n")
    digits = "1" * 64  # plain, YAML would read it as a number: quoted
    assert set_preregistration("id: c\n", "card.yaml", {"entry": digits}) == f'id: c\npreregistration:\n  entry: "{digits}"\n'
    crlf = text.replace("\n", "\r\n")
    assert set_preregistration(crlf, "card.yaml", {"entry": "b" * 64}) == crlf.replace("'aaaa'", f"'{'b' * 64}'")


def test_preregister_write_refuses_a_card_it_cannot_edit_before_logging(world, tmp_path):
    from acards.card.edit import set_preregistration

    planned = world["root"] / "planned" / "card.yaml"  # JSON: a flow mapping
    before = planned.read_bytes()
    entries = len(reader.entries(world["registry"]))
    result = invoke("preregister", planned, "--key", world["root"] / "author.key", "--registry", world["registry"],
                    "--registry-key", world["root"] / "registry.key", "--out", tmp_path / "plan.json", "--write")
    assert result.exit_code == 2 and "preregistration.cannot-write" in result.output, result.output
    assert planned.read_bytes() == before and len(reader.entries(world["registry"])) == entries
    assert not (tmp_path / "plan.json").exists()
    for text in ("id: c\npreregistration: TODO\n", "id: c\npreregistration: {entry: a}\n"):
        with pytest.raises(AcardsError) as error:
            set_preregistration(text, "card.yaml", {"entry": "b" * 64, "envelope": "plan.json"})
        assert error.value.code == "preregistration.cannot-write"
