"""Private copies of pinned checkpoints: a model, adapter, tokenizer or classifier is loaded from the
bytes whose digest was checked, never from its folder again.

Checking a folder's digest and then loading the folder by path leaves a window: a file replaced in
between would be loaded while the report says the pinned digest matched.  Here each file is opened
once (no link followed, a regular file by fstat), copied into a private folder and hashed as it is
copied, in bounded chunks.  The digest of the copied bytes (a file's sha256, or a folder's manifest
digest, as :func:`acards.evidence.digests.digest_path` computes it) must be the pinned one, or the
copy is deleted and ``evidence.digest-mismatch`` is raised.  Loaders read only the copy.

- Where: a folder made by ``mkdtemp`` (mode 0700) in ``$ACARDS_SNAPSHOT_DIR``, else the system temp
  folder (``tempfile.gettempdir()``, i.e. ``$TMPDIR`` or /tmp).  A folder that others can write is
  refused unless it is sticky (as /tmp is): another user could otherwise rename the copy away.
- When: :func:`acquire` copies only when asked, i.e. when a model is loaded, once per (path, digest)
  in a process while someone holds the copy; :func:`release` (or :class:`Holdings.close`) deletes it
  when its last holder lets go, and every copy still held is deleted at exit.
- ``weights=False`` copies everything but weight files (what a tokenizer and a generation config are
  read from) and hashes the weight files in place (through the digest cache): the folder's digest
  is still checked in full, and loading a tokenizer copies no weights.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

from acards.errors import AcardsError, Location
from acards.evidence.digests import (
    CHUNK,
    PROGRESS_MIN_BYTES,
    SMALL_FILE,
    FileEntry,
    _digest_open,
    digest_mismatch,
    manifest_bytes,
    walk_folder,
)
from acards.evidence.paths import _open_nofollow, _refuse_special
from acards.evidence.safetensors_io import PICKLE_SUFFIXES

PREFIX = "acards-snapshot-"
# Files no tokenizer or generation config is read from: a weights=False copy hashes them in place.
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".h5", ".msgpack", ".gguf", ".onnx")


@dataclass(frozen=True)
class Snapshot:
    """A private copy of a pinned file or folder."""

    source: Path  # the pinned file or folder
    path: Path  # its copy: load from here
    digest: str  # of the bytes copied (with weights=False: of the whole folder, weight files hashed in place)
    holder: Path  # the private folder made for the copy, deleted with it
    pid: int  # the process that made it (a forked child never deletes its parent's copies)


def _failed(message: str, folder: Path | str) -> AcardsError:
    from acards.settings import SNAPSHOT_DIR

    return AcardsError("generate.snapshot-failed", message,
                       f"free space there, or point {SNAPSHOT_DIR} at a folder of your own with room for the model "
                       "(it is copied there before it is loaded)", Location(file=str(folder)))


def snapshot_root() -> Path:
    """``$ACARDS_SNAPSHOT_DIR`` (created if missing), else the system temp folder; refused when
    another user could rename or replace what is made in it."""
    from acards.settings import current

    override = current().snapshot_dir
    folder = override if override is not None else Path(tempfile.gettempdir())
    try:
        if override is not None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(folder)
    except OSError as error:
        raise _failed(f"the snapshot folder {folder} cannot be used: {error.strerror or error}", folder) from None
    if not stat.S_ISDIR(info.st_mode):
        raise _failed(f"the snapshot folder {folder} is not a folder", folder)
    shared = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not info.st_mode & stat.S_ISVTX
    foreign = hasattr(os, "getuid") and info.st_uid not in (0, os.getuid())
    if shared or foreign:
        raise _failed(f"the snapshot folder {folder} " + ("belongs to another user" if foreign else
                      "can be written by others and is not sticky") + ": the private copy of a model made there could be "
                      "replaced before it is loaded", folder)
    return folder


def copy_pinned(source: Path, expected: str | None, *, label: str = "", location: Location | None = None,
                weights: bool = True, digests=None) -> Snapshot:
    """Copy ``source`` into a new private folder, hashing the bytes copied; refused (and nothing left
    behind) unless their digest is ``expected`` (None: any digest, reported in the result).
    ``digests``: the DigestCache for the weight files a ``weights=False`` copy hashes in place."""
    label = label or str(source)
    where = location or Location(file=str(source))
    try:
        info = os.lstat(source)
    except FileNotFoundError:
        raise AcardsError("evidence.missing", f"{label} does not exist", "put the checkpoint back where the card says", where) from None
    except OSError as error:
        raise AcardsError("evidence.unreadable", f"{label}: {error.strerror}", "check the file's permissions", where) from None
    _refuse_special(info, label, where)
    folder = stat.S_ISDIR(info.st_mode)
    root = snapshot_root()
    try:
        holder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    except OSError as error:
        raise _failed(f"cannot make a private folder in {root}: {error.strerror or error}", root) from None
    try:
        target = holder / (source.name or "snapshot")
        if folder:
            os.mkdir(target, 0o700)
            actual = _copy_folder(Path(source), target, label, weights, digests)
        else:
            _check_room(holder, info.st_size)
            progress = _Progress(info.st_size, label)
            actual = _copy_file(source, target, label, progress)[1]
            progress.done()
        if expected is not None and actual != expected:
            problem = digest_mismatch(label, expected, actual, folder, where)
            raise AcardsError.collect([replace(problem, message=problem.message + " (in the copy made to load it: it changed"
                                                                                  " after its digest was checked)")])
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        raise
    return Snapshot(Path(source), target, actual, holder, os.getpid())


def _copy_folder(source: Path, target: Path, label: str, weights: bool, digests) -> str:
    files = list(walk_folder(source, label))
    copied = {relative for relative, _ in files if weights or not relative.endswith(WEIGHT_SUFFIXES)}
    try:
        sizes = {relative: os.lstat(path).st_size for relative, path in files if relative in copied}
    except OSError as error:
        raise AcardsError("evidence.unreadable", f"{label}: {error.strerror or error}", "check the folder's permissions",
                          Location(file=str(source))) from None
    _check_room(target.parent, sum(sizes.values()))
    progress = _Progress(sum(sizes.values()), label)
    entries = []
    for relative, path in files:
        shown = f"{label}/{relative}"
        if relative in copied:
            _make_folders(target, relative)
            size, value = _copy_file(path, target / relative, shown, progress)
        else:
            size, value = _digest_open(path, digests, shown, cache_min=SMALL_FILE)
        entries.append(FileEntry(relative, size, value))
    progress.done()
    return hashlib.sha256(manifest_bytes(entries)).hexdigest()


def _make_folders(target: Path, relative: str) -> None:
    current = target
    for part in relative.split("/")[:-1]:
        current = current / part
        if not current.is_dir():
            try:
                os.mkdir(current, 0o700)
            except OSError as error:
                raise _failed(f"cannot make {current}: {error.strerror or error}", current) from None


def _check_room(folder: Path, size: int) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if size > free:
        raise _failed(f"copying the model to load it needs {size / 1e9:.2f} GB, and {folder.parent} has {free / 1e9:.2f} GB free", folder)


def _copy_file(source: Path | str, target: Path, label: str, progress: "_Progress") -> tuple[int, str]:
    """(size, sha256) of the bytes copied from ``source`` (opened once, no link, a regular file) to a
    new file ``target`` (mode 0600), in chunks of CHUNK bytes."""
    where = Location(file=str(source))
    with _open_nofollow(source, label) as handle:
        try:
            info = os.fstat(handle.fileno())
        except OSError as error:
            raise AcardsError("evidence.unreadable", f"{label}: {error.strerror or error}", "check the file's permissions", where) from None
        if not stat.S_ISREG(info.st_mode):
            raise AcardsError("evidence.special-file", f"{label} is not a regular file", "evidence must be plain files", where)
        try:
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as error:
            raise _failed(f"cannot write {target}: {error.strerror or error}", target) from None
        digest, size = hashlib.sha256(), 0
        view = memoryview(bytearray(CHUNK))
        try:
            while True:
                try:
                    count = handle.readinto(view)
                except OSError as error:
                    raise AcardsError("evidence.unreadable", f"{label}: {error.strerror or error}",
                                      "check the file's permissions and the disk", where) from None
                if not count:
                    break
                digest.update(view[:count])
                _write_all(out, view[:count], target)
                size += count
                progress.update(count)
        finally:
            os.close(out)
    return size, digest.hexdigest()


def _write_all(fd: int, chunk: memoryview, target: Path) -> None:
    while chunk:
        try:
            written = os.write(fd, chunk)
        except OSError as error:
            raise _failed(f"cannot write {target}: {error.strerror or error}", target) from None
        chunk = chunk[written:]


class _Progress:
    """A bar on stderr for copies of at least PROGRESS_MIN_BYTES, when it is a terminal."""

    def __init__(self, total: int, label: str):
        self.bar = None
        if total >= PROGRESS_MIN_BYTES and sys.stderr.isatty():
            import click  # only when a bar is shown

            self.bar = click.progressbar(length=total, label=f"copying {label} to load it", file=sys.stderr)

    def update(self, count: int) -> None:
        if self.bar is not None:
            self.bar.update(count)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.render_finish()


class _Store:
    """The copies this process holds: one per (path, digest, weights), counted, deleted at the last release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[Path, list] = {}  # snapshot.holder -> [snapshot, how many hold it]
        self._made: dict[tuple, Snapshot] = {}  # (path, digest, weights) -> snapshot

    def acquire(self, source: Path, digest: str | None, *, weights: bool = True, **options) -> Snapshot:
        where = os.path.abspath(source)
        keys = [(where, digest, True)] + ([] if weights else [(where, digest, False)])  # a full copy serves both
        with self._lock:
            for key in keys if digest is not None else []:
                if key in self._made:
                    found = self._made[key]
                    self._held[found.holder][1] += 1
                    return found
            made = copy_pinned(source, digest, weights=weights, **options)
            self._held[made.holder] = [made, 1]
            if digest is not None:
                self._made[keys[-1]] = made
            return made

    def release(self, snapshot: Snapshot) -> None:
        with self._lock:
            entry = self._held.get(snapshot.holder)
            if entry is not None and entry[1] > 1:
                entry[1] -= 1
                return
            self._held.pop(snapshot.holder, None)
            self._made = {key: made for key, made in self._made.items() if made.holder != snapshot.holder}
        shutil.rmtree(snapshot.holder, ignore_errors=True)

    def clear(self) -> None:
        """Delete every copy this process made (at exit)."""
        with self._lock:
            mine = [made for made, _ in self._held.values() if made.pid == os.getpid()]
            self._held.clear()
            self._made.clear()
        for made in mine:
            shutil.rmtree(made.holder, ignore_errors=True)


