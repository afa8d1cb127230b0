"""The output cache: every generated output, keyed on what produced it, in SQLite.

A key is the sha256 of (:data:`KEY_FORMAT`, context digest, prompt, system message or none, sample
index), each part length-prefixed (:func:`acards.evidence.cachekey.framed`) — the prompt as the
prompts file gives it, never token ids, so a lookup needs no tokenizer (and no torch, transformers
or peft) — where the context digest is the sha256 of the RFC 8785 bytes of::

    {"weights":   {"base": <folder digest>, "adapter": <adapter digest or null>, "full": <... or null>},
     "tokenizer": <digest of the tokenizer files' manifest>,
     "prompting": {"rules": <acards' rendering rules, versioned>, "chat_template": <the card's flag>,
                   "packages": {transformers, tokenizers, jinja2, sentencepiece: versions}},
     "decoding":  {max_new_tokens, do_sample[, temperature, top_p, seed, sampler]},
     "backend":   {"name", "versions": {...}, "dtype"}}

Weight digests are those of :func:`acards.evidence.digests.digest_path` (a folder's manifest digest),
never a model name.  What turns the text into token ids and the ids back into text is named too:
the tokenizer files (the chat template among them), the base folder (its generation_config.json's
end-of-sequence ids; a full-weights folder's too), acards' rendering rules (BOS, special tokens,
stop ids) and the packages that apply them.  So an entry can only be served for the exact weights,
tokenizer, prompt text, rendering, decoding settings, sample index and backend that produced it.

Storage: ``cache_dir()/outputs/outputs.sqlite`` (the main file) and, for sharded runs, one file per
shard under ``cache_dir()/outputs/shards/``, merged into the main file by :func:`merge`.  WAL
journaling and a busy timeout make concurrent writers safe; every finished batch is one
transaction, so an interrupted run leaves whole batches and the next run resumes.

Authentication: every row carries an HMAC-SHA256 of (key, context, output) under this user's cache
key, which lives outside the cache folder (:mod:`acards.evidence.cachekey`).  Lookups, shard files
and :func:`merge` use only rows whose MAC verifies; the rest are counted as rejected
(``cache.entry-rejected``) and their outputs regenerated.  Context descriptions are re-derived
(their sha256 must be their digest).

Versions: schema 3 keys outputs by prompt text.  Rows of schema 2 (keyed by token ids) can never be
asked for again: opening such a file to write deletes them, and reading one skips them (counted in
:attr:`OutputCache.stale`, not as rejected: they are not forged, only of an older format).
"""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

import rfc8785

from acards.errors import AcardsError, Location
from acards.evidence.cachekey import framed
from acards.files import enable_wal
from acards.settings import usable_cache_dir

SCHEMA_VERSION = 3  # 3: keyed by prompt text; 2: keyed by token ids (stale); 1: no MAC (never trusted)
KEY_FORMAT = "acards/output-key/3"
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


_KEY_STATES: dict[str, Any] = {}  # context digest -> sha256 state fed framed(KEY_FORMAT, context)


def request_key(context: str, prompt: str, system: str | None, sample: int) -> str:
    """The cache key of one output: its context digest, its prompt and system message as text, its
    sample index (see the module docstring).

    ``sha256(framed(KEY_FORMAT, context, prompt, system, sample))`` (a test checks it), hashed from
    a copy of the state that has taken ``KEY_FORMAT`` and the context (the same for thousands of
    requests), the rest framed inline: a re-verify computes one key per request."""
    state = _KEY_STATES.get(context)
    if state is None:
        if len(_KEY_STATES) > 4096:
            _KEY_STATES.clear()
        state = _KEY_STATES[context] = hashlib.sha256(framed(KEY_FORMAT, context))
    text = prompt.encode("utf-8", "surrogatepass")
    if system is None:
        extra = _NO_SYSTEM
    else:
        extra = system.encode("utf-8", "surrogatepass")
        extra = len(extra).to_bytes(8, "big") + extra
    index = _INDEX_FRAMES.get(sample)
    if index is None:
        index = _INDEX_FRAMES[sample] = _framed_index(sample)
    hasher = state.copy()
    hasher.update(b"".join((len(text).to_bytes(8, "big"), text, extra, index)))
    return hasher.hexdigest()


