"""What a registry writer keeps instead of re-reading its log: the compact range of the Merkle tree
(acards.merkle), proofs of any prefix from one tree, and the authenticated rules index
(acards.registry.trie). Each is checked against the plain computation it replaces, and the index
against a node store that lies."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acards import merkle
from acards.errors import AcardsError
from acards.registry import trie

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(b"entry %d" % i) for i in range(count)]


# --- the compact range and prefix proofs --------------------------------------------------------


def test_the_compact_range_gives_every_prefix_root():
    leaves = _leaves(70)
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        assert merkle.is_frontier(size, frontier)
        assert merkle.frontier_root(frontier) == merkle.root(leaves[:size])
        frontier = merkle.frontier_append(size, frontier, leaf)
    assert merkle.frontier_root(frontier) == merkle.root(leaves)
    assert len(frontier) == bin(70).count("1")
    assert not merkle.is_frontier(71, frontier)


def test_one_tree_proves_every_prefix_as_a_tree_of_that_prefix_would():
    leaves = _leaves(40)
    tree = merkle.Tree(leaves)
    for new in range(1, 41):
        prefix = merkle.Tree(leaves[:new])
        assert tree.root(new) == merkle.root(leaves[:new])
        assert tree.frontier(new) == prefix.frontier(new)
        for old in range(1, new + 1):
            proof = tree.consistency_proof(old, new)
            assert proof == merkle.consistency_proof(leaves[:new], old)
            merkle.verify_consistency(old, new, tree.root(old), tree.root(new), proof)
        for index in range(new):
            proof = tree.inclusion_proof(index, new)
            assert proof == merkle.inclusion_proof(leaves[:new], index)
            merkle.verify_inclusion(index, new, leaves[index], proof, tree.root(new))


def test_a_tree_refuses_sizes_beyond_its_leaves():
    tree = merkle.Tree(_leaves(5))
    for ask in (lambda: tree.root(6), lambda: tree.consistency_proof(2, 6), lambda: tree.inclusion_proof(0, 6),
                lambda: tree.consistency_proof(0, 3), lambda: tree.inclusion_proof(3, 3)):
        with pytest.raises(AcardsError) as excinfo:
            ask()
        assert excinfo.value.code == "registry.bad-proof-request"


# --- the authenticated map ----------------------------------------------------------------------

_KEYS = st.sampled_from([b"p:%d" % i for i in range(40)] + [b"l:card-%d" % i for i in range(10)])
_PUTS = st.lists(st.tuples(_KEYS, st.binary(max_size=12)), max_size=60)


def _apply(store: dict[bytes, bytes], map_: trie.Trie) -> None:
    write, drop = map_.changes()
    for node in drop:
        store.pop(node, None)
    store.update(write)


@PROPERTY
@given(_PUTS, st.integers(1, 8))
def test_puts_in_any_batches_give_the_built_map_and_store_exactly_its_nodes(puts, batch):
    """Incremental puts agree with a bulk build of the final content, and after each batch's
    changes the store holds exactly the reachable nodes: nothing missing, no garbage."""
    store: dict[bytes, bytes] = {}
    map_ = trie.Trie(store)
    content: dict[bytes, bytes] = {}
    for start in range(0, len(puts), batch):
        for key, value in puts[start:start + batch]:
            map_.put(key, value)
            content[key] = value
        _apply(store, map_)
        root, nodes = trie.build(content.items())
        assert map_.root == root
        assert store == nodes
    fresh = trie.Trie(store, map_.root)
    for key in set(k for k, _ in puts) | {b"p:absent", b"l:card-99"}:
        assert fresh.get(key) == content.get(key)


def test_the_empty_map():
    root, nodes = trie.build([])
    assert (root, nodes) == (trie.EMPTY, {})
    assert trie.Trie({}).get(b"anything") is None


def _filled() -> tuple[dict[bytes, bytes], bytes, dict[bytes, bytes]]:
    content = {b"p:%d" % i: b"value %d" % i for i in range(50)}
    root, nodes = trie.build(content.items())
    return nodes, root, content


@pytest.mark.parametrize("lie", ["altered body", "missing node", "foreign node", "truncated body", "swapped children"])
def test_a_store_that_lies_raises_never_answers_wrongly(lie):
    nodes, root, content = _filled()
    leaf = next(node for node, body in nodes.items() if body[:1] == b"\x10")
    inner = next(node for node, body in nodes.items() if body[:1] == b"\x11" and bytes(32) not in (body[1:33], body[33:]))
    if lie == "altered body":
        nodes[leaf] = nodes[leaf][:-1] + b"X"
    elif lie == "missing node":
        del nodes[leaf]
    elif lie == "foreign node":
        nodes[leaf] = trie.build([(b"p:other", b"v")])[1].popitem()[1]
    elif lie == "truncated body":
        nodes[inner] = nodes[inner][:40]
    else:
        body = nodes[inner]
        nodes[inner] = body[:1] + body[33:65] + body[1:33]
    map_ = trie.Trie(nodes, root)
    answers, errors = 0, 0
    for key, value in content.items():
        try:
            found = map_.get(key)
        except trie.TrieError:
            errors += 1
            continue
        assert found == value  # whatever the store says, an answer is the true one
        answers += 1
    assert errors > 0
    with pytest.raises(trie.TrieError):
        for key in content:
            map_.put(key, b"new")


def test_the_root_alone_decides_what_the_map_holds():
    """Nodes of another map in the same store change nothing a root answers; a root whose nodes
    the store lacks answers nothing."""
    nodes, root, content = _filled()
    other_root, other_nodes = trie.build([(b"p:1", b"forged")])
    mixed = trie.Trie({**nodes, **other_nodes}, root)
    assert all(mixed.get(key) == value for key, value in content.items())
    with pytest.raises(trie.TrieError):
        trie.Trie(nodes, other_root).get(b"p:1")


def test_key_hashes_are_sha256():
    assert trie.key_hash(b"p:x") == hashlib.sha256(b"p:x").digest()
