"""The registry (acards.registry): SPEC §9's rules, tamper detection, proofs, crashes, concurrency.

Every card here is a real DSSE envelope over a real in-toto Statement, signed with Ed25519 keys
made by acards.attest.in_toto. Crashes are real: a forked child process publishes with a
``crash_at`` hook that SIGKILLs it at a named point inside publish (``kill_at``), or a separate
interpreter is killed from outside after a random delay.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acards import merkle
from acards.attest import dsse, in_toto
from acards.attest.keys import keyid, load_private_key, new_key
from acards.canonical import canonical_bytes
from acards.errors import AcardsError, Problem
from acards.registry import audit, checkpoints, entries, proofs, reader, state, store, trie, trust, writer

ORIGIN = "acards.test/registry"
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
CRASH_TOLERATED = {"registry.torn-tail", "registry.unsigned-head", "registry.orphan-card", "registry.stale-state"}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# --- helpers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    envelope: bytes
    digest: str
    card_id: str
    version: int


def make_card(
    signer: Ed25519PrivateKey,
    card_id: str,
    version: int,
    title: str = "A defense under the installed-gap protocol",
    supersedes: str | None = None,
    co_signers: tuple[Ed25519PrivateKey, ...] = (),
) -> Card:
    """A signed card: {card: {id, version, title}, report: {...}} over two subjects."""
    predicate = {
        "card": {"id": card_id, "version": version, "title": title},
        "report": {"acards_version": "0.1.0", "claims": [{"id": "C1", "verdict": "supported"}]},
    }
    if supersedes is not None:
        predicate["supersedes"] = supersedes
    card_file = hashlib.sha256(f"{card_id}@{version}:{title}".encode()).hexdigest()
    subjects = [("card.yaml", card_file), ("evidence/records.jsonl", "ab" * 32)]
    payload = canonical_bytes(in_toto.statement(subjects, in_toto.PREDICATE_TYPE, predicate))
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, payload, signer)
    trusted = {keyid(signer.public_key()): signer.public_key()}
    for co_signer in co_signers:
        envelope = dsse.add_signature(envelope, co_signer, trusted)
        trusted[keyid(co_signer.public_key())] = co_signer.public_key()
    return Card(canonical_bytes(envelope), hashlib.sha256(payload).hexdigest(), card_id, version)


def render(statement: dict) -> dict[str, bytes]:
    card = statement["predicate"]["card"]
    return {
        "card.md": f"# {card['title']}\n\n{card['id']} version {card['version']}\n".encode(),
        "card.html": f"<h1>{html.escape(card['title'])}</h1>\n".encode(),
    }


def codes(result: audit.RegistryVerification) -> set[str]:
    return {problem.code for problem in result.problems}


def write_public_key(private_key: Ed25519PrivateKey, path: Path) -> Path:
    path.write_bytes(private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ))
    return path


@dataclass
class Registry:
    path: Path
    key: Ed25519PrivateKey  # the registry's key
    author: Ed25519PrivateKey  # a trusted card signer

    def publish(self, card: Card, **options) -> dict:
        options.setdefault("now", NOW)
        options.setdefault("render", render)
        return store.publish(self.path, card.envelope, self.key, **options)

    @property
    def log(self) -> Path:
        return self.path / "log" / "entries.jsonl"

    def lines(self) -> list[bytes]:
        return self.log.read_bytes().splitlines(keepends=True)

    def checkpoint(self, size: int) -> Path:
        return self.path / "log" / "checkpoints" / f"{size}.json"


@pytest.fixture(scope="module")
def registry_key_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "registry.key"
    new_key(path)
    return path


@pytest.fixture(scope="module")
def author() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def new_registry(
    path: Path, key_file: Path, author: Ed25519PrivateKey, origin: str = ORIGIN
) -> Registry:
    store.init_registry(path, origin, key_file)
    author_file = write_public_key(author, path.parent / f"{path.name}-author.pub")
    store.add_trusted_key(path, author_file)
    return Registry(path, load_private_key(key_file), author)


@pytest.fixture
def reg(tmp_path, registry_key_file, author) -> Registry:
    return new_registry(tmp_path / "registry", registry_key_file, author)


@pytest.fixture
def filled(reg) -> tuple[Registry, list[Card]]:
    """Three entries: a v1, a v2 (superseding it), b v1."""
    cards = [make_card(reg.author, "card-a", 1)]
    cards.append(make_card(reg.author, "card-a", 2, "A defense, revised"))
    cards.append(make_card(reg.author, "card-b", 1))
    for card in cards:
        reg.publish(card)
    return reg, cards


# --- init, publish and the rules --------------------------------------------------------------


def test_init_creates_the_layout(tmp_path, registry_key_file):
    path = tmp_path / "r"
    config = store.init_registry(path, ORIGIN, registry_key_file)
    key_id = keyid(load_private_key(registry_key_file).public_key())
    assert config == {"origin": ORIGIN, "registry_keyid": key_id}
    assert json.loads((path / "registry.json").read_bytes()) == config
    assert keyid(serialization.load_pem_public_key((path / "registry.pub").read_bytes())) == key_id
    assert list((path / "keys").iterdir()) == []  # the registry key is no card signer
    assert (path / "cards").is_dir() and (path / "log" / "entries.jsonl").read_bytes() == b""
    assert (path / "log" / "checkpoints" / "0.json").is_file()
    result = audit.check_registry(path)
    assert (result.size, result.root, result.warnings) == (0, merkle.EMPTY_ROOT.hex(), [])
    with pytest.raises(AcardsError) as excinfo:
        store.init_registry(path, ORIGIN, registry_key_file)
    assert excinfo.value.code == "registry.exists"


def test_the_registry_key_signs_cards_only_when_trusted_as_a_signer(reg):
    by_registry = make_card(reg.key, "card-r", 1)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(by_registry)
    assert excinfo.value.code == "envelope.unknown-keyid"
    assert reader.trusted_keys(reg.path).keys() == {keyid(reg.author.public_key())}
    store.add_trusted_key(reg.path, reg.path / "registry.pub")  # an explicit choice
    assert reg.publish(by_registry)["signers"] == [keyid(reg.key.public_key())]
    assert audit.check_registry(reg.path, render=render).warnings == []


def _legacy(reg: Registry) -> str:
    """Turn a registry into one from before registry.pub: its key filed among the signers."""
    key_id = keyid(reg.key.public_key())
    os.replace(reg.path / "registry.pub", reg.path / "keys" / f"{key_id}.pub")
    return key_id


def test_a_registry_from_before_registry_pub_verifies_and_is_migrated(filled):
    reg, cards = filled
    key_id = _legacy(reg)
    result = audit.verify_registry(reg.path, render=render)
    assert result.ok and [w.code for w in result.warnings] == ["registry.legacy-keys"]
    assert proofs.verify_inclusion_proof(proofs.inclusion(reg.path, cards[0].digest), reader.registry_key(reg.path))
    reg.publish(make_card(reg.author, "card-c", 1))  # the writer moves the key out of keys/ first
    assert not (reg.path / "keys" / f"{key_id}.pub").exists() and (reg.path / "registry.pub").is_file()
    assert audit.check_registry(reg.path, render=render).warnings == []
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(make_card(reg.key, "card-r", 1))
    assert excinfo.value.code == "envelope.unknown-keyid"
    assert not trust.migrate_keys(reg.path)


def test_migration_keeps_the_registry_key_as_a_signer_of_the_cards_it_signed(reg):
    store.add_trusted_key(reg.path, reg.path / "registry.pub")
    by_registry = make_card(reg.key, "card-r", 1)
    reg.publish(by_registry)
    (reg.path / "registry.pub").unlink()  # as an old init left it: the key in keys/ only
    assert [w.code for w in audit.check_registry(reg.path, render=render).warnings] == ["registry.legacy-keys"]
    assert trust.migrate_keys(reg.path)
    key_id = keyid(reg.key.public_key())
    assert (reg.path / "registry.pub").read_bytes() == (reg.path / "keys" / f"{key_id}.pub").read_bytes()
    result = audit.check_registry(reg.path, render=render)
    assert result.warnings == [] and result.size == 1


def test_registry_migrate_keys_on_the_command_line(filled):
    from click.testing import CliRunner

    from acards.cli import main

    reg, _ = filled
    key_id = _legacy(reg)
    verified = CliRunner().invoke(main, ["registry", "verify", str(reg.path), "--no-render"])
    assert verified.exit_code == 0 and "registry.legacy-keys" in verified.output, verified.output
    moved = CliRunner().invoke(main, ["registry", "migrate-keys", str(reg.path)])
    assert moved.exit_code == 0 and "already" not in moved.output, moved.output
    assert not (reg.path / "keys" / f"{key_id}.pub").exists()
    again = CliRunner().invoke(main, ["registry", "migrate-keys", str(reg.path)])
    assert again.exit_code == 0 and "already" in again.output
    assert audit.check_registry(reg.path, render=render).warnings == []


def test_a_registry_pub_that_is_not_the_registry_key_is_a_problem(filled, tmp_path):
    reg, _ = filled
    write_public_key(reg.author, reg.path / "registry.pub")
    assert "registry.bad-key" in codes(audit.verify_registry(reg.path))
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(make_card(reg.author, "card-c", 1))
    assert excinfo.value.code == "registry.bad-key"
    (reg.path / "registry.pub").write_bytes(b"not a key")
    assert "registry.bad-key" in codes(audit.verify_registry(reg.path))


def test_init_with_an_encrypted_key_and_a_bad_origin(tmp_path):
    key_file = tmp_path / "enc.key"
    new_key(key_file, b"secret")
    store.init_registry(tmp_path / "r", ORIGIN, key_file, b"secret")
    assert audit.verify_registry(tmp_path / "r").ok
    with pytest.raises(AcardsError) as excinfo:
        store.init_registry(tmp_path / "s", "has space", key_file, b"secret")
    assert excinfo.value.code == "registry.bad-origin"


def test_publish_stores_the_card_and_verifies(reg):
    card = make_card(reg.author, "safelora-gemma2-2b-it", 1)
    entry = reg.publish(card)
    author_id = keyid(reg.author.public_key())
    assert entry == {
        "origin": ORIGIN, "index": 0, "kind": "publish", "card_id": "safelora-gemma2-2b-it",
        "version": 1, "digest": card.digest, "supersedes": None, "signers": [author_id],
        "rendered": {name: hashlib.sha256(data).hexdigest() for name, data in render(
            json.loads((reg.path / "cards" / card.digest / "statement.json").read_bytes())
        ).items()},
        "time": "2026-05-01T12:00:00Z",
    }
    folder = reg.path / "cards" / card.digest
    assert (folder / "envelope.json").read_bytes() == card.envelope
    assert hashlib.sha256((folder / "statement.json").read_bytes()).hexdigest() == card.digest
    assert json.loads((folder / "manifest.json").read_bytes())[0]["name"] == "card.yaml"
    assert reg.log.read_bytes() == canonical_bytes(entry) + b"\n"
    result = audit.check_registry(reg.path, render=render)
    assert (result.size, result.warnings, result.revoked) == (1, [], {})
    assert result.root == merkle.root([merkle.leaf_hash(canonical_bytes(entry))]).hex()
    assert reader.entries(reg.path) == [entry]


def test_a_new_version_names_the_digest_it_supersedes(reg):
    first, second = make_card(reg.author, "card-a", 1), make_card(reg.author, "card-a", 2, "v2")
    assert reg.publish(first)["supersedes"] is None
    assert reg.publish(second)["supersedes"] == first.digest
    assert audit.verify_registry(reg.path, render=render).ok
    assert reader.status(reg.path, first.digest)["state"] == "superseded"
    assert reader.status(reg.path, first.digest)["superseded_by"] == second.digest
    assert reader.status(reg.path, second.digest)["state"] == "current"
    assert [e["digest"] for e in reader.latest_cards(reg.path)] == [second.digest]


def test_supersedes_claims_must_match_the_log(reg):
    first = make_card(reg.author, "card-a", 1)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(first, supersedes="cd" * 32)  # a first version supersedes nothing
    assert excinfo.value.code == "registry.bad-supersedes"
    reg.publish(first)
    wrong = make_card(reg.author, "card-a", 2, supersedes="cd" * 32)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(wrong)
    assert excinfo.value.code == "registry.bad-supersedes"
    right = make_card(reg.author, "card-a", 2, supersedes=first.digest)
    assert reg.publish(right, supersedes=first.digest)["supersedes"] == first.digest
    with pytest.raises(AcardsError) as excinfo:  # the duplicate is named, not its stale claim
        reg.publish(right)
    assert excinfo.value.code == "registry.duplicate-digest"
    assert audit.verify_registry(reg.path).ok


def test_the_same_digest_is_published_once(reg):
    card = make_card(reg.author, "card-a", 1)
    reg.publish(card)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(card)
    assert excinfo.value.code == "registry.duplicate-digest"
    assert audit.verify_registry(reg.path).size == 1


def test_an_old_version_cannot_be_replayed(reg):
    first, second = make_card(reg.author, "card-a", 1), make_card(reg.author, "card-a", 2, "v2")
    reg.publish(first)
    reg.publish(second)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(first)  # the old envelope itself
    assert excinfo.value.code == "registry.duplicate-digest"
    for version in (1, 2):  # a freshly signed card with a version that is not above 2
        with pytest.raises(AcardsError) as excinfo:
            reg.publish(make_card(reg.author, "card-a", version, "re-signed"))
        assert excinfo.value.code == "registry.version-not-increasing"
    assert audit.verify_registry(reg.path).size == 2


def test_untrusted_and_altered_signatures_are_refused(reg, tmp_path):
    stranger = Ed25519PrivateKey.generate()
    card = make_card(stranger, "card-a", 1)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(card)
    assert excinfo.value.code == "envelope.unknown-keyid"
    envelope = json.loads(make_card(reg.author, "card-b", 1).envelope)
    other = json.loads(make_card(reg.author, "card-b", 1, "other").envelope)
    envelope["signatures"] = other["signatures"]
    with pytest.raises(AcardsError) as excinfo:
        store.publish(reg.path, canonical_bytes(envelope), reg.key)
    assert excinfo.value.code == "envelope.bad-signature"
    assert audit.verify_registry(reg.path).size == 0
    store.add_trusted_key(reg.path, write_public_key(stranger, tmp_path / "stranger.pub"))
    co_signed = make_card(reg.author, "card-c", 1, co_signers=(stranger,))
    entry = reg.publish(co_signed)
    assert entry["signers"] == sorted(keyid(k.public_key()) for k in (reg.author, stranger))
    assert reg.publish(card)["signers"] == [keyid(stranger.public_key())]
    assert audit.verify_registry(reg.path).ok


def test_bad_cards_and_keys_are_refused(reg, registry_key_file):
    no_card = in_toto.statement([("card.yaml", "ab" * 32)], in_toto.PREDICATE_TYPE, {"report": {}})
    envelope = dsse.sign_envelope(dsse.PAYLOAD_TYPE, canonical_bytes(no_card), reg.author)
    with pytest.raises(AcardsError) as excinfo:
        store.publish(reg.path, canonical_bytes(envelope), reg.key)
    assert excinfo.value.code == "registry.bad-card"
    with pytest.raises(AcardsError) as excinfo:
        stranger = Ed25519PrivateKey.generate()
        store.publish(reg.path, make_card(reg.author, "a", 1).envelope, stranger)
    assert excinfo.value.code == "registry.wrong-key"
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(make_card(reg.author, "a", 1), render=lambda statement: {"envelope.json": b""})
    assert excinfo.value.code == "registry.bad-render"
    with pytest.raises(AcardsError) as excinfo:
        store.publish(reg.path / "nowhere", make_card(reg.author, "a", 1).envelope, reg.key)
    assert excinfo.value.code == "registry.not-a-registry"
    assert audit.verify_registry(reg.path).ok


def test_a_held_lock_refuses_cleanly(reg):
    import fcntl

    with open(reg.path / ".lock", "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(AcardsError) as excinfo:
            reg.publish(make_card(reg.author, "card-a", 1), lock_timeout=0.1)
        assert excinfo.value.code == "registry.locked"
        with pytest.raises(AcardsError) as excinfo:
            audit.verify_registry(reg.path, lock_timeout=0.1)
        assert excinfo.value.code == "registry.locked"
    assert audit.verify_registry(reg.path).size == 0


# --- revocation and reading -------------------------------------------------------------------


def test_revocation_is_reported(filled):
    reg, (a1, a2, b1) = filled
    entry = store.revoke(reg.path, a2.digest, "the evidence was mislabeled", reg.key, now=NOW)
    assert (entry["kind"], entry["card_id"], entry["version"]) == ("revoke", "card-a", 2)
    result = audit.check_registry(reg.path, render=render)
    assert result.revoked == {a2.digest: "the evidence was mislabeled"}
    state = reader.status(reg.path, a2.digest)
    assert (state["state"], state["revoked"], state["reason"]) == (
        "revoked", True, "the evidence was mislabeled"
    )
    # The latest non-revoked version of card-a is version 1 again.
    assert [e["digest"] for e in reader.latest_cards(reg.path)] == [a1.digest, b1.digest]
    with pytest.raises(AcardsError) as excinfo:
        store.revoke(reg.path, a2.digest, "again", reg.key)
    assert excinfo.value.code == "registry.bad-revoke"
    with pytest.raises(AcardsError) as excinfo:
        store.revoke(reg.path, "ef" * 32, "unknown", reg.key)
    assert excinfo.value.code == "registry.unknown-digest"
    with pytest.raises(AcardsError) as excinfo:
        reader.status(reg.path, "ef" * 32)
    assert excinfo.value.code == "registry.unknown-digest"
    # A revoked version still holds its number: the next one is 3 and supersedes it.
    a3 = make_card(reg.author, "card-a", 3, "v3")
    assert reg.publish(a3)["supersedes"] == a2.digest
    assert audit.verify_registry(reg.path).ok


def test_inclusion_and_consistency_proofs(filled):
    reg, cards = filled
    public_key = reg.key.public_key()
    for card in cards:
        proof = json.loads(json.dumps(proofs.inclusion(reg.path, card.digest)))
        entry = proofs.verify_inclusion_proof(proof, public_key, card.digest)
        assert entry["digest"] == card.digest
    proof = proofs.inclusion(reg.path, cards[0].digest)
    broken = dict(proof, path=["00" * 32] + proof["path"][1:])
    with pytest.raises(AcardsError) as excinfo:
        proofs.verify_inclusion_proof(broken, public_key)
    assert excinfo.value.code == "registry.bad-proof"
    with pytest.raises(AcardsError) as excinfo:
        proofs.verify_inclusion_proof(proof, public_key, cards[1].digest)
    assert excinfo.value.code == "registry.bad-proof"
    with pytest.raises(AcardsError) as excinfo:
        proofs.verify_inclusion_proof(proof, Ed25519PrivateKey.generate().public_key())
    assert excinfo.value.code == "registry.bad-checkpoint"
    for old_size in range(4):
        saved = reg.checkpoint(old_size).read_bytes()
        proof = json.loads(json.dumps(proofs.consistency(reg.path, old_size)))
        new = proofs.verify_consistency_proof(proof, public_key, saved)
        assert (new.size, new.origin) == (3, ORIGIN)
    proof = proofs.consistency(reg.path, 1)
    with pytest.raises(AcardsError) as excinfo:
        proofs.verify_consistency_proof(proof, public_key, reg.checkpoint(2).read_bytes())
    assert excinfo.value.code == "registry.inconsistent-checkpoint"
    with pytest.raises(AcardsError) as excinfo:
        proofs.verify_consistency_proof(dict(proof, old_root="00" * 32), public_key)
    assert excinfo.value.code == "registry.bad-proof"
    with pytest.raises(AcardsError) as excinfo:
        proofs.consistency(reg.path, 4)
    assert excinfo.value.code == "registry.bad-proof-request"


def prove(*args):
    from click.testing import CliRunner

    from acards.cli import main

    return CliRunner().invoke(main, ["registry", "prove", *map(str, args)])


def exit_status(code: str) -> int:
    return Problem(code, "", "").exit_code


def test_registry_prove_prints_proofs_a_reader_can_check(filled):
    """`acards registry prove` gives the JSON of proofs.inclusion / proofs.consistency; a reader
    holding only the registry's public key checks them."""
    reg, cards = filled
    public_key = reg.key.public_key()
    for card in cards:
        result = prove(reg.path, "--inclusion", card.digest)
        assert result.exit_code == 0, result.output
        proof = json.loads(result.stdout)
        assert proof == proofs.inclusion(reg.path, card.digest)
        assert proofs.verify_inclusion_proof(proof, public_key, card.digest)["digest"] == card.digest
    for old_size in range(4):
        result = prove(reg.path, "--consistency", old_size)
        assert result.exit_code == 0, result.output
        proof = json.loads(result.stdout)
        assert (proof["old_size"], proof["new_size"]) == (old_size, 3)
        new = proofs.verify_consistency_proof(proof, public_key, reg.checkpoint(old_size).read_bytes())
        assert (new.origin, new.size) == (ORIGIN, 3)
        checked = prove(reg.path, "--consistency", old_size, "--verify-with", reg.checkpoint(old_size))
        assert checked.exit_code == 0 and json.loads(checked.stdout) == proof, checked.output
        assert f"your checkpoint (size {old_size}) is a prefix of the signed log of size 3" in checked.stderr


