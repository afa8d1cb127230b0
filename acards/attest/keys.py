"""Ed25519 keys: new key pairs (mode 0600), loading private and public keys, key ids.

An encrypted private key is a JSON file (``ENCRYPTED_FORMAT``) that records how it was sealed::

    {"format": "acards-encrypted-private-key/1", "keyid": <hex>,
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": <base64>},
     "cipher": {"name": "chacha20-poly1305", "nonce": <base64>}, "ciphertext": <base64>}

The passphrase goes through scrypt (memory-hard: 128 MiB and about a second at the default cost,
against PKCS#8's PBKDF2 at 2,048 iterations that `cryptography`'s BestAvailableEncryption writes);
the raw 32-byte key is sealed with ChaCha20-Poly1305 under the derived key, with every other field
as associated data, so a changed parameter fails like a wrong passphrase. Keys written before this
format (encrypted PKCS#8 PEM) still load; ``reencrypt_key`` rewrites one in the new format.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location

ENCRYPTED_FORMAT = "acards-encrypted-private-key/1"
SCRYPT_N = 2**17  # the default cost; new_key takes a lower one only when a caller asks (tests)
SCRYPT_R = 8
SCRYPT_P = 1
_MAX_SCRYPT_N = 2**20  # a key file cannot make loading it take more than 1 GiB and a few seconds
_CIPHER = "chacha20-poly1305"


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


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(passphrase: bytes, kdf: dict) -> bytes:
    salt = base64.b64decode(kdf["salt"], validate=True)
    return Scrypt(salt=salt, length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(passphrase)


def _check_scrypt_n(scrypt_n: Any) -> None:
    if isinstance(scrypt_n, bool) or not isinstance(scrypt_n, int) or not 2 <= scrypt_n <= _MAX_SCRYPT_N \
            or scrypt_n & (scrypt_n - 1):
        raise AcardsError("key.unsupported", f"scrypt cost n must be a power of two from 2 to 2^20, got {scrypt_n!r}",
                          f"keep the default ({SCRYPT_N})")


def encrypt_private_key(private_key: Ed25519PrivateKey, passphrase: bytes, *, scrypt_n: int = SCRYPT_N) -> bytes:
    """The key file bytes of ``private_key`` sealed under ``passphrase`` (see the module's docstring).

    ``scrypt_n`` below the default is for tests only: the file records it, and it is as weak as it is
    fast."""
    _check_passphrase(passphrase or b"", Location())  # None and b"" are refused alike
    _check_scrypt_n(scrypt_n)
    header = {
        "format": ENCRYPTED_FORMAT,
        "keyid": keyid(private_key.public_key()),
        "kdf": {"name": "scrypt", "n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": _b64(os.urandom(16))},
        "cipher": {"name": _CIPHER, "nonce": _b64(os.urandom(12))},
    }
    raw = private_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                    serialization.NoEncryption())
    nonce = base64.b64decode(header["cipher"]["nonce"])
    sealed = ChaCha20Poly1305(_scrypt(passphrase, header["kdf"])).encrypt(nonce, raw, canonical_bytes(header))
    return canonical_bytes({**header, "ciphertext": _b64(sealed)}) + b"\n"


def _encrypted_fields(value: Any) -> dict:
    """The fields of an ENCRYPTED_FORMAT file, once their shapes and bounds hold."""
    shapes = {"format": str, "keyid": str, "kdf": dict, "cipher": dict, "ciphertext": str}
    if not isinstance(value, dict) or set(value) != set(shapes) or value["format"] != ENCRYPTED_FORMAT \
            or not all(isinstance(value[name], kind) for name, kind in shapes.items()):
        raise ValueError(f"not an {ENCRYPTED_FORMAT} file")
    kdf, cipher = value["kdf"], value["cipher"]
    if set(kdf) != {"name", "n", "r", "p", "salt"} or kdf["name"] != "scrypt":
        raise ValueError("the key derivation must be scrypt with n, r, p and salt")
    _check_scrypt_n(kdf["n"])
    for name, top in (("r", 32), ("p", 16)):
        if isinstance(kdf[name], bool) or not isinstance(kdf[name], int) or not 1 <= kdf[name] <= top:
            raise ValueError(f"scrypt {name} must be an integer from 1 to {top}")
    if 128 * kdf["n"] * kdf["r"] > 2**30:
        raise ValueError("scrypt parameters that need over 1 GiB of memory")
    if set(cipher) != {"name", "nonce"} or cipher["name"] != _CIPHER:
        raise ValueError(f"the cipher must be {_CIPHER} with a nonce")
    for text in (kdf["salt"], cipher["nonce"], value["ciphertext"]):
        if not isinstance(text, str):
            raise ValueError("salt, nonce and ciphertext must be base64 strings")
        base64.b64decode(text, validate=True)
    if len(base64.b64decode(cipher["nonce"])) != 12:
        raise ValueError("the nonce must be 12 bytes")
    return value


def _decrypt_private_key(data: bytes, passphrase: bytes, path: str | os.PathLike, where: Location) -> Ed25519PrivateKey:
    try:
        value = _encrypted_fields(parse_strict_json(data, str(path)))
    except (AcardsError, ValueError, binascii.Error) as error:
        detail = error.problems[0].message if isinstance(error, AcardsError) else str(error)
        raise AcardsError("key.malformed", f"{path} is not a key file acards can read: {detail}",
                          "give the private key file written by `acards key new`", where) from None
    header = {name: item for name, item in value.items() if name != "ciphertext"}
    try:
        raw = ChaCha20Poly1305(_scrypt(passphrase, value["kdf"])).decrypt(
            base64.b64decode(value["cipher"]["nonce"]), base64.b64decode(value["ciphertext"]), canonical_bytes(header))
        private_key = Ed25519PrivateKey.from_private_bytes(raw)
    except (InvalidTag, ValueError):
        raise AcardsError("key.bad-passphrase", f"cannot decrypt {path}: wrong passphrase (or a damaged key file)",
                          "check the passphrase (ACARDS_KEY_PASSPHRASE)", where) from None
    if keyid(private_key.public_key()) != value["keyid"]:
        raise AcardsError("key.keyid-mismatch", f"{path} names key {value['keyid']} but holds another",
                          "the key file was altered; restore it from a backup", where)
    return private_key


def new_key(path: str | os.PathLike, passphrase: bytes | None = None, *, scrypt_n: int = SCRYPT_N) -> str:
    """Create an Ed25519 key at ``path`` (mode 0600) and ``path.pub``; return its keyid.

    With a passphrase the private key is sealed (``encrypt_private_key``; ``scrypt_n`` lowers the
    cost for tests only), without one it is plain PKCS#8 PEM. Existing files are never overwritten.
    """
    private_path = Path(path)
    public_path = Path(f"{private_path}.pub")
    _check_passphrase(passphrase, Location(file=str(private_path)))
    _check_scrypt_n(scrypt_n)
    for existing in (private_path, public_path):
        if os.path.lexists(existing):
            raise AcardsError(
                "key.exists",
                f"{existing} already exists; refusing to overwrite it",
                "choose another path, or move the old key away first",
                Location(file=str(existing)),
            )
    private_key = Ed25519PrivateKey.generate()
    private_pem = (
        encrypt_private_key(private_key, passphrase, scrypt_n=scrypt_n)
        if passphrase
        else private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
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


def is_sealed(data: bytes) -> bool:
    """Whether key file bytes are in ENCRYPTED_FORMAT (a JSON object), not PEM."""
    return data.lstrip()[:1] == b"{"


def load_private_key(path: str | os.PathLike, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 private key written by ``new_key``: sealed (ENCRYPTED_FORMAT), plain PKCS#8
    PEM, or encrypted PKCS#8 PEM as earlier versions wrote it."""
    where = Location(file=str(path))
    _check_passphrase(passphrase, where)
    data = _read_key_file(path)
    if is_sealed(data):
        if passphrase is None:
            raise AcardsError("key.bad-passphrase", f"{path} is encrypted and no passphrase was given",
                              "set ACARDS_KEY_PASSPHRASE or enter the passphrase when asked", where)
        return _decrypt_private_key(data, passphrase, path, where)
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


def reencrypt_key(path: str | os.PathLike, passphrase: bytes, *, scrypt_n: int = SCRYPT_N) -> bool:
    """Rewrite the encrypted key at ``path`` in ENCRYPTED_FORMAT at the default cost (same passphrase,
    same key, mode 0600, replaced in one rename); False when it already is at that cost or more."""
    from acards.files import atomic_write

    where = Location(file=str(path))
    _check_passphrase(passphrase, where)
    data = _read_key_file(path)
    if b"-----BEGIN PRIVATE KEY-----" in data:
        raise AcardsError("key.bad-passphrase", f"{path} is not encrypted", "give an encrypted key", where)
    private_key = load_private_key(path, passphrase)
    if is_sealed(data) and parse_strict_json(data)["kdf"]["n"] >= scrypt_n:
        return False
    try:
        atomic_write(Path(path), encrypt_private_key(private_key, passphrase, scrypt_n=scrypt_n), mode=0o600)
    except OSError as error:
        raise AcardsError("key.unwritable", f"cannot rewrite {path}: {error.strerror or error}",
                          "check that the folder is writable", where) from None
    return True


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
