"""Log entries (pure): the field checks, building and parsing one line of log/entries.jsonl.

Exact field sets::

    publish: origin, index, kind="publish", card_id, version, digest, supersedes (digest | null),
             signers (sorted keyids), rendered ({name: sha256}), time (RFC 3339 UTC)
    revoke:  origin, index, kind="revoke", card_id, version, digest, reason, time
    preregister: origin, index, kind="preregister", card_id, digest (of the plan's payload),
             signers (sorted keyids), time
    attest:  origin, index, kind="attest", card_id, version, digest (of the attestation's acards
             statement payload), card (the attested card's digest), reviewer (keyid), assurance
             ("self" | "third-party" | "reproduced"), reproduced (bool), report (digest | null), time


A line is the entry's RFC 8785 bytes without its newline (the Merkle leaf hashes exactly these).
The ``is_*`` checks are shared with checkpoints, cards, proofs and the config reader.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from acards.canonical import MAX_SAFE_INTEGER, canonical_bytes, parse_canonical_json, parse_strict_json
from acards.errors import AcardsError, Location
from acards.registry.layout import CARD_FILES, LOG_NAME

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CARD_ID = re.compile(r"[a-z0-9][a-z0-9/-]{0,199}")  # the card schema's id pattern and length
_ORIGIN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces: "example.org/registry"
_RENDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")

MAX_REASON = 2000

HINT_RESTORE = "the registry was altered or damaged; restore it from a trusted mirror"


def sha256_hex(data: bytes) -> str:
    """The digest the log names payloads and rendered files by."""
    return hashlib.sha256(data).hexdigest()


# --- field checks (pure) ----------------------------------------------------------------------


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INTEGER


def is_version(value: Any) -> bool:
    return is_count(value) and value >= 1


def is_card_id(value: Any) -> bool:
    return isinstance(value, str) and _CARD_ID.fullmatch(value) is not None


def is_origin(value: Any) -> bool:
    return isinstance(value, str) and _ORIGIN.fullmatch(value) is not None


def is_render_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and _RENDER_NAME.fullmatch(value) is not None
        and value not in CARD_FILES
    )


def _is_time(value: Any) -> bool:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value[:-1])  # the regex fixed the shape; this checks the calendar
    except ValueError:
        return False
    return True


def _is_signers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(is_sha256(item) for item in value)
        and value == sorted(set(value))
    )


def _is_rendered(value: Any) -> bool:
    return isinstance(value, dict) and all(
        is_render_name(name) and is_sha256(digest) for name, digest in value.items()
    )


def is_reason(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_REASON


_ENTRY_FIELDS = {
    "origin": is_origin,
    "index": is_count,
    "kind": lambda value: value in _FIELDS_BY_KIND,
    "card_id": is_card_id,
    "version": is_version,
    "digest": is_sha256,
    "supersedes": lambda value: value is None or is_sha256(value),
    "signers": _is_signers,
    "rendered": _is_rendered,
    "time": _is_time,
    "reason": is_reason,
    "card": is_sha256,
    "reviewer": is_sha256,
    "assurance": lambda value: value in ("self", "third-party", "reproduced"),
    "reproduced": lambda value: isinstance(value, bool),
    "report": lambda value: value is None or is_sha256(value),
}
_FIELDS_BY_KIND = {
    "publish": {"origin", "index", "kind", "card_id", "version", "digest", "supersedes",
                "signers", "rendered", "time"},
    "revoke": {"origin", "index", "kind", "card_id", "version", "digest", "reason", "time"},
    "preregister": {"origin", "index", "kind", "card_id", "digest", "signers", "time"},
    "attest": {"origin", "index", "kind", "card_id", "version", "digest", "card", "reviewer", "assurance",
               "reproduced", "report", "time"},
}


def utc_time(now: datetime | None) -> str:
    """RFC 3339 UTC to the second; a naive ``now`` is taken to be UTC already."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")

# --- log entries (pure) -----------------------------------------------------------------------


def _bad_line(message: str, where: Location) -> AcardsError:
    return AcardsError("registry.bad-line", message, HINT_RESTORE, where)


