"""Who a registry trusts for what: the registry key (registry.pub) orders the log; the keys in
keys/ sign cards. The registry key is a card signer only when trusted in keys/ as well.

Each trusted signer may have a display name and contact the registry key signs (keys/<keyid>.json,
``name_signer``); readers show it in place of the keyid.

A registry made before registry.pub filed its registry key in keys/, which made it a signer;
``migrate_keys`` gives such a folder its registry.pub (every writer does it first, under its lock).
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards.attest import dsse
from acards.attest.keys import keyid
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location, Problem
from acards.files import atomic_write, read_input
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
from acards.registry.layout import Layout, key_name, signer_file_name, signer_key_id


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


# --- signer names: who a trusted key belongs to, as the registry vouches for it ---------------------
#
# A name record, keys/<keyid>.json, is a DSSE envelope signed by the registry key over the RFC 8785
# JSON {"contact", "keyid", "name", "origin"}. Signing it is what stops a host of a copy renaming a
# signer silently (keys/ itself is not signed: a key only counts for cards the signed log names it
# on); the keyid inside stops a record being moved to another key's file. Names are display text only:
# the log and the stored pages keep keyids, so renaming a signer changes no published byte.

SIGNER_PAYLOAD_TYPE = "application/vnd.acards.signer+json"
MAX_SIGNER_NAME = 80
MAX_SIGNER_CONTACT = 200
# Control, format (bidirectional overrides, zero-width), surrogate, private-use and unassigned
# characters, and line and paragraph separators: nothing that can hide or reorder what a page shows.
_MAX_RECORD = 16 * 1024
_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


@dataclass(frozen=True)
class Signer:
    """A trusted signer's display name and contact (empty when none was given)."""

    keyid: str
    name: str
    contact: str

    def to_dict(self) -> dict:
        return {"keyid": self.keyid, "name": self.name, "contact": self.contact}


def _text_problem(field: str, value: Any, limit: int, required: bool) -> str | None:
    if not isinstance(value, str):
        return f"the {field} must be text"
    if not value:
        return f"the {field} is empty" if required else None
    if len(value) > limit:
        return f"the {field} has {len(value)} characters, more than {limit}"
    if value != value.strip():
        return f"the {field} {value[:limit]!r} starts or ends with white space"
    for character in value:
        if unicodedata.category(character) in _REFUSED_CATEGORIES:
            return f"the {field} holds the control or invisible character U+{ord(character):04X}"
    return None


def check_signer_text(name: Any, contact: Any) -> None:
    """Refuse a name (1–80 characters) or contact (0–200) holding control or invisible characters."""
    for field, value, limit, required in (("name", name, MAX_SIGNER_NAME, True),
                                          ("contact", contact, MAX_SIGNER_CONTACT, False)):
        problem = _text_problem(field, value, limit, required)
        if problem:
            raise AcardsError("registry.bad-signer-name", problem,
                              f"give a {field} of at most {limit} printable characters, e.g. "
                              + ('--name "Jane Doe (Example Lab)"' if field == "name" else "--contact jane@example.org"))


def signer_record(origin: str, signer: Signer, registry_private_key: Ed25519PrivateKey) -> bytes:
    """The bytes of keys/<keyid>.json: the registry key's signature over the signer's name."""
    check_signer_text(signer.name, signer.contact)
    payload = canonical_bytes({"origin": origin, **signer.to_dict()})
    return canonical_bytes(dsse.sign_envelope(SIGNER_PAYLOAD_TYPE, payload, registry_private_key))


def open_signer_record(data: bytes, registry_key: Ed25519PublicKey, origin: str, key_id: str) -> Signer:
    """The signer a name record names, once the registry key's signature, the origin, the keyid
    (the file's) and the fields check out; registry.bad-signer-record otherwise."""
    where = Location(file=key_name(signer_file_name(key_id)))

    def bad(message: str) -> AcardsError:
        return AcardsError("registry.bad-signer-record", message,
                           "the name record was altered or moved; set the name again with `acards registry trust "
                           "DIR KEY --name ... --key REGISTRY_KEY`, or restore it from a trusted mirror", where)

    try:
        payload_type, payload, _ = dsse.verify_envelope(data, {keyid(registry_key): registry_key})
        body = parse_strict_json(payload)
    except AcardsError as error:
        raise bad(f"not signed by the registry key: {error.problems[0].message}") from None
    if payload_type != SIGNER_PAYLOAD_TYPE or not isinstance(body, dict) or set(body) != {"origin", "keyid", "name", "contact"}:
        raise bad("not a signer name record")
    if body["origin"] != origin:
        raise bad(f"a name record of another registry ({str(body['origin'])[:80]!r})")
    if body["keyid"] != key_id:
        raise bad(f"the record names key {str(body['keyid'])[:80]!r}, not the key of its file")
    for field, limit, required in (("name", MAX_SIGNER_NAME, True), ("contact", MAX_SIGNER_CONTACT, False)):
        problem = _text_problem(field, body[field], limit, required)
        if problem:
            raise bad(problem)
    return Signer(key_id, body["name"], body["contact"])


def signer_names(layout: Layout, config: Config, registry_key: Ed25519PublicKey,
                 trusted: Iterable[str]) -> tuple[dict[str, Signer], list[Problem]]:
    """The name of each trusted signer that has a record that verifies, by keyid; a record that
    does not verify, or names a key that is not trusted, is a problem."""
    trusted = set(trusted)
    names: dict[str, Signer] = {}
    problems: list[Problem] = []
    for path in layout.signer_files():
        key_id = signer_key_id(path.name)
        try:
            if key_id not in trusted:
                raise AcardsError("registry.bad-signer-record", f"a name record for {key_id[:80]!r}, which is not a trusted key",
                                  "trust the key first, or remove the record", Location(file=key_name(path.name)))
            names[key_id] = open_signer_record(read_input(path, _MAX_RECORD, what="name record", missing="registry.bad-signer-record", unreadable="registry.bad-signer-record", too_large="registry.bad-signer-record", folder="registry.bad-signer-record"), registry_key, config.origin, key_id)
        except AcardsError as error:
            problems += error.problems
    return names, problems


def name_signer(directory: str | os.PathLike, key_id: str, name: str, contact: str,
                registry_private_key: Ed25519PrivateKey) -> Signer:
    """Record (or change) the display name and contact of the trusted key ``key_id``, signed by the
    registry key."""
    layout = Layout(Path(directory))
    config = read_config(layout)
    check_signer_text(name, contact)
    if keyid(registry_private_key.public_key()) != config.registry_keyid:
        raise AcardsError("registry.wrong-key", f"this registry is signed by key {config.registry_keyid}",
                          "give the registry's own private key (--key): it signs signer names")
    signer = Signer(key_id, name, contact)
    with io_errors(f"name a signer in {layout.keys}"), locked(layout, True, LOCK_TIMEOUT):
        if not layout.key(key_id).is_file():
            raise AcardsError("registry.bad-signer-record", f"{key_id} is not a trusted key of this registry",
                              "trust it first: `acards registry trust DIR KEY.pub`")
        atomic_write(layout.signer(key_id), signer_record(config.origin, signer, registry_private_key))
    return signer
