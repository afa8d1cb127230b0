"""The registry folder on disk: its lock, and the raw reads of its parts every other module shares.

Readers hold the lock shared, writers exclusive (``locked``); a copy served read-only may have no
lock file, and readers then go on without one. Only ``AcardsError`` leaves this module.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards.attest.keys import keyid, load_public_key
from acards.canonical import parse_strict_json
from acards.errors import AcardsError, Location, Problem
from acards.registry.entries import HINT_RESTORE, is_origin, is_sha256, parse_entry
from acards.registry.layout import (
    CONFIG,
    KEYS,
    LOG,
    REGISTRY_KEY,
    Layout,
    checkpoint_size,
    key_file_name,
    key_name,
)

LOCK_TIMEOUT = 30.0


@dataclass(frozen=True)
class Config:
    """registry.json: the origin and the keyid of the registry key."""

    origin: str
    registry_keyid: str


def _not_a_registry(layout: Layout, message: str) -> AcardsError:
    return AcardsError(
        "registry.not-a-registry",
        message,
        "give the folder made by `acards registry init DIRECTORY --origin NAME --key FILE` (a folder is a "
        "registry, even an empty one, only once it has been initialised)",
        Location(file=str(layout.config)),
    )


def read_config(layout: Layout) -> Config:
    """registry.json, or registry.not-a-registry: the check that a folder is a registry at all."""
    try:
        data = layout.config.read_bytes()
    except OSError as error:
        raise _not_a_registry(layout, f"cannot read {layout.config}: {error.strerror}") from None
    try:
        value = parse_strict_json(data, str(layout.config))
    except AcardsError as error:
        message = f"{CONFIG} is not JSON: {error.problems[0].message}"
        raise _not_a_registry(layout, message) from None
    if (
        not isinstance(value, dict)
        or set(value) != {"origin", "registry_keyid"}
        or not is_origin(value["origin"])
        or not is_sha256(value["registry_keyid"])
    ):
        raise _not_a_registry(layout, f"{CONFIG} must hold exactly origin and registry_keyid")
    return Config(value["origin"], value["registry_keyid"])


def io_error(action: str, error: OSError) -> AcardsError:
    return AcardsError(
        "registry.io-error",
        f"cannot {action}: {error.strerror or error} ({error.filename or ''})",
        "check that the registry folder exists, is writable and has free space",
    )


@contextmanager
def io_errors(action: str) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise io_error(action, error) from None


def read_optional(path: Path) -> bytes | None:
    """The file's bytes, or None if it does not exist."""
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as error:
        raise io_error(f"read {path}", error) from None


def fsync_dir(path: Path) -> None:
    folder = os.open(path, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _open_lock(layout: Layout, exclusive: bool) -> int | None:
    """The lock file's descriptor; None for a reader of a copy that has no (readable) lock file."""
    try:
        if exclusive:
            return os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)
        return os.open(layout.lock, os.O_RDONLY)
    except OSError as error:
        if exclusive:
            raise io_error(f"open {layout.lock}", error) from None
        return None


