"""Reproduction attestations (pure): what a reviewer signs after recomputing a signed card's report.

An attestation is an in-toto bundle: JSON Lines, one DSSE envelope a line (RFC 8785 bytes), both
signed by the reviewer's one key, both Statements about one subject, the signed card (name
``card``, digest the sha256 of the card's payload: the digest ``acards publish`` logs it by):

1. ``REPRODUCTION_TYPE``, acards' own predicate (exact fields, checked by ``check_predicate``)::

       card:          {digest, id, version, sha256 (card.yaml), manifest, signers}
       report:        {digest, acards_version, reproduced, claims: [{id, verdict, reproduced}]}
       discrepancies: [{claim, cell, diagnostic, field, reported, recomputed}]
       evidence_mismatches: [card paths whose digest did not match]
       outputs:       {records, regenerated, supplied, spot_checked}
       environment:   {packages: {name: version}, python, device}
       assurance:     self | third-party | reproduced
       reviewer:      the signing keyid
       time:          RFC 3339 UTC

   ``report.digest`` is the sha256 of the report's RFC 8785 bytes; ``card.manifest`` the sha256
   of the card statement's subject list in RFC 8785 (the registry's ``manifest.json``).

2. ``EVAL_RESULT_TYPE``, the draft in-toto ``eval-result`` predicate (v0.1), so that a generic
   in-toto verifier can read the result. It is derived from the first by ``eval_result_predicate``
   and checked to be exactly that derivation, so the two can never disagree.

Assurance levels (``assurance_level``): ``self`` when the reviewer's key signed the card;
``reproduced`` when another key recomputed the report and it reproduced every claim;
``third-party`` when another key recomputed it and it did not reproduce, or when the reviewer asks
for no more than ``third-party``. A level is never above what the report supports.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards.attest.card_statement import CARD_SUBJECT
from acards.attest.dsse import PAYLOAD_TYPE, sign_envelope, verify_envelope
from acards.attest.in_toto import open_statement, statement
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location

REPRODUCTION_TYPE = "https://acards.dev/Reproduction/v1"
EVAL_RESULT_TYPE = "https://in-toto.io/attestation/eval-result/v0.1"
SUBJECT = "card"
ASSURANCE_LEVELS = ("self", "third-party", "reproduced")  # in increasing strength
EVAL_RESULT_LEVELS = {"self": "self_attested", "third-party": "third_party", "reproduced": "reproduced"}
PACKAGES = ("acards", "torch", "transformers", "peft")  # the versions an attestation records
MAX_BUNDLE_LINE = 4 * 1024 * 1024

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_FIELDS = {"card", "report", "discrepancies", "evidence_mismatches", "outputs", "environment", "assurance",
           "reviewer", "time"}
_CARD_FIELDS = {"digest", "id", "version", "sha256", "manifest", "signers"}
_REPORT_FIELDS = {"digest", "acards_version", "reproduced", "claims"}
_OUTPUT_FIELDS = {"records", "regenerated", "supplied", "spot_checked"}
_ENVIRONMENT_FIELDS = {"packages", "python", "device"}
_DISCREPANCY_FIELDS = {"claim", "cell", "diagnostic", "field", "reported", "recomputed"}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def report_digest(report: Any) -> str:
    """The digest an attestation names a report by: sha256 of its RFC 8785 bytes."""
    return sha256_hex(canonical_bytes(report))


def manifest_digest(card_statement: dict) -> str:
    """sha256 of the card statement's subject list in RFC 8785 (the registry's manifest.json)."""
    return sha256_hex(canonical_bytes(card_statement["subject"]))


def card_file_digest(card_statement: dict) -> str | None:
    """The sha256 of card.yaml that a card statement pins."""
    for subject in card_statement["subject"]:
        if subject["name"] == CARD_SUBJECT:
            return subject["digest"]["sha256"]
    return None


def report_mismatch(report: Mapping[str, Any], card_digest: str, card_statement: dict) -> str | None:
    """Why ``report`` (JSON data, report-1.0) is not a report of the signed card; None when it is."""
    card = card_statement["predicate"].get("card", {})
    about = report.get("card", {})
    if about.get("sha256") != card_file_digest(card_statement):
        return f"the report is about card.yaml {str(about.get('sha256'))[:16]}…, the signed card pins another"
    if (about.get("id"), about.get("version")) != (card.get("id"), card.get("version")):
        return f"the report is about {about.get('id')} version {about.get('version')}, the card is {card.get('id')} version {card.get('version')}"
    envelope = report.get("envelope")
    if isinstance(envelope, dict) and envelope.get("digest") != card_digest:
        return "the report was verified against another signed envelope"
    return None


def assurance_level(reviewer: str, card_signers: list[str], reproduced: bool, requested: str | None = None) -> str:
    """The level an attestation earns (see the module docstring); ``requested`` may only lower it."""
    earned = "self" if reviewer in card_signers else ("reproduced" if reproduced else "third-party")
    if requested is None:
        return earned
    if requested not in ASSURANCE_LEVELS or ASSURANCE_LEVELS.index(requested) > ASSURANCE_LEVELS.index(earned) \
            or (earned == "self") != (requested == "self"):
        why = {"self": "your key signed the card", "third-party": "the report does not reproduce the card",
               "reproduced": "the report reproduces the card"}[earned]
        raise AcardsError("attest.level-not-earned", f"assurance {requested!r} is not what this attestation earns: {why}, "
                          f"so it is {earned!r}", "leave out --assurance, or ask for a lower level (reproduced → third-party)")
    return requested


def _outputs(report: Mapping[str, Any]) -> dict:
    generation = report.get("generation", {})
    provenance = generation.get("provenance") or {}
    records = (provenance.get("records") or {}).get("records")
    regenerated = generation.get("requested", 0)
    spot = provenance.get("spot_check")
    return {"records": records, "regenerated": regenerated,
            "supplied": None if records is None else max(records - regenerated, 0),
            "spot_checked": spot.get("requested") if isinstance(spot, dict) else None}


def _environment(report: Mapping[str, Any], installed: Callable[[str], str | None]) -> dict:
    """The versions the report recorded (no package is imported for them); the others as installed."""
    environment = report.get("environment", {})
    recorded = environment.get("packages") or {}
    packages = {"acards": report.get("acards_version")}
    for name in PACKAGES[1:]:
        packages[name] = recorded.get(name) or installed(name)
    return {"packages": {name: version for name, version in packages.items() if version},
            "python": environment.get("python"), "device": environment.get("device")}


def _discrepancies(report: Mapping[str, Any]) -> list[dict]:
    found = []
    for claim in report.get("claims", []):
        for item in claim.get("discrepancies", []):
            found.append({"claim": claim["id"], "cell": item.get("cell"), "diagnostic": item.get("diagnostic"),
                          "field": item["field"], "reported": item.get("reported"), "recomputed": item.get("recomputed")})
    return found


def reproduction_predicate(*, card_digest: str, card_statement: dict, card_signers: list[str], report: Mapping[str, Any],
                           reviewer: str, level: str, time: str,
                           installed: Callable[[str], str | None] = lambda _name: None) -> dict:
    """acards' predicate for ``report`` (JSON data of a report-1.0 the reviewer recomputed) of the
    signed card; ``installed(name)`` gives a package's version when the report does not record it."""
    card = card_statement["predicate"]["card"]
    predicate = {
        "card": {"digest": card_digest, "id": card["id"], "version": card["version"],
                 "sha256": card_file_digest(card_statement), "manifest": manifest_digest(card_statement),
                 "signers": sorted(card_signers)},
        "report": {"digest": report_digest(report), "acards_version": report["acards_version"],
                   "reproduced": bool(report["reproduced"]),
                   "claims": [{"id": c["id"], "verdict": c["verdict"], "reproduced": c["reproduced"]} for c in report["claims"]]},
        "discrepancies": _discrepancies(report),
        "evidence_mismatches": [item["path"] for item in report.get("evidence", []) if not item.get("ok")],
        "outputs": _outputs(report),
        "environment": _environment(report, installed),
        "assurance": level,
        "reviewer": reviewer,
        "time": time,
    }
    check_predicate(predicate)
    return predicate


