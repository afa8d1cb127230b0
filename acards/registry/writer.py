"""What every registry writer shares: ``write_entry`` logs one entry of any kind (SPEC §9).

The writers (``store.publish``, ``store.revoke``, ``preregistrations.preregister``, ...) each give
``write_entry`` a ``decide`` that checks their request against the log's head and answers the entry
and the files to store with it (``Written``); everything below holds for all of them.

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
that writer again (the same envelope, or the same revocation) finishes it (``unfinished_entry``,
``Written.retry``) rather than refusing the digest as published; replays keep the short state until then.

The writers take a ``crash_at`` hook, called with each of ``CRASH_POINTS`` as they pass it. It is
None in use; the crash-safety tests pass one that SIGKILLs the process at a chosen point.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from acards import merkle
from acards.attest.keys import keyid
from acards.errors import AcardsError, Location
from acards.files import atomic_write
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
    entry_line,
    parse_entry,
    parse_entry_fields,
)
from acards.registry.index import NodeFile, build_index, view_rules
from acards.registry.layout import STORED_FOLDERS, Layout, is_temporary
from acards.registry.rules import LogRules
from acards.registry.state import State, file_mark, open_state, sign_state, write_state
from acards.registry.trie import Trie, TrieError
from acards.registry.trust import migrate_keys_locked

# Where the writers call crash_at, in the order publish passes them (the others pass the same
# points but those of the stored folder when they store none).
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



@dataclass
class Head:
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


def _remove_debris(layout: Layout, rules: LogRules) -> None:
    """Remove what crashed writers left: staging folders, unlogged stored folders, temp files."""
    for kind, name in STORED_FOLDERS.items():
        folder = layout.root / name
        logged = rules.published if kind == "publish" else {
            key.split(":", 1)[1] for key in rules.logged if key.startswith(f"{kind}:")}
        for child in folder.iterdir() if folder.is_dir() else ():
            if child.name in logged:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for folder in (layout.checkpoints, layout.state_dir):
        for child in folder.iterdir() if folder.is_dir() else ():
            if is_temporary(child.name):
                child.unlink()


def save_state(
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
) -> Head | None:
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
    return Head(config, keys, state.size, state.frontier, trie, view_rules(config.origin, state.size, trie))


def _replay(
    layout: Layout,
    config: Config,
    registry_key: Ed25519PrivateKey,
    keys: dict[str, Ed25519PublicKey],
    nodes: NodeFile,
    crash: CrashHook,
    settled: int | None = None,
) -> Head:
    """Read the whole log, repair what a crash may have left, check the rest against the newest
    checkpoint, and write the state and the rules index afresh.

    ``settled``: the size the signed state recorded. When the log has exactly one entry more, the
    writer of that entry was killed before saving the state; the state is then left as it is, so
    that a retry of that writer still finds its entry unfinished (``unfinished_entry``) whatever
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
    _remove_debris(layout, rules)
    index_root, built = build_index(rules)
    try:
        layout.state_dir.mkdir(exist_ok=True)
        nodes.replace(built)
        if settled is None or settled != len(leaves) - 1:
            save_state(layout, config.origin, registry_key, len(leaves), frontier, index_root)
    except (TrieError, OSError):
        pass  # this publish answers from memory; the next one replays again
    trie = Trie(built, index_root)
    return Head(config, keys, len(leaves), frontier, trie, view_rules(config.origin, len(leaves), trie),
                 settled, log.lines[-1] if log.lines else None)


Decision = TypeVar("Decision")


def _decide(
    layout: Layout,
    config: Config,
    registry_key: Ed25519PrivateKey,
    nodes: NodeFile,
    crash: CrashHook,
    decide: Callable[[Head], Decision],
) -> tuple[Head, Decision]:
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


