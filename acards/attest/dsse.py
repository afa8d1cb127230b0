"""DSSE envelopes: PAE, signing, co-signing and verifying against trusted keys before anything is parsed."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from acards.attest.keys import keyid
from acards.canonical import parse_strict_json
from acards.errors import AcardsError, Location

PAYLOAD_TYPE = "application/vnd.in-toto+json"

_ENVELOPE_FIELDS = {"payload", "payloadType", "signatures"}

_SIGNATURE_FIELDS = {"keyid", "sig"}


def _brief(value: Any) -> str:
    """repr() cut short: untrusted input ends up in messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _brief_list(values: set[str]) -> str:
    return ", ".join(_brief(value) for value in sorted(values)[:5]) + (
        f" and {len(values) - 5} more" if len(values) > 5 else ""
    )


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    bad_type = AcardsError(
        "envelope.malformed",
        "payloadType must be a string of Unicode characters",
        "give a media type such as application/vnd.in-toto+json",
    )
    if not isinstance(payload_type, str):
        raise bad_type
    try:
        type_bytes = payload_type.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        raise bad_type from None
    if not isinstance(payload, (bytes, bytearray)):
        raise AcardsError(
            "envelope.malformed",
            f"payload must be bytes, got {type(payload).__name__}",
            "sign the serialized payload bytes",
        )
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), bytes(payload))


def _malformed(message: str, pointer: str = "") -> AcardsError:
    return AcardsError(
        "envelope.malformed",
        message,
        "give a DSSE envelope as written by `acards sign`",
        Location(pointer=pointer),
    )


def _strict_b64decode(text: Any, pointer: str) -> bytes:
    """Standard base64 with padding, in its one canonical spelling (no re-encodable variants)."""
    if not isinstance(text, str):
        raise _malformed("expected a base64 string", pointer)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("not valid standard base64", pointer) from None
    # Non-zero padding bits decode too; re-encoding rules out a second spelling of the same bytes.
    if base64.b64encode(raw).decode("ascii") != text:
        raise _malformed("base64 is not in canonical form", pointer)
    return raw


@dataclass(frozen=True)
class _ParsedEnvelope:
    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature) in envelope order