def eval_result_predicate(predicate: dict) -> dict:
    """The draft in-toto eval-result v0.1 predicate for an acards reproduction predicate.

    Each claim is an indicator metric (``claim/<id>/supported >= 1``), plus ``acards/reproduced``;
    acards pins model and data in one manifest, so both commitments name its digest (unsalted)."""
    report = predicate["report"]
    claims = [{"metric": f"claim/{c['id']}/supported", "comparator": ">=", "threshold": "1",
               "passed": c["verdict"] == "supported"} for c in report["claims"]]
    claims.append({"metric": "acards/reproduced", "comparator": ">=", "threshold": "1", "passed": report["reproduced"]})
    manifest = {"alg": "sha256", "value": predicate["card"]["manifest"], "salted": False}
    return {
        "verifier": {"id": f"urn:acards:keyid:{predicate['reviewer']}"},
        "evaluatedAt": predicate["time"],
        "suite": {"name": f"acards:{predicate['card']['id']}", "version": str(predicate["card"]["version"])},
        "claims": claims,
        "sampleSize": predicate["outputs"]["records"] or 0,
        "commitments": {"model": dict(manifest), "dataset": dict(manifest)},
        "assuranceLevel": EVAL_RESULT_LEVELS[predicate["assurance"]],
        "subjectProfile": "receipt",
        "harness": {"name": "acards", "version": report["acards_version"]},
    }