def test_registry_prove_refuses_bad_requests_and_rewritten_history(filled, tmp_path, registry_key_file, author):
    reg, cards = filled
    for args, code in [
        ((), "registry.bad-proof-request"),
        (("--inclusion", cards[0].digest, "--consistency", 1), "registry.bad-proof-request"),
        (("--inclusion", cards[0].digest, "--verify-with", reg.checkpoint(1)), "registry.bad-proof-request"),
        (("--consistency", 4), "registry.bad-proof-request"),
        (("--consistency", -1), "registry.bad-proof-request"),
        (("--inclusion", "ef" * 32), "registry.unknown-digest"),
    ]:
        result = prove(reg.path, *args)
        assert result.exit_code == exit_status(code) and code in result.output, (args, result.output)
        assert result.stdout == ""
    missing = prove(tmp_path / "nowhere", "--consistency", 0)
    assert "registry.not-a-registry" in missing.output
    # A checkpoint of another size, and one from a rewritten history, do not start the proof.
    wrong_size = prove(reg.path, "--consistency", 1, "--verify-with", reg.checkpoint(2))
    assert wrong_size.exit_code == exit_status("registry.inconsistent-checkpoint"), wrong_size.output
    assert "registry.inconsistent-checkpoint" in wrong_size.output and wrong_size.stdout == ""
    rewritten = new_registry(tmp_path / "rewritten", registry_key_file, author)
    for card in (cards[2], cards[0]):
        rewritten.publish(card)
    result = prove(reg.path, "--consistency", 2, "--verify-with", rewritten.checkpoint(2))
    assert result.exit_code == exit_status("registry.inconsistent-checkpoint"), result.output
    assert "registry.inconsistent-checkpoint" in result.output


