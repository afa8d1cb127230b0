"""Ed25519 keys, DSSE envelopes and in-toto Statements (SPEC §9).

A signed card is a DSSE envelope whose payload is the RFC 8785 bytes of an in-toto Statement v1.
Verification goes in a fixed order so that nothing unauthenticated is ever interpreted: the
envelope is parsed strictly, signatures are checked over the PAE of the exact payload bytes, and
only the verified bytes are handed on (to ``open_statement``). Passphrases are passed in as bytes;
where they come from (ACARDS_KEY_PASSPHRASE, a prompt) is the CLI's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_bytes, parse_strict_json
from .errors import AcardsError, Location

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://acards.dev/AcceptanceCard/v1"

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ENVELOPE_FIELDS = {"payload", "payloadType", "signatures"}
_SIGNATURE_FIELDS = {"keyid", "sig"}
_STATEMENT_FIELDS = {"_type", "subject", "predicateType", "predicate"}
_SUBJECT_FIELDS = {"name", "digest"}


def _brief(value: Any) -> str:
    """repr() cut short: untrusted input ends up in messages."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _brief_list(values: set[str]) -> str:
    return ", ".join(_brief(value) for value in sorted(values)[:5]) + (
        f" and {len(values) - 5} more" if len(values) > 5 else ""
    )


# --- keys -------------------------------------------------------------------------------------


def keyid(public_key: Ed25519PublicKey) -> str:
    """The key's id: sha256 hex of its SubjectPublicKeyInfo DER."""
    if not isinstance(public_key, Ed25519PublicKey):
        raise AcardsError(
            "key.unsupported",
            f"expected an Ed25519 public key, got {type(public_key).__name__}",
            "acards signs with Ed25519 keys only; create one with `acards key new`",
        )
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _check_passphrase(passphrase: bytes | None, where: Location) -> None:
    if passphrase is None:
        return
    if not isinstance(passphrase, bytes) or not passphrase:
        raise AcardsError(
            "key.bad-passphrase",
            "a passphrase must be non-empty bytes",
            "give a non-empty passphrase, or none for an unencrypted key",
            where,
        )


