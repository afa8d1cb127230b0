"""Who a registry trusts for what: the registry key (registry.pub) orders the log; the keys in
keys/ sign cards. The registry key is a card signer only when trusted in keys/ as well.

A registry made before registry.pub filed its registry key in keys/, which made it a signer;
``migrate_keys`` gives such a folder its registry.pub (every writer does it first, under its lock).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards.attest.keys import keyid
from acards.errors import AcardsError
from acards.files import atomic_write
from acards.registry.disk import (
    LOCK_TIMEOUT,
    Config,
    fsync_dir,
    io_errors,
    is_legacy_layout,
    line_location,
    locked,
    read_config,
    read_log,
    registry_public_key,
)
from acards.registry.entries import parse_entry_fields
from acards.registry.layout import Layout


def public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def write_public_key(layout: Layout, public_key: Ed25519PublicKey) -> str:
    key_id = keyid(public_key)
    target = layout.key(key_id)
    if not target.exists():
        atomic_write(target, public_pem(public_key))
    return key_id


def names_as_signer(layout: Layout, key_id: str) -> bool:
    """Whether a publish entry of the log names ``key_id`` among its card's signers."""
    for index, line in enumerate(read_log(layout).lines):
        try:
            entry = parse_entry_fields(line, line_location(index))
        except AcardsError:
            continue  # the writer's replay reports a damaged line; it names no signer
        if entry["kind"] == "publish" and key_id in entry["signers"]:
            return True
    return False


def migrate_keys_locked(layout: Layout, config: Config) -> bool:
    """Give a registry from before registry.pub its registry.pub; under the writer's lock.

    Such a registry filed its registry key in keys/, which made it a card signer. The key moves out
    of keys/ (one rename: the registry reads either way at every moment) unless the log names it
    as the signer of a published card: then those cards must keep verifying, and the key stays in
    keys/ as a signer, the trust a publish already relied on, while registry.pub gets a copy."""
    if not is_legacy_layout(layout):
        return False
    registry_public_key(layout, config)  # in keys/, whole, and the one registry.json names
    filed = layout.key(config.registry_keyid)
    if names_as_signer(layout, config.registry_keyid):
        atomic_write(layout.registry_key, filed.read_bytes())
    else:
        os.rename(filed, layout.registry_key)
        fsync_dir(layout.keys)
    fsync_dir(layout.root)
    return True


def migrate_keys(directory: str | os.PathLike) -> bool:
    """Move the registry key of a registry from before registry.pub out of the signers' keys/
    (``migrate_keys_locked``); False when there was nothing to do. Every writer does this first."""
    layout = Layout(Path(directory))
    config = read_config(layout)
    with io_errors(f"move the registry key of {layout.root}"), locked(layout, True, LOCK_TIMEOUT):
        return migrate_keys_locked(layout, config)
