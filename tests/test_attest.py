"""Reproduction attestations (acards.attest.reproduction, acards.registry.attestations, `acards attest`).

Real cards (the golden verify cases, no model), real reports from `acards verify`, real Ed25519 keys
and DSSE signatures throughout: an author signs a card, a reviewer recomputes it and attests, a
registry logs both and verifies them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.attest import reproduction
from acards.attest.card_statement import payload_bytes
from acards.attest.dsse import PAYLOAD_TYPE, sign_envelope
from acards.attest.keys import keyid, load_private_key, load_public_key, new_key
from acards.canonical import canonical_bytes, parse_strict_json
from acards.card.model import load_card
from acards.cli import main
from acards.errors import AcardsError
from acards.registry import audit, reader, store
from acards.registry.attestations import publish_attestation
from acards.registry.layout import ATTESTATION, REPORT, Layout
from acards.report.stored import check_report

CASES = Path(__file__).resolve().parent / "cases" / "verify"
VERIFY = ["--no-generate", "--bootstrap", "200", "--spot-check", "0"]
NOW = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
ORIGIN = "acards.test/attest"


def run(*args: str, code: int | None = 0) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert "Traceback" not in result.output, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    return result.output


@dataclass
class World:
    """Keys, two signed cards with their reviewer reports, and their attestations."""

    root: Path
    keys: dict[str, Path]  # name -> private key file (name.pub beside it)

    def key(self, name: str):
        return load_private_key(self.keys[name])

    def keyid(self, name: str) -> str:
        return keyid(load_public_key(f"{self.keys[name]}.pub"))

    def card(self, case: str) -> Path:
        return self.root / case / "card.yaml"

    def envelope(self, case: str) -> Path:
        return self.root / case / "card.envelope.json"

    def report(self, case: str) -> Path:
        return self.root / f"{case}.reviewer.json"

    def attestation(self, case: str) -> Path:
        return self.root / case / "card.attestation.intoto.jsonl"

    def digest(self, case: str) -> str:
        return reproduction.sha256_hex(load_payload(self.envelope(case)))


def load_payload(envelope: Path) -> bytes:
    import base64

    return base64.b64decode(json.loads(envelope.read_text())["payload"])


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    """full-pass: signed with `acards sign`, reproduced by the reviewer. misreported: a card whose
    reported values its evidence does not give, signed through the library (sign refuses it), so
    the reviewer's recomputation does not reproduce it."""
    root = tmp_path_factory.mktemp("attest")
    keys = {}
    for name in ("author", "reviewer", "other", "registry"):
        new_key(root / name)
        keys[name] = root / name
    for case in ("full-pass", "misreported"):
        shutil.copytree(CASES / case, root / case)
    w = World(root, keys)
    author_report = root / "full-pass.author.json"
    run("verify", w.card("full-pass"), *VERIFY, "--report", author_report)
    run("sign", w.card("full-pass"), "--key", keys["author"], "--report", author_report)
    misreported = root / "misreported.author.json"
    run("verify", w.card("misreported"), *VERIFY, "--report", misreported, code=1)
    report = check_report(parse_strict_json(misreported.read_bytes()))
    from acards.report.model import as_builtins

    envelope = sign_envelope(PAYLOAD_TYPE, payload_bytes(load_card(w.card("misreported")), as_builtins(report)), w.key("author"))
    w.envelope("misreported").write_bytes(json.dumps(envelope).encode())
    for case, code in (("full-pass", 0), ("misreported", 1)):
        run("verify", w.card(case), *VERIFY, "--envelope", w.envelope(case), "--trusted-key", f"{keys['author']}.pub",
            "--report", w.report(case), code=code)
        run("attest", w.envelope(case), "--report", w.report(case), "--key", keys["reviewer"],
            "--trusted-key", f"{keys['author']}.pub")
    return w


def trusted(w: World, *names: str) -> dict:
    return {w.keyid(name): w.key(name).public_key() for name in names}


def opened(w: World, case: str) -> reproduction.Attestation:
    return reproduction.open_attestation(w.attestation(case).read_bytes(), trusted(w, "reviewer"))


# --- the statement ------------------------------------------------------------------------------