def _parse_envelope(envelope: Any) -> _ParsedEnvelope:
    if not isinstance(envelope, dict):
        raise _malformed("an envelope must be a JSON object")
    unknown = set(envelope) - _ENVELOPE_FIELDS
    if unknown:
        raise _malformed(f"unknown envelope fields: {_brief_list(unknown)}")
    missing = _ENVELOPE_FIELDS - set(envelope)
    if missing:
        raise _malformed(f"the envelope has no {', '.join(sorted(missing))}")
    payload_type = envelope["payloadType"]
    if not isinstance(payload_type, str):
        raise _malformed("payloadType must be a string", "/payloadType")
    payload = _strict_b64decode(envelope["payload"], "/payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise _malformed("signatures must be a non-empty list", "/signatures")
    parsed = []
    for index, entry in enumerate(signatures):
        pointer = f"/signatures/{index}"
        if not isinstance(entry, dict):
            raise _malformed("a signature must be an object", pointer)
        if set(entry) != _SIGNATURE_FIELDS:
            raise _malformed("a signature must have exactly 'keyid' and 'sig'", pointer)
        if not isinstance(entry["keyid"], str):
            raise _malformed("keyid must be a string", f"{pointer}/keyid")
        parsed.append((entry["keyid"], _strict_b64decode(entry["sig"], f"{pointer}/sig")))
    return _ParsedEnvelope(payload_type, payload, tuple(parsed))


def _require_private_key(private_key: Any) -> None:
    if not isinstance(private_key, Ed25519PrivateKey):
        raise AcardsError(
            "key.unsupported",
            f"expected an Ed25519 private key, got {type(private_key).__name__}",
            "load the key with load_private_key",
        )


def _signature_entry(private_key: Ed25519PrivateKey, payload_type: str, payload: bytes) -> dict:
    signature = private_key.sign(pae(payload_type, payload))
    return {
        "keyid": keyid(private_key.public_key()),
        "sig": base64.b64encode(signature).decode("ascii"),
    }


def sign_envelope(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> dict:
    """A DSSE envelope for ``payload`` with one Ed25519 signature."""
    _require_private_key(private_key)
    signature = _signature_entry(private_key, payload_type, payload)  # validates the arguments
    return {
        "payload": base64.b64encode(bytes(payload)).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [signature],
    }


def _verify_every_signature(parsed: _ParsedEnvelope, trusted_keys: Mapping[str, Ed25519PublicKey]) -> None:
    """Each signature entry, repeated keyids included, verifies under a trusted key: what a co-signer
    countersigns must hold as a whole (verify_envelope counts valid signers, and so lets a bad
    signature by a key that also signed validly pass)."""
    _check_trusted_keys(trusted_keys)
    message = pae(parsed.payload_type, parsed.payload)
    for signer, signature in parsed.signatures:
        public_key = trusted_keys.get(signer)
        if public_key is None:
            raise AcardsError(
                "envelope.unknown-keyid",
                f"signed by a key that is not trusted: {_brief(signer)}; a co-signer vouches for every signature",
                "give the public key of each signer already on the envelope (--trusted-key)",
            )
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            raise AcardsError(
                "envelope.bad-signature",
                f"the signature by {_brief(signer)} does not match the payload",
                "the envelope was altered or signed with another key; do not co-sign it",
            ) from None


def add_signature(envelope: dict, private_key: Ed25519PrivateKey, trusted_keys: Mapping[str, Ed25519PublicKey]) -> dict:
    """A copy of ``envelope`` with a co-signature by ``private_key`` appended.

    Every signature already on the envelope must verify under ``trusted_keys`` first: a co-signer
    vouches for what the others signed, so a forged or unknown signature is never countersigned.
    Check the payload itself (open_statement) before co-signing it.
    """
    _require_private_key(private_key)
    parsed = _parse_envelope(envelope)
    new_keyid = keyid(private_key.public_key())
    existing = {signer for signer, _ in parsed.signatures}
    if new_keyid in existing:
        raise AcardsError(
            "envelope.duplicate-signature",
            f"key {new_keyid} has already signed this envelope",
            "co-sign with a different key",
        )
    _verify_every_signature(parsed, trusted_keys)
    signature = _signature_entry(private_key, parsed.payload_type, parsed.payload)
    return {
        "payload": envelope["payload"],
        "payloadType": parsed.payload_type,
        "signatures": [dict(entry) for entry in envelope["signatures"]] + [signature],
    }


@dataclass(frozen=True)
class VerifiedEnvelope:
    """The outcome of ``verify_envelope``; unpacks as (payload_type, payload, keyids)."""

    payload_type: str
    payload: bytes  # exactly the bytes the signatures cover
    keyids: tuple[str, ...]  # trusted keys with a valid signature, sorted
    unknown_keyids: tuple[str, ...]  # signers not in the trusted set (not counted)
    invalid_keyids: tuple[str, ...]  # trusted keys whose signature did not verify

    def __iter__(self) -> Iterator[Any]:
        return iter((self.payload_type, self.payload, self.keyids))


def _check_trusted_keys(trusted_keys: Mapping[str, Ed25519PublicKey]) -> None:
    if not isinstance(trusted_keys, Mapping):
        raise AcardsError(
            "key.unsupported",
            "trusted keys must be a mapping of keyid to public key",
            "load each key with load_public_key and index it by keyid()",
        )
    for claimed, public_key in trusted_keys.items():
        # A key filed under the wrong id would let its signatures count for another signer.
        if keyid(public_key) != claimed:
            raise AcardsError(
                "key.keyid-mismatch",
                f"trusted key filed as {_brief(claimed)} has keyid {keyid(public_key)}",
                "index trusted keys by keyid(public_key)",
            )


def verify_envelope(
    envelope_bytes: bytes,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    threshold: int = 1,
) -> VerifiedEnvelope:
    """Check a DSSE envelope's signatures; return its payload if ``threshold`` trusted keys signed.

    The payload is not parsed here: pass the result to ``open_statement``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise AcardsError(
            "envelope.bad-threshold",
            f"threshold must be a positive integer, got {_brief(threshold)}",
            "ask for at least one signature",
        )
    _check_trusted_keys(trusted_keys)
    parsed = _parse_envelope(parse_strict_json(envelope_bytes))
    message = pae(parsed.payload_type, parsed.payload)

    valid: set[str] = set()
    invalid: set[str] = set()
    unknown: set[str] = set()
    for signer, signature in parsed.signatures:
        public_key = trusted_keys.get(signer)
        if public_key is None:
            unknown.add(signer)
            continue
        try:
            public_key.verify(signature, message)
        except InvalidSignature:
            invalid.add(signer)
        else:
            valid.add(signer)  # a set: repeated signatures by one key count once
    invalid -= valid

    if len(valid) < threshold:
        have = f"{len(valid)} valid signature(s) from trusted keys, {threshold} needed"
        if invalid:
            raise AcardsError(
                "envelope.bad-signature",
                f"signature by {_brief_list(invalid)} does not match the payload ({have})",
                "the envelope was altered or signed with another key; do not trust it",
            )
        if unknown:
            raise AcardsError(
                "envelope.unknown-keyid",
                f"signed by keys that are not trusted: {_brief_list(unknown)} ({have})",
                "add the signer's public key to the trusted keys if you trust it",
            )
        raise AcardsError(
            "envelope.too-few-signatures",
            have,
            "collect more co-signatures from trusted keys, or lower the threshold",
        )
    return VerifiedEnvelope(
        parsed.payload_type,
        parsed.payload,
        tuple(sorted(valid)),
        tuple(sorted(unknown)),
        tuple(sorted(invalid)),
    )