def test_a_static_copy_without_a_lock_file_verifies(filled, tmp_path):
    reg, cards = filled
    copy = tmp_path / "mirror"
    shutil.copytree(reg.path, copy)
    (copy / ".lock").unlink()
    assert audit.check_registry(copy, render=render).size == 3
    assert len(reader.entries(copy)) == 3


# --- tampering --------------------------------------------------------------------------------


def _edit_time(reg: Registry, cards):
    lines = reg.lines()
    lines[1] = lines[1].replace(b"12:00:00Z", b"12:00:01Z")  # still canonical, still valid
    reg.log.write_bytes(b"".join(lines))


def _edit_garbage(reg: Registry, cards):
    data = bytearray(reg.log.read_bytes())
    data[5] = 0xFF
    reg.log.write_bytes(bytes(data))


def _delete_middle_line(reg: Registry, cards):
    lines = reg.lines()
    reg.log.write_bytes(b"".join(lines[:1] + lines[2:]))


def _delete_last_line(reg: Registry, cards):
    reg.log.write_bytes(b"".join(reg.lines()[:-1]))


def _reorder_lines(reg: Registry, cards):
    lines = reg.lines()
    reg.log.write_bytes(b"".join([lines[1], lines[0], lines[2]]))


def _card_file(reg: Registry, card: Card, name: str) -> Path:
    return reg.path / "cards" / card.digest / name


