"""acards key new / sign / verify --envelope, with real Ed25519 keys and real envelopes."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.attest.keys import ENCRYPTED_FORMAT, new_key
from acards.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny-defense"


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    root = tmp_path_factory.mktemp("signed")
    shutil.copytree(EXAMPLE, root / "card", ignore=shutil.ignore_patterns("*.envelope.json"))
    assert invoke("key", "new", "--out", root / "author.key", "--no-passphrase").exit_code == 0
    new_key(root / "co.key", b"correct horse", scrypt_n=2**10)  # cheap to load; `key new`'s cost is tested below
    assert invoke("verify", root / "card" / "card.yaml", "--bootstrap", 500, "--report", root / "report.json").exit_code == 0
    result = invoke("sign", root / "card" / "card.yaml", "--key", root / "author.key", "--report", root / "report.json")
    assert result.exit_code == 0, result.output
    return root


def test_keys_are_private_and_have_a_public_half(signed):
    for name in ("author.key", "co.key"):
        assert stat.S_IMODE(os.stat(signed / name).st_mode) == 0o600
        assert (signed / f"{name}.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert json.loads((signed / "co.key").read_bytes())["format"] == ENCRYPTED_FORMAT
    assert invoke("key", "new", "--out", signed / "author.key", "--no-passphrase").exit_code != 0  # never overwritten


def test_key_new_seals_at_the_default_cost_and_reencrypt_upgrades_an_old_key(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    env = {"ACARDS_KEY_PASSPHRASE": "correct horse"}
    result = invoke("key", "new", "--out", tmp_path / "new.key", env=env)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "new.key").read_bytes())["kdf"]["n"] == 2**17
    old = tmp_path / "old.key"  # PKCS#8 under PBKDF2, as earlier versions of `key new` wrote it
    old.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse")))
    assert invoke("key", "reencrypt", old).exit_code == 2  # no passphrase: key.no-passphrase
    result = invoke("key", "reencrypt", old, env=env)
    assert result.exit_code == 0 and "re-encrypted" in result.output, result.output
    kdf = json.loads(old.read_bytes())["kdf"]
    assert (kdf["name"], kdf["n"]) == ("scrypt", 2**17)


def test_co_signing_refuses_an_envelope_whose_signatures_do_not_all_verify(signed, tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(signed / "card", folder)
    envelope = folder / "card.envelope.json"
    value = json.loads(envelope.read_text())
    signature = bytearray(base64.b64decode(value["signatures"][0]["sig"]))
    signature[0] ^= 1
    forged = dict(value["signatures"][0], sig=base64.b64encode(bytes(signature)).decode())  # same keyid, bad signature
    value["signatures"].append(forged)
    envelope.write_text(json.dumps(value))
    before = envelope.read_bytes()
    result = invoke("sign", folder / "card.yaml", "--key", signed / "co.key", "--co-sign",
                    "--trusted-key", signed / "author.key.pub", env={"ACARDS_KEY_PASSPHRASE": "correct horse"})
    assert result.exit_code == 3 and "envelope.bad-signature" in result.output, result.output
    assert envelope.read_bytes() == before and "Traceback" not in result.output


def test_a_new_key_needs_a_passphrase_or_an_explicit_throwaway(tmp_path):
    result = invoke("key", "new", "--out", tmp_path / "k")
    assert result.exit_code != 0 and "key.no-passphrase" in result.output
    assert not (tmp_path / "k").exists()


def test_signed_and_co_signed_card_verifies_with_both_keys(signed, tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(signed / "card", folder)
    envelope = folder / "card.envelope.json"
    co_sign = ("sign", folder / "card.yaml", "--key", signed / "co.key", "--co-sign")
    # The co-signer checks the author's signature first: without the author's key it refuses.
    untrusted = invoke(*co_sign, env={"ACARDS_KEY_PASSPHRASE": "correct horse"})
    assert untrusted.exit_code == 3 and "envelope.unknown-keyid" in untrusted.output
    assert len(json.loads(envelope.read_text())["signatures"]) == 1
    assert invoke(*co_sign, "--trusted-key", signed / "author.key.pub", env={"ACARDS_KEY_PASSPHRASE": "correct horse"}).exit_code == 0
    assert len(json.loads(envelope.read_text())["signatures"]) == 2
    result = invoke("verify", folder / "card.yaml", "--bootstrap", 500, "--envelope", envelope,
                    "--trusted-key", signed / "author.key.pub", "--trusted-key", signed / "co.key.pub", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["envelope"]["signers"]) == 2
    wrong = invoke(*co_sign, "--trusted-key", signed / "author.key.pub", env={"ACARDS_KEY_PASSPHRASE": "wrong"})
    assert wrong.exit_code != 0 and "key.bad-passphrase" in wrong.output


def test_an_untrusted_signer_is_refused(signed, tmp_path):
    invoke("key", "new", "--out", tmp_path / "stranger", "--no-passphrase")
    result = invoke("verify", signed / "card" / "card.yaml", "--envelope", signed / "card" / "card.envelope.json",
                    "--trusted-key", tmp_path / "stranger.pub")
    assert result.exit_code == 3 and "envelope.unknown-keyid" in result.output


def test_an_edited_card_no_longer_matches_its_envelope(signed, tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(signed / "card", folder)
    card = folder / "card.yaml"
    card.write_text(card.read_text().replace("worked example", "worked example (edited)"))
    result = invoke("verify", card, "--envelope", folder / "card.envelope.json", "--trusted-key", signed / "author.key.pub")
    assert result.exit_code == 3 and "envelope.card-mismatch" in result.output


def test_a_flipped_byte_in_the_envelope_fails(signed, tmp_path):
    data = bytearray((signed / "card" / "card.envelope.json").read_bytes())
    position = data.index(b'"payload"') + 40
    data[position] = ord("A") if data[position] != ord("A") else ord("B")
    (tmp_path / "e.json").write_bytes(bytes(data))
    result = invoke("verify", signed / "card" / "card.yaml", "--envelope", tmp_path / "e.json", "--trusted-key", signed / "author.key.pub")
    assert result.exit_code == 3 and "envelope." in result.output and "Traceback" not in result.output


def test_a_card_whose_results_are_not_reproduced_is_not_signed(signed, tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(signed / "card", folder)
    card = folder / "card.yaml"
    card.write_text(card.read_text().replace("reduction: 0.0625", "reduction: 0.3"))
    result = invoke("sign", card, "--key", signed / "author.key", "--out", tmp_path / "e.json")
    assert result.exit_code == 1 and "reproduce.not-reproduced" in result.output
    assert not (tmp_path / "e.json").exists()


def _forged(report: dict, edit) -> dict:
    forged = json.loads(json.dumps(report))
    edit(forged)
    return forged


FORGERIES = {
    # The registry would show C2 as supported while the card itself reports it unsupported.
    "verdict-flipped": lambda r: r["claims"][1].update(verdict="supported"),
    "cell-outcome-flipped": lambda r: r["cells"][1]["diagnostics"]["reliability"].update(outcome="pass"),
    "claim-dropped": lambda r: r["claims"].pop(),
    "claim-outcomes-edited": lambda r: r["claims"][0]["outcomes"]["projection/top2"].update(cost="fail"),
    "reproduced-without-discrepancies-cleared": lambda r: r["claims"][0]["discrepancies"].append(
        {"cell": None, "diagnostic": None, "field": "verdict", "reported": "supported", "recomputed": "unsupported",
         "tolerance": None, "message": "forged"}),
    "number-edited": lambda r: r["cells"][0]["diagnostics"]["reliability"]["estimates"].update(reduction=0.9),
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_sign_refuses_a_report_that_contradicts_itself_or_the_card(signed, tmp_path, name):
    report = json.loads((signed / "report.json").read_text())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(_forged(report, FORGERIES[name])))
    out = tmp_path / "forged.envelope.json"
    result = invoke("sign", signed / "card" / "card.yaml", "--key", signed / "author.key", "--report", forged, "--out", out)
    assert result.exit_code == 2, result.output
    assert "usage.report-inconsistent" in result.output
    assert not out.exists()


def test_sign_accepts_the_report_verify_wrote(signed, tmp_path):
    out = tmp_path / "ok.envelope.json"
    result = invoke("sign", signed / "card" / "card.yaml", "--key", signed / "author.key", "--report", signed / "report.json", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists()