def _create_exclusive(path: Path, data: bytes, mode: int) -> None:
    """Write a new file that must not exist yet; O_EXCL makes the existence check atomic."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # os.open's mode is filtered by the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)  # never leave a half-written key behind
        raise
    os.close(fd)


def new_key(path: str | os.PathLike, passphrase: bytes | None = None) -> str:
    """Create an Ed25519 key at ``path`` (PKCS#8 PEM, mode 0600) and ``path.pub``; return its keyid.

    The private key is encrypted when a passphrase is given. Existing files are never overwritten.
    """
    private_path = Path(path)
    public_path = Path(f"{private_path}.pub")
    _check_passphrase(passphrase, Location(file=str(private_path)))
    for existing in (private_path, public_path):
        if os.path.lexists(existing):
            raise AcardsError(
                "key.exists",
                f"{existing} already exists; refusing to overwrite it",
                "choose another path, or move the old key away first",
                Location(file=str(existing)),
            )
    private_key = Ed25519PrivateKey.generate()
    encryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    current = private_path
    try:
        _create_exclusive(private_path, private_pem, 0o600)
        current = public_path
        try:
            _create_exclusive(public_path, public_pem, 0o644)
        except BaseException:
            private_path.unlink(missing_ok=True)  # a key without its .pub is half made
            raise
    except FileExistsError:
        raise AcardsError(
            "key.exists",
            f"{current} already exists; refusing to overwrite it",
            "choose another path, or move the old key away first",
            Location(file=str(current)),
        ) from None
    except OSError as error:
        raise AcardsError(
            "key.unwritable",
            f"cannot create {current}: {error.strerror or error}",
            "check that the folder exists and is writable",
            Location(file=str(current)),
        ) from None
    return keyid(private_key.public_key())


def _read_key_file(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise AcardsError(
            "key.unreadable",
            f"cannot read key file {path}: {error.strerror or error}",
            "check the path and its permissions",
            Location(file=str(path)),
        ) from None


def load_private_key(path: str | os.PathLike, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by ``new_key`` (PKCS#8 PEM, possibly encrypted)."""
    where = Location(file=str(path))
    _check_passphrase(passphrase, where)
    data = _read_key_file(path)
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in data
    if encrypted and passphrase is None:
        raise AcardsError(
            "key.bad-passphrase",
            f"{path} is encrypted and no passphrase was given",
            "set ACARDS_KEY_PASSPHRASE or enter the passphrase when asked",
            where,
        )
    if not encrypted and passphrase is not None and b"-----BEGIN PRIVATE KEY-----" in data:
        raise AcardsError(
            "key.bad-passphrase",
            f"{path} is not encrypted, but a passphrase was given",
            "unset ACARDS_KEY_PASSPHRASE for this key, or re-create it with a passphrase",
            where,
        )
    try:
        private_key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as error:
        if encrypted:  # cryptography cannot tell a wrong passphrase from a damaged key
            raise AcardsError(
                "key.bad-passphrase",
                f"cannot decrypt {path}: wrong passphrase (or a damaged key file)",
                "check the passphrase (ACARDS_KEY_PASSPHRASE)",
                where,
            ) from None
        raise AcardsError(
            "key.malformed",
            f"{path} is not a PEM private key: {error}",
            "give the private key file written by `acards key new`",
            where,
        ) from None
    except UnsupportedAlgorithm as error:
        raise AcardsError(
            "key.unsupported", f"{path}: {error}", "use an Ed25519 key", where
        ) from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise AcardsError(
            "key.unsupported",
            f"{path} holds a {type(private_key).__name__}, not an Ed25519 key",
            "acards signs with Ed25519 keys only; create one with `acards key new`",
            where,
        )
    return private_key


def load_public_key(path: str | os.PathLike) -> Ed25519PublicKey:
    """Read an Ed25519 public key (SubjectPublicKeyInfo PEM, as in ``PATH.pub``)."""
    where = Location(file=str(path))
    data = _read_key_file(path)
    try:
        public_key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise AcardsError(
            "key.malformed",
            f"{path} is not a PEM public key: {error}",
            "give the .pub file written by `acards key new`",
            where,
        ) from None
    except UnsupportedAlgorithm as error:
        raise AcardsError(
            "key.unsupported", f"{path}: {error}", "use an Ed25519 key", where
        ) from None
    if not isinstance(public_key, Ed25519PublicKey):
        raise AcardsError(
            "key.unsupported",
            f"{path} holds a {type(public_key).__name__}, not an Ed25519 key",
            "acards verifies Ed25519 signatures only",
            where,
        )
    return public_key


# --- DSSE -------------------------------------------------------------------------------------


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


def add_signature(envelope: dict, private_key: Ed25519PrivateKey) -> dict:
    """A copy of ``envelope`` with a co-signature by ``private_key`` appended.

    Only signs; check the payload (verify_envelope + open_statement) before co-signing it.
    """
    _require_private_key(private_key)
    parsed = _parse_envelope(envelope)
    new_keyid = keyid(private_key.public_key())
    if any(existing == new_keyid for existing, _ in parsed.signatures):
        raise AcardsError(
            "envelope.duplicate-signature",
            f"key {new_keyid} has already signed this envelope",
            "co-sign with a different key",
        )
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


# --- in-toto Statement v1 ----------------------------------------------------------------------


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


def open_statement(payload_type: str, payload: bytes) -> dict:
    """The acards Statement in a verified payload, after checking type, canonical form and shape."""
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
    if value["predicateType"] != PREDICATE_TYPE:
        raise AcardsError(
            "envelope.unknown-predicate-type",
            f"predicateType {_brief(value['predicateType'])} is not {PREDICATE_TYPE}",
            "this statement is not an acards card",
            Location(pointer="/predicateType"),
        )
    _check_subjects(value["subject"])
    if not isinstance(value["predicate"], dict):
        raise _bad_statement("predicate must be an object", "/predicate")
    return value
