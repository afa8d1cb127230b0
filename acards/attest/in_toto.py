"""in-toto Statement v1: building one over subjects and a predicate, and opening a verified payload as one."""

from __future__ import annotations

import re
from typing import Any, Sequence

from acards.attest.dsse import PAYLOAD_TYPE, _brief
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"

PREDICATE_TYPE = "https://acards.dev/AcceptanceCard/v1"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")

_STATEMENT_FIELDS = {"_type", "subject", "predicateType", "predicate"}

_SUBJECT_FIELDS = {"name", "digest"}


def _bad_statement(message: str, pointer: str = "") -> AcardsError:
    return AcardsError(
        "envelope.bad-statement",
        message,
        "the payload must be an in-toto Statement v1 as written by `acards sign`",
        Location(pointer=pointer),
    )


def _check_subjects(subjects: Any) -> None:
    if not isinstance(subjects, list) or not subjects:
        raise _bad_statement("subject must be a non-empty list", "/subject")
    names = set()
    for index, subject in enumerate(subjects):
        pointer = f"/subject/{index}"
        if not isinstance(subject, dict) or set(subject) != _SUBJECT_FIELDS:
            raise _bad_statement("a subject must have exactly 'name' and 'digest'", pointer)
        name, digest = subject["name"], subject["digest"]
        if not isinstance(name, str) or not name:
            raise _bad_statement("a subject name must be a non-empty string", f"{pointer}/name")
        if name in names:
            raise _bad_statement(f"subject {_brief(name)} is listed twice", f"{pointer}/name")
        names.add(name)
        if (
            not isinstance(digest, dict)
            or set(digest) != {"sha256"}
            or not isinstance(digest["sha256"], str)
            or not _SHA256_HEX.fullmatch(digest["sha256"])
        ):
            raise _bad_statement(
                'digest must be {"sha256": <64 lowercase hex digits>}', f"{pointer}/digest"
            )


def statement(subjects: Sequence[tuple[str, str]], predicate_type: str, predicate: dict) -> dict:
    """An in-toto Statement v1 about ``subjects`` ((name, sha256 hex) pairs)."""
    try:
        subject_list = [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects]
    except (TypeError, ValueError):
        raise _bad_statement("subjects must be (name, sha256 hex) pairs", "/subject") from None
    _check_subjects(subject_list)
    if not isinstance(predicate_type, str) or not predicate_type:
        raise _bad_statement("predicateType must be a non-empty string", "/predicateType")
    if not isinstance(predicate, dict):
        raise _bad_statement("predicate must be an object", "/predicate")
    return {
        "_type": STATEMENT_TYPE,
        "subject": subject_list,
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def open_statement(payload_type: str, payload: bytes, predicate_type: str = PREDICATE_TYPE) -> dict:
    """The acards Statement in a verified payload, after checking type, canonical form and shape;
    ``predicate_type``: the one predicate type the caller reads (a card's, by default)."""
    if payload_type != PAYLOAD_TYPE:
        raise AcardsError(
            "envelope.unknown-payload-type",
            f"payload type {_brief(payload_type)} is not {PAYLOAD_TYPE}",
            "this envelope does not hold an acards card",
            Location(pointer="/payloadType"),
        )
    value = parse_strict_json(payload)
    # One statement, one byte form: the card digest is the sha256 of these bytes.
    if canonical_bytes(value) != bytes(payload):
        raise AcardsError(
            "envelope.non-canonical",
            "payload bytes are not the RFC 8785 form of the statement",
            "re-sign the card with `acards sign`, which writes canonical JSON",
            Location(pointer="/payload"),
        )
    if not isinstance(value, dict):
        raise _bad_statement("a statement must be a JSON object")
    if value.get("_type") != STATEMENT_TYPE:
        raise AcardsError(
            "envelope.unknown-statement-type",
            f"_type {_brief(value.get('_type'))} is not {STATEMENT_TYPE}",
            "acards reads in-toto Statement v1 only",
            Location(pointer="/_type"),
        )
    unknown = set(value) - _STATEMENT_FIELDS
    missing = _STATEMENT_FIELDS - set(value)
    if unknown or missing:
        raise _bad_statement(
            "a statement must have exactly _type, subject, predicateType and predicate"
        )
    if value["predicateType"] != predicate_type:
        raise AcardsError(
            "envelope.unknown-predicate-type",
            f"predicateType {_brief(value['predicateType'])} is not {predicate_type}",
            "this statement is not an acards card" if predicate_type == PREDICATE_TYPE else "this is not the statement expected here",
            Location(pointer="/predicateType"),
        )
    _check_subjects(value["subject"])
    if not isinstance(value["predicate"], dict):
        raise _bad_statement("predicate must be an object", "/predicate")
    return value