def test_a_reproduced_attestation_records_what_the_reviewer_did(world):
    attestation = opened(world, "full-pass")
    predicate = attestation.predicate
    report = json.loads(world.report("full-pass").read_text())
    assert attestation.card_digest == world.digest("full-pass")
    assert predicate["card"]["signers"] == [world.keyid("author")]
    assert predicate["card"]["sha256"] == report["card"]["sha256"]
    assert predicate["report"]["digest"] == reproduction.sha256_hex(canonical_bytes(report))
    assert predicate["report"]["reproduced"] is True and predicate["discrepancies"] == []
    assert predicate["assurance"] == "reproduced" and predicate["reviewer"] == world.keyid("reviewer")
    assert predicate["outputs"] == {"records": 1248, "regenerated": 0, "supplied": 1248, "spot_checked": None}
    assert predicate["environment"]["packages"]["acards"] == report["acards_version"]
    # the eval-result statement, for generic in-toto verifiers: same subject, derived predicate
    lines = world.attestation("full-pass").read_bytes().split(b"\n")
    second = json.loads(load_payload_line(lines[1]))
    assert second["predicateType"] == "https://in-toto.io/attestation/eval-result/v0.1"
    assert second["subject"] == [{"name": "card", "digest": {"sha256": world.digest("full-pass")}}]
    assert second["predicate"]["assuranceLevel"] == "reproduced"
    assert {c["metric"]: c["passed"] for c in second["predicate"]["claims"]} == {
        "claim/C1/supported": True, "claim/C2/supported": True, "acards/reproduced": True}


def load_payload_line(line: bytes) -> bytes:
    import base64

    return base64.b64decode(json.loads(line)["payload"])


def test_a_report_that_does_not_reproduce_is_attested_third_party_with_its_discrepancies(world):
    predicate = opened(world, "misreported").predicate
    assert predicate["assurance"] == "third-party" and predicate["report"]["reproduced"] is False
    assert predicate["discrepancies"], "the discrepancies the reviewer found are recorded"
    assert all(set(d) == {"claim", "cell", "diagnostic", "field", "reported", "recomputed"} for d in predicate["discrepancies"])
    out = world.root / "claimed.jsonl"
    output = run("attest", world.envelope("misreported"), "--report", world.report("misreported"), "--key",
                 world.keys["reviewer"], "--trusted-key", f"{world.keys['author']}.pub", "--assurance", "reproduced",
                 "-o", out, code=2)
    assert "attest.level-not-earned" in output and not out.exists()


def test_the_levels(world):
    author, reviewer = world.keyid("author"), world.keyid("reviewer")
    assert reproduction.assurance_level(author, [author], True) == "self"
    assert reproduction.assurance_level(reviewer, [author], True) == "reproduced"
    assert reproduction.assurance_level(reviewer, [author], False) == "third-party"
    assert reproduction.assurance_level(reviewer, [author], True, "third-party") == "third-party"
    for who, reproduced, asked in ((author, True, "reproduced"), (author, True, "third-party"),
                                   (reviewer, False, "reproduced"), (reviewer, True, "self")):
        with pytest.raises(AcardsError) as error:
            reproduction.assurance_level(who, [author], reproduced, asked)
        assert error.value.code == "attest.level-not-earned"


def test_a_self_attestation(world):
    out = world.root / "self.jsonl"
    run("attest", world.envelope("full-pass"), "--report", world.report("full-pass"), "--key", world.keys["author"], "-o", out)
    attestation = reproduction.open_attestation(out.read_bytes(), trusted(world, "author"))
    assert attestation.predicate["assurance"] == "self"
    assert reproduction.eval_result_predicate(attestation.predicate)["assuranceLevel"] == "self_attested"
    output = run("attest", world.envelope("full-pass"), "--report", world.report("full-pass"), "--key",
                 world.keys["author"], "--assurance", "reproduced", "-o", world.root / "x.jsonl", code=2)
    assert "attest.level-not-earned" in output


def test_an_attestation_needs_the_report_of_that_card(world):
    output = run("attest", world.envelope("full-pass"), "--report", world.report("misreported"), "--key",
                 world.keys["reviewer"], "--trusted-key", f"{world.keys['author']}.pub", "-o", world.root / "x.jsonl", code=2)
    assert "usage.report-mismatch" in output
    # an edited report (a failure turned into a reproduction) does not hold together
    edited = json.loads(world.report("misreported").read_text())
    edited["reproduced"] = True
    path = world.root / "edited.json"
    path.write_text(json.dumps(edited))
    output = run("attest", world.envelope("misreported"), "--report", path, "--key", world.keys["reviewer"],
                 "--trusted-key", f"{world.keys['author']}.pub", "-o", world.root / "x.jsonl", code=2)
    assert "usage.report-inconsistent" in output
    # the card's signatures are checked first
    output = run("attest", world.envelope("full-pass"), "--report", world.report("full-pass"), "--key",
                 world.keys["reviewer"], "-o", world.root / "x.jsonl", code=3)
    assert "envelope.unknown-keyid" in output


