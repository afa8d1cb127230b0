"""Witnesses: other trusted keys co-sign the registry's checkpoints, so a forked log is caught.

A witness co-signs the registry's newest signed checkpoint (``cosign``) only after checking that it
extends the last checkpoint that witness co-signed for the same origin (an RFC 6962 consistency
proof from the log, verified against the root the witness kept and the root the registry key
signed). The witness keeps that checkpoint in its own state file, outside the registry: a registry
that shows one witness a log and another witness (or the same one, later) a different log with the
same key is refused with ``witness.fork`` and never co-signed.

A co-signature is a DSSE envelope (``WITNESS_TYPE``, its own payload type, so that it can never
pass for a checkpoint) over the checkpoint's body bytes, signed by the witness key and stored at
``log/witness/<size>/<keyid>.json`` (acards.registry.layout). ``count_witnesses`` counts the
independent witnesses of the newest checkpoint: distinct keys trusted in ``keys/``, the registry
key excluded.

The state file (``STATE_FORMAT``, RFC 8785) maps each origin to the registry keyid, the size and
root the witness co-signed, and the registry's signed checkpoint file itself: with it, a witness
that meets a fork holds two checkpoints signed by the same key that no log can both extend.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards import merkle
from acards.attest import dsse
from acards.attest.keys import keyid
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location, Problem
from acards.files import atomic_write
from acards.registry.checkpoints import Checkpoint, checkpoint_body, open_checkpoint
from acards.registry.disk import (
    LOCK_TIMEOUT,
    io_errors,
    load_trusted_keys,
    locked,
    newest_checkpoint,
    read_config,
    read_log,
    read_optional,
    registry_public_key,
)
from acards.registry.entries import HINT_RESTORE, is_count, is_origin, is_sha256
from acards.registry.layout import Layout, checkpoint_name, witness_key_id, witness_name

WITNESS_TYPE = "application/vnd.acards.witness+json"
STATE_FORMAT = "acards-witness-state/1"
STATE_FILE = "witness-state.json"


def default_state_path() -> Path:
    """The witness's state file in the user's config folder for acards."""
    import platformdirs

    return Path(platformdirs.user_config_dir("acards", appauthor=False)) / STATE_FILE


def _bad_state(path: Path, message: str) -> AcardsError:
    return AcardsError("witness.bad-state", f"{path}: {message}",
                       "give the state file `acards registry witness` wrote (or a new path to start one)",
                       Location(file=str(path)))


def read_state(path: Path) -> dict[str, dict]:
    """origin -> {registry_keyid, size, root, checkpoint}; empty when the file does not exist yet."""
    data = read_optional(path)
    if data is None:
        return {}
    try:
        value = parse_strict_json(data, str(path))
    except AcardsError as error:
        raise _bad_state(path, error.problems[0].message) from None
    if not isinstance(value, dict) or set(value) != {"format", "checkpoints"} or value["format"] != STATE_FORMAT \
            or not isinstance(value["checkpoints"], dict):
        raise _bad_state(path, f"not an {STATE_FORMAT} file")
    for origin, item in value["checkpoints"].items():
        if not is_origin(origin) or not isinstance(item, dict) \
                or set(item) != {"registry_keyid", "size", "root", "checkpoint"} \
                or not is_sha256(item["registry_keyid"]) or not is_count(item["size"]) or not is_sha256(item["root"]) \
                or not isinstance(item["checkpoint"], str):
            raise _bad_state(path, f"the entry for {origin[:80]!r} is malformed")
    return value["checkpoints"]


def write_state(path: Path, checkpoints: dict[str, dict]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, canonical_bytes({"format": STATE_FORMAT, "checkpoints": checkpoints}) + b"\n", mode=0o600)
    except OSError as error:
        raise AcardsError("witness.bad-state", f"cannot write {path}: {error.strerror or error}",
                          "check that the folder is writable", Location(file=str(path))) from None


def _fork(message: str) -> AcardsError:
    return AcardsError("witness.fork", message,
                       "do not trust this registry: it shows different histories under one key; keep your state "
                       "file and the registry's checkpoint as evidence")


def _check_extends(held: dict, checkpoint: Checkpoint, leaves: list[bytes], registry_keyid: str) -> None:
    """The signed ``checkpoint`` must extend the one the witness co-signed before (``held``)."""
    if held["registry_keyid"] != registry_keyid:
        raise _fork(f"{checkpoint.origin} is now signed by key {registry_keyid}, you witnessed key {held['registry_keyid']}")
    old_size, old_root = held["size"], bytes.fromhex(held["root"])
    if checkpoint.size < old_size:
        raise _fork(f"the newest checkpoint has size {checkpoint.size}; you co-signed size {old_size}: the log shrank")
    if old_size == 0:
        if old_root != merkle.EMPTY_ROOT:
            raise _fork("the witnessed checkpoint of size 0 has a root other than the empty root")
        return
    try:
        proof = merkle.consistency_proof(leaves, old_size) if old_size < checkpoint.size else []
        merkle.verify_consistency(old_size, checkpoint.size, old_root, checkpoint.root, proof)
    except AcardsError as error:
        raise _fork(f"the checkpoint of size {checkpoint.size} does not extend the one of size {old_size} you "
                    f"co-signed: {error.problems[0].message}") from None


def cosignature(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> bytes:
    """The co-signature file: RFC 8785 DSSE envelope (WITNESS_TYPE) over the checkpoint's body."""
    body = checkpoint_body(checkpoint.origin, checkpoint.size, checkpoint.root)
    return canonical_bytes(dsse.sign_envelope(WITNESS_TYPE, body, private_key))