_STORE = _Store()
atexit.register(_STORE.clear)


def acquire(source: Path, digest: str | None, *, label: str = "", location: Location | None = None, weights: bool = True,
            digests=None) -> Snapshot:
    """The private copy of ``source`` whose digest is ``digest``, made now unless this process holds
    one already; release it with :func:`release`."""
    return _STORE.acquire(source, digest, weights=weights, label=label, location=location, digests=digests)


def release(snapshot: Snapshot) -> None:
    """Let go of a copy from :func:`acquire`; the last holder's release deletes it."""
    _STORE.release(snapshot)


@contextmanager
def pinned(source: Path, digest: str | None, **options) -> Iterator[Snapshot]:
    """:func:`acquire` for the duration of a ``with`` block."""
    snapshot = acquire(source, digest, **options)
    try:
        yield snapshot
    finally:
        release(snapshot)


class Holdings:
    """The copies one loader (a backend) holds: each acquired once, all released by :meth:`close`."""

    def __init__(self) -> None:
        self._held: dict[tuple, Snapshot] = {}

    def path(self, source: Path, digest: str | None, *, weights: bool = True) -> Path:
        """Where to load ``source`` (pinned to ``digest``) from."""
        key = (os.path.abspath(source), digest, weights)
        if key not in self._held:
            self._held[key] = acquire(source, digest, weights=weights, label=str(source))
        return self._held[key].path

    def close(self) -> None:
        held, self._held = list(self._held.values()), {}
        for snapshot in held:
            release(snapshot)
