"""The per-user secret that authenticates cache entries (output cache, digest cache, control adapters).

Every cached value is stored with an HMAC-SHA256 over what it is bound to (its key and its value),
made with a 32-byte secret kept OUTSIDE the cache folder: by default
``platformdirs.user_config_dir("acards")/cache-mac.key`` (``$ACARDS_CACHE_KEY`` names another file),
created 0600 on first use.  An entry whose MAC does not verify under this secret — forged, altered,
written by an older acards (no MAC) or by another user (another secret) — is never used: it is
ignored, counted, reported (``cache.entry-rejected``, a warning the command prints) and regenerated.  So a cache folder shared on
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
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Iterator

from acards.errors import AcardsError, Location, Problem

KEY_BYTES = 32


def framed(*parts: str | bytes | int | None) -> bytes:
    """``parts`` as one byte string, each prefixed with its length (8 bytes, big-endian), so that no
    two lists of parts of the same types give the same bytes.  Text is UTF-8 (lone surrogates kept,
    never an error); None is the one byte 0xff."""
    chunks = []
    for part in parts:
        data = part if isinstance(part, bytes) else b"\xff" if part is None else str(part).encode("utf-8", "surrogatepass")
        chunks.append(len(data).to_bytes(8, "big"))
        chunks.append(data)
    return b"".join(chunks)


_INNER_PAD = bytes(x ^ 0x36 for x in range(256))  # RFC 2104's ipad and opad, as translation tables
_OUTER_PAD = bytes(x ^ 0x5C for x in range(256))


class CacheKey:
    """A loaded secret: ``mac(purpose, *parts)`` and ``verify(mac, purpose, *parts)``.

    The MAC is HMAC-SHA256 (RFC 2104, equal to ``hmac.new(secret, message, sha256)``: a test checks
    it), computed from the two keyed SHA-256 states, which are set up once and copied per message:
    lookups check 100,000s of cached rows a second this way."""

    def __init__(self, secret: bytes):
        padded = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
        self._inner = hashlib.sha256(padded.translate(_INNER_PAD))
        self._outer = hashlib.sha256(padded.translate(_OUTER_PAD))
        self.id = hmac.new(secret, b"acards/cache-keyid/1", hashlib.sha256).digest()[:16]

    def __repr__(self) -> str:  # never the secret
        return f"CacheKey(id={self.id.hex()})"

    def mac(self, purpose: str, *parts: str | bytes | int | None) -> bytes:
        """HMAC-SHA256 of ``purpose`` and ``parts``, :func:`framed` (no two inputs collide)."""
        return self.mac_framed(framed(purpose, *parts))

    def mac_framed(self, message: bytes) -> bytes:
        """HMAC-SHA256 of bytes that are already ``framed(purpose, *parts)``."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def macs_framed(self, messages: Iterable[bytes]) -> list[bytes]:
        """:meth:`mac_framed` of each message (for loops over many rows of one purpose)."""
        inner_copy, outer_copy, macs = self._inner.copy, self._outer.copy, []
        for message in messages:
            inner, outer = inner_copy(), outer_copy()
            inner.update(message)
            outer.update(inner.digest())
            macs.append(outer.digest())
        return macs

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


# Library code never prints: a warning is recorded for whoever collects them (the CLI, which prints
# each once through acards.present.text.warnings_text) and returned for results that carry it.
_collected: ContextVar[list[Problem] | None] = ContextVar("acards_warnings", default=None)


@contextmanager
def collected_warnings() -> Iterator[list[Problem]]:
    """Collect the warnings recorded inside (``cache.entry-rejected``): yields the list they are
    appended to.  Inside a collection already open, it is that one."""
    outer = _collected.get()
    if outer is not None:
        yield outer
        return
    found: list[Problem] = []
    token = _collected.set(found)
    try:
        yield found
    finally:
        _collected.reset(token)


def record_warning(problem: Problem) -> Problem:
    """Record ``problem`` (made here, or by a Ray worker and sent back) for the open collection, if any."""
    found = _collected.get()
    if found is not None:
        found.append(problem)
    return problem


def rejected_warning(message: str, hint: str, location: Location | None = None) -> Problem:
    """The ``cache.entry-rejected`` warning (never fatal): recorded (see :func:`collected_warnings`)
    and returned for reports."""
    return record_warning(Problem("cache.entry-rejected", message, hint, location or Location()))
