"""Writing a registry: init, trusting keys, and the two writers, publish and revoke (SPEC §9).

Writers hold the exclusive lock; only AcardsError leaves them, bar what a render callback raises.

Crash safety. ``publish`` writes in an order where every prefix of its work is a valid registry:
the card folder is staged and renamed into place (an unlogged folder is only an orphan), then the
log line is appended and fsynced, and only then is the checkpoint for the new size signed. A crash
can therefore leave a torn last line, a newest line without its checkpoint, an orphan or staging
folder, or temporary files: verification reports these as warnings, and the next writer repairs
them under the lock (truncates the torn tail, re-signs the missing newest checkpoint after
checking the log against the previous one, removes debris). Anything else is a problem.

Incremental state. A writer does not read the log again: the signed state (``acards.registry.state``)
gives the size, root and compact range of the log's Merkle tree and the root of the rules index
(``acards.registry.index``), so a publish costs O(log n) hashes and node reads. The state is
trusted only when it describes the folder exactly (``_resume``); otherwise, and whenever the index
cannot answer, the writer falls back to reading the whole log (``_replay``), which checks it
against the newest checkpoint, repairs what a crash left, and writes the state and index afresh.
The state is written last, after the checkpoint, so a crash anywhere leaves a state that no longer
matches and the next writer replays.

Retries. A writer killed after its log line landed leaves the signed state one entry short. Running
that writer again (the same envelope, or the same revocation) finishes it (``_unfinished_entry``,
``_finish``) rather than refusing the digest as published; replays keep the short state until then.

The writers take a ``crash_at`` hook, called with each of ``CRASH_POINTS`` as they pass it. It is
None in use; the crash-safety tests pass one that SIGKILLs the process at a chosen point.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards import merkle
from acards.attest.keys import keyid, load_private_key, load_public_key
from acards.canonical import canonical_bytes
from acards.errors import AcardsError, Location
from acards.files import atomic_write
from acards.registry.cards import Render, card_identity, checked_render_output, verified_card
from acards.registry.checkpoints import check_checkpoint_root, sign_checkpoint
from acards.registry.disk import (
    LOCK_TIMEOUT,
    Config,
    Log,
    checkpoint_sizes,
    fsync_dir,
    io_errors,
    line_location,
    load_trusted_keys,
    locked,
    read_config,
    read_log,
    read_optional,
    registry_public_key,
)
from acards.registry.entries import (
    HINT_RESTORE,
    MAX_REASON,
    entry_line,
    is_origin,
    is_reason,
    parse_entry,
    parse_entry_fields,
    publish_entry,
    revoke_entry,
    sha256_hex,
    unknown_digest,
    utc_time,
)
from acards.registry.index import NodeFile, build_index, view_rules
from acards.registry.layout import ENVELOPE, MANIFEST, STATEMENT, Layout, is_temporary
from acards.registry.rules import LogRules
from acards.registry.state import State, file_mark, open_state, sign_state, write_state
from acards.registry.trie import EMPTY, Trie, TrieError
from acards.registry.trust import migrate_keys_locked, public_pem, write_public_key

# Where the writers call crash_at, in the order publish passes them (revoke passes the repair and
# append points).
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
    "indexed",
)

CrashHook = Callable[[str], None]  # called with each crash point a writer passes


def _no_crash(_point: str) -> None:
    """The hook in use: every crash point passes."""


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
            _save_state(layout, origin, private_key, 0, [], EMPTY)
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


@dataclass
class _Head:
    """The log as a writer found it, after repair: what the next entry is checked against."""

    config: Config
    keys: dict[str, Ed25519PublicKey]
    size: int  # entries in the log
    frontier: list[bytes]  # the compact range of their Merkle tree
    trie: Trie  # the rules index; ``rules`` asks it
    rules: LogRules
    settled: int | None = None  # the size the signed state recorded, when the head was replayed
    newest: bytes | None = None  # the newest log line, when the head was replayed from the log


def _truncate_torn_tail(layout: Layout, log: Log, crash: CrashHook) -> None:
    if not log.torn:
        return
    with open(layout.log, "r+b") as handle:
        handle.truncate(layout.log.stat().st_size - len(log.torn))
        handle.flush()
        os.fsync(handle.fileno())
    crash("repair-truncated")


def _covered_size(
    layout: Layout, config: Config, leaves: list[bytes], public_key: Ed25519PublicKey
) -> int:
    """How many lines the newest checkpoint covers, once its signature and root check out.

    All of them, or all but the last when a crash came between a line and its checkpoint (the
    checkpoint is written after its line, so only the newest can be missing).
    """
    size = len(leaves)
    beyond = [number for number in checkpoint_sizes(layout) if number > size]
    if beyond:  # never overwrite the evidence that lines were deleted
        raise AcardsError(
            "registry.log-truncated",
            f"a signed checkpoint covers {max(beyond)} entries, but the log has {size}",
            "log lines were deleted; " + HINT_RESTORE,
            Location(file=str(layout.checkpoint(max(beyond)))),
        )
    for covered in (size, size - 1):
        stored = read_optional(layout.checkpoint(covered)) if covered >= 0 else None
        if stored is not None:
            root = merkle.root(leaves[:covered])
            check_checkpoint_root(stored, public_key, config.origin, covered, root)
            return covered
    raise AcardsError(
        "registry.missing-checkpoint",
        f"there is no checkpoint for size {size}, nor for {size - 1}",
        HINT_RESTORE,
        Location(file=str(layout.checkpoint(size))),
    )


def _remove_debris(layout: Layout, published: Mapping[str, dict]) -> None:
    """Remove what crashed writers left: staging folders, unlogged card folders, temp files."""
    for child in layout.cards.iterdir():
        if child.name in published:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    for folder in (layout.checkpoints, layout.state_dir):
        for child in folder.iterdir() if folder.is_dir() else ():
            if is_temporary(child.name):
                child.unlink()


def _save_state(
    layout: Layout, origin: str, registry_key: Ed25519PrivateKey, size: int, frontier: list[bytes], index_root: bytes
) -> None:
    """Sign the state of the folder as it is now (after the checkpoint for ``size``)."""
    state = State(origin, size, merkle.frontier_root(frontier), frontier, index_root,
                  file_mark(layout.log), file_mark(layout.cards))
    write_state(layout.state, sign_state(state, registry_key))


def _trusted_keys(layout: Layout, config: Config, registry_key: Ed25519PrivateKey) -> dict[str, Ed25519PublicKey]:
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
    migrate_keys_locked(layout, config)
    keys, key_problems = load_trusted_keys(layout)
    if key_problems:
        raise AcardsError.collect(key_problems)
    registry_public_key(layout, config)
    return keys


def _resume(
    layout: Layout, config: Config, registry_key: Ed25519PrivateKey, keys: dict[str, Ed25519PublicKey], nodes: NodeFile
) -> _Head | None:
    """The head from the signed state, without reading the log, when the state describes the
    folder exactly; None when anything differs (see acards.registry.state)."""
    public_key = registry_key.public_key()
    try:
        data = read_optional(layout.state)
        if data is None:
            return None
        state = open_state(data, public_key)
        if state.origin != config.origin or (state.log, state.cards) != (file_mark(layout.log), file_mark(layout.cards)):
            return None
        if os.path.lexists(layout.checkpoint(state.size + 1)):  # a crash after a checkpoint
            return None
        checkpoint = read_optional(layout.checkpoint(state.size))
        if checkpoint is None:
            return None
        check_checkpoint_root(checkpoint, public_key, config.origin, state.size, state.root)
    except (AcardsError, OSError):
        return None
    trie = Trie(nodes, state.index)
    return _Head(config, keys, state.size, state.frontier, trie, view_rules(config.origin, state.size, trie))


def _replay(
    layout: Layout,
    config: Config,
    registry_key: Ed25519PrivateKey,
    keys: dict[str, Ed25519PublicKey],
    nodes: NodeFile,
    crash: CrashHook,
    settled: int | None = None,
) -> _Head:
    """Read the whole log, repair what a crash may have left, check the rest against the newest
    checkpoint, and write the state and the rules index afresh.

    ``settled``: the size the signed state recorded. When the log has exactly one entry more, the
    writer of that entry was killed before saving the state; the state is then left as it is, so
    that a retry of that writer still finds its entry unfinished (``_unfinished_entry``) whatever
    other writers were refused in between, and saves the state itself."""
    log = read_log(layout)
    _truncate_torn_tail(layout, log, crash)
    leaves = [merkle.leaf_hash(line) for line in log.lines]
    covered = _covered_size(layout, config, leaves, registry_key.public_key())
    rules = LogRules(config.origin)
    problems = []
    for index, line in enumerate(log.lines):
        where = line_location(index)
        # Lines under the checked checkpoint are authenticated by its signed root and had their
        # canonical form checked when appended.
        parse = parse_entry_fields if index < covered else parse_entry
        problems += rules.admit(parse(line, where), where)
    if problems:
        raise AcardsError.collect(problems)
    frontier = merkle.Tree(leaves).frontier(len(leaves))
    if covered < len(leaves):  # a crash left the newest line without its checkpoint
        checkpoint = sign_checkpoint(config.origin, len(leaves), merkle.frontier_root(frontier), registry_key)
        atomic_write(layout.checkpoint(len(leaves)), checkpoint)
        crash("repair-checkpointed")
    _remove_debris(layout, rules.published)
    index_root, built = build_index(rules)
    try:
        layout.state_dir.mkdir(exist_ok=True)
        nodes.replace(built)
        if settled is None or settled != len(leaves) - 1:
            _save_state(layout, config.origin, registry_key, len(leaves), frontier, index_root)
    except (TrieError, OSError):
        pass  # this publish answers from memory; the next one replays again
    trie = Trie(built, index_root)
    return _Head(config, keys, len(leaves), frontier, trie, view_rules(config.origin, len(leaves), trie),
                 settled, log.lines[-1] if log.lines else None)


Decision = TypeVar("Decision")


def _decide(
    layout: Layout,
    config: Config,
    registry_key: Ed25519PrivateKey,
    nodes: NodeFile,
    crash: CrashHook,
    decide: Callable[[_Head], Decision],
) -> tuple[_Head, Decision]:
    """Under the writer's lock: the head (resumed, or replayed from the log) and what ``decide``
    makes of it. An index that cannot answer for the signed root is rebuilt from the log, once."""
    keys = _trusted_keys(layout, config, registry_key)
    settled = _settled_size(layout, config, registry_key.public_key())
    head = _resume(layout, config, registry_key, keys, nodes) or _replay(
        layout, config, registry_key, keys, nodes, crash, settled)
    try:
        return head, decide(head)
    except TrieError:
        head = _replay(layout, config, registry_key, keys, nodes, crash, settled)
        return head, decide(head)


def _settled_size(layout: Layout, config: Config, public_key: Ed25519PublicKey) -> int | None:
    """The log size the registry key's signed state records, whether or not it still describes the
    folder; None without a state that verifies. A writer saves the state last, so an entry beyond
    it is one whose writer was killed after appending it."""
    try:
        data = read_optional(layout.state)
        state = open_state(data, public_key) if data is not None else None
    except (AcardsError, OSError):
        return None
    return state.size if state is not None and state.origin == config.origin else None


def _unfinished_entry(head: _Head, kind: str, digest: str) -> dict | None:
    """The newest log entry when it is a ``kind`` entry for ``digest`` that the signed state had not
    recorded yet: the work of a writer killed after its line landed. The head was then replayed
    from the log, which re-signed a missing checkpoint and rebuilt the index, so a retry of that
    very writer has only the state left to save (``_finish``) before it answers the entry: publish
    and revoke are idempotent across a crash. Anything else about an existing digest stays a rule
    violation."""
    if head.settled is None or head.settled != head.size - 1 or head.newest is None:
        return None
    newest = parse_entry_fields(head.newest, line_location(head.size - 1))
    if newest["kind"] != kind or newest["digest"] != digest:
        return None
    return newest


def _place_card_folder(
    layout: Layout, digest: str, files: Mapping[str, bytes], crash: CrashHook
) -> None:
    """Write the card's files into a staging folder, then rename it into place in one step.

    The rename is what makes the folder appear whole, so the files inside need no rename each.
    """
    staging = layout.staging(digest)
    for leftover in (staging, layout.card(digest)):  # from a crashed publish of this very card
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        elif os.path.lexists(leftover):
            leftover.unlink()
    staging.mkdir()
    for number, (name, data) in enumerate(files.items()):
        with open(staging / name, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if number == 0:
            crash("card-staging")
    fsync_dir(staging)
    crash("card-staged")
    os.rename(staging, layout.card(digest))
    fsync_dir(layout.cards)
    crash("card-placed")


def _append_line(path: Path, line: bytes, crash: CrashHook) -> None:
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
                crash("append-torn")
        crash("append-written")
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    crash("appended")


def _append_entry(
    layout: Layout, head: _Head, entry: dict, registry_key: Ed25519PrivateKey, nodes: NodeFile, crash: CrashHook
) -> None:
    """Append ``entry`` durably, sign the checkpoint for the new size, then store the index nodes
    and the state (``head.trie`` already holds the entry)."""
    line = entry_line(entry)
    _append_line(layout.log, line + b"\n", crash)
    size, frontier = head.size + 1, merkle.frontier_append(head.size, head.frontier, merkle.leaf_hash(line))
    checkpoint = sign_checkpoint(head.config.origin, size, merkle.frontier_root(frontier), registry_key)
    atomic_write(layout.checkpoint(size), checkpoint)
    crash("checkpointed")
    try:
        nodes.update(head.trie)
        crash("indexed")
        _save_state(layout, head.config.origin, registry_key, size, frontier, head.trie.root)
    except (TrieError, OSError):
        pass  # the entry is logged and signed; without a matching state the next writer replays


def _finish(layout: Layout, head: _Head, registry_key: Ed25519PrivateKey) -> None:
    """Save the state a writer killed after its line landed did not get to save."""
    try:
        _save_state(layout, head.config.origin, registry_key, head.size, head.frontier, head.trie.root)
    except OSError:
        pass  # as in _append_entry: the next writer replays


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
    crash = crash_at or _no_crash
    layout = Layout(Path(directory))
    if not isinstance(envelope_bytes, (bytes, bytearray)):
        raise AcardsError("registry.bad-card", "the envelope must be bytes", "pass the file's bytes")
    envelope_bytes = bytes(envelope_bytes)
    config = read_config(layout)
    with io_errors(f"publish to {layout.root}"), locked(layout, True, lock_timeout):
        crash("locked")

        def decide(head: _Head) -> tuple[dict, dict[str, bytes] | None]:
            payload, statement, signers = verified_card(envelope_bytes, head.keys)
            card_id, version, claimed = card_identity(statement)
            digest = sha256_hex(payload)
            unfinished = _unfinished_entry(head, "publish", digest)
            if unfinished is not None and read_optional(layout.card(digest) / ENVELOPE) == envelope_bytes:
                return unfinished, None  # a retry of a publish killed after its line landed
            expected = head.rules.expected_supersedes(card_id)
            candidate = publish_entry(
                head.config.origin, head.size, card_id, version, digest, expected, signers, {},
                utc_time(now),
            )
            problems = head.rules.check(candidate)
            if problems:
                raise AcardsError.collect(problems)
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
            return entry, files

        nodes = NodeFile(layout.index)
        try:
            head, (entry, files) = _decide(layout, config, registry_private_key, nodes, crash, decide)
            if files is None:
                _finish(layout, head, registry_private_key)
            else:
                _place_card_folder(layout, entry["digest"], files, crash)
                _append_entry(layout, head, entry, registry_private_key, nodes, crash)
        finally:
            nodes.close()
    return entry


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
    crash = crash_at or _no_crash
    layout = Layout(Path(directory))
    if not is_reason(reason):
        raise AcardsError(
            "registry.bad-revoke",
            f"a revocation needs a reason of 1–{MAX_REASON} characters",
            "say why the card is withdrawn",
        )
    config = read_config(layout)
    with io_errors(f"revoke in {layout.root}"), locked(layout, True, lock_timeout):

        def decide(head: _Head) -> tuple[dict, bool]:
            unfinished = _unfinished_entry(head, "revoke", digest)
            if unfinished is not None and unfinished["reason"] == reason:
                return unfinished, False  # a retry of a revocation killed after its line landed
            target = head.rules.published.get(digest)
            if target is None:
                raise unknown_digest(digest)
            entry = revoke_entry(
                head.config.origin, head.size, target["card_id"], target["version"],
                digest, reason, utc_time(now),
            )
            problems = head.rules.check(entry)
            if problems:
                raise AcardsError.collect(problems)
            head.rules.record(entry)
            return entry, True

        nodes = NodeFile(layout.index)
        try:
            head, (entry, new) = _decide(layout, config, registry_private_key, nodes, crash, decide)
            if new:
                _append_entry(layout, head, entry, registry_private_key, nodes, crash)
            else:
                _finish(layout, head, registry_private_key)
        finally:
            nodes.close()
    return entry
