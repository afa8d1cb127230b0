"""An authenticated map (pure): a compressed binary Merkle trie over the SHA-256 of each key.

The registry's writer keeps the state SPEC §9's rules need (which digests are published, each card
id's latest version, which digests are revoked) in one of these, so that a publish looks up and
updates O(log n) nodes instead of re-reading the log. Only its root hash is trusted (the registry
key signs it in the writer's state); every node read is checked against the hash that named it, so
a node store that was edited, lost or mixed with another answers ``TrieError``, never a wrong value.
A missing key is proven missing the same way: the path ends in an empty side or in another key's
leaf.

Shape: a key's path is the bits of SHA-256(key), most significant first. A subtree holding no key
is ``EMPTY`` (not stored), one key is that key's leaf, two or more an inner node splitting on the
next bit. The shape, and so the root, depends only on the map's content (``build`` and any order of
``put`` agree), and keys are never removed.

    leaf:  H(0x10 || key hash || value)        inner: H(0x11 || left || right)
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Iterable, Mapping

EMPTY = bytes(32)
_LEAF = b"\x10"
_INNER = b"\x11"
_KEY_BITS = 256


class TrieError(Exception):
    """The node store cannot answer for this root: a node is missing or is not what its hash names."""


def key_hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _bit(path: bytes, depth: int) -> int:
    return path[depth >> 3] >> (7 - (depth & 7)) & 1


def _inner(left: bytes, right: bytes) -> bytes:
    return _INNER + left + right


class Trie:
    """The map with root ``root`` over ``store`` (node hash -> node body), read and updated in place.

    ``put`` keeps new nodes in ``added`` and notes the stored nodes it replaced; ``changes`` says
    what to write to and delete from the store to hold the new root and nothing unreachable.
    """

    def __init__(self, store: Mapping[bytes, bytes], root: bytes = EMPTY):
        self.store = store
        self.root = root
        self.added: dict[bytes, bytes] = {}
        self._checked: dict[bytes, bytes] = {}  # stored nodes read and found to hash to their names
        self._passed: set[bytes] = set()  # nodes a put went through: garbage unless still reachable
        self._paths: list[bytes] = []  # the key hashes put since the last changes()

    def _node(self, node: bytes) -> bytes:
        body = self.added.get(node) or self._checked.get(node)
        if body is not None:
            return body
        body = self.store.get(node)
        if body is None:
            raise TrieError(f"node {node.hex()[:16]} is missing")
        if hashlib.sha256(body).digest() != node:
            raise TrieError(f"node {node.hex()[:16]} does not hash to its name")
        if not ((body[:1] == _LEAF and len(body) >= 33) or (body[:1] == _INNER and len(body) == 65)):
            raise TrieError(f"node {node.hex()[:16]} is neither a leaf nor an inner node")
        self._checked[node] = body
        return body

    def _add(self, body: bytes) -> bytes:
        node = hashlib.sha256(body).digest()
        self.added[node] = body
        return node

    def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None when the map proves it has none."""
        path, node = key_hash(key), self.root
        for depth in range(_KEY_BITS + 1):
            if node == EMPTY:
                return None
            body = self._node(node)
            if body[:1] == _LEAF:
                return body[33:] if body[1:33] == path else None
            node = body[33:65] if _bit(path, depth) else body[1:33]
        raise TrieError("a path is longer than a key hash")

    def put(self, key: bytes, value: bytes) -> None:
        """Store ``value`` under ``key``: O(depth) new nodes, and a new root."""
        path = key_hash(key)
        self._paths.append(path)
        trail: list[tuple[bytes, int]] = []  # the inner nodes above, and which side the path took
        node = self.root
        replacement = self._add(_LEAF + path + bytes(value))
        for depth in range(_KEY_BITS + 1):
            if node == EMPTY:
                break
            body = self._node(node)
            self._passed.add(node)
            if body[:1] == _LEAF:
                if body[1:33] != path:
                    replacement = self._split(node, body[1:33], replacement, path, depth)
                break
            side = _bit(path, depth)
            trail.append((body, side))
            node = body[33:65] if side else body[1:33]
        else:
            raise TrieError("a path is longer than a key hash")
        for body, side in reversed(trail):
            if side:
                replacement = self._add(_inner(body[1:33], replacement))
            else:
                replacement = self._add(_inner(replacement, body[33:65]))
        self.root = replacement

    def _split(self, old: bytes, old_path: bytes, new: bytes, new_path: bytes, depth: int) -> bytes:
        """The subtree at ``depth`` holding two leaves: inner nodes down to the first differing bit."""
        split = depth
        while _bit(old_path, split) == _bit(new_path, split):
            split += 1
        node = self._add(_inner(new, old) if _bit(new_path, split) == 0 else _inner(old, new))
        for level in range(split - 1, depth - 1, -1):
            node = self._add(_inner(node, EMPTY) if _bit(new_path, level) == 0 else _inner(EMPTY, node))
        return node

    def _near(self) -> set[bytes]:
        """Every node on the current root's paths to the keys put, and their children: all the
        nodes a put made that are still reachable, and all the stored ones it passed that are."""
        near = set()
        for path in self._paths:
            node = self.root
            for depth in range(_KEY_BITS + 1):
                if node == EMPTY:
                    break
                near.add(node)
                body = self._node(node)
                if body[:1] == _LEAF:
                    break
                near.update((body[1:33], body[33:65]))
                node = body[33:65] if _bit(path, depth) else body[1:33]
        near.discard(EMPTY)
        return near

    def changes(self) -> tuple[dict[bytes, bytes], set[bytes]]:
        """(nodes to store, nodes no longer reachable) since the last call, then forgets them. The
        second set holds every node a put replaced; those not in the store are simply not there."""
        near = self._near()
        write = {node: body for node, body in self.added.items() if node in near}
        drop = {node for node in self._passed if node not in near}
        self.added, self._passed, self._paths = {}, set(), []
        return write, drop


def build(items: Iterable[tuple[bytes, bytes]]) -> tuple[bytes, dict[bytes, bytes]]:
    """(root, every node) of the map holding ``items`` (key, value), in O(n log n) without a store."""
    values = {key_hash(key): bytes(value) for key, value in items}
    paths = sorted(values)
    nodes: dict[bytes, bytes] = {}

    def add(body: bytes) -> bytes:
        node = hashlib.sha256(body).digest()
        nodes[node] = body
        return node

    def subtree(low: int, high: int, depth: int) -> bytes:
        if low == high:
            return EMPTY
        if high - low == 1:
            return add(_LEAF + paths[low] + values[paths[low]])
        # Sorted paths sharing their first ``depth`` bits: those with a 0 next come first.
        middle = bisect.bisect_left(paths, 1, low, high, key=lambda path: _bit(path, depth))
        return add(_inner(subtree(low, middle, depth + 1), subtree(middle, high, depth + 1)))

    return subtree(0, len(paths), 0), nodes