def _framed_index(sample: int) -> bytes:
    index = str(int(sample)).encode("ascii")
    return len(index).to_bytes(8, "big") + index


_NO_SYSTEM = (1).to_bytes(8, "big") + b"\xff"  # framed None: one byte 0xff
_INDEX_FRAMES: dict[int, bytes] = {}  # sample index -> its framed bytes (a few values, asked thousands of times)


def seed_key(context: str, prompt_ids: list[int], sample: int) -> str:
    """What a sampled request's seed is drawn from: the digest of its seed context (generation.seed,
    weights, tokenizer, decoding settings with stop ids, backend), its prompt token ids and its
    sample index.  Computed only when the request is generated (it needs the tokenizer)."""
    return digest({"context": context, "prompt_ids": list(prompt_ids), "sample": int(sample)})


def sampling_seed(key: str) -> int:
    """The seed of a request's own torch.Generator: the first 63 bits of its :func:`seed_key`."""
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


PURPOSE = "acards/output-cache/1"


_FRAMED_PURPOSE = framed(PURPOSE)


def _entry_message(cache_key: bytes, context: bytes, output: str) -> bytes:
    """``framed(PURPOSE, cache_key, context, output)`` (a test checks it), built without the generic
    loop: lookups run it once per row."""
    text = output.encode("utf-8", "surrogatepass")
    return b"".join((_FRAMED_PURPOSE, len(cache_key).to_bytes(8, "big"), cache_key, len(context).to_bytes(8, "big"),
                     context, len(text).to_bytes(8, "big"), text))


def _entry_mac(key, cache_key: bytes, context: bytes, output: str) -> bytes:
    """The MAC of one output: binds the output to its cache key and its context digest (which names
    the weights, tokenizer, rendering, decoding settings and backend with its versions and dtype)."""
    return key.mac_framed(_entry_message(cache_key, context, output))


def _verified(key, rows: list) -> tuple[list[tuple[bytes, bytes, str]], int]:
    """The (key, context, output) of the rows read back (key, context, output, mac) that this user's
    key made — every column of the right type, the MAC right — and how many others there were."""
    typed = [row for row in rows if type(row[0]) is bytes and type(row[1]) is bytes and type(row[2]) is str
             and type(row[3]) is bytes]
    macs = key.macs_framed([_entry_message(k, c, o) for k, c, o, _ in typed])
    good = [(k, c, o) for (k, c, o, mac), made in zip(typed, macs) if hmac.compare_digest(mac, made)]
    return good, len(rows) - len(good)


