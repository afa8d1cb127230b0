"""The card registry: a folder anyone can host statically and verify offline (SPEC §9).

Layout of a registry folder::

    registry.json                 {"origin", "registry_keyid"} (RFC 8785); written last by init
    keys/<keyid>.pub              trusted signers' public keys (PEM), the registry key's among them
    cards/<digest>/envelope.json  the signed card exactly as published (DSSE envelope bytes)
    cards/<digest>/statement.json the verified payload (the in-toto Statement, RFC 8785 bytes)
    cards/<digest>/manifest.json  the statement's subjects (RFC 8785)
    cards/<digest>/<rendered>     files render(statement) returned at publication (card.html, ...)
    log/entries.jsonl             the append-only log: one RFC 8785 JSON entry per line
    log/checkpoints/<size>.json   DSSE envelope (CHECKPOINT_TYPE, registry key) over the RFC 8785
                                  body {"origin", "size", "root"}; root = RFC 6962 root (hex) of
                                  leaf_hash(line without its newline) over the first <size> lines
    .lock                         fcntl.flock target: writers exclusive, verify/readers shared

Log entries (exact field sets)::

    publish: origin, index, kind="publish", card_id, version, digest, supersedes (digest | null),
             signers (sorted keyids), rendered ({name: sha256}), time (RFC 3339 UTC)
    revoke:  origin, index, kind="revoke", card_id, version, digest, reason, time

API (writers take the exclusive lock; only AcardsError is raised, bar what a render callback
raises):

- ``init_registry(dir, origin, registry_key_path, passphrase=None)`` create an empty registry.
- ``add_trusted_key(dir, public_key_path)`` trust a card signer's key; returns its keyid.
- ``publish(dir, envelope_bytes, registry_private_key, render=None, now=None, supersedes=None)``
  verify a signed card, enforce the rules, store it, append its entry, sign a checkpoint.
- ``revoke(dir, digest, reason, registry_private_key, now=None)`` append a revocation entry.
- ``verify_registry(dir, checkpoint=None, render=None)`` offline verification, a
  ``RegistryVerification`` (problems, warnings, revoked digests, size, root); raises only when
  ``dir`` is not a registry. ``check_registry`` is the same but raises every problem at once.
- ``entries(dir)``, ``latest_cards(dir)``, ``status(dir, digest)`` reading the log for a site.
- ``inclusion(dir, digest)`` / ``verify_inclusion_proof(proof, registry_public_key, digest)`` and
  ``consistency(dir, old_size)`` / ``verify_consistency_proof(proof, registry_public_key,
  old_checkpoint)`` JSON proofs (hex hashes) that readers check against a signed checkpoint.
- Pure parts: ``publish_entry``, ``revoke_entry``, ``entry_line``, ``parse_entry``, ``LogRules``,
  ``checkpoint_body``, ``sign_checkpoint``, ``parse_checkpoint_body``, ``open_checkpoint``,
  ``prefix_roots``, ``card_identity``.

Rules (SPEC §9), checked by ``LogRules`` for publish and verify alike: no digest is published
twice; the versions of one card id strictly increase (a revoked version keeps its number); each
publish entry's ``supersedes`` is the digest of its card id's latest published version (null for
the first); the registry computes it, and a claim by the caller or by the signed predicate
(``predicate.supersedes``, beside ``card`` and ``report``) must agree; a revocation names a
published, not yet revoked digest; every entry carries this registry's origin and its position as
index. Every key in keys/ is trusted to sign cards. ``publish`` checks the log against its newest
signed checkpoint before extending it; ``verify_registry`` checks everything.

Crash safety. ``publish`` writes in an order where every prefix of its work is a valid registry:
the card folder is staged and renamed into place (an unlogged folder is only an orphan), then the
log line is appended and fsynced, and only then is the checkpoint for the new size signed. A crash
can therefore leave a torn last line, a newest line without its checkpoint, an orphan or staging
folder, or temporary files: ``verify_registry`` reports these as warnings, and the next writer
repairs them under the lock (truncates the torn tail, re-signs the missing newest checkpoint after
checking the log against the previous one, removes debris). Anything else is a problem.

The environment variable ``ACARDS_REGISTRY_CRASH_AT`` names one of ``CRASH_POINTS``; a writer
reaching that point SIGKILLs itself. It exists for the crash-safety tests.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from acards import merkle
from acards.attest import dsse, in_toto
from acards.attest.keys import keyid, load_private_key, load_public_key
from acards.canonical import MAX_SAFE_INTEGER, canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location, Problem
from acards.files import atomic_write

CHECKPOINT_TYPE = "application/vnd.acards.checkpoint+json"
LOCK_TIMEOUT = 30.0
CRASH_ENV = "ACARDS_REGISTRY_CRASH_AT"
CRASH_POINTS = (
    "locked",
    "repair-truncated",
    "repair-checkpointed",
    "card-staging",
    "card-staged",
    "card-placed",
    "append-torn",
    "append-written",
    "appended",
    "checkpointed",
)

Render = Callable[[dict], Mapping[str, bytes]]

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CARD_ID = re.compile(r"[a-z0-9][a-z0-9/-]{0,199}")  # the card schema's id pattern and length
_ORIGIN = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII, no spaces: "example.org/registry"
_RENDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_CHECKPOINT_FILE = re.compile(r"(0|[1-9][0-9]{0,15})\.json")
_CARD_FILES = ("envelope.json", "statement.json", "manifest.json")
_STAGING_PREFIX = ".staging-"
_MAX_REASON = 2000

_LOG_FILE = "log/entries.jsonl"
_HINT_RESTORE = "the registry was altered or damaged; restore it from a trusted mirror"


def _crash_point(name: str) -> None:
    """Test hook: die here, as kill -9 would, when ACARDS_REGISTRY_CRASH_AT names this point."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- field checks (pure) ----------------------------------------------------------------------


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SAFE_INTEGER


def _is_version(value: Any) -> bool:
    return _is_count(value) and value >= 1


def _is_card_id(value: Any) -> bool:
    return isinstance(value, str) and _CARD_ID.fullmatch(value) is not None


def _is_origin(value: Any) -> bool:
    return isinstance(value, str) and _ORIGIN.fullmatch(value) is not None


def _is_render_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and _RENDER_NAME.fullmatch(value) is not None
        and value not in _CARD_FILES
    )


def _is_time(value: Any) -> bool:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value[:-1])  # the regex fixed the shape; this checks the calendar
    except ValueError:
        return False
    return True


def _is_signers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(_is_sha256(item) for item in value)
        and value == sorted(set(value))
    )


def _is_rendered(value: Any) -> bool:
    return isinstance(value, dict) and all(
        _is_render_name(name) and _is_sha256(digest) for name, digest in value.items()
    )