def _edit_envelope_signature(reg: Registry, cards):
    path = _card_file(reg, cards[0], "envelope.json")
    envelope = json.loads(path.read_bytes())
    other = json.loads(cards[1].envelope)
    envelope["signatures"] = other["signatures"]
    path.write_bytes(canonical_bytes(envelope))


def _swap_envelope(reg: Registry, cards):
    _card_file(reg, cards[0], "envelope.json").write_bytes(cards[2].envelope)


def _edit_statement(reg: Registry, cards):
    path = _card_file(reg, cards[0], "statement.json")
    path.write_bytes(path.read_bytes().replace(b"installed-gap", b"installed-gaq"))


def _edit_manifest(reg: Registry, cards):
    _card_file(reg, cards[0], "manifest.json").write_bytes(b"[]")


def _edit_rendered(reg: Registry, cards):
    path = _card_file(reg, cards[1], "card.html")
    path.write_bytes(path.read_bytes().replace(b"<h1>", b"<h1>Endorsed: "))


def _delete_rendered(reg: Registry, cards):
    _card_file(reg, cards[1], "card.md").unlink()


def _checkpoint_of_another_size(reg: Registry, cards):
    reg.checkpoint(2).write_bytes(reg.checkpoint(1).read_bytes())


def _checkpoint_with_a_wrong_root(reg: Registry, cards):
    reg.checkpoint(2).write_bytes(checkpoints.sign_checkpoint(ORIGIN, 2, b"\x07" * 32, reg.key))


def _checkpoint_by_another_key(reg: Registry, cards):
    fake = checkpoints.sign_checkpoint(ORIGIN, 2, b"\x07" * 32, Ed25519PrivateKey.generate())
    reg.checkpoint(2).write_bytes(fake)


def _delete_middle_checkpoint(reg: Registry, cards):
    reg.checkpoint(1).unlink()


def _remove_trusted_author(reg: Registry, cards):
    (reg.path / "keys" / f"{keyid(reg.author.public_key())}.pub").unlink()