def statements(predicate: dict) -> tuple[dict, dict]:
    """The two Statements of an attestation: acards' own, then the eval-result one."""
    subjects = [(SUBJECT, predicate["card"]["digest"])]
    return (statement(subjects, REPRODUCTION_TYPE, predicate),
            statement(subjects, EVAL_RESULT_TYPE, eval_result_predicate(predicate)))


def sign_attestation(predicate: dict, private_key) -> bytes:
    """The attestation file: an in-toto bundle (one RFC 8785 DSSE envelope a line, each ending in a
    newline) of both statements, signed by ``private_key`` (the reviewer's)."""
    check_predicate(predicate)
    envelopes = [sign_envelope(PAYLOAD_TYPE, canonical_bytes(value), private_key) for value in statements(predicate)]
    return b"".join(canonical_bytes(envelope) + b"\n" for envelope in envelopes)


def _bad_attestation(message: str, pointer: str = "") -> AcardsError:
    return AcardsError("attest.bad-attestation", message,
                       "give the file `acards attest` wrote, unedited", Location(pointer=pointer))


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _shape(ok: bool, message: str, pointer: str) -> None:
    if not ok:
        raise _bad_attestation(message, f"/predicate{pointer}")


def check_predicate(predicate: Any) -> None:
    """An acards reproduction predicate has exactly its fields, each of its type."""
    _shape(isinstance(predicate, dict) and set(predicate) == _FIELDS, f"the predicate must have exactly {sorted(_FIELDS)}", "")
    card, report = predicate["card"], predicate["report"]
    _shape(isinstance(card, dict) and set(card) == _CARD_FIELDS, f"card must have exactly {sorted(_CARD_FIELDS)}", "/card")
    _shape(all(isinstance(card[n], str) and _SHA256.fullmatch(card[n]) for n in ("digest", "sha256", "manifest")),
           "card digests must be 64 lowercase hex digits", "/card")
    _shape(isinstance(card["id"], str) and _is_int(card["version"], 1), "card id and version are invalid", "/card")
    _shape(isinstance(card["signers"], list) and card["signers"] == sorted(set(card["signers"]))
           and all(isinstance(s, str) and _SHA256.fullmatch(s) for s in card["signers"]), "card signers must be sorted keyids", "/card/signers")
    _shape(isinstance(report, dict) and set(report) == _REPORT_FIELDS, f"report must have exactly {sorted(_REPORT_FIELDS)}", "/report")
    _shape(isinstance(report["digest"], str) and bool(_SHA256.fullmatch(report["digest"])), "report digest is invalid", "/report/digest")
    _shape(isinstance(report["acards_version"], str) and isinstance(report["reproduced"], bool), "report version or flag invalid", "/report")
    _shape(isinstance(report["claims"], list) and all(
        isinstance(c, dict) and set(c) == {"id", "verdict", "reproduced"} and isinstance(c["id"], str)
        and isinstance(c["verdict"], str) and isinstance(c["reproduced"], bool) for c in report["claims"]),
        "report claims must be {id, verdict, reproduced}", "/report/claims")
    _shape(isinstance(predicate["discrepancies"], list) and all(
        isinstance(d, dict) and set(d) == _DISCREPANCY_FIELDS for d in predicate["discrepancies"]),
        f"each discrepancy must have exactly {sorted(_DISCREPANCY_FIELDS)}", "/discrepancies")
    _shape(isinstance(predicate["evidence_mismatches"], list) and all(isinstance(p, str) for p in predicate["evidence_mismatches"]),
           "evidence_mismatches must be card paths", "/evidence_mismatches")
    outputs = predicate["outputs"]
    _shape(isinstance(outputs, dict) and set(outputs) == _OUTPUT_FIELDS and _is_int(outputs["regenerated"])
           and all(outputs[n] is None or _is_int(outputs[n]) for n in ("records", "supplied", "spot_checked")),
           f"outputs must have exactly {sorted(_OUTPUT_FIELDS)}, counts or null", "/outputs")
    environment = predicate["environment"]
    _shape(isinstance(environment, dict) and set(environment) == _ENVIRONMENT_FIELDS
           and isinstance(environment["packages"], dict)
           and all(isinstance(k, str) and isinstance(v, str) for k, v in environment["packages"].items())
           and all(environment[n] is None or isinstance(environment[n], str) for n in ("python", "device")),
           f"environment must have exactly {sorted(_ENVIRONMENT_FIELDS)}", "/environment")
    _shape(predicate["assurance"] in ASSURANCE_LEVELS, f"assurance must be one of {ASSURANCE_LEVELS}", "/assurance")
    _shape(isinstance(predicate["reviewer"], str) and bool(_SHA256.fullmatch(predicate["reviewer"])), "reviewer must be a keyid", "/reviewer")
    _shape(isinstance(predicate["time"], str) and bool(_TIME.fullmatch(predicate["time"])), "time must be RFC 3339 UTC", "/time")
    _shape(predicate["assurance"] != "reproduced" or report["reproduced"],
           "a reproduced attestation must record a report that reproduced", "/assurance")
    _shape((predicate["assurance"] == "self") == (predicate["reviewer"] in card["signers"]),
           "assurance is self exactly when the reviewer signed the card", "/assurance")


