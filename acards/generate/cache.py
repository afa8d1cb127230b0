"""The output cache: every generated output, keyed on what produced it, in SQLite.

A key is the sha256 of the RFC 8785 bytes of ``{"context": <context digest>, "prompt_ids": [...],
"sample": <index>}``, where the context digest is the sha256 of the RFC 8785 bytes of::

    {"weights":   {"base": <folder digest>, "adapter": <adapter digest or null>, "full": <... or null>},
     "tokenizer": <digest of the tokenizer files' manifest>,
     "decoding":  {max_new_tokens, do_sample, eos_token_ids[, temperature, top_p, seed, sampler]},
     "backend":   {"name", "versions": {...}, "dtype"}}

Weight digests are those of :func:`acards.evidence.digests.digest_path` (a folder's manifest digest), never
a model name, so a cache entry can only be served for the exact weights, tokenizer, prompt tokens,
decoding settings, sample index and backend that produced it.

Storage: ``cache_dir()/outputs/outputs.sqlite`` (the main file) and, for sharded runs, one file per
shard under ``cache_dir()/outputs/shards/``, merged into the main file by :func:`merge`.  WAL
journaling, a busy timeout and ``INSERT OR IGNORE`` make concurrent writers safe; every finished
batch is one transaction, so an interrupted run leaves whole batches and the next run resumes.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import rfc8785

from acards.errors import AcardsError, Location

SCHEMA_VERSION = 1
CHUNK = 900  # host parameters per lookup query (SQLite's historical limit is 999)
BUSY_TIMEOUT_MS = 60_000
MAIN_NAME = "outputs.sqlite"


def outputs_dir(cache_dir: Path | None = None) -> Path:
    """``cache_dir``/outputs; ``cache_dir`` defaults to the settings' cache folder (acards.settings)."""
    from acards.settings import cache_dir as default_cache_dir

    return (cache_dir if cache_dir is not None else default_cache_dir()) / "outputs"


def main_path(cache_dir: Path | None = None) -> Path:
    return outputs_dir(cache_dir) / MAIN_NAME


def shard_path(index: int, count: int, cache_dir: Path | None = None) -> Path:
    return outputs_dir(cache_dir) / "shards" / f"shard-{index:05d}-of-{count:05d}.sqlite"


def shard_files(cache_dir: Path | None = None) -> list[Path]:
    folder = outputs_dir(cache_dir) / "shards"
    return sorted(folder.glob("shard-*.sqlite")) if folder.is_dir() else []


# --- keys -------------------------------------------------------------------------------------

def digest(obj: Any) -> str:
    """sha256 (hex) of the RFC 8785 bytes of ``obj``."""
    return hashlib.sha256(rfc8785.dumps(obj)).hexdigest()


def context_digest(context: dict) -> str:
    return digest(context)


def request_key(context: str, prompt_ids: list[int], sample: int) -> str:
    return digest({"context": context, "prompt_ids": list(prompt_ids), "sample": int(sample)})


def sampling_seed(key: str) -> int:
    """The seed of a request's own torch.Generator: the first 63 bits of its cache key (which is a
    digest of generation.seed, the weights, the prompt tokens and the sample index)."""
    return int(key[:16], 16) >> 1


def shard_of(identity: dict, count: int) -> int:
    """The shard (0..count-1) of a request: a stable hash of its record identity, mod ``count``."""
    return int(digest(identity)[:16], 16) % count


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/N"`` (or ``(i, N)``) → ``(i, N)`` with 0 ≤ i < N."""
    if text is None:
        return None
    if isinstance(text, tuple):
        index, count = text
    else:
        try:
            left, right = str(text).split("/")
            index, count = int(left), int(right)
        except ValueError:
            raise AcardsError("usage.bad-shard", f"--shard {text!r} is not of the form i/N",
                              "write the shard as i/N with 0 <= i < N, e.g. --shard 3/8 (Slurm: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT)") from None
    if not (isinstance(index, int) and isinstance(count, int) and count >= 1 and 0 <= index < count):
        raise AcardsError("usage.bad-shard", f"shard {index}/{count} is out of range",
                          "write the shard as i/N with N >= 1 and 0 <= i < N")
    return index, count


# --- the SQLite file ----------------------------------------------------------------------------

def _bad(path: Path, error: Exception) -> AcardsError:
    return AcardsError("cache.unusable", f"the output cache {path} cannot be used: {error}",
                       "if the file is damaged, remove it with `acards cache clear` (outputs are regenerated); "
                       "if it is locked, wait for the other acards process", Location(file=str(path)))


