"""Ed25519 keys: new key pairs (encrypted PKCS#8, mode 0600), loading private and public keys, key ids."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from acards.errors import AcardsError, Location


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
    """A key file: a regular file of at most 64 KiB (a FIFO or /dev/zero is refused, not read)."""
    from acards.files import MAX_KEY_BYTES, read_input

    return read_input(path, MAX_KEY_BYTES, what="key file", missing="key.unreadable", unreadable="key.unreadable",
                      folder="key.unreadable")


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
