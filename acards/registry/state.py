"""The writer's state: what a publish needs to extend the log without reading it again.

``state/state.json`` is the RFC 8785 bytes of a DSSE envelope (``STATE_TYPE``, signed by the
registry key, so that no one without the key can write one) over the RFC 8785 body::

    {"origin", "size", "root", "frontier" (the compact range of the log's Merkle tree, hex),
     "index" (the root of the rules index, acards.registry.index, hex),
     "log", "cards" (what log/entries.jsonl and cards/ looked like when it was written)}

A writer trusts it only when it describes the folder exactly (``store._resume``): its signature
holds, its frontier folds to its root, the newest checkpoint is the one for its size (none beyond)
and was signed over that same root, and the log file and the cards folder are as the writer left
them (same inode, size, and modification and change times, which any write by anyone changes).
Anything else, a missing, older, forged or foreign state included, and the writer reads the whole
log again, checks it against the newest checkpoint, and writes a new state. Since the signature
binds size and root, a state can only ever be a true description of some signed prefix of the
log: the worst a replaced file can do is make the next publish slow.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards import merkle
from acards.attest import dsse
from acards.attest.keys import keyid
from acards.canonical import canonical_bytes, parse_canonical_json
from acards.errors import AcardsError, Location
from acards.registry.entries import is_count, is_origin, is_sha256
from acards.registry.layout import STATE

STATE_TYPE = "application/vnd.acards.registry-state+json"
_FIELDS = {"origin", "size", "root", "frontier", "index", "log", "cards"}


def file_mark(path: Path) -> str:
    """What a file or folder looks like now: "inode:size:mtime_ns:ctime_ns" (no one but the kernel
    sets a change time, so a write by anyone else changes the mark)."""
    info = os.stat(path)
    return f"{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}"


@dataclass(frozen=True)
class State:
    origin: str
    size: int
    root: bytes
    frontier: list[bytes]
    index: bytes  # root of the rules index
    log: str  # file_mark of log/entries.jsonl
    cards: str  # file_mark of cards/


def stale_state(message: str) -> AcardsError:
    return AcardsError(
        "registry.stale-state",
        message,
        "nothing to do: the next publish reads the whole log and writes the state again",
        Location(file=STATE),
    )


def sign_state(state: State, private_key: Ed25519PrivateKey) -> bytes:
    body = canonical_bytes({
        "origin": state.origin,
        "size": state.size,
        "root": state.root.hex(),
        "frontier": [node.hex() for node in state.frontier],
        "index": state.index.hex(),
        "log": state.log,
        "cards": state.cards,
    })
    return canonical_bytes(dsse.sign_envelope(STATE_TYPE, body, private_key))


def open_state(data: bytes, public_key: Ed25519PublicKey) -> State:
    """The state in ``data`` once the registry key's signature and its shape hold; otherwise
    registry.stale-state. Whether it matches the folder is the caller's to check."""
    try:
        payload_type, payload, _ = dsse.verify_envelope(data, {keyid(public_key): public_key})
        body, canonical = parse_canonical_json(payload)
    except AcardsError as error:
        first = error.problems[0]
        raise stale_state(f"the state does not verify: {first.code}: {first.message}") from None
    if payload_type != STATE_TYPE or not canonical or not isinstance(body, dict) or set(body) != _FIELDS:
        raise stale_state("the state is not a registry state body in RFC 8785 form")
    frontier = body["frontier"]
    if not (
        is_origin(body["origin"]) and is_count(body["size"]) and is_sha256(body["root"])
        and is_sha256(body["index"]) and isinstance(frontier, list) and all(is_sha256(node) for node in frontier)
        and isinstance(body["log"], str) and isinstance(body["cards"], str)
    ):
        raise stale_state("a field of the state has an invalid value")
    state = State(body["origin"], body["size"], bytes.fromhex(body["root"]), [bytes.fromhex(node) for node in frontier],
                  bytes.fromhex(body["index"]), body["log"], body["cards"])
    if not merkle.is_frontier(state.size, state.frontier) or merkle.frontier_root(state.frontier) != state.root:
        raise stale_state("the state's compact range does not fold to its root")
    return state


def write_state(path: Path, data: bytes) -> None:
    """Overwrite the state file in place, unsynced: a rename or a truncation to zero would make
    the file system flush it (ext4's auto_da_alloc), which costs a publish as much as an fsync. A
    write cut short leaves bytes whose signature fails, and a state lost in a power cut only makes
    the next publish replay the log; the checkpoint the state follows was synced before it."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        os.unlink(path)  # a link put in its place: never write through it
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            offset += os.pwrite(descriptor, view[offset:], offset)
        os.ftruncate(descriptor, len(data))
    finally:
        os.close(descriptor)