TAMPERING = {  # what is done -> the problem codes (less "registry.") it must raise
    "edit a log line (still valid JSON)": (_edit_time, {"root-mismatch"}),
    "edit a log line (garbage byte)": (_edit_garbage, {"bad-line", "root-mismatch"}),
    "delete a middle line": (_delete_middle_line, {"bad-index", "root-mismatch"}),
    "delete the last line": (_delete_last_line, {"log-truncated"}),
    "reorder two lines": (_reorder_lines, {"bad-index", "root-mismatch"}),
    "replace an envelope's signature": (_edit_envelope_signature, {"bad-envelope"}),
    "swap in another card's envelope": (_swap_envelope, {"digest-mismatch", "entry-mismatch"}),
    "edit a stored payload": (_edit_statement, {"digest-mismatch"}),
    "edit a manifest": (_edit_manifest, {"manifest-mismatch"}),
    "edit a rendered file": (_edit_rendered, {"render-mismatch"}),
    "delete a rendered file": (_delete_rendered, {"missing-file"}),
    "replace a checkpoint with another size's": (_checkpoint_of_another_size, {"bad-checkpoint"}),
    "re-sign a checkpoint with a wrong root": (_checkpoint_with_a_wrong_root, {"root-mismatch"}),
    "replace a checkpoint signed by another key": (_checkpoint_by_another_key, {"bad-checkpoint"}),
    "delete a middle checkpoint": (_delete_middle_checkpoint, {"missing-checkpoint"}),
    "drop a signer's trusted key": (_remove_trusted_author, {"bad-envelope"}),
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_tampering_is_detected(filled, name):
    reg, cards = filled
    tamper, expected = TAMPERING[name]
    expected = {f"registry.{code}" for code in expected}
    assert audit.verify_registry(reg.path, render=render).ok
    tamper(reg, cards)
    result = audit.verify_registry(reg.path, render=render)
    assert expected <= codes(result), [str(p) for p in result.problems]
    with pytest.raises(AcardsError):
        audit.check_registry(reg.path)


def _resign_head_with_a_wrong_root(reg: Registry, cards):
    reg.checkpoint(3).write_bytes(checkpoints.sign_checkpoint(ORIGIN, 3, b"\x07" * 32, reg.key))


@pytest.mark.parametrize("tamper", [_edit_time, _delete_last_line, _reorder_lines,
                                    _resign_head_with_a_wrong_root])
def test_publish_refuses_to_extend_a_tampered_log(filled, tamper):
    """publish checks the log against its newest checkpoint (not every stored file: verify does)."""
    reg, cards = filled
    tamper(reg, cards)
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(make_card(reg.author, "card-c", 1))
    refusals = {"registry.root-mismatch", "registry.log-truncated", "registry.bad-index"}
    assert excinfo.value.code in refusals
    assert audit.verify_registry(reg.path).size <= 3


def test_re_rendering_must_reproduce_the_stored_files(filled):
    reg, cards = filled

    def changed_template(statement):
        files = render(statement)
        return {name: data.replace(b"<h1>", b"<h1 class=x>") for name, data in files.items()}

    result = audit.verify_registry(reg.path, render=changed_template)
    assert "registry.render-mismatch" in codes(result)
    fewer = lambda statement: {"card.md": render(statement)["card.md"]}  # noqa: E731
    assert "registry.render-mismatch" in codes(audit.verify_registry(reg.path, render=fewer))


def test_entries_and_checkpoints_from_another_registry_are_caught(
    filled, tmp_path, registry_key_file, author
):
    reg, cards = filled
    # The same operator, with the same key, runs a second registry under another origin.
    other = new_registry(tmp_path / "other", registry_key_file, author, origin="acards.test/other")
    for card in cards:
        other.publish(card)
    foreign_line = other.lines()[2]
    reg.log.write_bytes(b"".join(reg.lines() + [foreign_line]))
    result = audit.verify_registry(reg.path)
    assert {"registry.foreign-origin", "registry.bad-index"} <= codes(result)
    reg.log.write_bytes(b"".join(reg.lines()[:3]))
    assert audit.verify_registry(reg.path).ok

    reg.checkpoint(3).write_bytes(other.checkpoint(3).read_bytes())
    assert "registry.foreign-origin" in codes(audit.verify_registry(reg.path))
    # A third registry with its own key: its checkpoint does not even verify here.
    third_key = tmp_path / "third.key"
    new_key(third_key)
    third = new_registry(tmp_path / "third", third_key, author)
    for card in cards:
        third.publish(card)
    reg.checkpoint(3).write_bytes(third.checkpoint(3).read_bytes())
    assert "registry.bad-checkpoint" in codes(audit.verify_registry(reg.path))
    saved = other.checkpoint(3).read_bytes()
    reg.checkpoint(3).write_bytes(checkpoints.sign_checkpoint(
        ORIGIN, 3, bytes.fromhex(audit.verify_registry(reg.path).root), reg.key
    ))
    assert "registry.foreign-origin" in codes(audit.verify_registry(reg.path, checkpoint=saved))


def test_a_saved_checkpoint_detects_rewritten_history(filled, tmp_path, registry_key_file, author):
    reg, cards = filled
    saved = reg.checkpoint(2).read_bytes()
    reg.publish(make_card(reg.author, "card-c", 1))
    assert audit.check_registry(reg.path, checkpoint=saved).size == 4
    # The operator rebuilds the registry with another history: every checkpoint is re-signed,
    # so the registry verifies on its own; only a reader's saved checkpoint shows the rewrite.
    rewritten = new_registry(tmp_path / "rewritten", registry_key_file, author)
    for card in (cards[0], cards[2], make_card(reg.author, "card-c", 1)):
        rewritten.publish(card)
    assert audit.verify_registry(rewritten.path).ok
    result = audit.verify_registry(rewritten.path, checkpoint=saved)
    assert codes(result) == {"registry.inconsistent-checkpoint"}
    # A checkpoint from further along than the log: the log was cut back.
    ahead = reg.checkpoint(4).read_bytes()
    assert "registry.inconsistent-checkpoint" in codes(
        audit.verify_registry(rewritten.path, checkpoint=ahead)
    )
    assert "registry.bad-checkpoint" in codes(audit.verify_registry(reg.path, checkpoint=b"{}"))


def test_crash_leftovers_are_warnings_and_publish_repairs_them(filled):
    reg, cards = filled
    reg.checkpoint(3).unlink()  # a crash after the line, before its checkpoint
    with open(reg.log, "ab") as handle:
        handle.write(b'{"card_id":"card-c","dig')  # a crash in the middle of the next append
    (reg.path / "cards" / ".staging-abc").mkdir()
    result = audit.verify_registry(reg.path, render=render)
    assert result.ok and result.size == 3
    assert {w.code for w in result.warnings} == CRASH_TOLERATED - {"registry.stale-state"}
    reg.publish(make_card(reg.author, "card-c", 1))
    result = audit.verify_registry(reg.path, render=render)
    assert result.ok and result.warnings == [] and result.size == 4


# --- crashes and concurrency ------------------------------------------------------------------


def _in_child(function) -> int:
    """Run ``function`` in a forked child process; return its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            function()
            code = 0
        except AcardsError:
            code = 3
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def kill_at(point: str):
    """A ``crash_at`` hook that dies at ``point`` as kill -9 would: no cleanup, no flush, no exit
    handler. Any name that is not one of the writers' CRASH_POINTS fails the child instead."""
    assert point in store.CRASH_POINTS, point

    def hook(reached: str) -> None:
        assert reached in store.CRASH_POINTS, reached
        if reached == point:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def _killed_or_finished(status: int) -> bool:
    finished = os.WIFEXITED(status) and os.WEXITSTATUS(status) in (0, 3)
    return finished or (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)


def test_a_kill_at_any_crash_point_leaves_a_valid_registry(tmp_path, registry_key_file, author):
    """50 trials; in each, two publishes are killed in turn (the second may die while it repairs
    what the first left), then the registry must verify and take a further publish."""
    rng = random.Random(20260501)
    a1, a2, a3 = (make_card(author, "card-a", v, f"title {v}") for v in (1, 2, 3))
    b1 = make_card(author, "card-b", 1)
    points = store.CRASH_POINTS
    # The repair points are reached only after a crash that left something to repair.
    repairs = [("append-torn", "repair-truncated"), ("append-written", "repair-checkpointed"),
               ("appended", "repair-checkpointed")]
    trials = repairs + [
        (points[t % len(points)], rng.choice(points)) for t in range(50 - len(repairs))
    ]
    template = new_registry(tmp_path / "template", registry_key_file, author)
    template.publish(a1)
    killed_at = set()
    for trial, (first, second) in enumerate(trials):
        reg = Registry(tmp_path / f"trial-{trial}", template.key, author)
        shutil.copytree(template.path, reg.path)
        for card, point in ((a2, first), (b1, second)):
            status = _in_child(lambda: reg.publish(card, crash_at=kill_at(point)))
            assert _killed_or_finished(status), (trial, point, status)
            if os.WIFSIGNALED(status):
                killed_at.add(point)
        result = audit.verify_registry(reg.path, render=render)
        assert result.ok, (trial, first, second, [str(p) for p in result.problems])
        assert {w.code for w in result.warnings} <= CRASH_TOLERATED
        logged = {entry["digest"] for entry in reader.entries(reg.path)}
        entry = reg.publish(a3)
        assert entry["supersedes"] == (a2.digest if a2.digest in logged else a1.digest)
        result = audit.verify_registry(reg.path, render=render)
        assert result.ok and result.warnings == [], (trial, first, second)
        assert result.size == len(logged) + 1
    assert killed_at == set(points)  # every crash point was reached and killed the publish


def test_a_kill_at_any_crash_point_of_revoke_leaves_a_valid_registry(filled, tmp_path):
    """revoke passes the same append points as publish; a kill at each leaves a registry that
    verifies, in which the revocation either stands or can be made again, and the next writer
    repairs what is left."""
    template, cards = filled
    points = ("append-torn", "append-written", "appended", "checkpointed")
    for trial, point in enumerate(points):
        reg = Registry(tmp_path / f"revoke-{trial}", template.key, template.author)
        shutil.copytree(template.path, reg.path)
        status = _in_child(lambda: store.revoke(reg.path, cards[1].digest, "withdrawn", reg.key, now=NOW,
                                                crash_at=kill_at(point)))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, status)
        result = audit.verify_registry(reg.path, render=render)
        assert result.ok and {w.code for w in result.warnings} <= CRASH_TOLERATED, point
        if cards[1].digest not in result.revoked:
            store.revoke(reg.path, cards[1].digest, "withdrawn", reg.key, now=NOW)
        reg.publish(make_card(reg.author, "card-c", 1))  # the next writer repairs what is left
        result = audit.check_registry(reg.path, render=render)
        assert result.warnings == [] and result.revoked == {cards[1].digest: "withdrawn"}, point
        assert result.size == 5


