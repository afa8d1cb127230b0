"""RFC 6962 Merkle trees (acards.merkle): transparency-dev's proof vectors, round trips against a
plain recursive MTH, tampering, and fuzzing of the verifiers."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shared_vectors import VECTORS, needs_vectors  # noqa: E402

from acards import merkle
from acards.errors import AcardsError

MERKLE_DIR = (VECTORS or Path("/nonexistent")) / "merkle"
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
MAX_ROUND_TRIP_SIZE = 70


def _files(kind: str) -> list[str]:
    return sorted(
        str(p.relative_to(MERKLE_DIR / kind)) for p in (MERKLE_DIR / kind).rglob("*.json")
    )


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _hashes(items) -> list[bytes]:
    return [_b64(item) for item in items or []]  # "proof": null means no proof elements


def _expect(want_error: bool, check) -> None:
    if want_error:
        with pytest.raises(AcardsError) as excinfo:
            check()
        assert excinfo.value.code == "registry.bad-proof"
    else:
        check()


@needs_vectors
@pytest.mark.parametrize("name", _files("inclusion"))
def test_inclusion_vectors(name):
    case = json.loads((MERKLE_DIR / "inclusion" / name).read_text())
    _expect(
        case["wantErr"],
        lambda: merkle.verify_inclusion(
            case["leafIdx"],
            case["treeSize"],
            _b64(case["leafHash"]),
            _hashes(case["proof"]),
            _b64(case["root"]),
        ),
    )


@needs_vectors
@pytest.mark.parametrize("name", _files("consistency"))
def test_consistency_vectors(name):
    case = json.loads((MERKLE_DIR / "consistency" / name).read_text())
    _expect(
        case["wantErr"],
        lambda: merkle.verify_consistency(
            case["size1"],
            case["size2"],
            _b64(case["root1"]),
            _b64(case["root2"]),
            _hashes(case["proof"]),
        ),
    )


@needs_vectors
def test_vectors_are_all_there():
    assert len(_files("inclusion")) == 98
    assert len(_files("consistency")) == 98


# --- trees and round trips ---------------------------------------------------------------------


def _reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH written the way the RFC states it: recursive, split at the largest 2^k < n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(
        b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])
    ).digest()


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(b"entry %d" % i) for i in range(n)]


def test_hash_functions():
    assert (
        merkle.leaf_hash(b"").hex()
        == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    left, right = merkle.leaf_hash(b"l"), merkle.leaf_hash(b"r")
    assert merkle.node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert merkle.root([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert merkle.root([left]) == left


def test_roots_of_rfc6962_reference_tree():
    # The eight leaves of RFC 6962's test tree (used by transparency-dev) and its published roots.
    data = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        bytes(range(0x50, 0x58)),
        bytes(range(0x60, 0x70)),
    ]
    roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    leaves = [merkle.leaf_hash(d) for d in data]
    for size in range(1, 9):
        assert merkle.root(leaves[:size]).hex() == roots[size - 1]


def _flipped(proof: list[bytes], element: int, bit: int = 0) -> list[bytes]:
    changed = bytearray(proof[element])
    changed[bit // 8] ^= 1 << (bit % 8)
    return proof[:element] + [bytes(changed)] + proof[element + 1 :]


def _fails(check, *args) -> None:
    """``check(*args)`` (or ``check()``) must be refused with registry.bad-proof."""
    with pytest.raises(AcardsError) as excinfo:
        check(*args)
    assert excinfo.value.code == "registry.bad-proof"


@pytest.mark.parametrize("size", range(1, MAX_ROUND_TRIP_SIZE + 1))
def test_inclusion_round_trip(size):
    leaves = _leaves(size)
    tree_root = merkle.root(leaves)
    assert tree_root == _reference_root(leaves)
    verify = merkle.verify_inclusion
    for index in range(size):
        leaf = leaves[index]
        proof = merkle.inclusion_proof(leaves, index)
        verify(index, size, leaf, proof, tree_root)
        for element in range(len(proof)):
            _fails(verify, index, size, leaf, _flipped(proof, element, index % 256), tree_root)
        _fails(verify, index, size, leaf, proof + [tree_root], tree_root)
        if proof:
            _fails(verify, index, size, leaf, proof[:-1], tree_root)
        other_leaf = leaves[(index + 1) % size] if size > 1 else leaf[::-1]
        _fails(verify, index, size, other_leaf, proof, tree_root)
        _fails(verify, index, size * 2, leaf, proof, tree_root)
        _fails(verify, size, size, leaf, proof, tree_root)


@pytest.mark.parametrize("size", range(1, MAX_ROUND_TRIP_SIZE + 1))
def test_consistency_round_trip(size):
    leaves = _leaves(size)
    new_root = merkle.root(leaves)
    verify = merkle.verify_consistency
    for old_size in range(1, size + 1):
        old_root = _reference_root(leaves[:old_size])
        proof = merkle.consistency_proof(leaves, old_size)
        verify(old_size, size, old_root, new_root, proof)
        if old_size == size:
            assert proof == []
            continue
        for element in range(len(proof)):
            flipped = _flipped(proof, element, old_size % 256)
            _fails(verify, old_size, size, old_root, new_root, flipped)
        _fails(verify, old_size, size, old_root, new_root, proof + [new_root])
        _fails(verify, old_size, size, old_root, new_root, proof[:-1])
        _fails(verify, old_size, size, new_root, old_root, proof)
        _fails(verify, old_size, size, old_root[::-1], new_root, proof)
        _fails(verify, old_size, size * 2, old_root, new_root, proof)
        _fails(verify, size, old_size, new_root, old_root, proof)


def test_forked_log_fails_consistency():
    leaves = _leaves(20)
    forked = leaves[:7] + [merkle.leaf_hash(b"rewritten")] + leaves[8:]
    proof = merkle.consistency_proof(forked, 10)
    _fails(merkle.verify_consistency, 10, 20, merkle.root(leaves[:10]), merkle.root(forked), proof)


@pytest.mark.slow
def test_million_leaf_log():
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(1_000_000)]
    tree_root = merkle.root(leaves)
    # Split at 2^19, exactly as MTH does: checks the root without a second full recursion.
    assert tree_root == merkle.node_hash(
        merkle.root(leaves[: 1 << 19]), merkle.root(leaves[1 << 19 :])
    )
    index = 765_432
    merkle.verify_inclusion(
        index, len(leaves), leaves[index], merkle.inclusion_proof(leaves, index), tree_root
    )


def test_empty_consistency_is_refused():
    # Every tree extends the empty one; asking to prove it is refused (as transparency-dev does).
    empty = merkle.EMPTY_ROOT
    _fails(merkle.verify_consistency, 0, 0, empty, empty, [])
    _fails(merkle.verify_consistency, 0, 3, empty, merkle.root(_leaves(3)), [])


@pytest.mark.parametrize(
    "build",
    [
        lambda: merkle.inclusion_proof(_leaves(3), 3),
        lambda: merkle.inclusion_proof(_leaves(3), -1),
        lambda: merkle.inclusion_proof(_leaves(3), True),
        lambda: merkle.inclusion_proof([], 0),
        lambda: merkle.inclusion_proof([b"short"], 0),
        lambda: merkle.inclusion_proof(None, 0),
        lambda: merkle.consistency_proof(_leaves(3), 0),
        lambda: merkle.consistency_proof(_leaves(3), 4),
        lambda: merkle.consistency_proof(_leaves(3), "2"),
        lambda: merkle.root(["not bytes" * 4]),
    ],
)
def test_impossible_proof_requests(build):
    with pytest.raises(AcardsError) as excinfo:
        build()
    assert excinfo.value.code == "registry.bad-proof-request"


@pytest.mark.parametrize(
    "check",
    [
        lambda h: merkle.verify_inclusion(-1, 1, h, [], h),
        lambda h: merkle.verify_inclusion(0, 1.0, h, [], h),
        lambda h: merkle.verify_inclusion(False, 1, h, [], h),
        lambda h: merkle.verify_inclusion(0, 1, h.hex(), [], h),
        lambda h: merkle.verify_inclusion(0, 1, h, None, h),
        lambda h: merkle.verify_inclusion(0, 1, h, [h.hex()], h),
        lambda h: merkle.verify_inclusion(0, 2**70, h, [h] * 3, h),
        lambda h: merkle.verify_consistency(1, 2, h, h, "proof"),
        lambda h: merkle.verify_consistency(1, 1, None, None, []),
        lambda h: merkle.verify_consistency(1, 2, h, b"short", [h]),
        lambda h: merkle.verify_consistency(3, 2**70, h, h, [h] * 200),
    ],
)
def test_verifiers_refuse_bad_arguments(check):
    _fails(check, merkle.leaf_hash(b"x"))


# --- fuzzing -----------------------------------------------------------------------------------

sizes = st.one_of(st.integers(-3, 80), st.integers(), st.none(), st.booleans(), st.floats())
hash_like = st.one_of(
    st.binary(min_size=32, max_size=32), st.binary(max_size=40), st.text(max_size=3), st.none()
)
proofs = st.one_of(
    st.lists(hash_like, max_size=10), st.none(), st.binary(max_size=64), st.tuples(hash_like)
)


@FUZZ
@given(index=sizes, size=sizes, leaf=hash_like, proof=proofs, tree_root=hash_like)
def test_fuzz_verify_inclusion(index, size, leaf, proof, tree_root):
    try:
        merkle.verify_inclusion(index, size, leaf, proof, tree_root)
    except AcardsError as error:
        assert error.code == "registry.bad-proof"


@FUZZ
@given(old_size=sizes, new_size=sizes, old_root=hash_like, new_root=hash_like, proof=proofs)
def test_fuzz_verify_consistency(old_size, new_size, old_root, new_root, proof):
    try:
        merkle.verify_consistency(old_size, new_size, old_root, new_root, proof)
    except AcardsError as error:
        assert error.code == "registry.bad-proof"


@FUZZ
@given(data=st.data())
def test_fuzz_tampered_proofs_never_verify(data):
    size = data.draw(st.integers(1, 40))
    leaves = _leaves(size)
    tree_root = merkle.root(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = merkle.inclusion_proof(leaves, index)
    old_size = data.draw(st.integers(1, size))
    old_root = merkle.root(leaves[:old_size])
    consistency = merkle.consistency_proof(leaves, old_size)

    # Perturb exactly one input; the result must then be refused. (Not the tree size alone: a proof
    # may also fit another size with the same root, which is why checkpoints sign size and root.)
    which = data.draw(
        st.sampled_from(["index", "leaf", "root", "proof", "old_size", "consistency"])
    )
    inclusion, consistent = merkle.verify_inclusion, merkle.verify_consistency
    bit = data.draw(st.integers(0, 255))
    if which == "index":
        other = data.draw(st.integers(0, 100).filter(lambda i: i != index))
        _fails(inclusion, other, size, leaves[index], proof, tree_root)
    elif which == "leaf":
        _fails(inclusion, index, size, _flipped(leaves, index, bit)[index], proof, tree_root)
    elif which == "root":
        _fails(inclusion, index, size, leaves[index], proof, _flipped([tree_root], 0, bit)[0])
    elif which == "proof" and proof:
        element = data.draw(st.integers(0, len(proof) - 1))
        _fails(inclusion, index, size, leaves[index], _flipped(proof, element, bit), tree_root)
    elif which == "old_size":
        other = data.draw(st.integers(0, 100).filter(lambda s: s != old_size))
        _fails(consistent, other, size, old_root, tree_root, consistency)
    elif which == "consistency" and consistency:
        element = data.draw(st.integers(0, len(consistency) - 1))
        flipped = _flipped(consistency, element, bit)
        _fails(consistent, old_size, size, old_root, tree_root, flipped)


def test_prefix_roots_match_the_merkle_root():
    leaves = [merkle.leaf_hash(str(i).encode()) for i in range(70)]
    assert merkle.prefix_roots(leaves) == [merkle.root(leaves[:k]) for k in range(71)]
