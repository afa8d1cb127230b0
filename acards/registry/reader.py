"""Reading a registry, for those who consume it (the static site, readers): nothing here writes.

Everything a consumer needs comes from here, so that no other package knows the folder's layout:
the config, the log's entries, each card version's state (current, superseded or revoked), the
trusted keys and their files, the newest checkpoint, a card's stored files (each checked against
the log), and the registry verified as a whole. Reads hold the shared lock where a consistent
snapshot matters (the log); a copy served read-only may have no lock file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards.errors import AcardsError, Location
from acards.registry.audit import RegistryVerification, check_registry
from acards.registry.checkpoints import Checkpoint, open_checkpoint
from acards.registry.disk import (
    LOCK_TIMEOUT,
    Config,
    load_trusted_keys,
    locked,
    parse_log,
    read_config,
    read_log,
    registry_key_path,
    registry_public_key,
)
from acards.registry.disk import (
    flock_within as flock_within,  # re-exported for the site: its lock wait
)
from acards.registry.disk import (
    io_error as io_error,  # re-exported for the site: its I/O errors
)
from acards.registry.disk import newest_checkpoint as _newest_checkpoint
from acards.registry.entries import parse_entry, sha256_hex, unknown_digest
from acards.registry.layout import ENVELOPE, STATEMENT, Layout, card_name, checkpoint_name
from acards.registry.rules import replay
from acards.registry.trust import Signer
from acards.registry.trust import signer_names as _signer_names

_HINT_VERIFY = "run `acards registry verify` and restore the registry from a trusted mirror"


def _layout(directory: str | os.PathLike) -> Layout:
    return Layout(Path(directory))


def config(directory: str | os.PathLike) -> Config:
    """registry.json (origin, registry keyid); registry.not-a-registry when ``directory`` is none."""
    return read_config(_layout(directory))


def verified(directory: str | os.PathLike) -> RegistryVerification:
    """The registry verified offline, without re-rendering; every problem raised together."""
    return check_registry(directory)


# --- the log ----------------------------------------------------------------------------------


def entries(directory: str | os.PathLike) -> list[dict]:
    """Every log entry in order (a torn last line is left out); raises on an unreadable line.

    Reads without verifying checkpoints or cards: run ``verify_registry`` for that.
    """
    layout = _layout(directory)
    read_config(layout)
    with locked(layout, exclusive=False, timeout=LOCK_TIMEOUT):
        return parse_log(read_log(layout))


def publish_signers(directory: str | os.PathLike) -> dict[str, list[str]]:
    """The signers each publish entry names, by digest. Lenient: unreadable lines are skipped and a
    folder without a log gives none (verification reports both)."""
    try:
        data = _layout(directory).log.read_bytes()
    except OSError:
        data = b""
    signers: dict[str, list[str]] = {}
    for line in data.split(b"\n"):
        try:
            entry = parse_entry(line)
        except AcardsError:
            continue
        if entry["kind"] == "publish":
            signers.setdefault(entry["digest"], entry["signers"])
    return signers


@dataclass(frozen=True)
class CardVersion:
    """One published card version and where it stands."""

    entry: dict  # its publish entry
    state: str  # current | superseded | revoked
    reason: str | None  # why it was revoked
    superseded_by: str | None  # the digest of the version after it
    revoked_at: str | None  # the time of its revocation entry

    @property
    def digest(self) -> str:
        return self.entry["digest"]


def card_versions(log_entries: list[dict], origin: str) -> dict[str, CardVersion]:
    """Every published version in ``log_entries`` (read from the log), by digest, sorted."""
    rules = replay(log_entries, origin)
    revoked_at: dict[str, str] = {}
    for entry in log_entries:
        if entry["kind"] == "revoke":
            revoked_at.setdefault(entry["digest"], entry["time"])
    versions = {}
    for digest in sorted(rules.published):
        superseded_by = rules.superseded_by.get(digest)
        revoked = digest in rules.revoked
        versions[digest] = CardVersion(
            entry=rules.published[digest],
            state="revoked" if revoked else "superseded" if superseded_by else "current",
            reason=rules.revoked.get(digest),
            superseded_by=superseded_by,
            revoked_at=revoked_at.get(digest),
        )
    return versions


def _versions(directory: str | os.PathLike) -> dict[str, CardVersion]:
    return card_versions(entries(directory), config(directory).origin)


def latest_cards(directory: str | os.PathLike) -> list[dict]:
    """The publish entry of the highest non-revoked version of each card id, sorted by id."""
    best: dict[str, dict] = {}
    for version in _versions(directory).values():
        if version.state == "revoked":
            continue
        entry = version.entry
        current = best.get(entry["card_id"])
        if current is None or entry["version"] > current["version"]:
            best[entry["card_id"]] = entry
    return [best[card_id] for card_id in sorted(best)]


def attestations(directory: str | os.PathLike, digest: str) -> list[dict]:
    """The attestation entries of the card ``digest``, in log order (verify checks them)."""
    return [entry for entry in entries(directory) if entry["kind"] == "attest" and entry["card"] == digest]


def reproductions(directory: str | os.PathLike, digest: str) -> int:
    """How many distinct reviewers logged a ``reproduced`` attestation of the card ``digest`` (0 once
    it is revoked): the "reproduced by k" of badges and pages."""
    log = entries(directory)
    revoked = {entry["digest"] for entry in log if entry["kind"] == "revoke"}
    return len({entry["reviewer"] for entry in log if entry["kind"] == "attest" and entry["card"] == digest
                and entry["assurance"] == "reproduced" and digest not in revoked})


def witnesses(directory: str | os.PathLike) -> list[str]:
    """The independent witnesses (keyids) whose co-signatures of the newest checkpoint verify
    (acards.registry.witness.count_witnesses)."""
    from acards.registry.witness import count_witnesses

    return count_witnesses(directory).witnesses


def status(directory: str | os.PathLike, digest: str) -> dict:
    """Where a card stands: state "current", "superseded" or "revoked", with its details."""
    version = _versions(directory).get(digest)
    if version is None:
        raise unknown_digest(digest)
    entry = version.entry
    return {
        "digest": digest,
        "card_id": entry["card_id"],
        "version": entry["version"],
        "index": entry["index"],
        "state": version.state,
        "revoked": version.state == "revoked",
        "reason": version.reason,
        "superseded_by": version.superseded_by,
    }


# --- keys and checkpoints ---------------------------------------------------------------------


def trusted_keys(directory: str | os.PathLike) -> dict[str, Ed25519PublicKey]:
    """The keys trusted to sign cards (keys/), by keyid; a misfiled or unreadable key is left out
    (publish refuses it, verify reports it). The registry key is one only when trusted as a signer."""
    layout = _layout(directory)
    read_config(layout)
    return load_trusted_keys(layout)[0]


def key_files(directory: str | os.PathLike) -> dict[str, bytes]:
    """The PEM file of each trusted key, by keyid (sorted), byte for byte."""
    layout = _layout(directory)
    return {key_id: _read(layout.key(key_id)) for key_id in sorted(trusted_keys(directory))}


def signer_names(directory: str | os.PathLike) -> dict[str, Signer]:
    """The display name and contact of each trusted signer whose name record the registry key signed,
    by keyid; a key without one (or with one that does not verify: verify reports it) is left out."""
    layout = _layout(directory)
    config = read_config(layout)
    try:
        public_key = registry_public_key(layout, config)
    except AcardsError:
        return {}
    return _signer_names(layout, config, public_key, load_trusted_keys(layout)[0])[0]


def registry_key(directory: str | os.PathLike) -> Ed25519PublicKey:
    """The registry's public key, the one its checkpoints are signed with."""
    layout = _layout(directory)
    return registry_public_key(layout, read_config(layout))