def cosign(directory: str | os.PathLike, private_key: Ed25519PrivateKey, state_path: Path,
           lock_timeout: float = LOCK_TIMEOUT) -> dict:
    """Co-sign the newest checkpoint of the registry at ``directory`` after checking it extends
    the one this witness co-signed last (kept in ``state_path``); return {origin, size, root,
    witness, previous}."""
    layout = Layout(Path(directory))
    config = read_config(layout)
    witness_id = keyid(private_key.public_key())
    if witness_id == config.registry_keyid:
        raise AcardsError("witness.registry-key", "the registry key cannot witness its own checkpoints",
                          "witness with another key, trusted in the registry (`acards registry trust`)")
    state = read_state(state_path)
    with io_errors(f"witness {layout.root}"), locked(layout, True, lock_timeout):
        registry_key = registry_public_key(layout, config)
        keys, _problems = load_trusted_keys(layout)
        if witness_id not in keys:
            raise AcardsError("witness.untrusted-key", f"key {witness_id} is not trusted in {layout.root}: its "
                              "co-signature would not count", "ask the registry to trust it (`acards registry trust`)")
        log = read_log(layout)
        found = newest_checkpoint(layout, len(log.lines))
        if found is None:
            raise AcardsError("registry.missing-checkpoint", "the registry has no checkpoint", HINT_RESTORE)
        size, data = found
        checkpoint = open_checkpoint(data, registry_key, Location(file=checkpoint_name(size)))
        leaves = [merkle.leaf_hash(line) for line in log.lines[:size]]
        if checkpoint.origin != config.origin or checkpoint.size != size or merkle.root(leaves) != checkpoint.root:
            raise AcardsError("registry.root-mismatch", f"the log's first {size} entries do not match the signed "
                              f"checkpoint for size {size}", HINT_RESTORE, Location(file=checkpoint_name(size)))
        held = state.get(config.origin)
        if held is not None:
            _check_extends(held, checkpoint, leaves, config.registry_keyid)
        layout.witness(size).mkdir(parents=True, exist_ok=True)
        atomic_write(layout.witness(size, witness_id), cosignature(checkpoint, private_key))
    state[config.origin] = {"registry_keyid": config.registry_keyid, "size": size, "root": checkpoint.root.hex(),
                            "checkpoint": base64.b64encode(data).decode("ascii")}
    write_state(state_path, state)
    return {"origin": config.origin, "size": size, "root": checkpoint.root.hex(), "witness": witness_id,
            "previous": None if held is None else held["size"]}


@dataclass
class Witnessing:
    """The co-signatures on the newest checkpoint: valid independent witnesses, and problems."""

    size: int
    witnesses: list[str] = field(default_factory=list)  # keyids, sorted
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"size": self.size, "witnesses": list(self.witnesses)}


def _check_cosignature(data: bytes, key: Ed25519PublicKey, body: bytes) -> str | None:
    """Why a co-signature file is not ``key``'s over ``body``; None when it is."""
    try:
        verified = dsse.verify_envelope(data, {keyid(key): key})
    except AcardsError as error:
        return f"{error.problems[0].code}: {error.problems[0].message}"
    if verified.payload_type != WITNESS_TYPE:
        return f"payload type is not {WITNESS_TYPE}"
    if verified.payload != body:
        return "it co-signs another checkpoint than the one of its size"
    return None


def count_witnesses(directory: str | os.PathLike, required: int = 0, lock_timeout: float = LOCK_TIMEOUT) -> Witnessing:
    """The independent witnesses of the newest checkpoint (distinct trusted keys, the registry key
    excluded); fewer than ``required`` is the problem ``registry.too-few-witnesses``."""
    layout = Layout(Path(directory))
    config = read_config(layout)
    with locked(layout, False, lock_timeout):
        registry_key = registry_public_key(layout, config)
        keys, _problems = load_trusted_keys(layout)  # registry verify reports bad keys
        log = read_log(layout)
        found = newest_checkpoint(layout, len(log.lines))
        result = Witnessing(found[0] if found else 0)
        # Without a checkpoint that verifies nothing is witnessed; verify_registry reports why.
        checkpoint = None
        if found is not None:
            try:
                checkpoint = open_checkpoint(found[1], registry_key, Location(file=checkpoint_name(found[0])))
            except AcardsError:
                pass
        if found is None or checkpoint is None:
            if required:
                result.problems.append(Problem("registry.too-few-witnesses", "there is no signed checkpoint to witness",
                                               HINT_RESTORE, Location(file=checkpoint_name(result.size))))
            return result
        size = found[0]
        body = checkpoint_body(checkpoint.origin, checkpoint.size, checkpoint.root)
        folder = layout.witness(size)
        names = sorted(os.listdir(folder)) if folder.is_dir() else []
        for name in names:
            claimed, where = witness_key_id(name), Location(file=f"{witness_name(size)}/{name}")
            if claimed is None:
                continue  # a temporary file a crashed witness left
            if claimed == config.registry_keyid or claimed not in keys:
                result.warnings.append(Problem("registry.untrusted-witness", f"{name} is by a key that is not an "
                                               "independent trusted witness; it is not counted",
                                               "trust the witness's key (`acards registry trust`) if you trust it", where))
                continue
            why = _check_cosignature(read_optional(folder / name) or b"", keys[claimed], body)
            if why is None:
                result.witnesses.append(claimed)
            else:
                result.problems.append(Problem("registry.bad-witness", f"{name}: {why}", HINT_RESTORE, where))
    result.witnesses.sort()
    if len(result.witnesses) < required:
        result.problems.append(Problem(
            "registry.too-few-witnesses",
            f"the newest checkpoint (size {size}) has {len(result.witnesses)} independent witness co-signature(s), "
            f"{required} required", "ask more trusted witnesses to run `acards registry witness`",
            Location(file=checkpoint_name(size))))
    return result