class OutputCache:
    """One SQLite file of outputs.  ``readonly`` opens an existing file without creating it.

    Each row is ``(key, keyid, context, output, mac, created)``: ``mac`` is the HMAC of (key,
    context, output) under this user's cache key (:mod:`acards.evidence.cachekey`), ``keyid`` names
    that key, so users who share a file each read only their own rows.  :meth:`get_many` returns only
    outputs whose MAC verifies; every other entry found for a wanted key (altered, written under
    another key, or by an acards older than MACs) is counted in :attr:`rejected` and never used.
    Rows of schema 2 (keyed by token ids) are never read: :attr:`stale` counts them.
    """

    def __init__(self, path: Path, readonly: bool = False, key=None):
        from acards.evidence.cachekey import cache_key

        self.path = Path(path)
        self.readonly = readonly
        self.key = key if key is not None else cache_key()
        self.rejected: dict[str, int] = {"altered": 0, "other-key": 0, "no-mac": 0}
        self.stale = 0  # rows of schema 2, keyed by token ids: never read, deleted when the file is opened to write
        self._db: sqlite3.Connection | None = None
        self._legacy = False  # the file has the outputs table of acards before MACs
        self._entries = False
        try:
            if readonly:
                if not self.path.exists():
                    return
                self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                           isolation_level=None, check_same_thread=False)
                self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                self._tables()
                if not (self._entries or self._legacy):
                    self.close()  # another process is creating it right now: nothing to read yet
                    return
                if self._check_version() == 2 and self._entries:
                    self.stale = self._db.execute("SELECT count(*) FROM entries").fetchone()[0]
                    self._entries = False
                return
            usable_cache_dir(self.path.parent)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            enable_wal(self._db, BUSY_TIMEOUT_MS / 1000)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._check_version() == 2:  # keyed by token ids: no lookup can ask for these rows again
                    self.stale = self._db.execute("DELETE FROM entries").rowcount
                    self._db.execute("DELETE FROM contexts")
                self._db.execute("CREATE TABLE IF NOT EXISTS entries (key BLOB NOT NULL, keyid BLOB NOT NULL,"
                                 " context BLOB NOT NULL, output TEXT NOT NULL, mac BLOB NOT NULL, created REAL NOT NULL,"
                                 " PRIMARY KEY (key, keyid)) WITHOUT ROWID")
                self._db.execute("CREATE TABLE IF NOT EXISTS contexts (context BLOB PRIMARY KEY, description TEXT NOT NULL)"
                                 " WITHOUT ROWID")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # 0 (new), 1 (before MACs) or 2: now 3
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._tables()
        except sqlite3.Error as error:
            self.close()
            raise _bad(self.path, error) from None
        except BaseException:
            self.close()
            raise

    def _tables(self) -> None:
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        self._entries, self._legacy = "entries" in names, "outputs" in names

    def _check_version(self) -> int:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, 2, SCHEMA_VERSION):
            raise AcardsError("cache.version", f"{self.path} was written by a newer acards (cache schema {version})",
                              "upgrade acards, or point ACARDS_CACHE_DIR at another folder", Location(file=str(self.path)))
        return version

    def __enter__(self) -> "OutputCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def rejected_count(self) -> int:
        return sum(self.rejected.values())

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """{key: output} for the keys (lower-case hex, as :func:`request_key` makes them) present
        whose MAC verifies: one query per chunk of 900 keys, in key order (a range scan while the
        chunks' key ranges hold few rows not asked for, else a lookup per key).  Entries found for a
        wanted key that do not verify are counted in :attr:`rejected`."""
        if self._db is None:
            return {}
        # In key order (hex sorts as its bytes do): each chunk then reads neighbouring pages (2x faster on 200k rows).
        wanted = [bytes.fromhex(k) for k in sorted(set(keys))]
        found: dict[str, str] = {}
        keyid = self.key.id
        dense = True  # until a chunk's key range holds many rows it does not want
        try:
            for start in range(0, len(wanted), CHUNK):
                chunk = wanted[start:start + CHUNK]
                marks = ",".join("?" * len(chunk))
                good: dict[bytes, str] = {}
                if self._entries:
                    rows = None
                    if dense:  # most rows of the chunk's key range wanted: one range scan beats a seek per key (2x)
                        limit = len(chunk) + len(chunk) // 4
                        rows = self._db.execute("SELECT key, context, output, mac FROM entries WHERE key BETWEEN ? AND ?"
                                                " AND keyid = ? LIMIT ?", (chunk[0], chunk[-1], keyid, limit + 1)).fetchall()
                        if len(rows) > limit:
                            dense, rows = False, None  # keys are hashes, spread evenly: later chunks would be sparse too
                        else:
                            members = set(chunk)
                            rows = [row for row in rows if row[0] in members]
                    if rows is None:
                        rows = self._db.execute(f"SELECT key, context, output, mac FROM entries WHERE keyid = ? AND key IN ({marks})",
                                                [keyid, *chunk]).fetchall()
                    verified, altered = _verified(self.key, rows)
                    self.rejected["altered"] += altered
                    good = {row_key: output for row_key, _, output in verified}
                    found.update(zip([row_key.hex() for row_key in good], good.values()))
                if len(good) == len(chunk):
                    continue
                rest = [k for k in chunk if k not in good]
                marks = ",".join("?" * len(rest))
                seen: set[bytes] = set()
                if self._entries:
                    for (row_key,) in self._db.execute(f"SELECT DISTINCT key FROM entries WHERE keyid != ? AND key IN ({marks})",
                                                       [keyid, *rest]):
                        seen.add(bytes(row_key))
                    self.rejected["other-key"] += len(seen)
                if self._legacy:
                    legacy = {bytes(k) for (k,) in self._db.execute(f"SELECT key FROM outputs WHERE key IN ({marks})", rest)}
                    self.rejected["no-mac"] += len(legacy - seen)
        except sqlite3.Error as error:
            raise _bad(self.path, error) from None
        return found

    def put_many(self, rows: Iterable[tuple[str, str, str]], contexts: dict[str, dict] | None = None) -> int:
        """Write (key, context, output) rows, each with its MAC, in one transaction; a row of this
        user's key already there is replaced (it may be one that failed its check)."""
        if self._db is None or self.readonly:
            raise AcardsError("cache.readonly", f"{self.path} is open read-only", "this is a bug in acards")
        now = time.time()
        keyid = self.key.id
        data = []
        for k, c, o in rows:
            key, context = bytes.fromhex(k), bytes.fromhex(c)
            data.append((key, keyid, context, o, _entry_mac(self.key, key, context, o), now))
        data.sort()  # in key order: each insert lands beside the last (random order: 2x slower on a large file)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for context, description in (contexts or {}).items():
                    self._db.execute("INSERT OR IGNORE INTO contexts VALUES (?, ?)",
                                     (bytes.fromhex(context), rfc8785.dumps(description).decode("utf-8")))
                before = self._db.total_changes
                self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?)", data)
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
        """How many rows of this user's key the file holds (their MACs are checked when read)."""
        if self._db is None or not self._entries:
            return 0
        return self._db.execute("SELECT count(*) FROM entries WHERE keyid = ?", (self.key.id,)).fetchone()[0]

    def rows(self, batch: int = 10_000) -> Iterable[list[tuple[str, str, str]]]:
        """Every (key, context, output) row whose MAC verifies under this user's key, in batches;
        every other row of the file is counted in :attr:`rejected` (for :func:`merge`)."""
        if self._db is None:
            return
        if self._legacy:
            self.rejected["no-mac"] += self._db.execute("SELECT count(*) FROM outputs").fetchone()[0]
        if not self._entries:
            return
        self.rejected["other-key"] += self._db.execute("SELECT count(*) FROM entries WHERE keyid != ?",
                                                       (self.key.id,)).fetchone()[0]
        cursor = self._db.execute("SELECT key, context, output, mac FROM entries WHERE keyid = ?", (self.key.id,))
        while True:
            chunk = cursor.fetchmany(batch)
            if not chunk:
                return
            verified, altered = _verified(self.key, chunk)
            self.rejected["altered"] += altered
            yield [(key.hex(), context.hex(), output) for key, context, output in verified]

    def context_descriptions(self) -> dict[str, dict]:
        """{context digest: description} for the descriptions that hash to their digest (re-derived)."""
        import json

        if self._db is None:
            return {}
        found = {}
        for context, description in self._db.execute("SELECT context, description FROM contexts"):
            if isinstance(description, str) and hashlib.sha256(description.encode("utf-8")).digest() == bytes(context):
                found[bytes(context).hex()] = json.loads(description)
        return found

    def contexts(self) -> list[dict]:
        if self._db is None or not self._entries:
            return []
        counts = dict(self._db.execute("SELECT context, count(*) FROM entries WHERE keyid = ? GROUP BY context",
                                       (self.key.id,)).fetchall())
        return [{"context": c, "outputs": counts.get(bytes.fromhex(c), 0), **d}
                for c, d in self.context_descriptions().items()]


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
    from acards.evidence.records_cache import FOLDER as RECORDS_FOLDER

    controls = cache_dir / "controls"
    records = [p for p in (cache_dir / RECORDS_FOLDER).rglob("*") if p.is_file() and not p.is_symlink()] \
        if (cache_dir / RECORDS_FOLDER).is_dir() else []
    return {"folder": str(outputs_dir(cache_dir)), "main": {"path": str(main), "exists": main.exists(), "outputs": entries,
                                                   "bytes": _size(main) if main.exists() else 0},
            "models": contexts, "shards": shards,
            "controls": sorted(p.name for p in controls.iterdir() if p.is_dir() and not p.name.startswith(".")) if controls.is_dir() else [],
            "records": {"path": str(cache_dir / RECORDS_FOLDER), "files": len(records), "bytes": sum(p.stat().st_size for p in records)}}