def test_the_registry_reads_no_environment():
    """Crash points are an injected hook; nothing in acards.registry reads os.environ."""
    for path in sorted(Path(store.__file__).parent.glob("*.py")):
        assert "environ" not in path.read_text(encoding="utf-8"), path.name


_KILLED_CHILD = r"""
import sys
from acards.registry import store
from acards.attest.keys import load_private_key
key = load_private_key(sys.argv[1])
envelopes = [open(path, "rb").read() for path in sys.argv[3:]]
print("ready", flush=True)
sys.stdin.readline()
for envelope in envelopes:
    store.publish(sys.argv[2], envelope, key)
print("done", flush=True)
"""


def test_a_kill_at_a_random_moment_leaves_a_valid_registry(tmp_path, registry_key_file, author):
    """A separate interpreter publishes a run of cards and is SIGKILLed after a random delay."""
    rng = random.Random(7)
    cards = [make_card(author, f"card-{i}", 1) for i in range(12)]
    files = []
    for i, card in enumerate(cards):
        files.append(tmp_path / f"card-{i}.json")
        files[-1].write_bytes(card.envelope)
    for trial in range(6):
        reg = new_registry(tmp_path / f"trial-{trial}", registry_key_file, author)
        child = subprocess.Popen(
            [sys.executable, "-c", _KILLED_CHILD, str(registry_key_file), str(reg.path),
             *map(str, files)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        try:
            assert child.stdout.readline() == b"ready\n"
            child.stdin.write(b"go\n")
            child.stdin.flush()
            time.sleep(rng.uniform(0.0, 0.04))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdin.close()
            child.stdout.close()
        result = audit.verify_registry(reg.path)
        assert result.ok, [str(p) for p in result.problems]
        assert {w.code for w in result.warnings} <= CRASH_TOLERATED
        reg.publish(make_card(author, "after-the-crash", 1))
        result = audit.verify_registry(reg.path)
        assert result.ok and result.warnings == []


def test_concurrent_publishes_serialise(reg):
    cards = [make_card(reg.author, f"card-{i}", 1) for i in range(10)]
    read_end, write_end = os.pipe()
    pids = []
    for card in cards:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(write_end)
                os.read(read_end, 1)  # returns once the parent closes its end: all start at once
                reg.publish(card)
                code = 0
            except AcardsError:
                code = 3
            finally:
                os._exit(code)
        pids.append(pid)
    os.close(read_end)
    os.close(write_end)
    statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses), statuses
    result = audit.check_registry(reg.path, render=render)
    assert result.size == 10 and result.warnings == []
    assert {e["digest"] for e in reader.entries(reg.path)} == {card.digest for card in cards}
    assert [e["index"] for e in reader.entries(reg.path)] == list(range(10))


# --- the writer's incremental state (acards.registry.state, index, trie) ----------------------


def _count_log_reads(monkeypatch) -> list[int]:
    """How many times the writers read the whole log (writer.read_log) from now on."""
    reads = [0]
    real = writer.read_log

    def counted(layout):
        reads[0] += 1
        return real(layout)

    monkeypatch.setattr(writer, "read_log", counted)
    return reads


def _state(reg: Registry) -> state.State:
    return state.open_state((reg.path / "state" / "state.json").read_bytes(), reg.key.public_key())


def test_publish_and_revoke_resume_from_the_state_without_reading_the_log(filled, monkeypatch):
    reg, cards = filled
    reads = _count_log_reads(monkeypatch)
    reg.publish(make_card(reg.author, "card-c", 1))
    store.revoke(reg.path, cards[2].digest, "withdrawn", reg.key, now=NOW)
    entry = reg.publish(make_card(reg.author, "card-a", 3, "third"))
    assert reads == [0]
    assert entry["supersedes"] == cards[1].digest and entry["index"] == 5
    current = _state(reg)
    lines = [line.rstrip(b"\n") for line in reg.lines()]
    assert (current.size, current.root) == (6, merkle.root([merkle.leaf_hash(line) for line in lines]))
    result = audit.check_registry(reg.path, render=render)
    assert result.warnings == [] and result.revoked == {cards[2].digest: "withdrawn"}


def _index_node(reg: Registry) -> None:
    """Flip a byte in one stored node of the rules index."""
    with sqlite3.connect(reg.path / "state" / "index.sqlite") as db:
        node, body = db.execute("SELECT hash, body FROM nodes LIMIT 1").fetchone()
        db.execute("UPDATE nodes SET body = ? WHERE hash = ?", (body[:-1] + bytes([body[-1] ^ 1]), node))


def _resigned(reg: Registry, key: Ed25519PrivateKey, **changes) -> None:
    """The current state with ``changes``, signed by ``key``: it still matches the folder exactly."""
    current = _state(reg)
    forged = state.State(**{**current.__dict__, **changes})
    (reg.path / "state" / "state.json").write_bytes(state.sign_state(forged, key))


STATE_FORGERIES = {  # each would let a duplicate through if a writer trusted it
    "signed by another key, with an empty index": lambda reg, saved, other: _resigned(
        reg, Ed25519PrivateKey.generate(), index=trie.EMPTY),
    "an older state, validly signed": lambda reg, saved, other: (reg.path / "state" / "state.json").write_bytes(saved),
    "not a state at all": lambda reg, saved, other: (reg.path / "state" / "state.json").write_bytes(b"{}"),
    "deleted": lambda reg, saved, other: (reg.path / "state" / "state.json").unlink(),
    "the index deleted": lambda reg, saved, other: (reg.path / "state" / "index.sqlite").unlink(),
    "the index of another registry": lambda reg, saved, other: shutil.copyfile(
        other / "state" / "index.sqlite", reg.path / "state" / "index.sqlite"),
    "a node of the index altered": lambda reg, saved, other: _index_node(reg),
    "the state of another registry (same key and origin)": lambda reg, saved, other: shutil.copyfile(
        other / "state" / "state.json", reg.path / "state" / "state.json"),
    "the index file is not SQLite": lambda reg, saved, other: (reg.path / "state" / "index.sqlite").write_bytes(
        b"not a database" * 100),
}


@pytest.mark.parametrize("name", sorted(STATE_FORGERIES))
def test_a_forged_or_stale_state_is_never_trusted(filled, tmp_path, registry_key_file, name, monkeypatch):
    """Whatever is done to state/, the writer still refuses what the log's rules refuse, signs the
    root of the true log, and leaves a state the next publish can trust again."""
    reg, cards = filled
    saved = (reg.path / "state" / "state.json").read_bytes()
    reg.publish(make_card(reg.author, "card-c", 1))
    other = new_registry(tmp_path / "other", registry_key_file, reg.author)
    for card in (cards[2], cards[0], make_card(reg.author, "card-d", 1), cards[1]):
        other.publish(card)
    STATE_FORGERIES[name](reg, saved, other.path)
    for duplicate, code in ((cards[1], "registry.duplicate-digest"), (cards[0], "registry.duplicate-digest"),
                            (make_card(reg.author, "card-a", 1, "replayed v1"), "registry.version-not-increasing")):
        with pytest.raises(AcardsError) as excinfo:
            reg.publish(duplicate)
        assert excinfo.value.code == code, name
    entry = reg.publish(make_card(reg.author, "card-a", 3, "third"))
    assert (entry["index"], entry["supersedes"]) == (4, cards[1].digest)
    lines = [line.rstrip(b"\n") for line in reg.lines()]
    signed = checkpoints.open_checkpoint(reg.checkpoint(5).read_bytes(), reg.key.public_key())
    assert signed.root == merkle.root([merkle.leaf_hash(line) for line in lines])
    result = audit.check_registry(reg.path, render=render)
    assert result.size == 5 and result.warnings == []
    reads = _count_log_reads(monkeypatch)
    reg.publish(make_card(reg.author, "card-e", 1))
    assert reads == [0]  # the replay wrote a state the next publish trusts


def test_a_state_folder_that_cannot_be_written_only_costs_speed(filled):
    reg, cards = filled
    shutil.rmtree(reg.path / "state")
    (reg.path / "state").write_bytes(b"not a folder")
    with pytest.raises(AcardsError) as excinfo:
        reg.publish(cards[1])
    assert excinfo.value.code == "registry.duplicate-digest"
    assert reg.publish(make_card(reg.author, "card-a", 3, "third"))["supersedes"] == cards[1].digest
    assert audit.check_registry(reg.path, render=render).size == 4


def test_the_writer_never_writes_through_a_link_in_state(filled, tmp_path):
    reg, cards = filled
    outside = {name: tmp_path / f"outside-{name}" for name in ("state.json", "index.sqlite")}
    for name, target in outside.items():
        target.write_bytes(b"")  # SQLite would take an empty file for an empty database
        (reg.path / "state" / name).unlink()
        (reg.path / "state" / name).symlink_to(target)
    reg.publish(make_card(reg.author, "card-c", 1))
    reg.publish(make_card(reg.author, "card-d", 1))
    assert all(target.read_bytes() == b"" for target in outside.values())
    assert not any((reg.path / "state" / name).is_symlink() for name in outside)
    assert audit.check_registry(reg.path, render=render).warnings == []


def test_verify_reports_a_state_that_does_not_describe_the_log(filled):
    reg, cards = filled
    assert audit.check_registry(reg.path).warnings == []
    _resigned(reg, reg.key, index=trie.EMPTY)  # only the registry key can sign a lying state
    assert {w.code for w in audit.check_registry(reg.path).warnings} == {"registry.stale-state"}
    _resigned(reg, Ed25519PrivateKey.generate())
    assert {w.code for w in audit.check_registry(reg.path).warnings} == {"registry.stale-state"}
    (reg.path / "state" / "state.json").unlink()  # a registry from before the state: nothing to say
    assert audit.check_registry(reg.path).warnings == []


@pytest.mark.parametrize("point", ["append-written", "appended", "checkpointed", "indexed"])
def test_publish_after_a_crash_between_the_entry_and_the_state_is_safe(filled, point, monkeypatch):
    reg, cards = filled
    card = make_card(reg.author, "card-c", 1)
    status = _in_child(lambda: reg.publish(card, crash_at=kill_at(point)))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    result = audit.verify_registry(reg.path, render=render)
    assert result.ok and result.size == 4
    assert "registry.stale-state" in {w.code for w in result.warnings} <= CRASH_TOLERATED
    reads = _count_log_reads(monkeypatch)
    # The crashed entry stands; retrying the same publish finishes it instead of refusing it.
    retried = reg.publish(card, now=datetime(2030, 1, 1, tzinfo=timezone.utc))
    assert retried == json.loads(reg.lines()[3]) and retried["time"] == "2026-05-01T12:00:00Z"
    assert reads == [1]
    assert audit.check_registry(reg.path, render=render).warnings == []
    with pytest.raises(AcardsError) as excinfo:  # once finished, it is a duplicate like any other
        reg.publish(card)
    assert excinfo.value.code == "registry.duplicate-digest"
    entry = reg.publish(make_card(reg.author, "card-a", 3, "third"))
    assert (entry["index"], entry["supersedes"], reads) == (4, cards[1].digest, [1])
    result = audit.check_registry(reg.path, render=render)
    assert result.size == 5 and result.warnings == []


_PUBLISH_POINTS = [point for point in store.CRASH_POINTS if not point.startswith("repair-")]


@pytest.mark.parametrize("point", _PUBLISH_POINTS)
def test_retrying_a_publish_killed_at_any_point_publishes_it_exactly_once(filled, point):
    """kill -9 at each step boundary of publish, then the same publish again: it succeeds (a new
    entry, or the interrupted one finished), the registry verifies clean and logs the card once."""
    reg, cards = filled
    card = make_card(reg.author, "card-c", 1)
    status = _in_child(lambda: reg.publish(card, crash_at=kill_at(point)))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, status)
    entry = reg.publish(card)
    assert (entry["digest"], entry["index"], entry["card_id"]) == (card.digest, 3, "card-c")
    digests = [logged["digest"] for logged in reader.entries(reg.path)]
    assert digests.count(card.digest) == 1 and len(digests) == 4, point
    result = audit.check_registry(reg.path, render=render)
    assert result.ok and result.warnings == [] and result.size == 4, point
    assert reg.publish(make_card(reg.author, "card-a", 3, "third"))["index"] == 4