def flock_within(descriptor: int, operation: int, path: Path, timeout: float, hint: str) -> None:
    """Take ``operation`` (LOCK_EX or LOCK_SH) on ``descriptor``, or raise registry.locked after
    ``timeout`` seconds: every lock wait of the registry and its site is bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise AcardsError("registry.locked", f"another process has held {path} for over {timeout:g} s", hint,
                                  Location(file=str(path))) from None
            time.sleep(0.01)


@contextmanager
def locked(layout: Layout, exclusive: bool, timeout: float) -> Iterator[None]:
    """Hold ``.lock``: exclusively to write, shared to read a consistent snapshot.

    A registry served read-only may have no lock file; readers then go on without one.
    """
    descriptor = _open_lock(layout, exclusive)
    if descriptor is None:
        yield
        return
    try:
        flock_within(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, layout.lock, timeout,
                     "wait for the other publish to finish and try again")
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def load_trusted_keys(layout: Layout) -> tuple[dict[str, Ed25519PublicKey], list[Problem]]:
    """The keys trusted to sign cards: every key in keys/, indexed by keyid; misfiled or unreadable
    keys are problems. The registry key is among them only when it was trusted as a signer, or in a
    registry from before registry.pub (``is_legacy_layout``), where init filed it in keys/."""
    keys: dict[str, Ed25519PublicKey] = {}
    problems = []
    for path in layout.key_files():
        where = Location(file=key_name(path.name))
        try:
            public_key = load_public_key(path)
        except AcardsError as error:
            message = error.problems[0].message
            problems.append(Problem("registry.bad-key", message, HINT_RESTORE, where))
            continue
        key_id = keyid(public_key)
        if path.name != key_file_name(key_id):
            problems.append(Problem(
                "registry.bad-key", f"{path.name} holds the key {key_id}", HINT_RESTORE, where
            ))
            continue
        keys[key_id] = public_key
    return keys, problems


def is_legacy_layout(layout: Layout) -> bool:
    """A registry from before registry.pub: its registry key is filed in keys/ among the signers."""
    return not os.path.lexists(layout.registry_key)


def registry_key_path(layout: Layout, config: Config) -> Path:
    """registry.pub, or keys/<registry keyid>.pub in a registry from before registry.pub."""
    return layout.key(config.registry_keyid) if is_legacy_layout(layout) else layout.registry_key


def registry_public_key(layout: Layout, config: Config) -> Ed25519PublicKey:
    """The registry key: the one its checkpoints and state are signed with (registry.pub)."""
    path = registry_key_path(layout, config)
    name = REGISTRY_KEY if path == layout.registry_key else key_name(path.name)
    try:
        public_key = load_public_key(path)
    except AcardsError as error:
        missing = not os.path.lexists(path)
        message = (f"the registry key {config.registry_keyid} is in neither {REGISTRY_KEY} nor {KEYS}/" if missing
                   else error.problems[0].message)
        raise AcardsError("registry.bad-key", message, HINT_RESTORE, Location(file=name)) from None
    if keyid(public_key) != config.registry_keyid:
        raise AcardsError("registry.bad-key", f"{name} holds the key {keyid(public_key)}, but {CONFIG} names "
                          f"{config.registry_keyid}", HINT_RESTORE, Location(file=name))
    return public_key


# --- reading the log --------------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    """The log file as read: its complete lines and what follows the last newline."""

    lines: list[bytes]  # complete lines, without their newline
    torn: bytes  # what follows the last newline: an append a crash cut short


def read_log(layout: Layout) -> Log:
    """log/entries.jsonl split into lines; nothing is parsed."""
    data = read_optional(layout.log)
    if data is None:
        raise _not_a_registry(layout, f"{LOG} is missing")
    complete, newline, torn = data.rpartition(b"\n")
    if not newline:  # no newline at all: everything is torn
        return Log([], torn)
    return Log(complete.split(b"\n"), torn)


def line_location(index: int) -> Location:
    """Where log entry ``index`` is (lines count from 1)."""
    return Location(file=LOG, line=index + 1)


def parse_log(log: Log) -> list[dict]:
    """Every entry, or all the unreadable lines raised together."""
    parsed, problems = [], []
    for index, line in enumerate(log.lines):
        try:
            parsed.append(parse_entry(line, line_location(index)))
        except AcardsError as error:
            problems += error.problems
    if problems:
        raise AcardsError.collect(problems)
    return parsed


def checkpoint_sizes(layout: Layout) -> list[int]:
    """The sizes that have a checkpoint file, from the file names; temporary files are skipped."""
    try:
        names = os.listdir(layout.checkpoints)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise io_error(f"list {layout.checkpoints}", error) from None
    sizes = (checkpoint_size(name) for name in names)
    return sorted(size for size in sizes if size is not None)


def read_checkpoints(layout: Layout) -> dict[int, bytes]:
    """Checkpoint file bytes by size."""
    found = {}
    for size in checkpoint_sizes(layout):
        data = read_optional(layout.checkpoint(size))
        if data is not None:
            found[size] = data
    return found


def newest_checkpoint(layout: Layout, max_size: int) -> tuple[int, bytes] | None:
    """(size, file bytes) of the newest checkpoint covering at most ``max_size`` lines; nothing is
    verified here."""
    for size in reversed(checkpoint_sizes(layout)):
        if size <= max_size:
            data = read_optional(layout.checkpoint(size))
            if data is not None:
                return size, data
    return None
