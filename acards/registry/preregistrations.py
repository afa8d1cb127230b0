"""Pre-registrations in a registry: logging a signed analysis plan, checking the logged ones, and
reading one back (docs/preregistering.md).

A ``preregister`` entry (acards.registry.entries) names the card id and the sha256 of the plan's
payload; ``plans/<digest>/`` keeps the envelope as signed and its payload. The plan must be signed by
keys the registry trusts to sign cards (keys/), as a card must; the same digest is logged once. The
entry's time is when the registry logged the plan: what "pre-registered on" means.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards.attest.plan_statement import open_plan_envelope
from acards.canonical import canonical_bytes
from acards.errors import AcardsError, Location, Problem
from acards.registry.disk import LOCK_TIMEOUT, locked, parse_log, read_config, read_log, read_optional
from acards.registry.entries import HINT_RESTORE, is_card_id, preregister_entry, utc_time
from acards.registry.layout import ENVELOPE, PLANS, STATEMENT, Layout
from acards.registry.writer import CrashHook, Head, Written, refuse, unfinished_entry, write_entry

KIND = "preregister"


def _plan_name(digest: str, file_name: str | None = None) -> str:
    return f"{PLANS}/{digest}" if file_name is None else f"{PLANS}/{digest}/{file_name}"


def preregister(
    directory: str | os.PathLike,
    envelope_bytes: bytes,
    registry_private_key: Ed25519PrivateKey,
    now: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    *,
    crash_at: CrashHook | None = None,
) -> dict:
    """Verify a signed analysis plan (`acards preregister`), store it and log it; return its entry.

    Retrying after a crash finishes the interrupted run; logging the same plan again is refused."""
    if not isinstance(envelope_bytes, (bytes, bytearray)):
        raise AcardsError("registry.bad-card", "the envelope must be bytes", "pass the file's bytes")
    envelope_bytes = bytes(envelope_bytes)
    layout = Layout(Path(directory))

    def decide(head: Head) -> Written:
        statement, digest, signers = open_plan_envelope(envelope_bytes, head.keys)
        unfinished = unfinished_entry(head, KIND, digest)
        if unfinished is not None and read_optional(layout.stored(KIND, digest) / ENVELOPE) == envelope_bytes:
            return Written(unfinished, retry=True)  # a retry of a run killed after its line landed
        card_id = statement["predicate"]["card_id"]
        if not is_card_id(card_id):
            raise AcardsError("preregistration.bad-plan", f"card id {str(card_id)[:80]!r} is not a slug [a-z0-9/-]",
                              "pre-register a card whose id is valid", Location(pointer="/predicate/card_id"))
        entry = preregister_entry(head.config.origin, head.size, card_id, digest, list(signers), utc_time(now))
        refuse(head.rules.check(entry))
        head.rules.record(entry)
        return Written(entry, {ENVELOPE: envelope_bytes, STATEMENT: canonical_bytes(statement)})

    return write_entry(directory, registry_private_key, decide, action="pre-register in",
                       lock_timeout=lock_timeout, crash_at=crash_at)


def _problem(code: str, message: str, digest: str, name: str | None) -> Problem:
    return Problem(code, message, HINT_RESTORE, Location(file=_plan_name(digest, name)))


def verify_plan(layout: Layout, entry: dict, keys: dict[str, Ed25519PublicKey]) -> list[Problem]:
    """A logged plan against its entry: the envelope's signatures by trusted keys, the digest, the
    card id, the logged signers, and the stored payload."""
    digest = entry["digest"]
    envelope = read_optional(layout.stored(KIND, digest) / ENVELOPE)
    if envelope is None:
        return [_problem("registry.missing-file", f"{ENVELOPE} is missing", digest, ENVELOPE)]
    try:
        statement, payload_digest, signers = open_plan_envelope(envelope, keys)
    except AcardsError as error:
        first = error.problems[0]
        return [_problem("registry.bad-envelope", f"{first.code}: {first.message}", digest, ENVELOPE)]
    problems = []
    if payload_digest != digest:
        problems.append(_problem("registry.digest-mismatch", "the plan's payload does not have the logged digest",
                                 digest, ENVELOPE))
    if statement["predicate"]["card_id"] != entry["card_id"]:
        problems.append(_problem("registry.entry-mismatch", f"the plan is of card {statement['predicate']['card_id']}, "
                                 f"the log says {entry['card_id']}", digest, ENVELOPE))
    if not set(entry["signers"]) <= set(signers):
        problems.append(_problem("registry.signer-mismatch", "keys the log names as signers did not sign this plan "
                                 "(or are no longer trusted)", digest, ENVELOPE))
    stored = read_optional(layout.stored(KIND, digest) / STATEMENT)
    if stored is None:
        problems.append(_problem("registry.missing-file", f"{STATEMENT} is missing", digest, STATEMENT))
    elif stored != canonical_bytes(statement):
        problems.append(_problem("registry.digest-mismatch", f"{STATEMENT} is not the verified payload", digest, STATEMENT))
    return problems


def verify_plans(layout: Layout, entries: list[dict], keys: dict[str, Ed25519PublicKey]) -> tuple[list[Problem], list[Problem]]:
    """(problems, warnings) of every logged plan and of plans/ (an unlogged folder is what an
    interrupted run leaves: a warning the next writer clears)."""
    logged = {entry["digest"]: entry for entry in entries if entry["kind"] == KIND}
    problems = [problem for entry in logged.values() for problem in verify_plan(layout, entry, keys)]
    folder = layout.root / PLANS
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    warnings = [Problem("registry.orphan-card", f"{_plan_name(name)} is not in the log (left by an interrupted "
                        "pre-registration)", "the next writer removes it; it is not part of the registry",
                        Location(file=_plan_name(name))) for name in names if name not in logged]
    return problems, warnings


def logged_plan(directory: str | os.PathLike, digest: str) -> tuple[dict, bytes]:
    """(the preregister entry, the envelope as signed) of plan ``digest``; the envelope's payload
    must have the digest (the caller checks its signatures against the keys it trusts)."""
    layout = Layout(Path(directory))
    read_config(layout)
    with locked(layout, exclusive=False, timeout=LOCK_TIMEOUT):
        found = [entry for entry in parse_log(read_log(layout)) if entry["kind"] == KIND and entry["digest"] == digest]
    if not found:
        raise AcardsError("preregistration.not-logged", f"no plan with digest {digest[:80]} is pre-registered in {directory}",
                          "name the digest `acards preregister` printed, and the registry it logged the plan in")
    envelope = read_optional(layout.stored(KIND, digest) / ENVELOPE)
    if envelope is None:
        raise AcardsError("registry.missing-file", f"{_plan_name(digest, ENVELOPE)} is missing", HINT_RESTORE,
                          Location(file=_plan_name(digest, ENVELOPE)))
    return found[0], envelope