def unfinished_entry(head: Head, kind: str, digest: str) -> dict | None:
    """The newest log entry when it is a ``kind`` entry for ``digest`` that the signed state had not
    recorded yet: the work of a writer killed after its line landed. The head was then replayed
    from the log, which re-signed a missing checkpoint and rebuilt the index, so a retry of that
    very writer has only the state left to save (``_finish``) before it answers the entry: every
    writer built on ``write_entry`` is idempotent across a crash. Anything else about an existing digest stays a rule
    violation."""
    if head.settled is None or head.settled != head.size - 1 or head.newest is None:
        return None
    newest = parse_entry_fields(head.newest, line_location(head.size - 1))
    if newest["kind"] != kind or newest["digest"] != digest:
        return None
    return newest


def _place_folder(
    layout: Layout, kind: str, digest: str, files: Mapping[str, bytes], crash: CrashHook
) -> None:
    """Write an entry's files into a staging folder, then rename it into place in one step.

    The rename is what makes the folder appear whole, so the files inside need no rename each.
    """
    staging, target = layout.stored_staging(kind, digest), layout.stored(kind, digest)
    target.parent.mkdir(exist_ok=True)  # a folder a registry from before this kind lacks
    for leftover in (staging, target):  # from a crashed writer of this very entry
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
    os.rename(staging, target)
    fsync_dir(target.parent)
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
    layout: Layout, head: Head, entry: dict, registry_key: Ed25519PrivateKey, nodes: NodeFile, crash: CrashHook
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
        save_state(layout, head.config.origin, registry_key, size, frontier, head.trie.root)
    except (TrieError, OSError):
        pass  # the entry is logged and signed; without a matching state the next writer replays


def _finish(layout: Layout, head: Head, registry_key: Ed25519PrivateKey) -> None:
    """Save the state a writer killed after its line landed did not get to save."""
    try:
        save_state(layout, head.config.origin, registry_key, head.size, head.frontier, head.trie.root)
    except OSError:
        pass  # as in _append_entry: the next writer replays


@dataclass(frozen=True)
class Written:
    """What a writer's ``decide`` makes of the head: the entry to log, and the files it stores.

    ``files`` go, before the line is appended, into ``Layout.stored(entry kind, entry digest)``
    (the kind needs a folder in ``layout.STORED_FOLDERS``); ``retry``: the entry is the newest line
    already, left by a run of this very writer killed after its line landed (``unfinished_entry``),
    and only the state is left to save."""

    entry: dict
    files: Mapping[str, bytes] | None = None
    retry: bool = False


def write_entry(
    directory: str | os.PathLike,
    registry_private_key: Ed25519PrivateKey,
    decide: Callable[[Head], Written],
    *,
    action: str,
    lock_timeout: float = LOCK_TIMEOUT,
    crash_at: CrashHook | None = None,
) -> dict:
    """Log one entry with every writer's guarantees; return it.

    Under the exclusive lock: the head (resumed from the signed state, or replayed from the log and
    repaired), then ``decide(head)``, which checks the request against ``head`` (``head.keys``: the
    trusted signers; ``head.rules.check(entry)``: SPEC §9's rules and the kind's own), records the
    entry (``head.rules.record``) and answers a ``Written``; an AcardsError it raises refuses the
    request and changes nothing. ``decide`` may run twice (once more after the index is rebuilt),
    so it must not write. Then the files are placed, the line appended, the checkpoint signed and
    the state saved, passing ``CRASH_POINTS``. ``action`` names the work in I/O errors ("publish to").
    """
    crash = crash_at or _no_crash
    layout = Layout(Path(directory))
    config = read_config(layout)
    with io_errors(f"{action} {layout.root}"), locked(layout, True, lock_timeout):
        crash("locked")
        nodes = NodeFile(layout.index)
        try:
            head, written = _decide(layout, config, registry_private_key, nodes, crash, decide)
            if written.retry:
                _finish(layout, head, registry_private_key)
            else:
                if written.files is not None:
                    _place_folder(layout, written.entry["kind"], written.entry["digest"], written.files, crash)
                _append_entry(layout, head, written.entry, registry_private_key, nodes, crash)
        finally:
            nodes.close()
    return written.entry


def refuse(problems: list) -> None:
    """Raise every rule ``problems`` names, together (a ``decide`` refusing its request)."""
    if problems:
        raise AcardsError.collect(problems)


