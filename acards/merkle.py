"""RFC 6962 / RFC 9162 §2.1 Merkle trees for the registry's append-only log (SPEC §9).

Pure functions over 32-byte SHA-256 hashes. Trees are built bottom-up, level by level, carrying an
unpaired last node up unchanged: that gives exactly RFC 6962's MTH (split at the largest power of
two below n) without recursion, and every complete node of level h is the MTH of the perfect
subtree of leaves [j·2^h, (j+1)·2^h), which any prefix's root and proofs are folded from
(``Tree``). A writer keeps only the compact range (``frontier_append``, ``frontier_root``). The verifiers follow
RFC 9162 §2.1.3.2 and §2.1.4.2 and raise ``registry.bad-proof`` for every failure.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

from acards.errors import AcardsError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """The hash of one log entry: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + bytes(left) + bytes(right)).digest()


# --- building ---------------------------------------------------------------------------------


def _bad_request(message: str) -> AcardsError:
    return AcardsError(
        "registry.bad-proof-request",
        message,
        "ask for a proof about entries and sizes the log actually has",
    )


def _checked_leaves(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    try:
        leaves = list(leaf_hashes)
    except TypeError:
        raise _bad_request("leaf hashes must be a sequence of 32-byte hashes") from None
    for index, leaf in enumerate(leaves):
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise _bad_request(f"leaf hash {index} is not a 32-byte hash (use leaf_hash())")
    return leaves


def _next_level(level: list[bytes]) -> list[bytes]:
    paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
    if len(level) % 2:
        paired.append(level[-1])  # an unpaired right node moves up unchanged
    return paired


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first, root last (non-empty ``leaves``)."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        levels.append(_next_level(levels[-1]))
    return levels


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of the leaves; the empty tree's is SHA-256 of nothing."""
    level = _checked_leaves(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:  # keeps one level at a time: a million leaves need no extra memory
        level = _next_level(level)
    return level[0]


# --- the compact range: appending without the leaves ------------------------------------------


def frontier_append(size: int, frontier: Sequence[bytes], leaf: bytes) -> list[bytes]:
    """The compact range of ``size + 1`` leaves, from that of ``size`` leaves and the new leaf hash.

    A tree of n leaves splits into perfect subtrees, one per binary digit of n, largest first (RFC
    6962 splits at the largest power of two); their roots, the compact range or frontier, are all
    that appending a leaf and computing the root need: O(log n) hashes and memory, no leaves.
    """
    nodes, node = list(frontier), leaf
    while size & 1:
        node = node_hash(nodes.pop(), node)
        size >>= 1
    nodes.append(node)
    return nodes


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """MTH of the leaves a compact range covers: its subtree roots folded from the right."""
    if not frontier:
        return EMPTY_ROOT
    node = frontier[-1]
    for left in reversed(frontier[:-1]):
        node = node_hash(left, node)
    return node


def is_frontier(size: int, frontier: Any) -> bool:
    """Whether ``frontier`` has the shape of a compact range of ``size`` leaves."""
    return (
        isinstance(frontier, list)
        and len(frontier) == bin(size).count("1")
        and all(isinstance(node, bytes) and len(node) == HASH_SIZE for node in frontier)
    )


def prefix_roots(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """roots[k] = MTH of the first k leaves, for k = 0..n, in O(n log n) hashing (verify needs all)."""
    roots = [EMPTY_ROOT]
    frontier: list[bytes] = []
    for size, leaf in enumerate(_checked_leaves(leaf_hashes)):
        frontier = frontier_append(size, frontier, leaf)
        roots.append(frontier_root(frontier))
    return roots


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_request(f"{name} must be a non-negative integer")
    return value


class Tree:
    """Every level of one tree, built once in O(n): the root, compact range and proofs of any
    prefix then come in O(log n), because a perfect subtree is a node of every tree holding it."""

    def __init__(self, leaf_hashes: Sequence[bytes]):
        leaves = _checked_leaves(leaf_hashes)
        self.size = len(leaves)
        self._levels = _levels(leaves) if leaves else [[]]

    def _covering(self, start: int, count: int) -> list[bytes]:
        """The perfect subtrees leaves [start, start + count) split into, largest first; ``start``
        must be a multiple of a power of two ≥ ``count`` (true of every range a proof names)."""
        nodes = []
        for height in reversed(range(count.bit_length())):
            if count >> height & 1:
                nodes.append(self._levels[height][start >> height])
                start += 1 << height
        return nodes

    def _range(self, start: int, end: int) -> bytes:
        return frontier_root(self._covering(start, end - start))

    def _prefix(self, size: Any, name: str = "size") -> int:
        size = _check_size(size, name)
        if size > self.size:
            raise _bad_request(f"{name} {size} is beyond the tree size {self.size}")
        return size

    def frontier(self, size: int) -> list[bytes]:
        """The compact range of the first ``size`` leaves."""
        return self._covering(0, self._prefix(size))

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves."""
        return frontier_root(self.frontier(size))

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 6962 PATH(index, D[size]): the audit path, bottom up."""
        size = self._prefix(size)
        index = _check_size(index, "index")
        if index >= size:
            raise _bad_request(f"leaf {index} is not in a tree of {size} leaves")
        path = []
        start, end = 0, size
        while end - start > 1:  # PATH's recursion unrolled, emitting from the outermost call
            k = 1 << ((end - start - 1).bit_length() - 1)  # largest power of two below the size
            if index < start + k:
                path.append(self._range(start + k, end))
                end = start + k
            else:
                path.append(self._range(start, start + k))
                start += k
        path.reverse()
        return path

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 PROOF(old_size, D[new_size]): the first ``old_size`` leaves are a prefix."""
        new_size = self._prefix(new_size, "new size")
        old_size = _check_size(old_size, "old size")
        if not 0 < old_size <= new_size:
            raise _bad_request(f"old size {old_size} must be between 1 and the tree size {new_size}")
        path: list[bytes] = []
        m, start, end, complete = old_size, 0, new_size, True
        # SUBPROOF(m, D[start:end], complete) unrolled: each step emits one node and narrows the range.
        while m != end - start:
            k = 1 << ((end - start - 1).bit_length() - 1)
            if m <= k:
                path.append(self._range(start + k, end))
                end = start + k
            else:
                path.append(self._range(start, start + k))
                m, start, complete = m - k, start + k, False
        if not complete:
            path.append(self._range(start, end))
        path.reverse()  # the recursion emits from the innermost call outwards
        return path


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of all ``leaf_hashes``, bottom up."""
    tree = Tree(leaf_hashes)
    return tree.inclusion_proof(index, tree.size)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[n]) that the first ``old_size`` leaves are a prefix of all n."""
    tree = Tree(leaf_hashes)
    return tree.consistency_proof(old_size, tree.size)


# --- verifying --------------------------------------------------------------------------------


def _bad_proof(message: str) -> AcardsError:
    return AcardsError(
        "registry.bad-proof",
        message,
        "the log or its checkpoint has been altered, or the proof belongs to other sizes",
    )


def _check_proof_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_proof(f"{name} must be a non-negative integer, got {type(value).__name__}")
    return value


def _check_hash(value: Any, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise _bad_proof(f"{name} is not a 32-byte hash")
    return value


def _check_path(proof: Any) -> list[bytes]:
    if not isinstance(proof, (list, tuple)):
        raise _bad_proof("a proof must be a list of 32-byte hashes")
    return [_check_hash(item, f"proof element {i}") for i, item in enumerate(proof)]


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is entry ``index`` of the tree of ``size`` entries with ``root``."""
    index = _check_proof_size(index, "index")
    size = _check_proof_size(size, "tree size")
    leaf = _check_hash(leaf_hash, "leaf hash")
    root = _check_hash(root, "root")
    path = _check_path(proof)
    if index >= size:
        raise _bad_proof(f"entry {index} cannot be in a tree of {size} entries")
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            raise _bad_proof("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:  # skip levels where this node was carried up
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _bad_proof("the inclusion proof is too short for the tree size")
    if result != root:
        raise _bad_proof(f"entry {index} is not in the tree of {size} entries with this root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of ``old_size`` with ``old_root`` is a prefix of the ``new_size`` one.

    ``old_size`` must be at least 1: every tree extends the empty one, so there is nothing to
    prove (and a proof "from size 0" is refused, as transparency-dev/merkle does).
    """
    old_size = _check_proof_size(old_size, "old size")
    new_size = _check_proof_size(new_size, "new size")
    if not isinstance(old_root, bytes) or not isinstance(new_root, bytes):
        raise _bad_proof("roots must be bytes")
    path = _check_path(proof)
    if old_size > new_size:
        raise _bad_proof(f"the log shrank from {old_size} to {new_size} entries")
    if old_size == 0:
        raise _bad_proof("a consistency proof from the empty tree proves nothing")
    if old_size == new_size:
        if path:
            raise _bad_proof("equal sizes need an empty consistency proof")
        if old_root != new_root:
            raise _bad_proof(f"two different roots for the same size {old_size}")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if not path:
        raise _bad_proof("the consistency proof is empty")
    if old_size & (old_size - 1) == 0:  # a complete old tree is itself a node of the new one
        path = [old_root] + path
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_result = new_result = path[0]
    for node in path[1:]:
        if sn == 0:
            raise _bad_proof("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            old_result = node_hash(node, old_result)
            new_result = node_hash(node, new_result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_result = node_hash(new_result, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _bad_proof("the consistency proof is too short for the tree sizes")
    if old_result != old_root:
        raise _bad_proof(f"the proof does not lead to the old root (size {old_size})")
    if new_result != new_root:
        raise _bad_proof(f"the proof does not lead to the new root (size {new_size})")
