"""The one path-safety rule: evidence paths are relative POSIX paths inside the card's folder; absolute
paths, `..`, backslashes, NUL, links and special files are refused before anything is opened."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from acards.errors import AcardsError, Location


def check_relative_path(text: object, location: Location | None = None) -> PurePosixPath:
    """The syntax rules for a path in a card: relative, POSIX, inside the card's folder.

    Refuses before any file-system access: empty paths, absolute paths (POSIX or drive letters),
    backslashes, NUL and other control characters, and any '.' or '..' component.
    """
    location = location or Location()
    hint = "write a POSIX path relative to the card's folder, e.g. evidence/records.jsonl"
    if not isinstance(text, str) or not text:
        raise AcardsError("path.empty", "the path is empty", hint, location)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise AcardsError("path.control-character", f"the path {text!r} holds a NUL or control character", hint, location)
    if "\\" in text:
        raise AcardsError("path.backslash", f"the path {text!r} holds a backslash", hint, location)
    if text.startswith("/") or (len(text) >= 2 and text[1] == ":" and text[0].isalpha()):
        raise AcardsError("path.absolute", f"the path {text!r} is absolute", hint, location)
    parts = text.split("/")
    if ".." in parts:
        raise AcardsError("path.escape", f"the path {text!r} climbs out with '..'", hint, location)
    if any(part in ("", ".") for part in parts):
        raise AcardsError("path.not-normal", f"the path {text!r} has empty or '.' components", hint, location)
    return PurePosixPath(text)


def resolve_inside(root: Path, relative: str, location: Location | None = None) -> Path:
    """The path ``relative`` under ``root``, refusing symlinks and special files on the way.

    Every component is checked with lstat, so neither a symlinked folder nor a symlinked file can
    lead outside ``root``.  Returns a path to an existing regular file or folder.
    """
    location = location or Location()
    current = root
    for part in check_relative_path(relative, location).parts:
        current = current / part
        try:
            info = os.lstat(current)
        except FileNotFoundError:
            raise AcardsError(
                "evidence.missing", f"{relative} does not exist (no {current})",
                "put the file where the card says, or fix the path in the card", location,
            ) from None
        except OSError as error:
            raise AcardsError("evidence.unreadable", f"{relative}: {error.strerror}", "check the file's permissions", location) from None
        _refuse_special(info, relative, location)
    return current


def _refuse_special(info: os.stat_result, relative: str, location: Location) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise AcardsError(
            "evidence.symlink", f"{relative} is or passes through a symbolic link",
            "copy the real file into the card's folder; links are refused so no path can lead outside it",
            location,
        )
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        raise AcardsError(
            "evidence.special-file", f"{relative} is not a regular file or folder",
            "evidence must be plain files (no FIFOs, devices or sockets)", location,
        )


def open_inside(root: Path, relative: str, location: Location | None = None):
    """Open a regular file under ``root`` for binary reading, never following a link."""
    path = resolve_inside(root, relative, location)
    if path.is_dir():
        raise AcardsError("evidence.not-a-file", f"{relative} is a folder", "point at a file here", location or Location())
    return _open_nofollow(path, relative)


def _open_nofollow(path: Path | str, label: str = ""):
    """Open for binary reading without following a final link and without blocking on a FIFO; a
    failure is a coded problem (evidence.symlink for a link, evidence.unreadable otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        location = Location(file=str(path))
        if error.errno == errno.ELOOP:
            raise AcardsError("evidence.symlink", f"{label or path} is a symbolic link",
                              "copy the real file into the card's folder", location) from None
        raise AcardsError("evidence.unreadable", f"{label or path}: {error.strerror or error}",
                          "check the file's permissions", location) from None
    return os.fdopen(fd, "rb", buffering=0)