@pytest.mark.parametrize("first, second", [("append-torn", "repair-truncated"),
                                           ("append-written", "repair-checkpointed"),
                                           ("appended", "repair-checkpointed")])
def test_a_retry_killed_while_it_repairs_is_finished_by_the_next(filled, first, second):
    reg, cards = filled
    card = make_card(reg.author, "card-c", 1)
    for point in (first, second):
        status = _in_child(lambda: reg.publish(card, crash_at=kill_at(point)))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, status)
    assert reg.publish(card)["digest"] == card.digest
    digests = [logged["digest"] for logged in reader.entries(reg.path)]
    assert digests.count(card.digest) == 1 and len(digests) == 4
    assert audit.check_registry(reg.path, render=render).warnings == []


def test_only_the_interrupted_publish_itself_is_finished(filled):
    """A retry is the same envelope bytes: the same card under other signatures, or the card before
    the newest one, is still a duplicate."""
    reg, cards = filled
    co_signer = Ed25519PrivateKey.generate()
    store.add_trusted_key(reg.path, write_public_key(co_signer, reg.path.parent / "co.pub"))
    card = make_card(reg.author, "card-c", 1)
    status = _in_child(lambda: reg.publish(card, crash_at=kill_at("appended")))
    assert os.WIFSIGNALED(status)
    both = make_card(reg.author, "card-c", 1, co_signers=(co_signer,))
    assert both.digest == card.digest and both.envelope != card.envelope
    for other in (both, cards[2]):
        with pytest.raises(AcardsError) as excinfo:
            reg.publish(other)
        assert excinfo.value.code == "registry.duplicate-digest"
    assert reg.publish(card)["index"] == 3
    assert audit.check_registry(reg.path, render=render).warnings == []


