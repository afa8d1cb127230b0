"""A card as a signed in-toto Statement: what `acards sign` writes and `verify --envelope` checks.

Subjects are the card file and every evidence artifact it points at (by the digest the card
carries: a file's sha256, or a folder's manifest digest); the predicate holds the card (as JSON
data) and the author-run verification report.  The card digest is the sha256 of the payload.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from acards.attest.dsse import verify_envelope
from acards.attest.in_toto import PREDICATE_TYPE, open_statement, statement
from acards.canonical import canonical_bytes
from acards.card.model import Card
from acards.errors import AcardsError, Location, Problem

CARD_SUBJECT = "card.yaml"


def card_statement(card: Card, report: dict) -> dict:
    """The Statement for a card and its report; evidence subjects are named by their card paths."""
    subjects = {CARD_SUBJECT: card.sha256}
    for _pointer, path, digest, location in card.pointers():
        if subjects.setdefault(path, digest) != digest:
            raise AcardsError("card.conflicting-digests", f"{path} is pinned with two different digests (or is named like the card's subject, {CARD_SUBJECT})",
                              "give every pointer to the same file the same sha256 (acards check --write-digests)", location)
    return statement(sorted(subjects.items()), PREDICATE_TYPE, {"card": card.data, "report": report})


def payload_bytes(card: Card, report: dict) -> bytes:
    return canonical_bytes(card_statement(card, report))


def payload_digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def open_card_envelope(envelope_bytes: bytes, trusted_keys: dict, threshold: int = 1) -> tuple[dict, str, tuple[str, ...]]:
    """Check signatures first, then parse: (statement, payload digest, signer keyids)."""
    verified = verify_envelope(envelope_bytes, trusted_keys, threshold)
    value = open_statement(verified.payload_type, verified.payload)
    return value, payload_digest(verified.payload), verified.keyids


def check_card_against_statement(card: Card, value: dict) -> None:
    """The card file and its evidence pointers must be the ones the signers signed."""
    subjects = {s["name"]: s["digest"]["sha256"] for s in value["subject"]}
    problems = []
    if subjects.get(CARD_SUBJECT) != card.sha256:
        problems.append(("envelope.card-mismatch", f"{card.path.name} (sha256 {card.sha256[:16]}…) is not the card that was signed",
                         "verify the envelope with the card file it was made for", Location(str(card.path))))
    for _pointer, path, digest, location in card.pointers():
        if subjects.get(path) != digest:
            problems.append(("envelope.evidence-mismatch", f"{path} is not pinned in the signed statement with this digest",
                             "the card's evidence pointers changed after signing; sign the card again", location))
    if problems:
        raise AcardsError.collect([Problem(*p) for p in problems])


def default_envelope_path(card_path: Path) -> Path:
    return card_path.with_name(card_path.stem + ".envelope.json")