def registry_key_file(directory: str | os.PathLike) -> bytes:
    """The PEM file of the registry key, byte for byte, once it checks out (``registry_key``)."""
    layout = _layout(directory)
    config = read_config(layout)
    registry_public_key(layout, config)
    return _read(registry_key_path(layout, config))


def newest_checkpoint(directory: str | os.PathLike, max_size: int) -> tuple[bytes, Checkpoint] | None:
    """The newest checkpoint file covering at most ``max_size`` entries, with its body once the
    registry key's signature verifies; None when there is none."""
    layout = _layout(directory)
    read_config(layout)
    found = _newest_checkpoint(layout, max_size)
    if found is None:
        return None
    size, data = found
    return data, open_checkpoint(data, registry_key(directory), Location(file=checkpoint_name(size)))


# --- a card's stored files --------------------------------------------------------------------


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise AcardsError("registry.missing-file", f"cannot read {path}: {error.strerror or error}",
                          _HINT_VERIFY, Location(file=str(path))) from None


def statement(directory: str | os.PathLike, digest: str) -> bytes:
    """The stored payload of card ``digest``, once its sha256 is the digest."""
    data = _read(_layout(directory).card(digest) / STATEMENT)
    if sha256_hex(data) != digest:
        raise AcardsError("registry.digest-mismatch", f"{STATEMENT} is not the logged payload",
                          "run `acards registry verify`", Location(file=card_name(digest, STATEMENT)))
    return data


def envelope(directory: str | os.PathLike, digest: str) -> bytes:
    """The signed envelope of card ``digest``, exactly as published."""
    return _read(_layout(directory).card(digest) / ENVELOPE)


def rendered_file(directory: str | os.PathLike, entry: dict, name: str) -> bytes:
    """The rendered file ``name`` of a publish entry, once its sha256 is the one the entry logs."""
    digest = entry["digest"]
    data = _read(_layout(directory).card(digest) / name)
    if sha256_hex(data) != entry["rendered"][name]:
        raise AcardsError("registry.render-mismatch", f"{name} is not the file that was published",
                          _HINT_VERIFY, Location(file=card_name(digest, name)))
    return data
