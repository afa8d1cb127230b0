"""Inclusion and consistency proofs (RFC 6962 / 9162) against the registry's signed checkpoints.

A proof is JSON data (hashes in hex) that carries the newest checkpoint file's envelope, so a reader
who holds only the registry's public key can check it:

- ``inclusion(dir, digest)``: {"origin", "index", "size", "entry" (the log line), "path",
  "checkpoint"}, checked by ``verify_inclusion_proof(proof, registry_public_key, digest)``;


- ``consistency(dir, old_size)``: {"origin", "old_size", "new_size", "old_root", "new_root",
  "path", "checkpoint"}, checked by ``verify_consistency_proof(proof, registry_public_key,
  old_checkpoint)``: the log of an older checkpoint is a prefix of the newest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards import merkle
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location
from acards.registry.checkpoints import Checkpoint, open_checkpoint
from acards.registry.disk import (
    LOCK_TIMEOUT,
    Log,
    locked,
    newest_checkpoint,
    parse_log,
    read_config,
    read_log,
)
from acards.registry.entries import (
    HINT_RESTORE,
    is_count,
    is_origin,
    is_sha256,
    parse_entry,
    unknown_digest,
)
from acards.registry.layout import Layout


def _signed_head(layout: Layout, log: Log) -> tuple[int, bytes]:
    """(size, file bytes) of the newest checkpoint the log reaches."""
    found = newest_checkpoint(layout, len(log.lines))
    if found is None:
        raise AcardsError(
            "registry.missing-checkpoint", "the registry has no checkpoint", HINT_RESTORE
        )
    return found


def inclusion(directory: str | os.PathLike, digest: str) -> dict:
    """A proof that the publish entry of ``digest`` is in the log of the newest checkpoint.

    {"origin", "index", "size", "entry" (the log line), "path" (hex), "checkpoint" (envelope)}
    """
    layout = Layout(Path(directory))
    config = read_config(layout)
    with locked(layout, exclusive=False, timeout=LOCK_TIMEOUT):
        log = read_log(layout)
        size, checkpoint = _signed_head(layout, log)
    found = [
        index for index, entry in enumerate(parse_log(log))
        if entry["kind"] == "publish" and entry["digest"] == digest
    ]
    if not found:
        raise unknown_digest(digest)
    index = found[0]
    if index >= size:
        raise AcardsError(
            "registry.bad-proof-request",
            f"entry {index} is not covered by a checkpoint yet",
            "the next publish signs it; ask again then",
        )
    leaves = [merkle.leaf_hash(line) for line in log.lines[:size]]
    return {
        "origin": config.origin,
        "index": index,
        "size": size,
        "entry": log.lines[index].decode("utf-8"),
        "path": [node.hex() for node in merkle.inclusion_proof(leaves, index)],
        "checkpoint": parse_strict_json(checkpoint),
    }


def consistency(directory: str | os.PathLike, old_size: int) -> dict:
    """A proof that the log at ``old_size`` is a prefix of the log of the newest checkpoint.

    {"origin", "old_size", "new_size", "old_root", "new_root", "path" (hex), "checkpoint"}
    """
    layout = Layout(Path(directory))
    config = read_config(layout)
    with locked(layout, exclusive=False, timeout=LOCK_TIMEOUT):
        log = read_log(layout)
        size, checkpoint = _signed_head(layout, log)
    if not is_count(old_size) or old_size > size:
        raise AcardsError(
            "registry.bad-proof-request",
            f"old size {old_size!r} must be an integer from 0 to the signed size {size}",
            "ask about a size you hold a checkpoint for",
        )
    leaves = [merkle.leaf_hash(line) for line in log.lines[:size]]
    path = merkle.consistency_proof(leaves, old_size) if old_size else []
    return {
        "origin": config.origin,
        "old_size": old_size,
        "new_size": size,
        "old_root": merkle.root(leaves[:old_size]).hex(),
        "new_root": merkle.root(leaves).hex(),
        "path": [node.hex() for node in path],
        "checkpoint": parse_strict_json(checkpoint),
    }


def _bad_proof(message: str) -> AcardsError:
    return AcardsError(
        "registry.bad-proof", message, "the proof is damaged or belongs to another registry"
    )


def _proof_fields(proof: Any, fields: dict[str, Callable[[Any], bool]]) -> dict:
    if not isinstance(proof, dict) or set(proof) != set(fields):
        raise _bad_proof(f"a proof must have exactly the fields {', '.join(sorted(fields))}")
    for name, valid in fields.items():
        if not valid(proof[name]):
            raise _bad_proof(f"proof field {name!r} is invalid")
    return proof


def _is_hex_path(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= 64 and all(is_sha256(node) for node in value)


def _proof_checkpoint(proof: dict, registry_key: Ed25519PublicKey) -> Checkpoint:
    try:
        data = canonical_bytes(proof["checkpoint"])
    except AcardsError:
        raise _bad_proof("the proof's checkpoint is not JSON data") from None
    checkpoint = open_checkpoint(data, registry_key, Location(pointer="/checkpoint"))
    if checkpoint.origin != proof["origin"]:
        raise AcardsError(
            "registry.foreign-origin",
            f"the proof is for {proof['origin']!r}, its checkpoint for {checkpoint.origin!r}",
            "the proof mixes two registries; do not trust it",
        )
    return checkpoint


def verify_inclusion_proof(
    proof: Any, registry_public_key: Ed25519PublicKey, digest: str | None = None
) -> dict:
    """Check a proof from ``inclusion``; return the entry it proves (of ``digest``, if given)."""
    _proof_fields(proof, {
        "origin": is_origin, "index": is_count, "size": is_count,
        "entry": lambda value: isinstance(value, str), "path": _is_hex_path,
        "checkpoint": lambda value: isinstance(value, dict),
    })
    checkpoint = _proof_checkpoint(proof, registry_public_key)
    if checkpoint.size != proof["size"]:
        raise _bad_proof("the proof's size is not its checkpoint's")
    try:
        line = proof["entry"].encode("utf-8")
    except UnicodeEncodeError:
        raise _bad_proof("the proof's entry is not valid text") from None
    entry = parse_entry(line, Location(pointer="/entry"))
    if entry["origin"] != checkpoint.origin:
        raise AcardsError(
            "registry.foreign-origin",
            f"the entry is from {entry['origin']!r}, the checkpoint from {checkpoint.origin!r}",
            "an entry copied from another registry; do not trust it",
        )
    if entry["index"] != proof["index"]:
        raise _bad_proof("the entry's index is not the proof's index")
    if digest is not None and entry["digest"] != digest:
        raise _bad_proof(f"the proof is about {entry['digest']}, not {digest}")
    path = [bytes.fromhex(node) for node in proof["path"]]
    leaf = merkle.leaf_hash(line)
    merkle.verify_inclusion(proof["index"], checkpoint.size, leaf, path, checkpoint.root)
    return entry


def verify_consistency_proof(
    proof: Any, registry_public_key: Ed25519PublicKey, old_checkpoint: bytes | None = None
) -> Checkpoint:
    """Check a proof from ``consistency``; return the new signed checkpoint.

    With ``old_checkpoint`` (a checkpoint file the reader saved), the proof must start from it.
    """
    _proof_fields(proof, {
        "origin": is_origin, "old_size": is_count, "new_size": is_count,
        "old_root": is_sha256, "new_root": is_sha256, "path": _is_hex_path,
        "checkpoint": lambda value: isinstance(value, dict),
    })
    new = _proof_checkpoint(proof, registry_public_key)
    old_root, new_root = bytes.fromhex(proof["old_root"]), bytes.fromhex(proof["new_root"])
    if (new.size, new.root) != (proof["new_size"], new_root):
        raise _bad_proof("the proof's new size and root are not its checkpoint's")
    if old_checkpoint is not None:
        where = Location(file="<saved checkpoint>")
        old = open_checkpoint(old_checkpoint, registry_public_key, where)
        if (old.origin, old.size, old.root) != (new.origin, proof["old_size"], old_root):
            raise AcardsError(
                "registry.inconsistent-checkpoint",
                "the proof does not start from your saved checkpoint",
                "ask for a consistency proof from the size of the checkpoint you hold",
            )
    if proof["old_size"] == 0:
        if old_root != merkle.EMPTY_ROOT or proof["path"]:
            raise _bad_proof("a proof from size 0 must have the empty root and no path")
        return new
    path = [bytes.fromhex(node) for node in proof["path"]]
    merkle.verify_consistency(proof["old_size"], new.size, old_root, new.root, path)
    return new
