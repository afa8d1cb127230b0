"""Digests of evidence: sha256 of files, RFC 8785 manifests of folders, the digest cache, and checking a
card's pointers against them (SPEC §5)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import rfc8785

from acards.errors import AcardsError, Location, Problem
from acards.evidence.paths import _open_nofollow, _refuse_special, resolve_inside
from acards.files import enable_wal
from acards.settings import usable_cache_dir

CHUNK = 4 * 1024 * 1024  # large reads keep sha256 at disk speed; memory stays at one chunk

PROGRESS_MIN_BYTES = 256 * 1024 * 1024


def sha256_stream(handle, size: int | None = None, label: str = "") -> str:
    """sha256 of an open binary file, in bounded memory, with a progress bar on a terminal."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    show = size is not None and size >= PROGRESS_MIN_BYTES and sys.stderr.isatty()
    if show:
        import click  # only when a bar is shown

        bar = click.progressbar(length=size, label=f"hashing {label}", file=sys.stderr)
    else:
        bar = None
    try:
        while True:
            count = handle.readinto(view)
            if not count:
                break
            digest.update(view[:count])
            if bar is not None:
                bar.update(count)
    finally:
        if bar is not None:
            bar.render_finish()
    return digest.hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str

    def as_json(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def manifest_bytes(entries: list[FileEntry]) -> bytes:
    """RFC 8785 bytes of a folder manifest (entries sorted by POSIX path)."""
    ordered = sorted(entries, key=lambda entry: entry.path)
    return rfc8785.dumps({"files": [entry.as_json() for entry in ordered]})


DIGEST_PURPOSE = "acards/digest-cache/1"


class DigestCache:
    """sha256 of files keyed on (path, device, inode, size, mtime, ctime), in SQLite.

    Re-checking unchanged multi-GB checkpoints then costs one stat per file.  ctime is part of the
    key because, unlike mtime, it cannot be set back by a user.  The cache is advisory: if it
    cannot be opened, digests are simply computed.

    Every row carries an HMAC-SHA256 of (path, dev, inode, size, mtime, ctime, sha256) under this
    user's cache key (kept outside the cache folder, see :mod:`acards.evidence.cachekey`) and the
    key's id, so users sharing the file read only their own rows.  A row that does not verify
    (altered, written under another key or by an acards without MACs) is never used: the file is
    hashed again, and the rejection is counted (:attr:`rejected`) and recorded as a
    ``cache.entry-rejected`` warning when the cache is closed (the command prints it:
    acards.evidence.cachekey.collected_warnings).

    A command opens one (``DigestCache(settings.digests_path)``, or ``DigestCache(None)`` for none)
    at the edge, passes it down as ``digests=``, and closes it when it ends (it is a context
    manager).  A library function that takes ``digests=`` uses :meth:`or_default`: the cache it was
    given, which stays open for its owner, or else the default one, for that call only.
    """

    def __init__(self, path: Path | None, key=None):
        self._db = None
        self._owned = True  # False for a view of a cache another caller opened (see borrow)
        self._key = None
        self._legacy = False
        self._stats = {"rejected": 0, "reported": 0}  # shared with borrowed views
        self.path = path
        if path is None:
            return
        from acards.evidence.cachekey import cache_key

        self._key = key if key is not None else cache_key()
        try:
            usable_cache_dir(path.parent)
            self._db = sqlite3.connect(path, timeout=10, isolation_level=None)
            enable_wal(self._db, 10)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS file_digests (path TEXT NOT NULL, keyid BLOB NOT NULL, dev INTEGER, inode INTEGER,"
                " size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, sha256 TEXT, mac BLOB, PRIMARY KEY (path, keyid))"
            )
            self._legacy = bool(self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='digests'").fetchone())  # rows without a MAC
        except sqlite3.Error:
            self._db = None

    @staticmethod
    def default_path(cache_dir: Path | None = None) -> Path:
        """The digest cache file in ``cache_dir`` (default: the settings' cache folder)."""
        from acards.settings import DIGESTS_FILE, current

        return (cache_dir if cache_dir is not None else current().cache_dir) / DIGESTS_FILE

    @classmethod
    def or_default(cls, given: "DigestCache | None" = None, use_cache: bool = True) -> "DigestCache":
        """``given`` (closing the result leaves it open for whoever opened it), or, when None, the
        default cache (no cache with ``use_cache=False``), which closing the result closes."""
        if given is not None:
            return given.borrow()
        return cls(cls.default_path() if use_cache else None)

    def borrow(self) -> "DigestCache":
        """The same cache, for a callee to use and close without closing it for its owner."""
        view = DigestCache(None)
        view._db, view._owned, view._key, view._legacy, view._stats = self._db, False, self._key, self._legacy, self._stats
        view.path = self.path
        return view

    def __enter__(self) -> "DigestCache":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def rejected(self) -> int:
        """How many rows found for a file were not used because they did not verify."""
        return self._stats["rejected"]

    def _key_of(self, path: Path, info: os.stat_result) -> tuple:
        return (str(path.resolve()), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    def get(self, path: Path, info: os.stat_result) -> str | None:
        if self._db is None:
            return None
        key = self._key_of(path, info)
        try:
            row = self._db.execute(
                "SELECT sha256, mac FROM file_digests WHERE path=? AND keyid=? AND dev=? AND inode=? AND size=?"
                " AND mtime_ns=? AND ctime_ns=?", (key[0], self._key.id, *key[1:]),
            ).fetchone()
            if row is None:
                foreign = self._db.execute(
                    "SELECT 1 FROM file_digests WHERE path=? AND keyid!=? AND dev=? AND inode=? AND size=? AND mtime_ns=?"
                    " AND ctime_ns=?", (key[0], self._key.id, *key[1:])).fetchone()
                if foreign is None and self._legacy:
                    foreign = self._db.execute(
                        "SELECT 1 FROM digests WHERE path=? AND dev=? AND inode=? AND size=? AND mtime_ns=? AND ctime_ns=?",
                        key).fetchone()
                if foreign is not None:
                    self._stats["rejected"] += 1
                return None
        except sqlite3.Error:
            return None
        sha256, mac = row
        if isinstance(sha256, str) and self._key.verify(mac, DIGEST_PURPOSE, *key, sha256):
            return sha256
        self._stats["rejected"] += 1
        return None

    def put(self, path: Path, info: os.stat_result, sha256: str) -> None:
        if self._db is None:
            return
        key = self._key_of(path, info)
        try:
            self._db.execute("INSERT OR REPLACE INTO file_digests VALUES (?,?,?,?,?,?,?,?,?)",
                             (key[0], self._key.id, *key[1:], sha256, self._key.mac(DIGEST_PURPOSE, *key, sha256)))
        except sqlite3.Error:
            pass

    def close(self) -> None:
        if self._owned:
            self._report()
        if self._db is not None and self._owned:
            self._db.close()
        self._db = None

    def _report(self) -> None:
        """One cache.entry-rejected warning for the rows rejected since the last one."""
        count = self._stats["rejected"] - self._stats["reported"]
        if count <= 0:
            return
        from acards.evidence.cachekey import rejected_warning

        self._stats["reported"] = self._stats["rejected"]
        rejected_warning(f"{count} digest cache entries were not used: their MAC does not verify under this user's cache key "
                         "(altered, written under another key, or by an acards without MACs); those files were hashed again",
                         "if you did not expect this, someone else may be writing this cache folder",
                         Location(file=str(self.path)) if self.path else None)


def digest_file(path: Path, cache: DigestCache | None = None, label: str = "") -> tuple[int, str]:
    """(size, sha256) of one regular file, never following a link, using the cache when fresh."""
    return _digest_open(path, cache, label or str(path), cache_min=0)


def _digest_open(path: Path | str, cache: DigestCache | None, label: str, cache_min: int) -> tuple[int, str]:
    """Open ``path`` (no link, no blocking), confirm a regular file with fstat, and hash it.

    The cache is consulted only for files of at least ``cache_min`` bytes: below that, hashing costs
    less than a SQLite lookup.  Any OS error (permissions, EIO) is evidence.unreadable with the path.
    """
    with closing(_open_nofollow(path, label)) as handle:
        try:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise AcardsError("evidence.special-file", f"{label} is not a regular file",
                                  "evidence must be plain files", Location(file=str(path)))
            use_cache = cache is not None and info.st_size >= cache_min
            cached = cache.get(Path(path), info) if use_cache else None
            if cached is not None:
                return info.st_size, cached
            if info.st_size < SMALL_FILE:
                value = _sha256_small(handle, info.st_size)
            else:
                value = sha256_stream(handle, info.st_size, label)
        except OSError as error:
            raise AcardsError("evidence.unreadable", f"{label}: {error.strerror or error}",
                              "check the file's permissions and the disk", Location(file=str(path))) from None
    if use_cache:
        cache.put(Path(path), info, value)
    return info.st_size, value


SMALL_FILE = 1024 * 1024  # read in one call, no 4 MiB buffer; in folders, not worth a cache lookup

MAX_FOLDER_DEPTH = 100  # evidence folders nested deeper than this are refused (evidence.too-deep)


def _sha256_small(handle, size: int) -> str:
    digest = hashlib.sha256()
    chunk = handle.read(size + 1)  # one read for the whole file; the loop only runs if it grew
    while chunk:
        digest.update(chunk)
        chunk = handle.read(SMALL_FILE)
    return digest.hexdigest()


def walk_folder(folder: Path, label: str = "") -> Iterator[tuple[str, str]]:
    """(POSIX relative path, path) of every file below ``folder``, refusing links and special files.

    Unlike os.walk, which silently skips a folder it cannot list, a folder that cannot be read
    anywhere below ``folder`` is evidence.unreadable, and nesting deeper than MAX_FOLDER_DEPTH is
    evidence.too-deep: a folder's digest always covers every file in it, or there is no digest.
    One os.scandir per folder; the type of each entry comes from the listing, not from a stat.
    """
    stack = [("", os.fspath(folder), 0)]
    while stack:
        prefix, directory, depth = stack.pop()
        shown = f"{label}/{prefix}".rstrip("/") if label else (prefix.rstrip("/") or str(folder))
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            raise AcardsError("evidence.unreadable", f"{shown}: cannot list the folder: {error.strerror or error}",
                              "check the folder's permissions: a folder's digest must cover every file in it",
                              Location(file=directory)) from None
        folders = []
        for entry in entries:
            relative = prefix + entry.name
            try:
                if entry.is_symlink() or not (entry.is_file(follow_symlinks=False) or entry.is_dir(follow_symlinks=False)):
                    _refuse_special(entry.stat(follow_symlinks=False), f"{label}/{relative}" if label else relative,
                                    Location(file=entry.path))
            except OSError as error:
                raise AcardsError("evidence.unreadable", f"{label}/{relative}: {error.strerror or error}",
                                  "check the file's permissions", Location(file=entry.path)) from None
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > MAX_FOLDER_DEPTH:
                    raise AcardsError("evidence.too-deep",
                                      f"{f'{label}/{relative}' if label else relative} is nested more than"
                                      f" {MAX_FOLDER_DEPTH} folders deep",
                                      f"flatten the evidence folder (at most {MAX_FOLDER_DEPTH} levels)",
                                      Location(file=entry.path))
                folders.append((relative + "/", entry.path, depth + 1))
            else:
                yield relative, entry.path
        stack.extend(reversed(folders))


def folder_manifest(folder: Path, cache: DigestCache | None = None, label: str = "") -> list[FileEntry]:
    entries = []
    for relative, path in walk_folder(folder, label):
        size, value = _digest_open(path, cache, f"{label}/{relative}" if label else relative, cache_min=SMALL_FILE)
        entries.append(FileEntry(relative, size, value))
    return sorted(entries, key=lambda entry: entry.path)


def digest_path(path: Path, cache: DigestCache | None = None, label: str = "") -> str:
    """The digest a card pointer carries for ``path``: a file's sha256 or a folder's manifest's."""
    if path.is_dir():
        return hashlib.sha256(manifest_bytes(folder_manifest(path, cache, label))).hexdigest()
    return digest_file(path, cache, label)[1]


@dataclass(frozen=True)
class PointerResult:
    pointer: str  # JSON pointer of the evidence pointer in the card, e.g. /evidence/records/0
    path: str
    expected: str
    actual: str | None  # None when the file could not be read
    kind: str  # "file" | "folder"

    @property
    def ok(self) -> bool:
        return self.actual == self.expected

    def as_json(self) -> dict:
        return {"pointer": self.pointer, "path": self.path, "kind": self.kind,
                "sha256": self.expected, "actual": self.actual, "ok": self.ok}


def check_pointers(root: Path, pointers, cache: DigestCache | None = None) -> tuple[list[PointerResult], list]:
    """Recompute the digest of every (json_pointer, path, sha256, location) under ``root``.

    Returns the results and the problems (missing, unsafe or mismatching evidence), all of them
    rather than the first, so an author fixes a card in one pass.
    """
    results, problems = [], []
    for json_pointer, relative, expected, location in pointers:
        try:
            path = resolve_inside(root, relative, location)
            kind = "folder" if path.is_dir() else "file"
            actual = digest_path(path, cache, relative)
        except AcardsError as error:
            problems.extend(error.problems)
            results.append(PointerResult(json_pointer, relative, expected, None, "unknown"))
            continue
        result = PointerResult(json_pointer, relative, expected, actual, kind)
        results.append(result)
        if not result.ok:
            problems.append(digest_mismatch(relative, expected, actual, kind == "folder", location))
    return results, problems


def digest_mismatch(relative: str, expected: str, actual: str, folder: bool, location: Location | None) -> Problem:
    """The one evidence.digest-mismatch problem: a pinned file or folder changed since the card was written."""
    what = "folder manifest" if folder else "file"
    return Problem(
        "evidence.digest-mismatch",
        f"{relative}: the {what} digest is {actual}, the card says {expected}",
        "the evidence changed since the card was written: restore it, or if the change is"
        " intended run `acards hash " + relative + "` and update the card"
        + (" (a folder's digest covers every file in it: look for an extra or missing file)" if folder else ""),
        location or Location(),
    )


def check_digest(path: Path, relative: str, expected: str, cache: DigestCache | None = None,
                 location: Location | None = None) -> str:
    """The digest of ``path`` (see :func:`digest_path`), refused unless it is ``expected``."""
    actual = digest_path(path, cache, relative)
    if actual != expected:
        raise AcardsError.collect([digest_mismatch(relative, expected, actual, path.is_dir(), location)])
    return actual


def digest_top_level(path: Path, cache: DigestCache | None = None) -> str:
    """The digest of a path given on the command line, with the same refusals as card paths."""
    location = Location(file=str(path))
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise AcardsError("evidence.missing", f"{path} does not exist", "check the path", location) from None
    _refuse_special(info, str(path), location)
    return digest_path(path, cache, str(path))