def _checked_entry(entry: dict, where: Location = Location()) -> dict:
    """``entry`` if it has exactly its kind's fields, each valid; else registry.bad-line."""
    if not isinstance(entry, dict):
        raise _bad_line("a log entry must be a JSON object", where)
    kind = entry.get("kind")
    expected = _FIELDS_BY_KIND.get(kind) if isinstance(kind, str) else None
    if expected is None:
        raise _bad_line(f"kind must be one of {', '.join(sorted(_FIELDS_BY_KIND))}", where)
    if set(entry) != expected:
        raise _bad_line(
            f"a {entry['kind']} entry must have exactly the fields {', '.join(sorted(expected))}",
            where,
        )
    for name in sorted(expected):
        if not _ENTRY_FIELDS[name](entry[name]):
            text = repr(entry[name])
            raise _bad_line(f"field {name!r} has an invalid value {text[:60]}", where)
    return entry


def publish_entry(
    origin: str,
    index: int,
    card_id: str,
    version: int,
    digest: str,
    supersedes: str | None,
    signers: list[str],
    rendered: Mapping[str, str],
    timestamp: str,
) -> dict:
    """A checked publish entry."""
    return _checked_entry({
        "origin": origin, "index": index, "kind": "publish", "card_id": card_id,
        "version": version, "digest": digest, "supersedes": supersedes,
        "signers": list(signers), "rendered": dict(rendered), "time": timestamp,
    })


def revoke_entry(
    origin: str, index: int, card_id: str, version: int, digest: str, reason: str, timestamp: str
) -> dict:
    """A checked revocation entry."""
    return _checked_entry({
        "origin": origin, "index": index, "kind": "revoke", "card_id": card_id,
        "version": version, "digest": digest, "reason": reason, "time": timestamp,
    })


def preregister_entry(
    origin: str, index: int, card_id: str, digest: str, signers: list[str], timestamp: str
) -> dict:
    """A checked pre-registration entry: a signed analysis plan of card ``card_id``."""
    return _checked_entry({
        "origin": origin, "index": index, "kind": "preregister", "card_id": card_id,
        "digest": digest, "signers": list(signers), "time": timestamp,
    })


def attest_entry(
    origin: str, index: int, card_id: str, version: int, digest: str, card: str, reviewer: str, assurance: str,
    reproduced: bool, report: str | None, timestamp: str,
) -> dict:
    """A checked attestation entry: a reviewer's signed attestation of the published card ``card``."""
    return _checked_entry({
        "origin": origin, "index": index, "kind": "attest", "card_id": card_id, "version": version,
        "digest": digest, "card": card, "reviewer": reviewer, "assurance": assurance,
        "reproduced": reproduced, "report": report, "time": timestamp,
    })


def entry_line(entry: dict) -> bytes:
    """The log line for ``entry``: its RFC 8785 bytes, newline excluded (the leaf hashes these)."""
    return canonical_bytes(_checked_entry(entry))


def parse_entry(line: bytes, where: Location = Location()) -> dict:
    """One log line (without its newline) as an entry: strict JSON, RFC 8785 form, valid fields."""
    try:
        value, canonical = parse_canonical_json(line)
    except AcardsError as error:
        raise _bad_line(f"not strict JSON: {error.problems[0].message}", where) from None
    entry = _checked_entry(value, where)
    if not canonical:
        raise _bad_line("the line is not in RFC 8785 canonical form", where)
    return entry


def parse_entry_fields(line: bytes, where: Location) -> dict:
    """``parse_entry`` without the canonical-form check, for lines a signed root already covers."""
    try:
        value = parse_strict_json(line)
    except AcardsError as error:
        raise _bad_line(f"not strict JSON: {error.problems[0].message}", where) from None
    return _checked_entry(value, where)


def unknown_digest(digest: Any) -> AcardsError:
    return AcardsError(
        "registry.unknown-digest",
        f"no card with digest {str(digest)[:80]} is published in this registry",
        f"give the sha256 of a published card's payload (see {LOG_NAME})",
    )