@pytest.mark.parametrize("point", ["append-written", "appended", "checkpointed", "indexed"])
def test_retrying_a_revoke_killed_after_its_line_landed_finishes_it(filled, point):
    reg, cards = filled
    status = _in_child(lambda: store.revoke(reg.path, cards[1].digest, "withdrawn", reg.key, now=NOW,
                                            crash_at=kill_at(point)))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (point, status)
    with pytest.raises(AcardsError) as excinfo:  # another reason is another revocation: refused
        store.revoke(reg.path, cards[1].digest, "another reason", reg.key, now=NOW)
    assert excinfo.value.code == "registry.bad-revoke"
    entry = store.revoke(reg.path, cards[1].digest, "withdrawn", reg.key, now=NOW)
    assert (entry["kind"], entry["index"]) == ("revoke", 3)
    result = audit.check_registry(reg.path, render=render)
    assert result.size == 4 and result.warnings == [] and result.revoked == {cards[1].digest: "withdrawn"}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_publish_after_any_tampering_signs_only_the_true_history(filled, name):
    """Whether publish notices a tampering or not (it reads no card files), a checkpoint it signs
    covers the log as it was signed plus the new entry, never the tampered bytes."""
    reg, cards = filled
    true_lines = [line.rstrip(b"\n") for line in reg.lines()]
    signer = Ed25519PrivateKey.generate()  # a signer no tampering touches
    store.add_trusted_key(reg.path, write_public_key(signer, reg.path.parent / "signer.pub"))
    TAMPERING[name][0](reg, cards)
    try:
        entry = reg.publish(make_card(signer, "card-c", 1))
    except AcardsError as error:
        assert error.code in {"registry.root-mismatch", "registry.log-truncated", "registry.bad-index",
                              "registry.bad-line", "registry.missing-checkpoint", "registry.bad-checkpoint"}, name
        return
    signed = checkpoints.open_checkpoint(reg.checkpoint(4).read_bytes(), reg.key.public_key())
    expected = [merkle.leaf_hash(line) for line in true_lines + [entries.entry_line(entry)]]
    assert signed.root == merkle.root(expected), name


# --- parsers under fuzzing --------------------------------------------------------------------

_VALID_LINE = entries.entry_line(entries.publish_entry(
    ORIGIN, 0, "card-a", 1, "ab" * 32, None, ["cd" * 32], {"card.html": "ef" * 32},
    "2026-05-01T12:00:00Z",
))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FUZZ_KEY = Ed25519PrivateKey.generate()


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_log_line_parser_with_bytes(data):
    try:
        entries.parse_entry(data)
    except AcardsError:
        pass


@FUZZ
@given(st.integers(0, len(_VALID_LINE) - 1), st.integers(0, 255))
def test_fuzz_log_line_parser_with_one_changed_byte(position, value):
    line = bytearray(_VALID_LINE)
    line[position] = value
    try:
        entry = entries.parse_entry(bytes(line))
    except AcardsError:
        return
    assert entries.entry_line(entry) == bytes(line)


@FUZZ
@given(_JSON)
def test_fuzz_log_line_parser_with_json(value):
    try:
        entries.parse_entry(canonical_bytes(value))
    except AcardsError:
        pass


@FUZZ
@given(st.binary(max_size=300) | _JSON.map(canonical_bytes))
def test_fuzz_checkpoint_parser(data):
    public_key = _FUZZ_KEY.public_key()
    for parse in (
        lambda: checkpoints.parse_checkpoint_body(data),
        lambda: checkpoints.open_checkpoint(data, public_key),
        # Signed, so the body parser behind the signature check is reached too.
        lambda: checkpoints.open_checkpoint(canonical_bytes(
            dsse.sign_envelope(checkpoints.CHECKPOINT_TYPE, data, _FUZZ_KEY)), public_key),
    ):
        try:
            parse()
        except AcardsError:
            pass