def test_every_byte_flip_of_an_attestation_is_refused_or_changes_nothing(world):
    data = world.attestation("full-pass").read_bytes()
    keys = trusted(world, "reviewer", "author")
    original = reproduction.open_attestation(data, keys)
    accepted = 0
    for position in range(len(data)):
        for mask in (0x01, 0x20):
            flipped = bytearray(data)
            flipped[position] ^= mask
            try:
                got = reproduction.open_attestation(bytes(flipped), keys)
            except AcardsError as error:
                assert error.code.split(".")[0] in ("attest", "envelope"), error.code
                continue
            accepted += 1
            assert (got.digest, got.predicate, got.reviewer) == (original.digest, original.predicate, original.reviewer)
    assert accepted == 0  # canonical form and canonical base64: no second spelling is accepted either


def test_an_attestation_signed_by_another_key_or_reassembled_is_refused(world):
    data = world.attestation("full-pass").read_bytes()
    with pytest.raises(AcardsError) as error:
        reproduction.open_attestation(data, trusted(world, "author"))
    assert error.value.code == "envelope.unknown-keyid"
    first, second, _ = data.split(b"\n")
    other = opened(world, "misreported")
    _, other_second, _ = other.bundle.split(b"\n")
    for bundle in (second + b"\n" + first + b"\n", first + b"\n" + other_second + b"\n", first + b"\n", data + data):
        with pytest.raises(AcardsError) as error:
            reproduction.open_attestation(bundle, trusted(world, "reviewer"))
        assert error.value.code in ("attest.bad-attestation", "envelope.unknown-predicate-type"), error.value.code


# --- the registry -------------------------------------------------------------------------------


@pytest.fixture
def registry(world, tmp_path) -> Path:
    path = tmp_path / "registry"
    store.init_registry(path, ORIGIN, world.keys["registry"])
    for name in ("author", "reviewer"):
        store.add_trusted_key(path, f"{world.keys[name]}.pub")
    store.publish(path, world.envelope("full-pass").read_bytes(), world.key("registry"), now=NOW)
    return path


def problem_codes(path: Path) -> set[str]:
    return {problem.code for problem in audit.verify_registry(path).problems}


def test_publish_and_verify_an_attestation_with_its_report(world, registry):
    entry = publish_attestation(registry, world.attestation("full-pass").read_bytes(), world.key("registry"),
                                world.report("full-pass").read_bytes(), now=NOW)
    assert {k: entry[k] for k in ("kind", "card", "reviewer", "assurance", "reproduced", "index")} == {
        "kind": "attest", "card": world.digest("full-pass"), "reviewer": world.keyid("reviewer"),
        "assurance": "reproduced", "reproduced": True, "index": 1}
    assert entry["report"] == opened(world, "full-pass").predicate["report"]["digest"]
    assert audit.verify_registry(registry).ok
    assert reader.reproductions(registry, world.digest("full-pass")) == 1
    assert [e["digest"] for e in reader.attestations(registry, world.digest("full-pass"))] == [entry["digest"]]
    # a retry finds it published; the site shows it in the log
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, world.attestation("full-pass").read_bytes(), world.key("registry"),
                            world.report("full-pass").read_bytes(), now=NOW)
    assert error.value.code == "registry.duplicate-digest"
    run("registry", "verify", registry, "--no-render")


def test_the_command_line_publishes_attestations(world, registry):
    output = run("publish", world.attestation("full-pass"), "--registry", registry, "--key", world.keys["registry"], code=3)
    assert "registry.attestation-report" in output  # reproduced needs its report
    run("publish", world.attestation("full-pass"), "--registry", registry, "--key", world.keys["registry"],
        "--report", world.report("full-pass"))
    output = run("publish", world.envelope("full-pass"), "--registry", registry, "--key", world.keys["registry"],
                 "--report", world.report("full-pass"), code=2)
    assert "usage.conflict" in output


def test_an_attestation_of_a_card_that_is_not_published_here(world, registry):
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, world.attestation("misreported").read_bytes(), world.key("registry"),
                            world.report("misreported").read_bytes(), now=NOW)
    assert error.value.code == "registry.attestation-card"


def test_a_third_party_attestation_that_does_not_reproduce_is_logged_as_such(world, registry):
    store.publish(registry, world.envelope("misreported").read_bytes(), world.key("registry"), now=NOW)
    entry = publish_attestation(registry, world.attestation("misreported").read_bytes(), world.key("registry"),
                                world.report("misreported").read_bytes(), now=NOW)
    assert (entry["assurance"], entry["reproduced"]) == ("third-party", False)
    assert audit.verify_registry(registry).ok
    assert reader.reproductions(registry, world.digest("misreported")) == 0


