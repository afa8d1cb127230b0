"""Witnesses (acards.registry.witness, `acards registry witness`, `registry verify --witnesses N`).

Real registries, real Ed25519 keys and signatures, real RFC 6962 consistency proofs: witnesses
co-sign checkpoints, a quorum is counted, and a log forked under one registry key is caught.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.attest import dsse, in_toto
from acards.attest.keys import keyid, load_private_key, new_key
from acards.canonical import canonical_bytes
from acards.cli import main
from acards.errors import AcardsError
from acards.registry import audit, store, witness
from acards.registry.layout import Layout

ORIGIN = "acards.test/witness"
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)


def run(*args, code: int | None = 0) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    return result.output


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("registry", "author", "w1", "w2", "w3", "stranger"):
        new_key(folder / name)
    return {name: folder / name for name in ("registry", "author", "w1", "w2", "w3", "stranger")}


def card(author, number: int) -> bytes:
    """A signed card envelope: card id c<number>, version 1."""
    predicate = {"card": {"id": f"c{number}", "version": 1, "title": f"card {number}"}, "report": {"claims": []}}
    subjects = [("card.yaml", f"{number:064x}")]
    payload = canonical_bytes(in_toto.statement(subjects, in_toto.PREDICATE_TYPE, predicate))
    return canonical_bytes(dsse.sign_envelope(dsse.PAYLOAD_TYPE, payload, author))


def make_registry(path: Path, keys: dict[str, Path], cards: list[int]) -> Path:
    store.init_registry(path, ORIGIN, keys["registry"])
    for name in ("author", "w1", "w2", "w3"):
        store.add_trusted_key(path, f"{keys[name]}.pub")
    publish(path, keys, cards)
    return path


def publish(path: Path, keys: dict[str, Path], cards: list[int]) -> None:
    author, registry_key = load_private_key(keys["author"]), load_private_key(keys["registry"])
    for number in cards:
        store.publish(path, card(author, number), registry_key, now=NOW)


def cosign(path: Path, keys, name: str, state: Path) -> dict:
    return witness.cosign(path, load_private_key(keys[name]), state)


def test_witness_quorum(tmp_path, keys):
    registry = make_registry(tmp_path / "r", keys, [1, 2])
    ids = {name: keyid(load_private_key(keys[name]).public_key()) for name in keys}
    for count, name in enumerate([None, "w1", "w2"]):
        if name:
            cosign(registry, keys, name, tmp_path / f"{name}.state")
        for required in range(4):
            result = witness.count_witnesses(registry, required)
            assert len(result.witnesses) == count
            assert ("registry.too-few-witnesses" in {p.code for p in result.problems}) == (count < required)
        output = run("registry", "verify", registry, "--no-render", "--witnesses", 2, code=0 if count >= 2 else 3)
        assert ("registry.too-few-witnesses" in output) == (count < 2)
    assert witness.count_witnesses(registry).witnesses == sorted([ids["w1"], ids["w2"]])
    # one witness co-signing twice counts once; the registry key and strangers cannot witness
    cosign(registry, keys, "w1", tmp_path / "w1.state")
    assert len(witness.count_witnesses(registry).witnesses) == 2
    for name, code in (("registry", "witness.registry-key"), ("stranger", "witness.untrusted-key")):
        with pytest.raises(AcardsError) as error:
            cosign(registry, keys, name, tmp_path / f"{name}.state")
        assert error.value.code == code
    # a co-signature of an older checkpoint does not count for the newest
    publish(registry, keys, [3])
    assert witness.count_witnesses(registry, 1).witnesses == []
    assert audit.verify_registry(registry).ok  # witnessing is checked on demand, not part of the log


def test_a_copied_or_planted_cosignature_does_not_count(tmp_path, keys):
    registry = make_registry(tmp_path / "r", keys, [1])
    cosign(registry, keys, "w1", tmp_path / "w1.state")
    layout = Layout(registry)
    ids = {name: keyid(load_private_key(keys[name]).public_key()) for name in keys}
    size = witness.count_witnesses(registry).size
    shutil.copy(layout.witness(size, ids["w1"]), layout.witness(size, ids["w2"]))  # w1's signature filed as w2's
    shutil.copy(layout.witness(size, ids["w1"]), layout.witness(size, ids["stranger"]))
    result = witness.count_witnesses(registry, 2)
    assert result.witnesses == [ids["w1"]]
    assert {p.code for p in result.problems} == {"registry.bad-witness", "registry.too-few-witnesses"}
    assert {p.code for p in result.warnings} == {"registry.untrusted-witness"}
    output = run("registry", "verify", registry, "--no-render", code=3)  # a bad co-signature is a problem always
    assert "registry.bad-witness" in output


def test_a_forked_log_is_caught_by_a_witness(tmp_path, keys):
    # Two registries under one key and origin, identical for two entries, then diverging.
    left = make_registry(tmp_path / "left", keys, [1, 2, 3])
    right = make_registry(tmp_path / "right", keys, [1, 2, 4])
    assert (left / "log" / "checkpoints" / "2.json").read_bytes() == (right / "log" / "checkpoints" / "2.json").read_bytes()
    assert audit.verify_registry(left).ok and audit.verify_registry(right).ok  # each alone is a valid log
    state = tmp_path / "w1.state"
    cosign(left, keys, "w1", state)
    for extra in (5, 7):
        with pytest.raises(AcardsError) as error:
            cosign(right, keys, "w1", state)
        assert error.value.code == "witness.fork"
        assert not Layout(right).witness(3).exists()  # never co-signed
        publish(right, keys, [extra])  # growing the fork does not heal it
    assert witness.read_state(state)[ORIGIN]["size"] == 3  # the state still holds the left log's checkpoint
    output = run("registry", "witness", right, "--key", keys["w1"], "--state", state, code=3)
    assert "witness.fork" in output
    # the honest log keeps growing and keeps being witnessed
    publish(left, keys, [6])
    assert cosign(left, keys, "w1", state)["previous"] == 3
    # a witness who saw only the common prefix accepts either branch: the fork is caught once seen
    early = make_registry(tmp_path / "early", keys, [1, 2])
    prefix_state = tmp_path / "w2.state"
    cosign(early, keys, "w2", prefix_state)
    assert cosign(right, keys, "w2", prefix_state)["size"] == 5
    with pytest.raises(AcardsError) as error:
        cosign(left, keys, "w2", prefix_state)
    assert error.value.code == "witness.fork"


def test_a_log_that_shrinks_is_a_fork(tmp_path, keys):
    longer = make_registry(tmp_path / "longer", keys, [1, 2, 3])
    shorter = make_registry(tmp_path / "shorter", keys, [1, 2])
    state = tmp_path / "w.state"
    cosign(longer, keys, "w1", state)
    with pytest.raises(AcardsError) as error:
        cosign(shorter, keys, "w1", state)
    assert error.value.code == "witness.fork" and "shrank" in error.value.problems[0].message


def test_witness_state_round_trip(tmp_path, keys):
    first = make_registry(tmp_path / "one", keys, [1])
    state = tmp_path / "config" / "witness-state.json"
    done = json.loads(run("registry", "witness", first, "--key", keys["w3"], "--state", state, "--format", "json"))
    assert done["ok"] and done["previous"] is None and done["size"] == 1
    held = witness.read_state(state)
    assert set(held) == {ORIGIN} and held[ORIGIN]["size"] == 1 and held[ORIGIN]["root"] == done["root"]
    assert state.stat().st_mode & 0o777 == 0o600
    witness.write_state(state, held)
    assert witness.read_state(state) == held
    text = run("registry", "witness", first, "--key", keys["w3"], "--state", state)  # the same size again: idempotent
    assert "extends size 1" in text
    assert witness.read_state(tmp_path / "absent.json") == {}
    for damaged in (b"{", b'{"format":"other","checkpoints":{}}', b'{"checkpoints":{"x y":{}},"format":"acards-witness-state/1"}'):
        state.write_bytes(damaged)
        with pytest.raises(AcardsError) as error:
            witness.read_state(state)
        assert error.value.code == "witness.bad-state"
    output = run("registry", "witness", first, "--key", keys["w3"], "--state", state, code=2)
    assert "witness.bad-state" in output


def test_the_log_page_names_the_witnesses_of_the_newest_checkpoint(tmp_path, keys):
    registry = make_registry(tmp_path / "r", keys, [1])
    run("registry", "build", registry)
    assert "none yet" in witness_line(registry)
    cosign(registry, keys, "w2", tmp_path / "w2.state")
    run("registry", "build", registry)
    w2 = keyid(load_private_key(keys["w2"]).public_key())
    assert "co-signed by" in witness_line(registry) and w2 in witness_line(registry)


def witness_line(registry: Path) -> str:
    page = (registry / "site" / "log.html").read_text()
    line = page[page.index('id="witnesses"'):]
    return line[: line.index("</dd>")]
