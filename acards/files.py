"""Files named on the command line: reading them safely (regular files only, bounded sizes) and
writing outputs so that a crash leaves either the old content or the new, never half of one; and
the one way acards switches its SQLite cache files to write-ahead logging."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from acards.errors import AcardsError, Location

MAX_KEY_BYTES = 64 * 1024  # a PEM Ed25519 key is a few hundred bytes
MAX_INPUT_BYTES = 64 * 1024 * 1024  # envelopes, reports, checkpoints

_READ = 64 * 1024


def read_input(path: str | os.PathLike, max_bytes: int = MAX_INPUT_BYTES, *, what: str = "file",
               missing: str = "usage.unreadable", unreadable: str = "usage.unreadable",
               too_large: str = "usage.too-large", folder: str = "usage.not-a-file") -> bytes:
    """The bytes of a regular file named on the command line, at most ``max_bytes`` of them.

    FIFOs, devices, sockets and folders are refused before anything is opened (a FIFO would block
    and /dev/zero never ends); the file is then opened non-blocking and fstat confirms it is the
    same regular file that was checked.  Links are followed: a command-line path is the user's own
    choice, unlike an evidence path, which must stay inside the card's folder.  The codes of the
    refusals can be chosen by the caller (``card.not-found`` for a card, ``key.unreadable`` for a key).
    """
    location = Location(file=str(path))
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise AcardsError(missing, f"{what} {path} does not exist", "check the path", location) from None
    except OSError as error:
        raise AcardsError(unreadable, f"cannot read {what} {path}: {error.strerror or error}",
                          "check the path and its permissions", location) from None
    if stat.S_ISDIR(info.st_mode):
        raise AcardsError(folder, f"{what} {path} is a folder", "give the path of the file itself", location)
    _require_regular(info, path, what, location)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise AcardsError(unreadable, f"cannot read {what} {path}: {error.strerror or error}",
                          "check the path and its permissions", location) from None
    try:
        opened = os.fstat(fd)
        _require_regular(opened, path, what, location)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            raise AcardsError(unreadable, f"{what} {path} changed while it was being opened", "try again", location)
        if opened.st_size > max_bytes:
            raise _too_large(too_large, path, what, max_bytes, location)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(_READ, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # the file grew after fstat
                raise _too_large(too_large, path, what, max_bytes, location)
    except OSError as error:
        raise AcardsError(unreadable, f"cannot read {what} {path}: {error.strerror or error}",
                          "check the path and its permissions", location) from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _require_regular(info: os.stat_result, path, what: str, location: Location) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise AcardsError("usage.not-a-file", f"{what} {path} is not a regular file (a FIFO, device or socket)",
                          "give the path of a plain file", location)


def _too_large(code: str, path, what: str, max_bytes: int, location: Location) -> AcardsError:
    return AcardsError(code, f"{what} {path} is larger than {max_bytes} bytes",
                       f"no {what} acards reads is that large: check that this is the right file", location)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, rename it over ``path``, and
    fsync the folder so the rename itself survives a crash."""
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _cannot_write(path, error: OSError) -> AcardsError:
    return AcardsError("usage.cannot-write", f"cannot write {path}: {error.strerror or error}",
                       "check that the folder exists, is writable and has free space", Location(file=str(path)))


def check_writable(path: str | os.PathLike) -> None:
    """Refuse early (before a long computation) an output whose folder is missing or read-only, or
    that names a folder: creates and removes a temporary file beside ``path`` (beside the file a
    symlink names), or, for a device or pipe, checks that it may be written."""
    path = Path(path)
    if path.is_dir():
        raise AcardsError("usage.cannot-write", f"cannot write {path}: it is a folder", "name a file", Location(file=str(path)))
    if _stream(path):
        if not os.access(path, os.W_OK):
            raise _cannot_write(path, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
        return
    destination = _destination(path)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    except OSError as error:
        raise _cannot_write(path, error) from None
    os.close(descriptor)
    os.unlink(temporary)


def write_output(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """:func:`atomic_write` for an output named on the command line: a failure (missing or read-only
    folder, full disk) is a coded ``usage.cannot-write`` with the path, and leaves no partial file.
    A device or a pipe (``--report /dev/stdout``, ``/dev/null``, ``>(jq .)``) is written into as
    it is; a symlink to a file keeps pointing at the file, which is replaced."""
    path = Path(path)
    try:
        if _stream(path):  # written into, never replaced: renaming over /dev/null would replace the device
            with open(path, "wb") as handle:
                handle.write(data)
        else:
            atomic_write(_destination(path), data, mode)
    except OSError as error:
        raise _cannot_write(path, error) from None


def _destination(path: Path) -> Path:
    """The path an output replaces: through a symlink, the file it names (the link is kept)."""
    return path.resolve() if path.is_symlink() else path


def _stream(path: Path) -> bool:
    """Whether ``path`` names something other than a regular file or a folder: a device such as
    /dev/null or /dev/stdout, a pipe, a shell's process substitution (following symlinks)."""
    try:
        kind = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(kind) or stat.S_ISDIR(kind))


def enable_wal(db, timeout_s: float) -> None:
    """Switch a SQLite connection to write-ahead logging.  While another connection is creating the
    same file, SQLite answers this pragma "database is locked" at once, without waiting in its busy
    handler (seen in 23 of 200 three-way races), so it is retried here for up to ``timeout_s``."""
    import sqlite3
    import time

    deadline, delay = time.monotonic() + timeout_s, 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