def forged(world: World, case: str, signer: str, **changes) -> bytes:
    """An attestation built and signed through the library, past the checks `acards attest` makes."""
    predicate = json.loads(json.dumps(opened(world, case).predicate))
    for path, value in changes.items():
        target = predicate
        *parents, last = path.split("__")
        for name in parents:
            target = target[name]
        target[last] = value
    predicate["reviewer"] = world.keyid(signer)
    return reproduction.sign_attestation(predicate, world.key(signer))


def test_a_reproduced_attestation_whose_report_does_not_reproduce_is_refused(world, registry):
    store.publish(registry, world.envelope("misreported").read_bytes(), world.key("registry"), now=NOW)
    # the reviewer edits the report to say reproduced and attests it as such: the report's own
    # discrepancies contradict it
    edited = json.loads(world.report("misreported").read_text())
    edited["reproduced"] = True
    edited_bytes = json.dumps(edited).encode()
    bundle = forged(world, "misreported", "reviewer", assurance="reproduced", report__reproduced=True,
                    report__digest=reproduction.report_digest(edited))
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, bundle, world.key("registry"), edited_bytes, now=NOW)
    assert error.value.code == "registry.attestation-report"
    # a reproduced attestation published with another report than the one it names
    bundle = forged(world, "misreported", "reviewer", assurance="reproduced", report__reproduced=True)
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, bundle, world.key("registry"), world.report("full-pass").read_bytes(), now=NOW)
    assert error.value.code == "registry.attestation-report"
    # a reproduced predicate over a report that did not reproduce cannot even be signed
    with pytest.raises(AcardsError):
        forged(world, "misreported", "reviewer", assurance="reproduced")


def test_a_card_signer_attests_at_self_only(world, registry):
    signers = [world.keyid("reviewer")]  # the author leaves itself out of the signers it names
    bundle = forged(world, "full-pass", "author", assurance="reproduced", card__signers=signers)
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, bundle, world.key("registry"), world.report("full-pass").read_bytes(), now=NOW)
    assert error.value.code == "registry.attestation-level"
    honest = world.root / "self-honest.jsonl"
    run("attest", world.envelope("full-pass"), "--report", world.report("full-pass"), "--key", world.keys["author"], "-o", honest)
    entry = publish_attestation(registry, honest.read_bytes(), world.key("registry"), now=NOW)
    assert entry["assurance"] == "self" and entry["report"] is None
    assert audit.verify_registry(registry).ok
    assert reader.reproductions(registry, world.digest("full-pass")) == 0


def test_an_untrusted_reviewer_is_refused(world, registry):
    out = world.root / "other.jsonl"
    run("attest", world.envelope("full-pass"), "--report", world.report("full-pass"), "--key", world.keys["other"],
        "--trusted-key", f"{world.keys['author']}.pub", "-o", out)
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, out.read_bytes(), world.key("registry"), world.report("full-pass").read_bytes(), now=NOW)
    assert error.value.code == "envelope.unknown-keyid"


@pytest.mark.parametrize("tamper, code", [
    ("flip-bundle", "registry.bad-attestation"),
    ("delete-bundle", "registry.bad-attestation"),
    ("edit-report", "registry.attestation-report"),
    ("delete-report", "registry.attestation-report"),
    ("untrust-reviewer", "registry.bad-attestation"),
])
def test_registry_verify_catches_a_tampered_attestation(world, registry, tamper, code):
    entry = publish_attestation(registry, world.attestation("full-pass").read_bytes(), world.key("registry"),
                                world.report("full-pass").read_bytes(), now=NOW)
    folder = Layout(registry).stored("attest", entry["digest"])
    if tamper == "flip-bundle":
        data = bytearray((folder / ATTESTATION).read_bytes())
        data[200] ^= 0x01
        (folder / ATTESTATION).write_bytes(bytes(data))
    elif tamper == "delete-bundle":
        (folder / ATTESTATION).unlink()
    elif tamper == "edit-report":
        report = json.loads((folder / REPORT).read_text())
        report["claims"][0]["verdict"] = "unsupported"
        (folder / REPORT).write_text(json.dumps(report))
    elif tamper == "delete-report":
        (folder / REPORT).unlink()
    else:
        Layout(registry).key(world.keyid("reviewer")).unlink()
    assert code in problem_codes(registry)
    output = run("registry", "verify", registry, "--no-render", code=3)
    assert code in output


