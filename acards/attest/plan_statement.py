"""A card's analysis plan as a signed in-toto Statement: what `acards preregister` signs and logs.

The Statement's subjects are the plan itself (its RFC 8785 bytes' sha256, named ``analysis-plan``)
and, when the card pins one, the prompts file; the predicate is ``{card_id, plan}`` under its own
predicate type, so that a plan can never pass for a card, nor a card for a plan. The plan's entry
digest, which a card names, is the sha256 of the payload (as a card's digest is).
"""

from __future__ import annotations

import hashlib

from acards.attest.dsse import _parse_envelope, verify_envelope
from acards.attest.in_toto import open_statement, statement
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location

PLAN_PREDICATE_TYPE = "https://acards.dev/AnalysisPlan/v1"
PLAN_SUBJECT = "analysis-plan"


def plan_statement(plan: dict, prompts: dict | None = None) -> dict:
    """The Statement of ``plan``; ``prompts``: the card's ``evidence.prompts`` pointer, if any."""
    subjects = [(PLAN_SUBJECT, hashlib.sha256(canonical_bytes(plan)).hexdigest())]
    if prompts is not None:
        subjects.append((prompts["path"], prompts["sha256"]))
    return statement(sorted(subjects), PLAN_PREDICATE_TYPE, {"card_id": plan["card"]["id"], "plan": plan})


def _bad_plan(message: str, pointer: str) -> AcardsError:
    return AcardsError("preregistration.bad-plan", message,
                       "sign the plan with `acards preregister`, which writes this statement",
                       Location(pointer=pointer))


def open_plan_payload(payload_type: str, payload: bytes) -> dict:
    """The plan Statement in a verified payload: shape, predicate type, and the plan's own subject."""
    value = open_statement(payload_type, payload, PLAN_PREDICATE_TYPE)
    predicate = value["predicate"]
    plan = predicate.get("plan")
    if set(predicate) != {"card_id", "plan"} or not isinstance(plan, dict):
        raise _bad_plan("the predicate must have exactly card_id and plan (an object)", "/predicate")
    card = plan.get("card")
    if not isinstance(card, dict) or card.get("id") != predicate["card_id"]:
        raise _bad_plan("the plan is not the plan of the card the predicate names", "/predicate/plan/card/id")
    subjects = {subject["name"]: subject["digest"]["sha256"] for subject in value["subject"]}
    if subjects.get(PLAN_SUBJECT) != hashlib.sha256(canonical_bytes(plan)).hexdigest():
        raise _bad_plan(f"subject {PLAN_SUBJECT} is not the digest of the plan", "/subject")
    return value


def open_plan_envelope(envelope_bytes: bytes, trusted_keys: dict) -> tuple[dict, str, tuple[str, ...]]:
    """Check signatures first, then parse: (statement, payload digest, signer keyids)."""
    verified = verify_envelope(envelope_bytes, trusted_keys)
    if verified.invalid_keyids:  # every signature must hold, as the registry asks of cards
        raise AcardsError("envelope.bad-signature",
                          f"signatures by {', '.join(verified.invalid_keyids)} do not match the payload",
                          "the plan's envelope was altered after signing; do not trust it")
    value = open_plan_payload(verified.payload_type, verified.payload)
    return value, hashlib.sha256(verified.payload).hexdigest(), verified.keyids


def open_plan_unverified(envelope_bytes: bytes) -> tuple[dict, str]:
    """(statement, payload digest) without checking signatures, for a reader with no key to check
    them: only a digest the reader trusts (the one a signed card names) binds such a plan."""
    parsed = _parse_envelope(parse_strict_json(envelope_bytes))  # the one parser of envelopes
    value = open_plan_payload(parsed.payload_type, parsed.payload)
    return value, hashlib.sha256(parsed.payload).hexdigest()
