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

The same folder keeps values derived from such evidence, which a re-verify would otherwise compute
again (:meth:`RecordsCache.get_derived`): a card's completed table with the report's generation
section (acards.pipeline.complete), and weight signatures (acards.pipeline.recompute).  Each is
named by the digest of everything it depends on, among them the evidence digests this run checked,
and stored, MAC'd (over its kind, that digest, its version and its whole content), rejected and
rewritten exactly as a records entry is.

Entry layout: ``MAGIC``, the 32-byte MAC, the header's length (8 bytes, big-endian), the header
(JSON: row count, arrays, vocabularies, kept outputs and prompts, and a derived value's JSON), then
the arrays' bytes.
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

READER_VERSION = 3  # 2: the `scores.<name>` columns of records with several scorers; 3: a prompt of a
# fresh record whose split is spelled with an escape ("fr\\u0065sh") is kept (the vectorized reader dropped it)
PURPOSE = "acards/records-cache/1"
# Derived values (see RecordsCache.get_derived): kind -> (MAC purpose, version, what happens instead
# of a rejected entry); a version is raised whenever the code that derives the value changes what it
# makes, so old entries are simply not found.
DERIVED = {"completed": ("acards/completed-evidence/1", 1, "the evidence is completed again"),
           "signature": ("acards/weight-signature/1", 1, "the checkpoints are read again")}
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
        try:
            size = os.stat(root / relative, follow_symlinks=False).st_size
        except FileNotFoundError:
            return None
        return self._get(self.path(sha256, fmt), entry_limit(size), _bound(sha256, fmt), "the records file is parsed again")

    def put(self, sha256: str, fmt: str, entry: dict[str, Any], records_size: int) -> None:
        """Store ``entry`` (best effort: a cache that cannot be written is no error)."""
        if _SHA256.fullmatch(sha256 or ""):
            self._put(self.path(sha256, fmt), entry, entry_limit(records_size), _bound(sha256, fmt))

    # Values derived from evidence whose digests this run checked, named by the digest (``key``, a
    # sha256 in hex) of everything they depend on, stored and MAC'd as a records entry is: "completed",
    # a card's records with every regenerated score placed and the control records appended, with
    # the report's generation section (acards.pipeline.complete); "signature", the weight signature
    # of a cell's pinned checkpoints under a set of thresholds (acards.pipeline.recompute).

    def derived_path(self, kind: str, key: str) -> Path:
        return self.folder / f"{key}.{kind}.v{DERIVED[kind][1]}.{self.key.id.hex()}"

    def get_derived(self, kind: str, key: str, limit: int) -> dict[str, Any] | None:
        """The verified entry of ``kind`` named ``key`` (at most ``limit`` bytes, see
        :func:`entry_limit`), or None: absent, or rejected and reported."""
        purpose, version, instead = DERIVED[kind]
        return self._get(self.derived_path(kind, key), limit, (purpose, key, version), instead)

    def put_derived(self, kind: str, key: str, entry: dict[str, Any], limit: int) -> None:
        purpose, version, _ = DERIVED[kind]
        self._put(self.derived_path(kind, key), entry, limit, (purpose, key, version))

    def _get(self, path: Path, limit: int, bound: tuple, instead: str) -> dict[str, Any] | None:
        try:
            data = _read_regular(path, limit)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            self._reject(path, str(error), instead)
            return None
        entry = _open(data, self.key, bound)
        if entry is None:
            self._reject(path, "its MAC does not verify under this user's cache key", instead)
        return entry

    def _put(self, path: Path, entry: dict[str, Any], limit: int, bound: tuple) -> None:
        data = _seal(entry, self.key, bound)
        if len(data) <= limit:
            self._write(path, data)

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
            self._reject(path, str(error), "the checks run again")
            return False
        if self.key.verify(mac, CHECKED_PURPOSE, READER_VERSION, name):
            return True
        self._reject(path, "its MAC does not verify under this user's cache key", "the checks run again")
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

    def _reject(self, path: Path, why: str, instead: str) -> None:
        """Report a refused entry (cache.entry-rejected, on stderr) and record it in ``rejected``."""
        from acards.evidence.cachekey import rejected_warning

        self.rejected.append(rejected_warning(
            f"the records cache entry {path.name} was not used ({why}); {instead}",
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


def _bound(sha256: str, fmt: str) -> tuple:
    """What a records file's entry is bound to: the file's digest, its format, the reader version."""
    return (PURPOSE, sha256, fmt, READER_VERSION)


def _encode(entry: dict[str, Any], key, sha256: str, fmt: str) -> bytes:
    """A records file's entry as MAC'd bytes (see :func:`_seal`)."""
    return _seal(entry, key, _bound(sha256, fmt))


def _decode(data: bytes, key, sha256: str, fmt: str) -> dict[str, Any] | None:
    """The records file's entry in ``data`` if its MAC verifies under ``key`` for this digest and format, else None."""
    return _open(data, key, _bound(sha256, fmt))


def _seal(entry: dict[str, Any], key, bound: tuple) -> bytes:
    """``entry`` ({"columns", "vocab", "outputs", "prompts"}, and optionally "extra": JSON kept in the
    header) as bytes MAC'd over ``bound`` (purpose first, then what the entry is the value of) and the
    whole content; arrays stored in the smallest dtype that holds them, restored to the dtype the
    reader made."""
    columns = entry["columns"]
    rows = len(columns["line"]) if "line" in columns else 0
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
        **({"extra": entry["extra"]} if "extra" in entry else {}),
    }, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    content = b"".join(body)
    mac = key.mac(*bound, header, content)
    return MAGIC + mac + len(header).to_bytes(8, "big") + header + content


def _open(data: bytes, key, bound: tuple) -> dict[str, Any] | None:
    """The entry in ``data`` if its MAC verifies under ``key`` over ``bound`` and its content, else None."""
    start = len(MAGIC) + 32 + 8
    if len(data) < start or not data.startswith(MAGIC):
        return None
    mac = data[len(MAGIC):len(MAGIC) + 32]
    length = int.from_bytes(data[start - 8:start], "big")
    if length > len(data) - start:
        return None
    header, content = data[start:start + length], data[start + length:]
    if not key.verify(mac, *bound, header, content):
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
                "prompts": {int(row): text for row, text in meta["prompts"]},
                **({"extra": meta["extra"]} if "extra" in meta else {})}
    except (ValueError, KeyError, TypeError, IndexError):
        return None
