"""The records cache: a records file's decoded columns, keyed by the sha256 of its bytes.

Re-verifying a card parses its records again, which is most of the time of a verify that needs no
model.  This cache keeps, per records file, the columns acards.evidence.records decoded from it
(integer codes, their vocabularies, seeds, samples, scores, line numbers and the few outputs and
prompts kept), in one file per entry under ``<cache folder>/records/``, named by:

- the sha256 of the records file's bytes, as hashed while they were parsed;
- its format (jsonl, parquet, arrow) and ``READER_VERSION`` (raised whenever reading records
  changes what a file decodes to, so old entries are simply not found);
- the id of this user's cache key (acards.evidence.cachekey), so users sharing a folder do not
  overwrite each other's entries.

The trust rules are those of every acards cache: the folder may be shared and writable by others,
so each entry carries an HMAC-SHA256, under this user's cache key, of its key (digest, format,
reader version) and its whole content.  An entry whose MAC does not verify, or that is not a regular
file, too large or malformed, is never used: it is reported (``cache.entry-rejected``), the file is
parsed again and the entry rewritten.  A hit still reads and hashes the records file (the digest
check is not skipped): acards.evidence.records uses an entry only for the digest the card pins, and
only when the bytes hashed on this run have that digest.  ``verify --no-cache`` bypasses the cache.

The checks across a card's records (duplicates, subjects, the coded columns' patterns) depend only
on the files' bytes, so once they pass for a list of (digest, format), a marker file MAC'd the same
way (``<name>.checked.r<version>.<key id>``) lets a re-verify of the same files skip them.

Entry layout: ``MAGIC``, the 32-byte MAC, the header's length (8 bytes, big-endian), the header
(JSON: row count, arrays, vocabularies, kept outputs and prompts), then the arrays' bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from acards.errors import AcardsError, Location, Problem

READER_VERSION = 2  # 2: the `scores.<name>` columns of records with several scorers
PURPOSE = "acards/records-cache/1"
CHECKED_PURPOSE = "acards/records-checked/1"
MAGIC = b"acards-records-cache\n"
FOLDER = "records"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DTYPES = frozenset({"|u1", "<u2", "<u4", "|i1", "<i2", "<i4", "<i8", "<f8", "|b1"})
_RESTORE = {"int32": np.int32, "int64": np.int64, "float64": np.float64, "bool": np.bool_}


def entry_limit(records_size: int) -> int:
    """The largest entry read or written for a records file of ``records_size`` bytes: a bound on
    what a planted file can make acards read, generous enough for any real entry."""
    return 64 * records_size + 256 * 1024 * 1024


class RecordsCache:
    """One user's view of a records cache folder; ``rejected`` lists the entries refused so far."""

    def __init__(self, folder: Path, key=None):
        from acards.evidence.cachekey import cache_key

        self.folder = folder
        self.key = key if key is not None else cache_key()
        self.rejected: list[Problem] = []

    @classmethod
    def default(cls, cache_dir: Path | None = None) -> "RecordsCache":
        """The cache in ``cache_dir`` (default: the settings' cache folder)."""
        from acards.settings import current

        return cls((cache_dir if cache_dir is not None else current().cache_dir) / FOLDER)

    def path(self, sha256: str, fmt: str) -> Path:
        return self.folder / f"{sha256}.{fmt}.r{READER_VERSION}.{self.key.id.hex()}"

    def get(self, root: Path, relative: str, sha256: str, fmt: str) -> dict[str, Any] | None:
        """The verified entry of the records file with digest ``sha256`` (at ``relative`` under
        ``root``, whose size bounds the entry), or None: absent, or rejected and reported."""
        if not _SHA256.fullmatch(sha256 or ""):
            return None
        path = self.path(sha256, fmt)
        try:
            size = os.stat(root / relative, follow_symlinks=False).st_size
            data = _read_regular(path, entry_limit(size))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self._reject(path, str(error))
            return None
        entry = _decode(data, self.key, sha256, fmt)
        if entry is None:
            self._reject(path, "its MAC does not verify under this user's cache key")
        return entry

    def put(self, sha256: str, fmt: str, entry: dict[str, Any], records_size: int) -> None:
        """Store ``entry`` (best effort: a cache that cannot be written is no error)."""
        if not _SHA256.fullmatch(sha256 or ""):
            return
        data = _encode(entry, self.key, sha256, fmt)
        if len(data) <= entry_limit(records_size):
            self._write(self.path(sha256, fmt), data)

    def _checked_path(self, files: list[tuple[str, str]]) -> tuple[Path, str]:
        name = hashlib.sha256(json.dumps(files).encode("ascii")).hexdigest()
        return self.folder / f"{name}.checked.r{READER_VERSION}.{self.key.id.hex()}", name

    def checked(self, files: list[tuple[str, str]]) -> bool:
        """Whether this user's acards found no problem across the records of ``files`` ((digest,
        format) of each file, in order): duplicates, subjects, patterns.  A marker that does not
        verify is rejected and reported, as an entry is."""
        path, name = self._checked_path(files)
        try:
            mac = _read_regular(path, 32)
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as error:
            self._reject(path, str(error))
            return False
        if self.key.verify(mac, CHECKED_PURPOSE, READER_VERSION, name):
            return True
        self._reject(path, "its MAC does not verify under this user's cache key")
        return False

    def mark_checked(self, files: list[tuple[str, str]]) -> None:
        path, name = self._checked_path(files)
        self._write(path, self.key.mac(CHECKED_PURPOSE, READER_VERSION, name))

    def _write(self, path: Path, data: bytes) -> None:
        """``data`` to ``path``, atomically (best effort: a cache that cannot be written is no error)."""
        from acards.settings import usable_cache_dir

        try:
            usable_cache_dir(self.folder)
            handle, staging = tempfile.mkstemp(dir=self.folder, prefix=".staging-")
            try:
                with os.fdopen(handle, "wb") as out:
                    out.write(data)
                os.replace(staging, path)
            except BaseException:
                Path(staging).unlink(missing_ok=True)
                raise
        except (OSError, AcardsError):
            pass

    def _reject(self, path: Path, why: str) -> None:
        """Report a refused entry (cache.entry-rejected, on stderr) and record it in ``rejected``."""
        from acards.evidence.cachekey import rejected_warning

        self.rejected.append(rejected_warning(
            f"the records cache entry {path.name} was not used ({why}); the records file is parsed again",
            "if you did not expect this, someone else may be writing this cache folder", Location(file=str(path))))


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, never following a link or blocking; ValueError past ``limit``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb", buffering=0) as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("it is not a regular file")
        if info.st_size > limit:
            raise ValueError(f"it holds {info.st_size:,} bytes, more than an entry for this file can")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ValueError("it grew past the size an entry for this file can have")
    return data


