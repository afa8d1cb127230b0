"""The per-user secret that authenticates cache entries (output cache, digest cache, control adapters).

Every cached value is stored with an HMAC-SHA256 over what it is bound to (its key and its value),
made with a 32-byte secret kept OUTSIDE the cache folder: by default
``platformdirs.user_config_dir("acards")/cache-mac.key`` (``$ACARDS_CACHE_KEY`` names another file),
created 0600 on first use.  An entry whose MAC does not verify under this secret — forged, altered,
written by an older acards (no MAC) or by another user (another secret) — is never used: it is
ignored, counted, reported (``cache.entry-rejected``) and regenerated.  So a cache folder shared on
a cluster stays safe: whoever can write it can fill it, but not make this user trust what they wrote.

Rows carry a ``keyid`` (an HMAC of a fixed label, which reveals nothing of the secret) so that
several users can share one cache file, each reading only the rows made with their own secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import sys
from functools import lru_cache
from pathlib import Path

from acards.errors import AcardsError, Location, Problem

KEY_BYTES = 32


class CacheKey:
    """A loaded secret: ``mac(purpose, *parts)`` and ``verify(mac, purpose, *parts)``."""

    def __init__(self, secret: bytes):
        self._secret = secret
        self.id = hmac.new(secret, b"acards/cache-keyid/1", hashlib.sha256).digest()[:16]

    def __repr__(self) -> str:  # never the secret
        return f"CacheKey(id={self.id.hex()})"

    def mac(self, purpose: str, *parts: str | bytes | int | None) -> bytes:
        """HMAC-SHA256 of ``purpose`` and ``parts``, each length-prefixed (no two inputs collide)."""
        message = hmac.new(self._secret, digestmod=hashlib.sha256)
        for part in (purpose, *parts):
            data = part if isinstance(part, bytes) else b"\xff" if part is None else str(part).encode("utf-8")
            message.update(len(data).to_bytes(8, "big"))
            message.update(data)
        return message.digest()

    def verify(self, mac: bytes | None, purpose: str, *parts: str | bytes | int | None) -> bool:
        return isinstance(mac, (bytes, bytearray)) and hmac.compare_digest(bytes(mac), self.mac(purpose, *parts))


def _unusable(path: Path, why: str, hint: str) -> AcardsError:
    return AcardsError("cache.key-unusable", f"the cache key {path} {why}", hint, Location(file=str(path)))


def _create(path: Path) -> None:
    """Write a fresh secret to ``path`` (0600) unless one is there; atomic, so racing processes agree."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    staging = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}"
    handle = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(handle, (secrets.token_hex(KEY_BYTES) + "\n").encode("ascii"))
        os.fsync(handle)
    finally:
        os.close(handle)
    try:
        os.link(staging, path)  # fails if another process created it first: then theirs is the key
    except FileExistsError:
        pass
    finally:
        staging.unlink()


@lru_cache(maxsize=8)
def _load(path: Path) -> CacheKey:
    if not path.exists():
        try:
            _create(path)
        except OSError as error:
            raise _unusable(path, f"cannot be created: {error}",
                            "make its folder writable, or set ACARDS_CACHE_KEY to a file of your own") from None
    try:
        info = os.stat(path)
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise _unusable(path, f"cannot be read: {error}", "remove it (a new one is made; cached entries are then regenerated)") from None
    if os.name == "posix" and (info.st_mode & 0o077 or (hasattr(os, "getuid") and info.st_uid != os.getuid())):
        raise _unusable(path, f"is readable or writable by others (mode {stat.filemode(info.st_mode)})",
                        f"it must be yours and private: chmod 600 {path}")
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) != KEY_BYTES:
        raise _unusable(path, f"does not hold {KEY_BYTES} bytes in hex",
                        "remove it (a new one is made; cached entries are then regenerated)")
    return CacheKey(secret)


def cache_key(path: Path | None = None) -> CacheKey:
    """The secret in ``path`` (default: the settings' key file), created on first use."""
    if path is None:
        from acards.settings import current

        path = current().cache_key_path
    return _load(Path(path).absolute())


def rejected_warning(message: str, hint: str, location: Location | None = None) -> Problem:
    """The ``cache.entry-rejected`` warning (never fatal), written to stderr and returned for reports."""
    problem = Problem("cache.entry-rejected", message, hint, location or Location())
    print(f"warning: {problem}", file=sys.stderr)
    return problem