@dataclass(frozen=True)
class Attestation:
    """A verified attestation: its digest (sha256 of the acards statement's payload), the predicate,
    the reviewer's keyid, and the bundle's bytes."""

    digest: str
    predicate: dict
    reviewer: str
    bundle: bytes

    @property
    def card_digest(self) -> str:
        return self.predicate["card"]["digest"]


def is_attestation(data: bytes) -> bool:
    """Whether file bytes look like an attestation bundle (two one-line JSON objects), not a card's
    envelope: only to choose what to verify them as."""
    lines = bytes(data).split(b"\n")
    return len(lines) == 3 and lines[2] == b"" and all(line.startswith(b"{") and line.endswith(b"}") for line in lines[:2])


def split_bundle(data: bytes) -> list[bytes]:
    """The lines of a bundle of exactly two envelopes, each ending in a newline."""
    if not isinstance(data, (bytes, bytearray)):
        raise _bad_attestation("an attestation must be bytes")
    lines = bytes(data).split(b"\n")
    if len(lines) != 3 or lines[2] != b"" or not all(lines[:2]):
        raise _bad_attestation("an attestation is two DSSE envelopes, one a line, each line ending in a newline")
    if any(len(line) > MAX_BUNDLE_LINE for line in lines[:2]):
        raise _bad_attestation("an attestation line is over 4 MiB")
    return lines[:2]