def _is_reason(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= _MAX_REASON


_ENTRY_FIELDS = {
    "origin": _is_origin,
    "index": _is_count,
    "kind": lambda value: value in ("publish", "revoke"),
    "card_id": _is_card_id,
    "version": _is_version,
    "digest": _is_sha256,
    "supersedes": lambda value: value is None or _is_sha256(value),
    "signers": _is_signers,
    "rendered": _is_rendered,
    "time": _is_time,
    "reason": _is_reason,
}
_FIELDS_BY_KIND = {
    "publish": {"origin", "index", "kind", "card_id", "version", "digest", "supersedes",
                "signers", "rendered", "time"},
    "revoke": {"origin", "index", "kind", "card_id", "version", "digest", "reason", "time"},
}


def _utc_time(now: datetime | None) -> str:
    """RFC 3339 UTC to the second; a naive ``now`` is taken to be UTC already."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- log entries (pure) -----------------------------------------------------------------------


def _bad_line(message: str, where: Location) -> AcardsError:
    return AcardsError("registry.bad-line", message, _HINT_RESTORE, where)


def _checked_entry(entry: dict, where: Location = Location()) -> dict:
    """``entry`` if it has exactly its kind's fields, each valid; else registry.bad-line."""
    if not isinstance(entry, dict):
        raise _bad_line("a log entry must be a JSON object", where)
    kind = entry.get("kind")
    expected = _FIELDS_BY_KIND.get(kind) if isinstance(kind, str) else None
    if expected is None:
        raise _bad_line('kind must be "publish" or "revoke"', where)
    if set(entry) != expected:
        raise _bad_line(
            f"a {entry['kind']} entry must have exactly the fields {', '.join(sorted(expected))}",
            where,
        )
    for name in sorted(expected):
        if not _ENTRY_FIELDS[name](entry[name]):
            text = repr(entry[name])
            raise _bad_line(f"field {name!r} has an invalid value {text[:60]}", where)
    return entry


def publish_entry(
    origin: str,
    index: int,
    card_id: str,
    version: int,
    digest: str,
    supersedes: str | None,
    signers: list[str],
    rendered: Mapping[str, str],
    timestamp: str,
) -> dict:
    """A checked publish entry."""
    return _checked_entry({
        "origin": origin, "index": index, "kind": "publish", "card_id": card_id,
        "version": version, "digest": digest, "supersedes": supersedes,
        "signers": list(signers), "rendered": dict(rendered), "time": timestamp,
    })


def revoke_entry(
    origin: str, index: int, card_id: str, version: int, digest: str, reason: str, timestamp: str
) -> dict:
    """A checked revocation entry."""
    return _checked_entry({
        "origin": origin, "index": index, "kind": "revoke", "card_id": card_id,
        "version": version, "digest": digest, "reason": reason, "time": timestamp,
    })


def entry_line(entry: dict) -> bytes:
    """The log line for ``entry``: its RFC 8785 bytes, newline excluded (the leaf hashes these)."""
    return canonical_bytes(_checked_entry(entry))


def parse_entry(line: bytes, where: Location = Location()) -> dict:
    """One log line (without its newline) as an entry: strict JSON, RFC 8785 form, valid fields."""
    entry = _parse_entry_fields(line, where)
    if canonical_bytes(entry) != bytes(line):
        raise _bad_line("the line is not in RFC 8785 canonical form", where)
    return entry


def _parse_entry_fields(line: bytes, where: Location) -> dict:
    """``parse_entry`` without the canonical-form check (the costly half)."""
    try:
        value = parse_strict_json(line)
    except AcardsError as error:
        raise _bad_line(f"not strict JSON: {error.problems[0].message}", where) from None
    return _checked_entry(value, where)


# --- the rules of SPEC §9 (pure) --------------------------------------------------------------


class LogRules:
    """SPEC §9's rules over log entries taken in order.

    ``check`` says what is wrong with the next entry without taking it; ``record`` takes it.
    The same object checks a whole log (verify) and one candidate entry (publish, revoke).
    """

    def __init__(self, origin: str):
        self.origin = origin
        self.size = 0
        self.published: dict[str, dict] = {}  # digest -> its publish entry
        self.latest: dict[str, dict] = {}  # card id -> publish entry of its highest version
        self.revoked: dict[str, str] = {}  # digest -> reason
        self.superseded_by: dict[str, str] = {}  # digest -> digest of the version after it

    def expected_supersedes(self, card_id: str) -> str | None:
        latest = self.latest.get(card_id)
        return latest["digest"] if latest else None

    def check(self, entry: dict, where: Location = Location()) -> list[Problem]:
        problems = []
        if entry["origin"] != self.origin:
            problems.append(Problem(
                "registry.foreign-origin",
                f"entry names origin {entry['origin']!r}, but this registry is {self.origin!r}",
                "an entry copied from another registry; remove it",
                where,
            ))
        if entry["index"] != self.size:
            problems.append(Problem(
                "registry.bad-index",
                f"entry has index {entry['index']}, expected {self.size}",
                "log lines were deleted, inserted or reordered; " + _HINT_RESTORE,
                where,
            ))
        if entry["kind"] == "publish":
            problems += self._check_publish(entry, where)
        else:
            problems += self._check_revoke(entry, where)
        return problems

    def _check_publish(self, entry: dict, where: Location) -> list[Problem]:
        digest, card_id = entry["digest"], entry["card_id"]
        if digest in self.published:
            return [Problem(
                "registry.duplicate-digest",
                f"card {digest} is already in the log (entry {self.published[digest]['index']})",
                "a card is published once; publish a new version instead",
                where,
            )]
        problems = []
        latest = self.latest.get(card_id)
        if latest is not None and entry["version"] <= latest["version"]:
            problems.append(Problem(
                "registry.version-not-increasing",
                f"{card_id} version {entry['version']} is not above the published "
                f"version {latest['version']}",
                "increase the card's version before signing it again",
                where,
            ))
        expected = self.expected_supersedes(card_id)
        if entry["supersedes"] != expected:
            problems.append(Problem(
                "registry.bad-supersedes",
                f"{card_id} names {entry['supersedes']} as the digest it supersedes, "
                f"but the latest published version is {expected}",
                "a new version supersedes exactly the latest published version of its card",
                where,
            ))
        return problems

    def _check_revoke(self, entry: dict, where: Location) -> list[Problem]:
        target = self.published.get(entry["digest"])
        if target is None:
            message = f"revokes {entry['digest']}, which is not published before it"
        elif entry["digest"] in self.revoked:
            message = f"{entry['digest']} is already revoked"
        elif (target["card_id"], target["version"]) != (entry["card_id"], entry["version"]):
            message = (
                f"names {entry['card_id']} version {entry['version']}, but {entry['digest']} "
                f"is {target['card_id']} version {target['version']}"
            )
        else:
            return []
        return [Problem("registry.bad-revoke", message, "revoke a published card once", where)]

    def record(self, entry: dict | None) -> None:
        """Take the next entry; None stands for a line that could not be read."""
        self.size += 1
        if entry is None:
            return
        digest = entry["digest"]
        if entry["kind"] == "revoke":
            self.revoked.setdefault(digest, entry["reason"])
            return
        self.published.setdefault(digest, entry)
        if entry["supersedes"] is not None:
            self.superseded_by.setdefault(entry["supersedes"], digest)
        latest = self.latest.get(entry["card_id"])
        # Only a higher version moves the head, so one bad entry does not cascade.
        if latest is None or entry["version"] > latest["version"]:
            self.latest[entry["card_id"]] = entry

    def admit(self, entry: dict, where: Location = Location()) -> list[Problem]:
        problems = self.check(entry, where)
        self.record(entry)
        return problems


# --- cards (pure) -----------------------------------------------------------------------------


def _bad_card(message: str, pointer: str) -> AcardsError:
    return AcardsError(
        "registry.bad-card",
        message,
        "sign a predicate {card: {id, version, ...}, report: {...}} with `acards sign`",
        Location(pointer=pointer),
    )


def card_identity(statement: dict) -> tuple[str, int, str | None]:
    """(card id, version, the digest the predicate says it supersedes or None) of a statement."""
    predicate = statement["predicate"]
    card = predicate.get("card")
    if not isinstance(card, dict):
        raise _bad_card("the predicate has no card object", "/predicate/card")
    if not _is_card_id(card.get("id")):
        raise _bad_card("the card id is missing or not a slug [a-z0-9/-]", "/predicate/card/id")
    if not _is_version(card.get("version")):
        raise _bad_card("the card version must be an integer ≥ 1", "/predicate/card/version")
    claimed = predicate.get("supersedes")
    if claimed is not None and not _is_sha256(claimed):
        raise _bad_card("supersedes must be a sha256 hex digest", "/predicate/supersedes")
    return card["id"], card["version"], claimed


def _checked_render_output(files: Any) -> dict[str, bytes]:
    if not isinstance(files, Mapping):
        raise AcardsError(
            "registry.bad-render", "render() must return a mapping of file name to bytes",
            "return e.g. {'card.html': b'...'}",
        )
    for name, data in files.items():
        if not _is_render_name(name) or not isinstance(data, (bytes, bytearray)):
            raise AcardsError(
                "registry.bad-render",
                f"rendered file {name!r} must have a plain file name and bytes content",
                f"use names like card.html, other than {', '.join(_CARD_FILES)}",
            )
    return {name: bytes(data) for name, data in files.items()}


# --- checkpoints (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def _bad_checkpoint(message: str, where: Location = Location()) -> AcardsError:
    return AcardsError(
        "registry.bad-checkpoint",
        message,
        "the checkpoint was altered, or signed by another key; " + _HINT_RESTORE,
        where,
    )


def checkpoint_body(origin: str, size: int, root: bytes) -> bytes:
    """The RFC 8785 bytes the registry key signs for a log of ``size`` entries with ``root``."""
    return canonical_bytes({"origin": origin, "size": size, "root": bytes(root).hex()})


def sign_checkpoint(origin: str, size: int, root: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The checkpoint file: the RFC 8785 bytes of a DSSE envelope over ``checkpoint_body``."""
    body = checkpoint_body(origin, size, root)
    return canonical_bytes(dsse.sign_envelope(CHECKPOINT_TYPE, body, private_key))


def parse_checkpoint_body(payload: bytes, where: Location = Location()) -> Checkpoint:
    """A checkpoint body: RFC 8785 {"origin", "size", "root"}; no signature is checked here."""
    try:
        value = parse_strict_json(payload)
        canonical = canonical_bytes(value)
    except AcardsError as error:
        message = f"body is not strict JSON: {error.problems[0].message}"
        raise _bad_checkpoint(message, where) from None
    if canonical != bytes(payload):
        raise _bad_checkpoint("body is not in RFC 8785 canonical form", where)
    if not isinstance(value, dict) or set(value) != {"origin", "size", "root"}:
        raise _bad_checkpoint("body must have exactly origin, size and root", where)
    if not _is_origin(value["origin"]) or not _is_count(value["size"]):
        raise _bad_checkpoint("origin or size is invalid", where)
    if not _is_sha256(value["root"]):
        raise _bad_checkpoint("root must be 64 lowercase hex digits", where)
    return Checkpoint(value["origin"], value["size"], bytes.fromhex(value["root"]))


def open_checkpoint(
    envelope_bytes: bytes, registry_key: Ed25519PublicKey, where: Location = Location()
) -> Checkpoint:
    """The checkpoint in a DSSE envelope, once the registry key's signature over it verifies."""
    try:
        trusted = {keyid(registry_key): registry_key}
        verified = dsse.verify_envelope(envelope_bytes, trusted)
    except AcardsError as error:
        first = error.problems[0]
        raise _bad_checkpoint(f"{first.code}: {first.message}", where) from None
    if verified.payload_type != CHECKPOINT_TYPE:
        raise _bad_checkpoint(f"payload type is not {CHECKPOINT_TYPE}", where)
    return parse_checkpoint_body(verified.payload, where)


# --- Merkle roots of every prefix (pure) ------------------------------------------------------


def prefix_roots(leaf_hashes: list[bytes]) -> list[bytes]:
    """roots[k] = RFC 6962 root of the first k leaves, for k = 0..n, in O(n log n) hashing.

    Keeps the roots of the perfect subtrees the first k leaves split into (largest first: the
    binary digits of k); RFC 6962 splits at the largest power of two, so MTH(k) folds them from
    the right.
    """
    roots = [merkle.EMPTY_ROOT]
    stack: list[tuple[int, bytes]] = []  # (leaf count, subtree root)
    for leaf in leaf_hashes:
        size, node = 1, leaf
        while stack and stack[-1][0] == size:
            node = merkle.node_hash(stack.pop()[1], node)
            size *= 2
        stack.append((size, node))
        folded = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            folded = merkle.node_hash(left, folded)
        roots.append(folded)
    return roots


# --- the folder -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Paths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "registry.json"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def cards(self) -> Path:
        return self.root / "cards"

    @property
    def log(self) -> Path:
        return self.root / _LOG_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / "log" / "checkpoints"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    def checkpoint(self, size: int) -> Path:
        return self.checkpoints / f"{size}.json"

    def card(self, digest: str) -> Path:
        return self.cards / digest


@dataclass(frozen=True)
class _Config:
    origin: str
    registry_keyid: str


def _not_a_registry(paths: _Paths, message: str) -> AcardsError:
    return AcardsError(
        "registry.not-a-registry",
        message,
        "give the folder made by `acards registry init` (init_registry)",
        Location(file=str(paths.config)),
    )


def _read_config(paths: _Paths) -> _Config:
    try:
        data = paths.config.read_bytes()
    except OSError as error:
        raise _not_a_registry(paths, f"cannot read {paths.config}: {error.strerror}") from None
    try:
        value = parse_strict_json(data, str(paths.config))
    except AcardsError as error:
        message = f"registry.json is not JSON: {error.problems[0].message}"
        raise _not_a_registry(paths, message) from None
    if (
        not isinstance(value, dict)
        or set(value) != {"origin", "registry_keyid"}
        or not _is_origin(value["origin"])
        or not _is_sha256(value["registry_keyid"])
    ):
        raise _not_a_registry(paths, "registry.json must hold exactly origin and registry_keyid")
    return _Config(value["origin"], value["registry_keyid"])


def _io_error(action: str, error: OSError) -> AcardsError:
    return AcardsError(
        "registry.io-error",
        f"cannot {action}: {error.strerror or error} ({error.filename or ''})",
        "check that the registry folder exists, is writable and has free space",
    )


@contextmanager
def _io_errors(action: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise _io_error(action, error) from None


def _read_optional(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as error:
        raise _io_error(f"read {path}", error) from None


def _fsync_dir(path: Path) -> None:
    folder = os.open(path, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _open_lock(paths: _Paths, exclusive: bool) -> int | None:
    """The lock file's descriptor; None for a reader of a copy that has no (readable) lock file."""
    try:
        if exclusive:
            return os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o644)
        return os.open(paths.lock, os.O_RDONLY)
    except OSError as error:
        if exclusive:
            raise _io_error(f"open {paths.lock}", error) from None
        return None


@contextmanager
def _locked(paths: _Paths, exclusive: bool, timeout: float) -> Iterator[None]:
    """Hold ``.lock``: exclusively to write, shared to read a consistent snapshot.

    A registry served read-only may have no lock file; readers then go on without one.
    """
    descriptor = _open_lock(paths, exclusive)
    if descriptor is None:
        yield
        return
    try:
        operation = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AcardsError(
                        "registry.locked",
                        f"another process has held {paths.lock} for over {timeout:g} s",
                        "wait for the other publish to finish and try again",
                        Location(file=str(paths.lock)),
                    ) from None
                time.sleep(0.01)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_trusted_keys(paths: _Paths) -> tuple[dict[str, Ed25519PublicKey], list[Problem]]:
    """Every key in keys/, indexed by keyid; misfiled or unreadable keys are problems."""
    keys: dict[str, Ed25519PublicKey] = {}
    problems = []
    for path in sorted(paths.keys.glob("*.pub")):
        where = Location(file=f"keys/{path.name}")
        try:
            public_key = load_public_key(path)
        except AcardsError as error:
            message = error.problems[0].message
            problems.append(Problem("registry.bad-key", message, _HINT_RESTORE, where))
            continue
        key_id = keyid(public_key)
        if path.name != f"{key_id}.pub":
            problems.append(Problem(
                "registry.bad-key", f"{path.name} holds the key {key_id}", _HINT_RESTORE, where
            ))
            continue
        keys[key_id] = public_key
    return keys, problems


def _registry_public_key(config: _Config, keys: Mapping[str, Ed25519PublicKey]) -> Ed25519PublicKey:
    public_key = keys.get(config.registry_keyid)
    if public_key is None:
        raise AcardsError(
            "registry.bad-key",
            f"the registry key {config.registry_keyid} is not in keys/",
            _HINT_RESTORE,
            Location(file=f"keys/{config.registry_keyid}.pub"),
        )
    return public_key


# --- reading the log --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Log:
    lines: list[bytes]  # complete lines, without their newline
    torn: bytes  # what follows the last newline: an append a crash cut short


def _read_log(paths: _Paths) -> _Log:
    data = _read_optional(paths.log)
    if data is None:
        raise _not_a_registry(paths, f"{_LOG_FILE} is missing")
    complete, newline, torn = data.rpartition(b"\n")
    if not newline:  # no newline at all: everything is torn
        return _Log([], torn)
    return _Log(complete.split(b"\n"), torn)


def _line_location(index: int) -> Location:
    return Location(file=_LOG_FILE, line=index + 1)


def _parse_log(log: _Log) -> list[dict]:
    """Every entry, or all the unreadable lines raised together."""
    parsed, problems = [], []
    for index, line in enumerate(log.lines):
        try:
            parsed.append(parse_entry(line, _line_location(index)))
        except AcardsError as error:
            problems += error.problems
    if problems:
        raise AcardsError.collect(problems)
    return parsed


def _checkpoint_sizes(paths: _Paths) -> list[int]:
    """The sizes that have a checkpoint file, from the file names; temporary files are skipped."""
    try:
        names = os.listdir(paths.checkpoints)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise _io_error(f"list {paths.checkpoints}", error) from None
    return sorted(int(name[: -len(".json")]) for name in names if _CHECKPOINT_FILE.fullmatch(name))


def _read_checkpoints(paths: _Paths) -> dict[int, bytes]:
    """Checkpoint file bytes by size."""
    found = {}
    for size in _checkpoint_sizes(paths):
        data = _read_optional(paths.checkpoint(size))
        if data is not None:
            found[size] = data
    return found


def _replay(entries_: list[dict], origin: str) -> LogRules:
    rules = LogRules(origin)
    for entry in entries_:
        rules.record(entry)
    return rules


# --- writing ----------------------------------------------------------------------------------


def _check_origin(origin: Any) -> None:
    if not _is_origin(origin):
        raise AcardsError(
            "registry.bad-origin",
            f"origin {origin!r} is not 1–255 printable ASCII characters without spaces",
            "name the registry by where it is served, e.g. example.org/acards",
        )


def _write_public_key(paths: _Paths, public_key: Ed25519PublicKey) -> str:
    key_id = keyid(public_key)
    target = paths.keys / f"{key_id}.pub"
    if not target.exists():
        atomic_write(target, _public_pem(public_key))
    return key_id


def init_registry(
    directory: str | os.PathLike,
    origin: str,
    registry_key_path: str | os.PathLike,
    passphrase: bytes | None = None,
) -> dict:
    """Create an empty registry in ``directory``; return its registry.json content."""
    paths = _Paths(Path(directory))
    _check_origin(origin)
    private_key = load_private_key(registry_key_path, passphrase)
    with _io_errors(f"create the registry in {paths.root}"):
        paths.root.mkdir(parents=True, exist_ok=True)
        with _locked(paths, exclusive=True, timeout=LOCK_TIMEOUT):
            if paths.config.exists() or (paths.log.exists() and paths.log.stat().st_size):
                raise AcardsError(
                    "registry.exists",
                    f"{paths.root} already holds a registry",
                    "choose an empty folder",
                    Location(file=str(paths.config)),
                )
            for folder in (paths.keys, paths.cards, paths.checkpoints):
                folder.mkdir(parents=True, exist_ok=True)
            key_id = _write_public_key(paths, private_key.public_key())
            atomic_write(paths.log, b"")
            empty = sign_checkpoint(origin, 0, merkle.EMPTY_ROOT, private_key)
            atomic_write(paths.checkpoint(0), empty)
            config = {"origin": origin, "registry_keyid": key_id}
            # Written last: a registry.json means every other part is in place.
            atomic_write(paths.config, canonical_bytes(config))
    return config


def add_trusted_key(directory: str | os.PathLike, public_key_path: str | os.PathLike) -> str:
    """Trust the Ed25519 public key at ``public_key_path`` to sign cards; return its keyid."""
    paths = _Paths(Path(directory))
    _read_config(paths)
    public_key = load_public_key(public_key_path)
    with _io_errors(f"add a key to {paths.keys}"), _locked(paths, True, LOCK_TIMEOUT):
        return _write_public_key(paths, public_key)


@dataclass
class _Head:
    """The log as a writer found it, after repair: what the next entry is checked against."""

    config: _Config
    keys: dict[str, Ed25519PublicKey]
    rules: LogRules
    leaves: list[bytes]


def _truncate_torn_tail(paths: _Paths, log: _Log) -> None:
    if not log.torn:
        return
    with open(paths.log, "r+b") as handle:
        handle.truncate(paths.log.stat().st_size - len(log.torn))
        handle.flush()
        os.fsync(handle.fileno())
    _crash_point("repair-truncated")


def _covered_size(
    paths: _Paths, config: _Config, leaves: list[bytes], public_key: Ed25519PublicKey
) -> int:
    """How many lines the newest checkpoint covers, once its signature and root check out.

    All of them, or all but the last when a crash came between a line and its checkpoint (the
    checkpoint is written after its line, so only the newest can be missing).
    """
    size = len(leaves)
    beyond = [number for number in _checkpoint_sizes(paths) if number > size]
    if beyond:  # never overwrite the evidence that lines were deleted
        raise AcardsError(
            "registry.log-truncated",
            f"a signed checkpoint covers {max(beyond)} entries, but the log has {size}",
            "log lines were deleted; " + _HINT_RESTORE,
            Location(file=str(paths.checkpoint(max(beyond)))),
        )
    for covered in (size, size - 1):
        stored = _read_optional(paths.checkpoint(covered)) if covered >= 0 else None
        if stored is not None:
            root = merkle.root(leaves[:covered])
            _check_checkpoint_root(stored, public_key, config.origin, covered, root)
            return covered
    raise AcardsError(
        "registry.missing-checkpoint",
        f"there is no checkpoint for size {size}, nor for {size - 1}",
        _HINT_RESTORE,
        Location(file=str(paths.checkpoint(size))),
    )


def _check_checkpoint_root(
    data: bytes, public_key: Ed25519PublicKey, origin: str, size: int, expected_root: bytes
) -> None:
    where = Location(file=f"log/checkpoints/{size}.json")
    checkpoint = open_checkpoint(data, public_key, where)
    if (checkpoint.origin, checkpoint.size, checkpoint.root) != (origin, size, expected_root):
        raise AcardsError(
            "registry.root-mismatch",
            f"the log's first {size} entries do not match the signed checkpoint for size {size}",
            _HINT_RESTORE + "; run `acards registry verify` to see what changed",
            where,
        )


def _remove_debris(paths: _Paths, published: Mapping[str, dict]) -> None:
    """Remove what crashed writers left: staging folders, unlogged card folders, temp files."""
    for child in paths.cards.iterdir():
        if child.name in published:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for child in paths.checkpoints.iterdir():
        if child.name.startswith(".") and child.name.endswith(".tmp"):
            child.unlink()


def _prepare_head(paths: _Paths, config: _Config, registry_key: Ed25519PrivateKey) -> _Head:
    """Under the writer's lock: read the log, repair what a crash may have left, check the rest."""
    if not isinstance(registry_key, Ed25519PrivateKey):
        raise AcardsError(
            "key.unsupported",
            f"expected the registry's Ed25519 private key, got {type(registry_key).__name__}",
            "load it with load_private_key",
        )
    if keyid(registry_key.public_key()) != config.registry_keyid:
        raise AcardsError(
            "registry.wrong-key",
            f"this registry is signed by key {config.registry_keyid}",
            "give the registry's own private key",
        )
    keys, key_problems = _load_trusted_keys(paths)
    if key_problems:
        raise AcardsError.collect(key_problems)
    _registry_public_key(config, keys)
    log = _read_log(paths)
    _truncate_torn_tail(paths, log)
    leaves = [merkle.leaf_hash(line) for line in log.lines]
    covered = _covered_size(paths, config, leaves, registry_key.public_key())
    rules = LogRules(config.origin)
    problems = []
    for index, line in enumerate(log.lines):
        where = _line_location(index)
        # Lines under the checked checkpoint are authenticated by its signed root and had their
        # canonical form checked when appended; re-serialising them would cost most of the time.
        parse = _parse_entry_fields if index < covered else parse_entry
        problems += rules.admit(parse(line, where), where)
    if problems:
        raise AcardsError.collect(problems)
    if covered < len(leaves):  # a crash left the newest line without its checkpoint
        checkpoint = sign_checkpoint(config.origin, len(leaves), merkle.root(leaves), registry_key)
        atomic_write(paths.checkpoint(len(leaves)), checkpoint)
        _crash_point("repair-checkpointed")
    _remove_debris(paths, rules.published)
    return _Head(config, keys, rules, leaves)


def _place_card_folder(paths: _Paths, digest: str, files: Mapping[str, bytes]) -> None:
    """Write the card's files into a staging folder, then rename it into place in one step.

    The rename is what makes the folder appear whole, so the files inside need no rename each.
    """
    staging = paths.cards / f"{_STAGING_PREFIX}{digest}"
    staging.mkdir()
    for number, (name, data) in enumerate(files.items()):
        with open(staging / name, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if number == 0:
            _crash_point("card-staging")
    _fsync_dir(staging)
    _crash_point("card-staged")
    os.rename(staging, paths.card(digest))
    _fsync_dir(paths.cards)
    _crash_point("card-placed")


def _append_line(path: Path, line: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        # Two writes, so that the crash tests can stop between them: a torn line is exactly what
        # a crash in the middle of one write can leave.
        half = len(line) // 2
        for number, part in enumerate((line[:half], line[half:])):
            view = memoryview(part)
            while view:
                view = view[os.write(descriptor, view) :]
            if number == 0:
                _crash_point("append-torn")
        _crash_point("append-written")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    _crash_point("appended")


def _append_entry(paths: _Paths, head: _Head, entry: dict, registry_key: Ed25519PrivateKey) -> None:
    """Append ``entry`` durably, then sign the checkpoint for the new size."""
    line = entry_line(entry)
    _append_line(paths.log, line + b"\n")
    leaves = head.leaves + [merkle.leaf_hash(line)]
    checkpoint = sign_checkpoint(head.config.origin, len(leaves), merkle.root(leaves), registry_key)
    atomic_write(paths.checkpoint(len(leaves)), checkpoint)
    _crash_point("checkpointed")


def _verified_card(
    envelope_bytes: bytes, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[bytes, dict, list[str]]:
    """(payload, statement, signer keyids) of an envelope every trusted signature of which holds."""
    verified = dsse.verify_envelope(envelope_bytes, keys)
    if verified.invalid_keyids:
        raise AcardsError(
            "envelope.bad-signature",
            f"signatures by {', '.join(verified.invalid_keyids)} do not match the payload",
            "the envelope was altered after signing; sign the card again",
        )
    statement = in_toto.open_statement(verified.payload_type, verified.payload)
    return verified.payload, statement, list(verified.keyids)


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
) -> dict:
    """Verify a signed card, check SPEC §9's rules, store it and log it; return its log entry."""
    paths = _Paths(Path(directory))
    if not isinstance(envelope_bytes, (bytes, bytearray)):
        raise AcardsError("registry.bad-card", "the envelope must be bytes", "pass the file's bytes")
    envelope_bytes = bytes(envelope_bytes)
    config = _read_config(paths)
    with _io_errors(f"publish to {paths.root}"), _locked(paths, True, lock_timeout):
        _crash_point("locked")
        head = _prepare_head(paths, config, registry_private_key)
        payload, statement, signers = _verified_card(envelope_bytes, head.keys)
        card_id, version, claimed = card_identity(statement)
        digest = _sha256(payload)
        expected = head.rules.expected_supersedes(card_id)
        candidate = publish_entry(
            head.config.origin, head.rules.size, card_id, version, digest, expected, signers, {},
            _utc_time(now),
        )
        problems = head.rules.check(candidate)
        if problems:
            raise AcardsError.collect(problems)
        _refuse_other_supersedes(card_id, expected, [supersedes, claimed])
        files = {
            "envelope.json": envelope_bytes,
            "statement.json": payload,
            "manifest.json": canonical_bytes(statement["subject"]),
        }
        rendered = _checked_render_output(render(statement)) if render else {}
        entry = {**candidate, "rendered": {name: _sha256(data) for name, data in rendered.items()}}
        files.update(rendered)
        _place_card_folder(paths, digest, files)
        _append_entry(paths, head, entry, registry_private_key)
    return entry


def revoke(
    directory: str | os.PathLike,
    digest: str,
    reason: str,
    registry_private_key: Ed25519PrivateKey,
    now: datetime | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> dict:
    """Append a revocation of the published card ``digest``; return its log entry."""
    paths = _Paths(Path(directory))
    if not _is_reason(reason):
        raise AcardsError(
            "registry.bad-revoke",
            f"a revocation needs a reason of 1–{_MAX_REASON} characters",
            "say why the card is withdrawn",
        )
    config = _read_config(paths)
    with _io_errors(f"revoke in {paths.root}"), _locked(paths, True, lock_timeout):
        head = _prepare_head(paths, config, registry_private_key)
        target = head.rules.published.get(digest)
        if target is None:
            raise _unknown_digest(digest)
        entry = revoke_entry(
            head.config.origin, head.rules.size, target["card_id"], target["version"],
            digest, reason, _utc_time(now),
        )
        problems = head.rules.check(entry)
        if problems:
            raise AcardsError.collect(problems)
        _append_entry(paths, head, entry, registry_private_key)
    return entry


def _unknown_digest(digest: Any) -> AcardsError:
    return AcardsError(
        "registry.unknown-digest",
        f"no card with digest {str(digest)[:80]} is published in this registry",
        "give the sha256 of a published card's payload (see entries.jsonl)",
    )


# --- verification -----------------------------------------------------------------------------


@dataclass
class RegistryVerification:
    """What ``verify_registry`` found. ``ok`` when there are no problems; warnings are what a
    crashed writer can leave, and the next writer repairs."""

    origin: str
    size: int  # complete log lines
    root: str  # hex RFC 6962 root over them
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    revoked: dict[str, str] = field(default_factory=dict)  # digest -> reason
    entries: list[dict] = field(default_factory=list)  # the readable entries, in log order

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise AcardsError.collect(self.problems)

    def to_dict(self) -> dict:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "ok": self.ok,
            "problems": [problem.to_dict() for problem in self.problems],
            "warnings": [warning.to_dict() for warning in self.warnings],
            "revoked": dict(self.revoked),
        }


def _verify_lines(log: _Log, origin: str, result: RegistryVerification) -> LogRules:
    """Each line's form, then the rules over the readable ones."""
    rules = LogRules(origin)
    for index, line in enumerate(log.lines):
        where = _line_location(index)
        try:
            entry = parse_entry(line, where)
        except AcardsError as error:
            result.problems += error.problems
            rules.record(None)
            continue
        result.problems += rules.admit(entry, where)
        result.entries.append(entry)
    if log.torn:
        result.warnings.append(Problem(
            "registry.torn-tail",
            f"the log ends in {len(log.torn)} bytes without a newline (an interrupted append)",
            "the next publish removes them; nothing was published by that attempt",
            _line_location(len(log.lines)),
        ))
    return rules


def _verify_stored_checkpoints(
    stored: Mapping[int, bytes],
    registry_key: Ed25519PublicKey,
    origin: str,
    leaves: list[bytes],
    roots: list[bytes],
    result: RegistryVerification,
) -> None:
    size = len(leaves)
    valid: dict[int, Checkpoint] = {}
    for number in sorted(stored):
        where = Location(file=f"log/checkpoints/{number}.json")
        try:
            checkpoint = open_checkpoint(stored[number], registry_key, where)
        except AcardsError as error:
            result.problems += error.problems
            continue
        if checkpoint.origin != origin:
            result.problems.append(Problem(
                "registry.foreign-origin",
                f"checkpoint names origin {checkpoint.origin!r}, not {origin!r}",
                "a checkpoint copied from another registry; " + _HINT_RESTORE,
                where,
            ))
        elif checkpoint.size != number:
            result.problems.append(_bad_checkpoint(
                f"the file for size {number} holds the checkpoint for size {checkpoint.size}", where
            ).problems[0])
        elif number > size:
            result.problems.append(Problem(
                "registry.log-truncated",
                f"a signed checkpoint covers {number} entries, but the log has {size}",
                "log lines were deleted; " + _HINT_RESTORE,
                where,
            ))
        elif checkpoint.root != roots[number]:
            result.problems.append(Problem(
                "registry.root-mismatch",
                f"the log's first {number} entries do not hash to the signed root",
                "log lines were edited, deleted or reordered; " + _HINT_RESTORE,
                where,
            ))
        else:
            valid[number] = checkpoint
    _check_checkpoint_sequence(valid, leaves, result)
    _report_missing_checkpoints(stored, size, result)


def _check_checkpoint_sequence(
    valid: Mapping[int, Checkpoint], leaves: list[bytes], result: RegistryVerification
) -> None:
    """Each checkpoint must extend the one before it (RFC 9162 consistency proofs).

    Implied when every root matches the log, but checked through merkle's own verifier so that
    the prefix-root shortcut is never the only thing standing between a log and its checkpoints.
    """
    sizes = [number for number in sorted(valid) if number > 0]
    for old, new in zip(sizes, sizes[1:]):
        proof = merkle.consistency_proof(leaves[:new], old)
        try:
            merkle.verify_consistency(old, new, valid[old].root, valid[new].root, proof)
        except AcardsError as error:
            result.problems.append(Problem(
                "registry.inconsistent-checkpoint",
                f"checkpoint {new} does not extend checkpoint {old}: {error.problems[0].message}",
                _HINT_RESTORE,
                Location(file=f"log/checkpoints/{new}.json"),
            ))


def _report_missing_checkpoints(
    stored: Mapping[int, bytes], size: int, result: RegistryVerification
) -> None:
    for number in range(size + 1):
        if number in stored:
            continue
        where = Location(file=f"log/checkpoints/{number}.json")
        if number == size and number - 1 in stored:  # a crash between a line and its checkpoint
            result.warnings.append(Problem(
                "registry.unsigned-head",
                f"the newest entry has no checkpoint for size {number} yet",
                "the next publish signs it; readers see the log up to size "
                f"{number - 1} until then",
                where,
            ))
        else:
            result.problems.append(Problem(
                "registry.missing-checkpoint",
                f"there is no checkpoint for size {number}",
                _HINT_RESTORE,
                where,
            ))


def _verify_external_checkpoint(
    data: bytes,
    registry_key: Ed25519PublicKey,
    origin: str,
    leaves: list[bytes],
    roots: list[bytes],
    result: RegistryVerification,
) -> None:
    """The log must extend a checkpoint a reader saved earlier: detects rewritten history."""
    where = Location(file="<saved checkpoint>")
    try:
        saved = open_checkpoint(data, registry_key, where)
    except AcardsError as error:
        result.problems += error.problems
        return
    if saved.origin != origin:
        result.problems.append(Problem(
            "registry.foreign-origin",
            f"the saved checkpoint is for origin {saved.origin!r}, not {origin!r}",
            "compare a registry only with checkpoints it signed",
            where,
        ))
        return
    size = len(leaves)
    inconsistent = None
    if saved.size > size:
        inconsistent = f"the saved checkpoint covers {saved.size} entries, the log only {size}"
    elif saved.size == 0:
        if saved.root != merkle.EMPTY_ROOT:
            inconsistent = "the saved checkpoint for size 0 has a root other than the empty root"
    else:
        try:
            proof = merkle.consistency_proof(leaves, saved.size)
            merkle.verify_consistency(saved.size, size, saved.root, roots[size], proof)
        except AcardsError as error:
            inconsistent = error.problems[0].message
    if inconsistent:
        result.problems.append(Problem(
            "registry.inconsistent-checkpoint",
            f"the log does not extend the saved checkpoint (size {saved.size}): {inconsistent}",
            "the registry's history was rewritten since you saved that checkpoint; do not trust it",
            where,
        ))


def _card_problem(
    code: str, message: str, digest: str, name: str, hint: str = _HINT_RESTORE
) -> Problem:
    return Problem(code, message, hint, Location(file=f"cards/{digest}/{name}"))


def _verify_card(
    paths: _Paths, entry: dict, keys: Mapping[str, Ed25519PublicKey], render: Render | None
) -> list[Problem]:
    """The stored card against its entry: signatures, digest, copies, rendered files."""
    digest = entry["digest"]
    folder = paths.card(digest)
    stored = {name: _read_optional(folder / name) for name in (*_CARD_FILES, *entry["rendered"])}
    missing = [name for name, data in stored.items() if data is None]
    problems = [
        _card_problem("registry.missing-file", f"{name} is missing", digest, name) for name in missing
    ]
    if stored["envelope.json"] is None:
        return problems
    try:
        payload, statement, signers = _verified_card(stored["envelope.json"], keys)
        card_id, version, claimed = card_identity(statement)
    except AcardsError as error:
        first = error.problems[0]
        return problems + [_card_problem(
            "registry.bad-envelope", f"{first.code}: {first.message}", digest, "envelope.json"
        )]
    if _sha256(payload) != digest:
        problems.append(_card_problem(
            "registry.digest-mismatch", "the envelope's payload does not have the logged digest",
            digest, "envelope.json",
        ))
    if not set(entry["signers"]) <= set(signers):
        problems.append(_card_problem(
            "registry.signer-mismatch",
            "keys the log names as signers did not sign this envelope (or are no longer trusted)",
            digest, "envelope.json",
        ))
    if (card_id, version) != (entry["card_id"], entry["version"]):
        problems.append(_card_problem(
            "registry.entry-mismatch",
            f"the card is {card_id} version {version}, the log says {entry['card_id']} "
            f"version {entry['version']}", digest, "envelope.json",
        ))
    if claimed is not None and claimed != entry["supersedes"]:
        problems.append(_card_problem(
            "registry.bad-supersedes",
            f"the signed card supersedes {claimed}, the log says {entry['supersedes']}",
            digest, "envelope.json",
        ))
    if stored["statement.json"] is not None and stored["statement.json"] != payload:
        problems.append(_card_problem(
            "registry.digest-mismatch",
            "statement.json is not the verified payload", digest, "statement.json",
        ))
    manifest = stored["manifest.json"]
    if manifest is not None and manifest != canonical_bytes(statement["subject"]):
        problems.append(_card_problem(
            "registry.manifest-mismatch",
            "manifest.json is not the statement's subject list", digest, "manifest.json",
        ))
    problems += _verify_rendered(entry, stored, statement, render)
    return problems


def _verify_rendered(
    entry: dict, stored: Mapping[str, bytes | None], statement: dict, render: Render | None
) -> list[Problem]:
    digest, problems = entry["digest"], []
    for name, expected in entry["rendered"].items():
        data = stored[name]
        if data is not None and _sha256(data) != expected:
            problems.append(_card_problem(
                "registry.render-mismatch", f"{name} is not the file that was published",
                digest, name,
            ))
    if render is None:
        return problems
    try:
        fresh = _checked_render_output(render(statement))
    except AcardsError as error:
        first = error.problems[0]
        message = f"render failed: {first.code}: {first.message}"
        return problems + [_card_problem("registry.render-mismatch", message, digest, "")]
    if set(fresh) != set(entry["rendered"]):
        problems.append(_card_problem(
            "registry.render-mismatch",
            f"rendering now makes {sorted(fresh)}, the log lists {sorted(entry['rendered'])}",
            digest, "", "render with the template version the registry was built with",
        ))
    for name in sorted(set(fresh) & set(entry["rendered"])):
        if stored[name] is not None and fresh[name] != stored[name]:
            problems.append(_card_problem(
                "registry.render-mismatch",
                f"{name} does not re-render byte for byte from the verified payload",
                digest, name, "the file was altered, or the templates changed since publication",
            ))
    return problems


def _report_orphans(
    paths: _Paths, published: Mapping[str, dict], result: RegistryVerification
) -> None:
    try:
        names = sorted(os.listdir(paths.cards))
    except OSError:
        names = []
    for name in names:
        if name not in published:
            result.warnings.append(Problem(
                "registry.orphan-card",
                f"cards/{name} is not in the log (left by an interrupted publish)",
                "the next publish removes it; it is not part of the registry",
                Location(file=f"cards/{name}"),
            ))


def verify_registry(
    directory: str | os.PathLike,
    checkpoint: bytes | None = None,
    render: Render | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> RegistryVerification:
    """Verify the registry offline; problems are collected, not raised.

    Raises AcardsError only when ``directory`` is not a registry (or cannot be read at all).
    ``checkpoint``: the bytes of a checkpoint file a reader saved earlier; the log must extend it.
    ``render``: re-render every card from its verified payload and compare byte for byte.
    """
    paths = _Paths(Path(directory))
    config = _read_config(paths)
    with _locked(paths, exclusive=False, timeout=lock_timeout):
        log = _read_log(paths)
        stored_checkpoints = _read_checkpoints(paths)
        keys, key_problems = _load_trusted_keys(paths)
        leaves = [merkle.leaf_hash(line) for line in log.lines]
        roots = prefix_roots(leaves)
        result = RegistryVerification(config.origin, len(leaves), roots[-1].hex(), key_problems)
        rules = _verify_lines(log, config.origin, result)
        try:
            registry_key = _registry_public_key(config, keys)
        except AcardsError as error:
            result.problems += error.problems
        else:
            _verify_stored_checkpoints(
                stored_checkpoints, registry_key, config.origin, leaves, roots, result
            )
            if checkpoint is not None:
                _verify_external_checkpoint(
                    checkpoint, registry_key, config.origin, leaves, roots, result
                )
        for entry in rules.published.values():
            result.problems += _verify_card(paths, entry, keys, render)
        _report_orphans(paths, rules.published, result)
        result.revoked = dict(rules.revoked)
    return result


def check_registry(
    directory: str | os.PathLike, checkpoint: bytes | None = None, render: Render | None = None
) -> RegistryVerification:
    """``verify_registry``, raising every problem together if there is any."""
    result = verify_registry(directory, checkpoint, render)
    result.raise_for_problems()
    return result


# --- reading, for sites and readers -----------------------------------------------------------


def entries(directory: str | os.PathLike) -> list[dict]:
    """Every log entry in order (a torn last line is left out); raises on an unreadable line.

    Reads without verifying checkpoints or cards: run ``verify_registry`` for that.
    """
    paths = _Paths(Path(directory))
    _read_config(paths)
    with _locked(paths, exclusive=False, timeout=LOCK_TIMEOUT):
        return _parse_log(_read_log(paths))


def latest_cards(directory: str | os.PathLike) -> list[dict]:
    """The publish entry of the highest non-revoked version of each card id, sorted by id."""
    paths = _Paths(Path(directory))
    config = _read_config(paths)
    rules = _replay(entries(directory), config.origin)
    best: dict[str, dict] = {}
    for entry in rules.published.values():
        if entry["digest"] in rules.revoked:
            continue
        current = best.get(entry["card_id"])
        if current is None or entry["version"] > current["version"]:
            best[entry["card_id"]] = entry
    return [best[card_id] for card_id in sorted(best)]


def status(directory: str | os.PathLike, digest: str) -> dict:
    """Where a card stands: state "current", "superseded" or "revoked", with its details."""
    paths = _Paths(Path(directory))
    config = _read_config(paths)
    rules = _replay(entries(directory), config.origin)
    entry = rules.published.get(digest)
    if entry is None:
        raise _unknown_digest(digest)
    superseded_by = rules.superseded_by.get(digest)
    revoked = digest in rules.revoked
    return {
        "digest": digest,
        "card_id": entry["card_id"],
        "version": entry["version"],
        "index": entry["index"],
        "state": "revoked" if revoked else "superseded" if superseded_by else "current",
        "revoked": revoked,
        "reason": rules.revoked.get(digest),
        "superseded_by": superseded_by,
    }


def _signed_head(paths: _Paths, log: _Log) -> tuple[int, bytes]:
    """(size, file bytes) of the newest checkpoint the log reaches."""
    stored = _read_checkpoints(paths)
    sizes = [size for size in stored if size <= len(log.lines)]
    if not sizes:
        raise AcardsError(
            "registry.missing-checkpoint", "the registry has no checkpoint", _HINT_RESTORE
        )
    size = max(sizes)
    return size, stored[size]


def inclusion(directory: str | os.PathLike, digest: str) -> dict:
    """A proof that the publish entry of ``digest`` is in the log of the newest checkpoint.

    {"origin", "index", "size", "entry" (the log line), "path" (hex), "checkpoint" (envelope)}
    """
    paths = _Paths(Path(directory))
    config = _read_config(paths)
    with _locked(paths, exclusive=False, timeout=LOCK_TIMEOUT):
        log = _read_log(paths)
        size, checkpoint = _signed_head(paths, log)
    found = [
        index for index, entry in enumerate(_parse_log(log))
        if entry["kind"] == "publish" and entry["digest"] == digest
    ]
    if not found:
        raise _unknown_digest(digest)
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
    paths = _Paths(Path(directory))
    config = _read_config(paths)
    with _locked(paths, exclusive=False, timeout=LOCK_TIMEOUT):
        log = _read_log(paths)
        size, checkpoint = _signed_head(paths, log)
    if not _is_count(old_size) or old_size > size:
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
    return isinstance(value, list) and len(value) <= 64 and all(_is_sha256(node) for node in value)


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
        "origin": _is_origin, "index": _is_count, "size": _is_count,
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
        "origin": _is_origin, "old_size": _is_count, "new_size": _is_count,
        "old_root": _is_sha256, "new_root": _is_sha256, "path": _is_hex_path,
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