def test_the_card_page_shows_its_attestations_and_escapes_the_reviewer_name(world, registry):
    hostile = '<img src=x onerror="alert(1)">&'
    run("registry", "trust", registry, f"{world.keys['reviewer']}.pub", "--name", hostile, "--key", world.keys["registry"])
    publish_attestation(registry, world.attestation("full-pass").read_bytes(), world.key("registry"),
                        world.report("full-pass").read_bytes(), now=NOW)
    run("registry", "build", registry)
    page = (registry / "site" / "cards" / f"{world.digest('full-pass')}.html").read_text()
    line = page[page.index('id="registry-attestations"'):]
    line = line[: line.index("</p>")]
    assert "Attested by" in line and ">reproduced<" in line and "not reproduced" not in line
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;&amp;" in line and "<img" not in page
    log = (registry / "site" / "log.html").read_text()
    assert "reproduced attestation of" in log and "<img" not in log


class Killed(BaseException):
    """Stands for a kill: raised past every `except Exception` (the kill -9 tests of the writers are in
    tests/test_registry.py; this one checks the attest kind's own retry path)."""


@pytest.mark.parametrize("point", ["card-placed", "appended", "checkpointed"])
def test_retrying_an_attestation_publish_killed_midway_publishes_it_once(world, registry, point):
    def kill(at: str) -> None:
        if at == point:
            raise Killed(at)

    bundle, report = world.attestation("full-pass").read_bytes(), world.report("full-pass").read_bytes()
    with pytest.raises(Killed):
        publish_attestation(registry, bundle, world.key("registry"), report, now=NOW, crash_at=kill)
    entry = publish_attestation(registry, bundle, world.key("registry"), report, now=NOW)
    assert entry["index"] == 1
    assert [e["kind"] for e in reader.entries(registry)] == ["publish", "attest"]
    result = audit.verify_registry(registry)
    assert result.ok and not result.warnings, result.problems + result.warnings


def test_an_eval_result_statement_that_says_more_than_acards_predicate_is_refused(world):
    from acards.attest.in_toto import statement

    attestation = opened(world, "misreported")
    first = attestation.bundle.split(b"\n")[0]
    claimed = reproduction.eval_result_predicate(attestation.predicate)
    claimed["assuranceLevel"] = "reproduced"  # the generic reader's view, inflated
    subjects = [(reproduction.SUBJECT, attestation.card_digest)]
    second = sign_envelope(PAYLOAD_TYPE, canonical_bytes(statement(subjects, reproduction.EVAL_RESULT_TYPE, claimed)),
                           world.key("reviewer"))
    with pytest.raises(AcardsError) as error:
        reproduction.open_attestation(first + b"\n" + canonical_bytes(second) + b"\n", trusted(world, "reviewer"))
    assert error.value.code == "attest.bad-attestation"


def test_attest_answers_in_json(world):
    out = world.root / "json.jsonl"
    answer = json.loads(run("attest", world.card("full-pass"), "--report", world.report("full-pass"), "--key",
                            world.keys["reviewer"], "--trusted-key", f"{world.keys['author']}.pub", "-o", out,
                            "--assurance", "third-party", "--format", "json"))
    assert answer == {"ok": True, "out": str(out), "card": world.digest("full-pass"), "assurance": "third-party",
                      "reproduced": True, "reviewer": world.keyid("reviewer")}
    assert reproduction.open_attestation(out.read_bytes(), trusted(world, "reviewer")).predicate["assurance"] == "third-party"


def test_a_revoked_card_takes_no_new_attestation_and_counts_no_reproduction(world, registry):
    bundle, report = world.attestation("full-pass").read_bytes(), world.report("full-pass").read_bytes()
    publish_attestation(registry, bundle, world.key("registry"), report, now=NOW)
    assert reader.reproductions(registry, world.digest("full-pass")) == 1
    store.revoke(registry, world.digest("full-pass"), "withdrawn by its author", world.key("registry"), now=NOW)
    assert audit.verify_registry(registry).ok  # the attestation logged before stays valid
    assert reader.reproductions(registry, world.digest("full-pass")) == 0
    self_attestation = world.root / "after-revoke.jsonl"
    run("attest", world.envelope("full-pass"), "--report", world.report("full-pass"), "--key", world.keys["author"],
        "-o", self_attestation)
    with pytest.raises(AcardsError) as error:
        publish_attestation(registry, self_attestation.read_bytes(), world.key("registry"), now=NOW)
    assert error.value.code == "registry.attestation-card"
