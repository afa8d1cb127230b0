"""Reproduction attestations in a registry: publishing one (``publish_attestation``) and verifying
every one logged (``verify_attestations``, called by ``audit.verify_registry``).

An attestation (acards.attest.reproduction) is logged as an ``attest`` entry (acards.registry.entries)
linked to the published card it names, and stored in ``attestations/<digest>/``: the bundle as
given, and the report it names when it was published with one (``report.json``). The rules:

- the bundle verifies: both envelopes signed by one key trusted in ``keys/`` (the reviewer);
- the card it names is published in this registry, not revoked, with the id and version the
  attestation gives (``rules.KIND_RULES["attest"]``);
- the level is ``self`` exactly when the reviewer's key signed the stored card envelope;
- a stored report is the one the attestation names (sha256 of its RFC 8785 bytes), a report-1.0 of
  this card that holds together with the card's claims; for a ``reproduced`` attestation it must be
  stored, and it must reproduce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards.attest.dsse import verify_envelope
from acards.attest.reproduction import Attestation, open_attestation, report_digest, report_problem
from acards.canonical import parse_strict_json
from acards.errors import AcardsError, Location, Problem
from acards.registry.disk import LOCK_TIMEOUT, read_optional
from acards.registry.entries import attest_entry, utc_time
from acards.registry.layout import ATTESTATION, ENVELOPE, REPORT, STATEMENT, STORED_FOLDERS, Layout
from acards.registry.writer import CrashHook, Head, Written, refuse, unfinished_entry, write_entry

KIND = "attest"


def _where(digest: str, name: str = "") -> Location:
    return Location(file=f"{STORED_FOLDERS[KIND]}/{digest}" + (f"/{name}" if name else ""))


@dataclass(frozen=True)
class CardFiles:
    """The signed card an attestation is checked against: its envelope and its statement (payload)
    bytes, as stored in ``cards/<digest>/`` or as carried in a submission bundle; None when missing."""

    envelope: bytes | None
    statement: bytes | None

    @classmethod
    def stored(cls, layout: Layout, card_digest: str) -> "CardFiles":
        folder = layout.card(card_digest)
        return cls(read_optional(folder / ENVELOPE), read_optional(folder / STATEMENT))


def _signed_the_card(card: CardFiles, reviewer: str, key: Ed25519PublicKey) -> bool:
    """Whether the card's envelope carries a valid signature by the reviewer's key."""
    if card.envelope is None:
        return False
    try:
        return reviewer in verify_envelope(card.envelope, {reviewer: key}).keyids
    except AcardsError:
        return False


def _report_problems(card: CardFiles, attestation: Attestation, report_bytes: bytes | None) -> list[str]:
    """What is wrong with the report stored (or to be stored) with an attestation."""
    from acards.report.consistency import inconsistencies
    from acards.report.stored import check_report

    predicate = attestation.predicate
    if report_bytes is None:
        return ["a reproduced attestation needs the report it names"] if predicate["assurance"] == "reproduced" else []
    statement_bytes = card.statement
    if statement_bytes is None:
        return ["the card's statement.json is missing"]
    card_statement = parse_strict_json(statement_bytes)
    try:
        data = parse_strict_json(report_bytes)
        report = check_report(data)
    except AcardsError as error:
        return [f"{error.problems[0].code}: {error.problems[0].message}"]
    problem = report_problem(data, predicate, card_statement)
    if problem:
        return [problem]
    found = inconsistencies(card_statement["predicate"]["card"].get("claims", []), report) if report.reproduced else []
    return [f"the report does not hold together with the card: {found[0]}"] if found else []


def _level_problem(card: CardFiles, attestation: Attestation, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    signed = _signed_the_card(card, attestation.reviewer, keys[attestation.reviewer])
    if signed != (attestation.predicate["assurance"] == "self"):
        return (f"assurance {attestation.predicate['assurance']!r} by {attestation.reviewer}, a key that "
                f"{'signed' if signed else 'did not sign'} the card: a card's signer attests at self only")
    return None


def check_attestation(attestation: Attestation, card: CardFiles, keys: Mapping[str, Ed25519PublicKey],
                      report: bytes | None, where: Location | None = None) -> None:
    """Refuse an opened attestation whose level its reviewer did not earn on ``card`` (the card it
    names), or whose report (required for ``reproduced``) is not the one it names, reproducing."""
    level = _level_problem(card, attestation, keys)
    if level:
        raise AcardsError("registry.attestation-level", level, "attest again: `acards attest` earns the level", where)
    problems = _report_problems(card, attestation, report)
    if problems:
        raise AcardsError("registry.attestation-report", problems[0],
                          "publish the attestation with the report `acards verify --report` wrote for it", where)


def publish_attestation(
    directory: str | os.PathLike,
    bundle: bytes,
    registry_private_key: Ed25519PrivateKey,
    report: bytes | None = None,
    now: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    *,
    crash_at: CrashHook | None = None,
) -> dict:
    """Log a reviewer's attestation (the bytes `acards attest` wrote) of a card published here, with
    the report it names (required for ``reproduced``); return its log entry."""
    layout = Layout(Path(directory))

    def decide(head: Head) -> Written:
        attestation = open_attestation(bundle, head.keys)
        unfinished = unfinished_entry(head, KIND, attestation.digest)
        if unfinished is not None and read_optional(layout.stored(KIND, attestation.digest) / ATTESTATION) == bundle:
            return Written(unfinished, retry=True)  # a retry of a publish killed after its line landed
        predicate = attestation.predicate
        card = head.rules.published.get(attestation.card_digest)
        if card is None:
            raise AcardsError("registry.attestation-card", f"the attestation names card {attestation.card_digest}, "
                              "which is not published in this registry", "publish the card first, to this registry")
        check_attestation(attestation, CardFiles.stored(layout, attestation.card_digest), head.keys, report)
        entry = attest_entry(
            head.config.origin, head.size, predicate["card"]["id"], predicate["card"]["version"], attestation.digest,
            attestation.card_digest, attestation.reviewer, predicate["assurance"], predicate["report"]["reproduced"],
            None if report is None else report_digest(parse_strict_json(report)), utc_time(now))
        refuse(head.rules.check(entry))
        head.rules.record(entry)
        files = {ATTESTATION: bytes(bundle)}
        if report is not None:
            files[REPORT] = bytes(report)
        return Written(entry, files)

    return write_entry(directory, registry_private_key, decide, action="publish an attestation to",
                       lock_timeout=lock_timeout, crash_at=crash_at)


def _verify_one(layout: Layout, entry: dict, keys: Mapping[str, Ed25519PublicKey]) -> list[Problem]:
    digest = entry["digest"]
    folder = layout.stored(KIND, digest)
    bundle = read_optional(folder / ATTESTATION)
    if bundle is None:
        return [Problem("registry.bad-attestation", f"{ATTESTATION} is missing", "restore it from a trusted mirror",
                        _where(digest, ATTESTATION))]
    try:
        attestation = open_attestation(bundle, keys)
    except AcardsError as error:
        first = error.problems[0]
        return [Problem("registry.bad-attestation", f"{first.code}: {first.message}",
                        "the attestation was altered, or its reviewer is no longer trusted", _where(digest, ATTESTATION))]
    predicate = attestation.predicate
    logged = {"digest": attestation.digest, "card": attestation.card_digest, "reviewer": attestation.reviewer,
              "assurance": predicate["assurance"], "reproduced": predicate["report"]["reproduced"],
              "card_id": predicate["card"]["id"], "version": predicate["card"]["version"]}
    differs = sorted(name for name, value in logged.items() if entry[name] != value)
    problems = []
    if differs:
        problems.append(Problem("registry.bad-attestation", f"the log entry's {', '.join(differs)} differ from the "
                                "stored attestation", "restore the registry from a trusted mirror", _where(digest, ATTESTATION)))
    card = CardFiles.stored(layout, attestation.card_digest)
    level = _level_problem(card, attestation, keys)
    if level:
        problems.append(Problem("registry.attestation-level", level, "attest again: `acards attest` earns the level",
                                _where(digest, ATTESTATION)))
    report = read_optional(folder / REPORT)
    if (report is None) != (entry["report"] is None):
        problems.append(Problem("registry.attestation-report", f"the log {'names' if entry['report'] else 'names no'} "
                                f"report, and {REPORT} is {'missing' if report is None else 'present'}",
                                "restore the registry from a trusted mirror", _where(digest, REPORT)))
        return problems
    for message in _report_problems(card, attestation, report):
        problems.append(Problem("registry.attestation-report", message,
                                "a reproduced attestation stands on a report that reproduces its card", _where(digest, REPORT)))
    return problems


def verify_attestations(layout: Layout, entries: list[dict], keys: Mapping[str, Ed25519PublicKey]) -> list[Problem]:
    """Every logged attestation against its stored files, the card it names, and its report."""
    problems = []
    for entry in entries:
        if entry["kind"] == KIND:
            problems += _verify_one(layout, entry, keys)
    return problems