def open_attestation(data: bytes, trusted_keys: Mapping[str, Ed25519PublicKey]) -> Attestation:
    """Check both envelopes' signatures (one key, trusted, the same for both), then parse and check
    the statements: acards' predicate, and the eval-result one exactly derived from it."""
    opened = []
    for number, (line, predicate_type) in enumerate(zip(split_bundle(data), (REPRODUCTION_TYPE, EVAL_RESULT_TYPE))):
        verified = verify_envelope(line, trusted_keys)
        if verified.unknown_keyids or verified.invalid_keyids or len(verified.keyids) != 1:
            raise _bad_attestation("each envelope must carry exactly one signature, by the reviewer", f"/{number}")
        if canonical_bytes(parse_strict_json(line)) != line:
            raise _bad_attestation("each envelope must be in RFC 8785 form", f"/{number}")
        opened.append((verified.keyids[0], open_statement(verified.payload_type, verified.payload, predicate_type),
                       verified.payload))
    (reviewer, acards_statement, payload), (other, eval_statement, _) = opened
    if other != reviewer:
        raise _bad_attestation("the two envelopes are signed by different keys")
    predicate = acards_statement["predicate"]
    check_predicate(predicate)
    if predicate["reviewer"] != reviewer:
        raise _bad_attestation("the predicate names another reviewer than the key that signed it", "/predicate/reviewer")
    expected = statements(predicate)
    if acards_statement != expected[0] or eval_statement != expected[1]:
        raise _bad_attestation("the statements' subject or the eval-result predicate is not the one derived from acards' predicate")
    return Attestation(sha256_hex(payload), predicate, reviewer, bytes(data))


def preview_attestation(data: bytes) -> tuple[str, dict]:
    """(digest, predicate) of what looks like an attestation, signatures unchecked: what ``acards
    submit`` checks a file it carries is (the reviewer's key may be one only the registry trusts).
    ``open_attestation`` checks it whole."""
    import base64
    import binascii

    opened = []
    for number, (line, predicate_type) in enumerate(zip(split_bundle(data), (REPRODUCTION_TYPE, EVAL_RESULT_TYPE))):
        try:
            envelope = parse_strict_json(line)
            payload = base64.b64decode(envelope["payload"], validate=True)
            payload_type = envelope["payloadType"]
        except (AcardsError, TypeError, KeyError, ValueError, binascii.Error):
            raise _bad_attestation("each line must be a DSSE envelope", f"/{number}") from None
        try:
            opened.append((open_statement(payload_type, payload, predicate_type), payload))
        except AcardsError as error:
            raise _bad_attestation(f"line {number + 1}: {error.problems[0].message}", f"/{number}") from None
    (acards_statement, payload), _ = opened
    check_predicate(acards_statement["predicate"])
    return sha256_hex(payload), acards_statement["predicate"]


def report_problem(report: Any, predicate: dict, card_statement: dict) -> str | None:
    """Why ``report`` (JSON data) is not the report the attestation names, of its card, saying what
    the attestation says (and reproducing, for a ``reproduced`` one); None when it is. The report's
    schema is checked by the caller."""
    if report_digest(report) != predicate["report"]["digest"]:
        return "the stored report is not the report the attestation names (its RFC 8785 digest differs)"
    mismatch = report_mismatch(report, predicate["card"]["digest"], card_statement)
    if mismatch:
        return mismatch
    if report.get("reproduced") is not predicate["report"]["reproduced"]:
        return f"the report says reproduced={report.get('reproduced')}, the attestation {predicate['report']['reproduced']}"
    if predicate["assurance"] == "reproduced" and report.get("reproduced") is not True:
        return "the report does not reproduce the card"
    return None