def clear(include_controls: bool = True, cache_dir: Path | None = None) -> dict[str, Any]:
    """Delete the main output cache, every shard file, the decoded records and (by default) the control adapters."""
    import shutil

    from acards.settings import cache_dir as default_cache_dir

    cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
    removed = []
    for path in [main_path(cache_dir), *shard_files(cache_dir)]:
        for part in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if part.exists():
                part.unlink()
                removed.append(str(part))
    from acards.evidence.records_cache import FOLDER as RECORDS_FOLDER

    folders = [RECORDS_FOLDER, *(("controls", "control-seals") if include_controls else ())]
    for name in folders:
        folder = cache_dir / name
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
            removed.append(str(folder))
    return {"removed": removed}


def merge(sources: list[Path] | None = None, into: Path | None = None, remove: bool = False,
          cache_dir: Path | None = None, key=None) -> dict[str, Any]:
    """Copy every output of ``sources`` (default: the shard files) whose MAC verifies under this
    user's cache key into ``into`` (default: the main file).  Every other row (altered, written under
    another key, or without a MAC) is rejected: counted per source, never copied.  ``remove``
    deletes each source after it is merged."""
    from acards.evidence.cachekey import cache_key, rejected_warning

    key = key if key is not None else cache_key()
    into = Path(into) if into is not None else main_path(cache_dir)
    sources = [Path(s) for s in (sources if sources is not None else shard_files(cache_dir))]
    merged, added_total, rejected_total = [], 0, 0
    with OutputCache(into, key=key) as target:
        for source in sources:
            if not source.is_file():
                raise AcardsError("cache.not-found", f"{source} does not exist", "give the path of a shard cache file",
                                  Location(file=str(source)))
            if source.resolve() == into.resolve():
                continue
            before = target.count()
            with OutputCache(source, readonly=True, key=key) as reader:  # an acards cache of a known version
                try:
                    descriptions = reader.context_descriptions()
                    for rows in reader.rows():
                        contexts = {c: descriptions[c] for _, c, _ in rows if c in descriptions}
                        target.put_many(rows, contexts)
                except sqlite3.Error as error:
                    raise _bad(source, error) from None
                rejected, stale = dict(reader.rejected), reader.stale
            added = target.count() - before
            count = sum(rejected.values())
            added_total += added
            rejected_total += count
            merged.append({"path": str(source), "added": added, "rejected": count, "rejected_by_reason": rejected,
                           "stale": stale})  # of an older key format: not merged, never asked for again
            if count:
                rejected_warning(f"{count} outputs in {source} were not merged: their MAC does not verify under this user's "
                                 f"cache key ({rejected['altered']} altered, {rejected['other-key']} written under another key, "
                                 f"{rejected['no-mac']} without a MAC)",
                                 "outputs are only trusted when this user's key made them; the rejected ones are "
                                 "regenerated when needed", Location(file=str(source)))
            if remove:
                for part in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
                    if part.exists():
                        part.unlink()
        total = target.count()
    return {"into": str(into), "sources": merged, "added": added_total, "rejected": rejected_total, "outputs": total}
