"""Checkpoints (pure): the registry key's signature over the log's size and Merkle root.

A checkpoint file is the RFC 8785 bytes of a DSSE envelope (``CHECKPOINT_TYPE``, signed by the
registry key) over the RFC 8785 body {"origin", "size", "root"}; root is the RFC 6962 root (hex)
of the leaf hashes of the first ``size`` log lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards.attest import dsse
from acards.attest.keys import keyid
from acards.canonical import canonical_bytes, parse_canonical_json
from acards.errors import AcardsError, Location
from acards.registry.entries import HINT_RESTORE, is_count, is_origin, is_sha256
from acards.registry.layout import checkpoint_name

CHECKPOINT_TYPE = "application/vnd.acards.checkpoint+json"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint body, once read (and, from ``open_checkpoint``, verified)."""

    origin: str
    size: int
    root: bytes


def bad_checkpoint(message: str, where: Location = Location()) -> AcardsError:
    return AcardsError(
        "registry.bad-checkpoint",
        message,
        "the checkpoint was altered, or signed by another key; " + HINT_RESTORE,
        where,
    )


def checkpoint_body(origin: str, size: int, root: bytes) -> bytes:
    """The RFC 8785 bytes the registry key signs for a log of ``size`` entries with ``root``."""
    return canonical_bytes({"origin": origin, "size": size, "root": bytes(root).hex()})


def sign_checkpoint(origin: str, size: int, root: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The checkpoint file: the RFC 8785 bytes of a DSSE envelope over ``checkpoint_body``."""
    body = checkpoint_body(origin, size, root)
    return canonical_bytes(dsse.sign_envelope(CHECKPOINT_TYPE, body, private_key))


def parse_checkpoint_body(payload: bytes, where: Location = Location()) -> Checkpoint:
    """A checkpoint body: RFC 8785 {"origin", "size", "root"}; no signature is checked here."""
    try:
        value, canonical = parse_canonical_json(payload)
    except AcardsError as error:
        message = f"body is not strict JSON: {error.problems[0].message}"
        raise bad_checkpoint(message, where) from None
    if not canonical:
        raise bad_checkpoint("body is not in RFC 8785 canonical form", where)
    if not isinstance(value, dict) or set(value) != {"origin", "size", "root"}:
        raise bad_checkpoint("body must have exactly origin, size and root", where)
    if not is_origin(value["origin"]) or not is_count(value["size"]):
        raise bad_checkpoint("origin or size is invalid", where)
    if not is_sha256(value["root"]):
        raise bad_checkpoint("root must be 64 lowercase hex digits", where)
    return Checkpoint(value["origin"], value["size"], bytes.fromhex(value["root"]))


def open_checkpoint(
    envelope_bytes: bytes, registry_key: Ed25519PublicKey, where: Location = Location()
) -> Checkpoint:
    """The checkpoint in a DSSE envelope, once the registry key's signature over it verifies."""
    try:
        trusted = {keyid(registry_key): registry_key}
        verified = dsse.verify_envelope(envelope_bytes, trusted)
    except AcardsError as error:
        first = error.problems[0]
        raise bad_checkpoint(f"{first.code}: {first.message}", where) from None
    if verified.payload_type != CHECKPOINT_TYPE:
        raise bad_checkpoint(f"payload type is not {CHECKPOINT_TYPE}", where)
    return parse_checkpoint_body(verified.payload, where)


def check_checkpoint_root(
    data: bytes, public_key: Ed25519PublicKey, origin: str, size: int, expected_root: bytes
) -> None:
    """The checkpoint file for ``size`` must be signed by ``public_key`` over ``expected_root``."""
    where = Location(file=checkpoint_name(size))
    checkpoint = open_checkpoint(data, public_key, where)
    if (checkpoint.origin, checkpoint.size, checkpoint.root) != (origin, size, expected_root):
        raise AcardsError(
            "registry.root-mismatch",
            f"the log's first {size} entries do not match the signed checkpoint for size {size}",
            HINT_RESTORE + "; run `acards registry verify` to see what changed",
            where,
        )