class OutputCache:
    """One SQLite file of outputs.  ``readonly`` opens an existing file without creating it."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._db: sqlite3.Connection | None = None
        try:
            if readonly:
                if not self.path.exists():
                    return
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                           isolation_level=None, check_same_thread=False)
                self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='outputs'").fetchone():
                    self.close()  # another process is creating it right now: nothing to read yet
                    return
                self._check_version()
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("CREATE TABLE IF NOT EXISTS outputs (key BLOB PRIMARY KEY, context BLOB NOT NULL,"
                                 " output TEXT NOT NULL, created REAL NOT NULL) WITHOUT ROWID")
                self._db.execute("CREATE TABLE IF NOT EXISTS contexts (context BLOB PRIMARY KEY, description TEXT NOT NULL)"
                                 " WITHOUT ROWID")
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._check_version()
        except sqlite3.Error as error:
            self.close()
            raise _bad(self.path, error) from None

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise AcardsError("cache.version", f"{self.path} was written by a newer acards (cache schema {version})",
                              "upgrade acards, or point ACARDS_CACHE_DIR at another folder", Location(file=str(self.path)))

    def __enter__(self) -> "OutputCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """{key: output} for the keys present: one query per chunk of 900 keys."""
        if self._db is None:
            return {}
        wanted = [bytes.fromhex(k) for k in keys]
        found: dict[str, str] = {}
        try:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                marks = ",".join("?" * len(chunk))
                for key, output in self._db.execute(f"SELECT key, output FROM outputs WHERE key IN ({marks})", chunk):
                    found[key.hex()] = output
        except sqlite3.Error as error:
            raise _bad(self.path, error) from None
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str]], contexts: dict[str, dict] | None = None) -> int:
        """Insert (key, context, output) rows in one transaction; existing keys are kept."""
        if self._db is None or self.readonly:
            raise AcardsError("cache.readonly", f"{self.path} is open read-only", "this is a bug in acards")
        now = time.time()
        data = [(bytes.fromhex(k), bytes.fromhex(c), o, now) for k, c, o in rows]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for context, description in (contexts or {}).items():
                    self._db.execute("INSERT OR IGNORE INTO contexts VALUES (?, ?)",
                                     (bytes.fromhex(context), rfc8785.dumps(description).decode("utf-8")))
                before = self._db.total_changes
                self._db.executemany("INSERT OR IGNORE INTO outputs VALUES (?, ?, ?, ?)", data)
                added = self._db.total_changes - before
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise _bad(self.path, error) from None
        return added

    def count(self) -> int:
        if self._db is None:
            return 0
        return self._db.execute("SELECT count(*) FROM outputs").fetchone()[0]

    def contexts(self) -> list[dict]:
        if self._db is None:
            return []
        import json

        rows = self._db.execute("SELECT c.context, c.description, count(o.key) FROM contexts c"
                                " LEFT JOIN outputs o ON o.context = c.context GROUP BY c.context").fetchall()
        return [{"context": c.hex(), "outputs": n, **json.loads(d)} for c, d, n in rows]


# --- cache info | clear | merge -----------------------------------------------------------------

def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


def info(cache_dir: Path | None = None) -> dict[str, Any]:
    """Where the output cache is, how large, how many outputs, and which shard files wait to be merged."""
    from acards.settings import cache_dir as default_cache_dir

    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    main = main_path(cache_dir)
    with OutputCache(main, readonly=True) as cache:
        entries, contexts = cache.count(), cache.contexts()
    shards = []
    for path in shard_files(cache_dir):
        with OutputCache(path, readonly=True) as cache:
            shards.append({"path": str(path), "outputs": cache.count(), "bytes": _size(path)})
    controls = cache_dir / "controls"
    return {"folder": str(outputs_dir(cache_dir)), "main": {"path": str(main), "exists": main.exists(), "outputs": entries,
                                                   "bytes": _size(main) if main.exists() else 0},
            "models": contexts, "shards": shards,
            "controls": sorted(p.name for p in controls.iterdir()) if controls.is_dir() else []}


def clear(include_controls: bool = True, cache_dir: Path | None = None) -> dict[str, Any]:
    """Delete the main output cache, every shard file and (by default) the control adapters."""
    import shutil

    from acards.settings import cache_dir as default_cache_dir

    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    removed = []
    for path in [main_path(cache_dir), *shard_files(cache_dir)]:
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if part.exists():
                part.unlink()
                removed.append(str(part))
    controls = cache_dir / "controls"
    if include_controls and controls.is_dir():
        shutil.rmtree(controls)
        removed.append(str(controls))
    return {"removed": removed}


def merge(sources: list[Path] | None = None, into: Path | None = None, remove: bool = False,
          cache_dir: Path | None = None) -> dict[str, Any]:
    """Copy every output of ``sources`` (default: the shard files) into ``into`` (default: the main
    file); existing keys are kept.  ``remove`` deletes each source after it is merged."""
    into = Path(into) if into is not None else main_path(cache_dir)
    sources = [Path(s) for s in (sources if sources is not None else shard_files(cache_dir))]
    merged, added_total = [], 0
    with OutputCache(into) as target:
        db = target._db
        for source in sources:
            if not source.is_file():
                raise AcardsError("cache.not-found", f"{source} does not exist", "give the path of a shard cache file",
                                  Location(file=str(source)))
            if source.resolve() == into.resolve():
                continue
            with OutputCache(source, readonly=True):  # checks that it is an acards cache of a known version
                pass
            try:
                db.execute("ATTACH DATABASE ? AS src", (str(source),))
                try:
                    db.execute("BEGIN IMMEDIATE")
                    before = db.total_changes
                    db.execute("INSERT OR IGNORE INTO main.contexts SELECT * FROM src.contexts")
                    contexts_added = db.total_changes - before
                    db.execute("INSERT OR IGNORE INTO main.outputs SELECT * FROM src.outputs")
                    added = db.total_changes - before - contexts_added
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
                finally:
                    db.execute("DETACH DATABASE src")
            except sqlite3.Error as error:
                raise _bad(source, error) from None
            added_total += added
            merged.append({"path": str(source), "added": added})
            if remove:
                for part in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
                    if part.exists():
                        part.unlink()
        total = target.count()
    return {"into": str(into), "sources": merged, "added": added_total, "outputs": total}
