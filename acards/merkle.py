"""RFC 6962 / RFC 9162 §2.1 Merkle trees for the registry's append-only log (SPEC §9).

Pure functions over 32-byte SHA-256 hashes. Trees are built bottom-up, level by level, carrying an
unpaired last node up unchanged: that gives exactly RFC 6962's MTH (split at the largest power of
two below n) without recursion, and every node of level h is the MTH of leaves
[j·2^h, min((j+1)·2^h, n)), which is all the proof builders need. The verifiers follow
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


def prefix_roots(leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """roots[k] = MTH of the first k leaves, for k = 0..n, in O(n log n) hashing (verify needs all).

    Keeps the roots of the perfect subtrees the first k leaves split into (largest first: the
    binary digits of k); RFC 6962 splits at the largest power of two, so MTH(k) folds them from
    the right.
    """
    roots = [EMPTY_ROOT]
    stack: list[tuple[int, bytes]] = []  # (leaf count, subtree root)
    for leaf in _checked_leaves(leaf_hashes):
        size, node = 1, leaf
        while stack and stack[-1][0] == size:
            node = node_hash(stack.pop()[1], node)
            size *= 2
        stack.append((size, node))
        folded = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            folded = node_hash(left, folded)
        roots.append(folded)
    return roots


def _check_size(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad_request(f"{name} must be a non-negative integer")
    return value


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of all ``leaf_hashes``, bottom up."""
    leaves = _checked_leaves(leaf_hashes)
    index = _check_size(index, "index")
    if index >= len(leaves):
        raise _bad_request(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    proof = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):  # no sibling: this node was carried up, nothing to prove
            proof.append(level[sibling])
        index >>= 1
    return proof


def _subtree(levels: list[list[bytes]], start: int, end: int) -> bytes:
    """MTH of leaves [start, end); the range must be a node of the tree (aligned, see above)."""
    height = (end - start - 1).bit_length()
    return levels[height][start >> height]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """RFC 9162 PROOF(old_size, D[n]) that the first ``old_size`` leaves are a prefix of all n."""
    leaves = _checked_leaves(leaf_hashes)
    old_size = _check_size(old_size, "old size")
    if not 0 < old_size <= len(leaves):
        raise _bad_request(f"old size {old_size} must be between 1 and the tree size {len(leaves)}")
    if old_size == len(leaves):
        return []
    levels = _levels(leaves)
    # SUBPROOF(m, D[start:end], complete) unrolled: each step emits one node and narrows the range.
    path = []
    m, start, end, complete = old_size, 0, len(leaves), True
    while m != end - start:
        k = 1 << ((end - start - 1).bit_length() - 1)  # largest power of two below the size
        if m <= k:
            path.append(_subtree(levels, start + k, end))
            end = start + k
        else:
            path.append(_subtree(levels, start, start + k))
            m, start, complete = m - k, start + k, False
    if not complete:
        path.append(_subtree(levels, start, end))
    path.reverse()  # the recursion emits from the innermost call outwards
    return path


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
