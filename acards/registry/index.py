"""The writer's rules index: what SPEC §9's rules ask of the log so far, in an authenticated map.

``LogRules`` asks three things of the entries before a new one: the publish entry of a digest, the
latest published version of a card id, and whether a digest is revoked. A writer answers them from
a ``trie.Trie`` whose root the signed state names (``acards.registry.state``), through the mapping
views ``view_rules`` gives ``LogRules``: O(log n) node reads per question, each node checked against
its hash, and O(log n) new nodes per entry. The nodes live in ``state/index.sqlite``, written only
under the writer's lock; nothing there is trusted (a node that is missing or altered raises
``TrieError`` and the writer rebuilds the index from the log).

    p:<digest>   {"card_id", "digest", "index", "version"} of the digest's publish entry
    l:<card id>  the same four fields of the card id's latest published version
    r:<digest>   the reason the digest was revoked (a JSON string)
    e:<kind>:<digest>  {"digest", "index", "kind"} of an entry of another kind (rules.LOGGED_FIELDS)
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any, Callable, Iterator, MutableMapping

from acards.canonical import canonical_bytes
from acards.registry.rules import LOGGED_FIELDS, LogRules
from acards.registry.trie import Trie, TrieError, build

_PUBLISHED, _LATEST, _REVOKED, _LOGGED = b"p:", b"l:", b"r:", b"e:"
_VERSION_FIELDS = ("card_id", "digest", "index", "version")


def _version(entry: dict) -> bytes:
    return canonical_bytes({name: entry[name] for name in _VERSION_FIELDS})


def _logged(entry: dict) -> bytes:
    return canonical_bytes({name: entry[name] for name in LOGGED_FIELDS})


def _reason(reason: str) -> bytes:
    return canonical_bytes(reason)


class _View(MutableMapping[str, Any]):
    """One kind of key of the index, as the mapping ``LogRules`` keeps: get, in, [] and assignment
    (assignment puts into the trie). It cannot be listed: only the log lists what is in it."""

    def __init__(self, trie: Trie, prefix: bytes, encode: Callable[[Any], bytes]):
        self.trie, self.prefix, self.encode = trie, prefix, encode

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or not key.isascii():  # digests and card ids are ASCII
            raise KeyError(key)
        value = self.trie.get(self.prefix + key.encode("ascii"))
        if value is None:
            raise KeyError(key)
        return json.loads(value)

    def __setitem__(self, key: str, value: Any) -> None:
        self.trie.put(self.prefix + key.encode("utf-8"), self.encode(value))

    def __delitem__(self, key: str) -> None:
        raise TypeError("the rules index never removes a key")

    def __iter__(self) -> Iterator[str]:
        raise TypeError("the rules index cannot be listed; read the log")

    def __len__(self) -> int:
        raise TypeError("the rules index cannot be counted; read the log")


def view_rules(origin: str, size: int, trie: Trie) -> LogRules:
    """``LogRules`` after ``size`` entries, asking ``trie`` instead of holding the entries."""
    return LogRules(
        origin, size,
        published=_View(trie, _PUBLISHED, _version),
        latest=_View(trie, _LATEST, _version),
        revoked=_View(trie, _REVOKED, _reason),
        logged=_View(trie, _LOGGED, _logged),
    )


def _items(rules: LogRules) -> Iterator[tuple[bytes, bytes]]:
    for digest, entry in rules.published.items():
        yield _PUBLISHED + digest.encode("utf-8"), _version(entry)
    for card_id, entry in rules.latest.items():
        yield _LATEST + card_id.encode("utf-8"), _version(entry)
    for digest, reason in rules.revoked.items():
        yield _REVOKED + digest.encode("utf-8"), _reason(reason)
    for key, entry in rules.logged.items():
        yield _LOGGED + key.encode("utf-8"), _logged(entry)


def build_index(rules: LogRules) -> tuple[bytes, dict[bytes, bytes]]:
    """(root, nodes) of the index of ``rules``, replayed from the log (holding its entries)."""
    return build(_items(rules))


class NodeFile:
    """state/index.sqlite: the trie's nodes by hash. Durability is not needed (a node lost, torn or
    altered only makes the writer rebuild), so SQLite neither syncs it nor keeps a journal on disk."""

    def __init__(self, path: Path):
        self.path = path
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                if not stat.S_ISREG(os.lstat(self.path).st_mode):  # never write through a link
                    raise TrieError(f"{self.path.name} is not a regular file")
            except FileNotFoundError:
                pass
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=MEMORY")
                db.execute("PRAGMA synchronous=OFF")
                db.execute("CREATE TABLE IF NOT EXISTS nodes (hash BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def get(self, node: bytes) -> bytes | None:
        try:
            row = self._connect().execute("SELECT body FROM nodes WHERE hash = ?", (node,)).fetchone()
        except sqlite3.Error as error:
            raise TrieError(f"cannot read {self.path.name}: {error}") from None
        return None if row is None else bytes(row[0])

    def _write(self, write: dict[bytes, bytes], drop: set[bytes]) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM nodes WHERE hash = ?", ((node,) for node in drop))
            db.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?)", write.items())
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the statement that failed ended the transaction already
            raise

    def update(self, trie: Trie) -> None:
        """Store what ``trie`` added since it was read, and drop the nodes it made unreachable."""
        write, drop = trie.changes()
        try:
            self._write(write, drop)
        except sqlite3.Error as error:
            raise TrieError(f"cannot write {self.path.name}: {error}") from None

    def replace(self, nodes: dict[bytes, bytes]) -> None:
        """Write a new file holding exactly ``nodes`` (whatever the old one held, or if it was
        damaged by a crash in the middle of a write: SQLite keeps no journal on disk here)."""
        self.close()
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(f"{self.path}{suffix}")
            except FileNotFoundError:
                pass
        try:
            self._write(nodes, set())
        except sqlite3.Error as error:
            raise TrieError(f"cannot write {self.path.name}: {error}") from None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
