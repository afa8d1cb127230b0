"""Writing a registry: init, trusting keys, and the two card writers, publish and revoke (SPEC §9).

Writers hold the exclusive lock; only AcardsError leaves them, bar what a render callback raises.
Both are built on ``acards.registry.writer.write_entry`` (crash safety, incremental state, retries,
the ``crash_at`` hook and its ``CRASH_POINTS``: see there).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from acards import merkle
from acards.attest.keys import keyid, load_private_key, load_public_key
from acards.canonical import canonical_bytes
from acards.errors import AcardsError, Location
from acards.files import atomic_write
from acards.registry.cards import Render, card_identity, checked_render_output, verified_card
from acards.registry.checkpoints import sign_checkpoint
from acards.registry.disk import (
    LOCK_TIMEOUT,
    io_errors,
    locked,
    read_config,
    read_optional,
)
from acards.registry.entries import (
    MAX_REASON,
    is_origin,
    is_reason,
    publish_entry,
    revoke_entry,
    sha256_hex,
    unknown_digest,
    utc_time,
)
from acards.registry.layout import ENVELOPE, MANIFEST, STATEMENT, Layout
from acards.registry.trie import EMPTY
from acards.registry.trust import migrate_keys_locked, public_pem, write_public_key
from acards.registry.writer import (  # CRASH_POINTS and CrashHook: re-exported for the crash tests
    CRASH_POINTS,  # noqa: F401
    CrashHook,
    Head,
    Written,
    refuse,
    save_state,
    unfinished_entry,
    write_entry,
)


def _check_origin(origin: Any) -> None:
    if not is_origin(origin):
        raise AcardsError(
            "registry.bad-origin",
            f"origin {origin!r} is not 1–255 printable ASCII characters without spaces",
            "name the registry by where it is served, e.g. example.org/acards",
        )


def init_registry(
    directory: str | os.PathLike,
    origin: str,
    registry_key_path: str | os.PathLike,
    passphrase: bytes | None = None,
) -> dict:
    """Create an empty registry in ``directory``; return its registry.json content."""
    layout = Layout(Path(directory))
    _check_origin(origin)
    private_key = load_private_key(registry_key_path, passphrase)
    with io_errors(f"create the registry in {layout.root}"):
        layout.root.mkdir(parents=True, exist_ok=True)
        with locked(layout, exclusive=True, timeout=LOCK_TIMEOUT):
            if layout.config.exists() or (layout.log.exists() and layout.log.stat().st_size):
                raise AcardsError(
                    "registry.exists",
                    f"{layout.root} already holds a registry",
                    "choose an empty folder",
                    Location(file=str(layout.config)),
                )
            for folder in (layout.keys, layout.cards, layout.checkpoints):
                folder.mkdir(parents=True, exist_ok=True)
            # Not in keys/: the registry key signs the log, not cards, unless trusted as a signer.
            atomic_write(layout.registry_key, public_pem(private_key.public_key()))
            key_id = keyid(private_key.public_key())
            atomic_write(layout.log, b"")
            empty = sign_checkpoint(origin, 0, merkle.EMPTY_ROOT, private_key)
            atomic_write(layout.checkpoint(0), empty)
            layout.state_dir.mkdir(exist_ok=True)
            save_state(layout, origin, private_key, 0, [], EMPTY)
            config = {"origin": origin, "registry_keyid": key_id}
            # Written last: a registry.json means every other part is in place.
            atomic_write(layout.config, canonical_bytes(config))
    return config


def add_trusted_key(directory: str | os.PathLike, public_key_path: str | os.PathLike) -> str:
    """Trust the Ed25519 public key at ``public_key_path`` to sign cards; return its keyid.

    The registry key too is a card signer only once trusted here."""
    layout = Layout(Path(directory))
    config = read_config(layout)
    public_key = load_public_key(public_key_path)
    with io_errors(f"add a key to {layout.keys}"), locked(layout, True, LOCK_TIMEOUT):
        migrate_keys_locked(layout, config)
        return write_public_key(layout, public_key)



def _refuse_other_supersedes(card_id: str, expected: str | None, claims: list[str | None]) -> None:
    """The registry computes what a version supersedes; claims (caller, predicate) must agree."""
    for claim in claims:
        if claim is not None and claim != expected:
            raise AcardsError(
                "registry.bad-supersedes",
                f"{card_id} says it supersedes {claim}, but the latest published version is "
                f"{expected}",
                "a new version supersedes exactly the latest published version of its card",
            )


def publish(
    directory: str | os.PathLike,
    envelope_bytes: bytes,
    registry_private_key: Ed25519PrivateKey,
    render: Render | None = None,
    now: datetime | None = None,
    supersedes: str | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    *,
    crash_at: CrashHook | None = None,
) -> dict:
    """Verify a signed card, check SPEC §9's rules, store it and log it; return its log entry.

    ``render(statement)`` gives the pages stored beside the card (their sha256 go in the entry);
    ``supersedes``, when given, must be the digest the registry computes; ``crash_at``: see above.
    """
    if not isinstance(envelope_bytes, (bytes, bytearray)):
        raise AcardsError("registry.bad-card", "the envelope must be bytes", "pass the file's bytes")
    envelope_bytes = bytes(envelope_bytes)
    layout = Layout(Path(directory))

    def decide(head: Head) -> Written:
        payload, statement, signers = verified_card(envelope_bytes, head.keys)
        card_id, version, claimed = card_identity(statement)
        digest = sha256_hex(payload)
        unfinished = unfinished_entry(head, "publish", digest)
        if unfinished is not None and read_optional(layout.card(digest) / ENVELOPE) == envelope_bytes:
            return Written(unfinished, retry=True)  # a retry of a publish killed after its line landed
        expected = head.rules.expected_supersedes(card_id)
        candidate = publish_entry(
            head.config.origin, head.size, card_id, version, digest, expected, signers, {},
            utc_time(now),
        )
        refuse(head.rules.check(candidate))
        _refuse_other_supersedes(card_id, expected, [supersedes, claimed])
        files = {
            ENVELOPE: envelope_bytes,
            STATEMENT: payload,
            MANIFEST: canonical_bytes(statement["subject"]),
        }
        rendered = checked_render_output(render(statement)) if render else {}
        entry = {**candidate, "rendered": {name: sha256_hex(data) for name, data in rendered.items()}}
        files.update(rendered)
        head.rules.record(entry)  # into the index, in memory until the entry is appended
        return Written(entry, files)

    return write_entry(directory, registry_private_key, decide, action="publish to",
                       lock_timeout=lock_timeout, crash_at=crash_at)


def revoke(
    directory: str | os.PathLike,
    digest: str,
    reason: str,
    registry_private_key: Ed25519PrivateKey,
    now: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
    *,
    crash_at: CrashHook | None = None,
) -> dict:
    """Append a revocation of the published card ``digest``; return its log entry."""
    if not is_reason(reason):
        raise AcardsError(
            "registry.bad-revoke",
            f"a revocation needs a reason of 1–{MAX_REASON} characters",
            "say why the card is withdrawn",
        )

    def decide(head: Head) -> Written:
        unfinished = unfinished_entry(head, "revoke", digest)
        if unfinished is not None and unfinished["reason"] == reason:
            return Written(unfinished, retry=True)  # a retry of a revocation killed after its line landed
        target = head.rules.published.get(digest)
        if target is None:
            raise unknown_digest(digest)
        entry = revoke_entry(
            head.config.origin, head.size, target["card_id"], target["version"],
            digest, reason, utc_time(now),
        )
        refuse(head.rules.check(entry))
        head.rules.record(entry)
        return Written(entry)

    return write_entry(directory, registry_private_key, decide, action="revoke in",
                       lock_timeout=lock_timeout, crash_at=crash_at)