# --- the entry's bytes --------------------------------------------------------------------------

def _smallest(values: np.ndarray) -> np.dtype:
    """The smallest integer dtype that holds ``values``."""
    low, high = (int(values.min()), int(values.max())) if len(values) else (0, 0)
    kinds = (np.uint8, np.uint16, np.uint32) if low >= 0 else (np.int8, np.int16, np.int32)
    for kind in kinds:
        limits = np.iinfo(kind)
        if limits.min <= low and high <= limits.max:
            return np.dtype(kind)
    return np.dtype(np.int64)


def _encode(entry: dict[str, Any], key, sha256: str, fmt: str) -> bytes:
    """``entry`` ({"columns", "vocab", "outputs", "prompts"}) as MAC'd bytes; arrays stored in the
    smallest dtype that holds them, restored to the dtype the reader made."""
    columns = entry["columns"]
    rows = len(columns["line"])
    arrays: list[tuple[str, np.ndarray, str]] = []  # (name, stored, restore as)
    for name, values in columns.items():
        restore = str(values.dtype)
        if name == "line" and np.array_equal(values, np.arange(1, rows + 1)):
            continue  # one record per line, none blank: rebuilt from the row count
        if values.dtype == np.float64:  # few distinct values (binary scores): a dictionary of their bits
            bits, codes = np.unique(values.view(np.uint64), return_inverse=True)
            if len(bits) <= 256:
                arrays.append((name + "#values", bits.view(np.float64), restore))
                values = codes.reshape(-1).astype(np.uint8)
        elif values.dtype != np.bool_:
            values = values.astype(_smallest(values))
        arrays.append((name, values, restore))
    body, layout, offset = [], [], 0
    for name, values, restore in arrays:
        raw = np.ascontiguousarray(values).tobytes()
        layout.append([name, values.dtype.str, len(values), offset, restore])
        body.append(raw + bytes(-len(raw) % 8))
        offset += len(raw) + (-len(raw) % 8)
    header = json.dumps({
        "rows": rows, "arrays": layout, "vocab": entry["vocab"],
        "outputs": sorted(entry["outputs"].items()), "prompts": sorted(entry["prompts"].items()),
    }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    content = b"".join(body)
    mac = key.mac(PURPOSE, sha256, fmt, READER_VERSION, header, content)
    return MAGIC + mac + len(header).to_bytes(8, "big") + header + content


def _decode(data: bytes, key, sha256: str, fmt: str) -> dict[str, Any] | None:
    """The entry in ``data`` if its MAC verifies under ``key`` for this digest and format, else None."""
    start = len(MAGIC) + 32 + 8
    if len(data) < start or not data.startswith(MAGIC):
        return None
    mac = data[len(MAGIC):len(MAGIC) + 32]
    length = int.from_bytes(data[start - 8:start], "big")
    if length > len(data) - start:
        return None
    header, content = data[start:start + length], data[start + length:]
    if not key.verify(mac, PURPOSE, sha256, fmt, READER_VERSION, header, content):
        return None
    try:  # written by this user's acards: a failure here is a bug or a disk fault, still never used
        meta = json.loads(header)
        rows = meta["rows"]
        columns: dict[str, np.ndarray] = {}
        dictionaries: dict[str, np.ndarray] = {}
        for name, dtype, count, offset, restore in meta["arrays"]:
            kept = name.endswith("#values")
            if dtype not in _DTYPES or restore not in _RESTORE or (count != rows and not kept):
                return None
            values = np.frombuffer(content, np.dtype(dtype), count, offset)
            if kept:
                dictionaries[name[:-len("#values")]] = values.astype(_RESTORE[restore])
            elif name in dictionaries:
                columns[name] = dictionaries[name][values]
            else:
                columns[name] = values.astype(_RESTORE[restore])
        columns.setdefault("line", np.arange(1, rows + 1, dtype=np.int64))
        return {"columns": columns, "vocab": meta["vocab"],
                "outputs": {int(row): text for row, text in meta["outputs"]},
                "prompts": {int(row): text for row, text in meta["prompts"]}}
    except (ValueError, KeyError, TypeError, IndexError):
        return None
