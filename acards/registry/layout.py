"""Where everything lives in a registry folder: the one module that knows its file and folder names.

::

    registry.json                 {"origin", "registry_keyid"} (RFC 8785); written last by init
    registry.pub                  the registry key's public key (PEM): it signs checkpoints and state
    keys/<keyid>.pub              the public keys trusted to sign cards (PEM); the registry key is one
                                  only when trusted explicitly (a registry from before registry.pub
                                  kept it here: ``trust.migrate_keys``)
    cards/<digest>/envelope.json  the signed card exactly as published (DSSE envelope bytes)
    cards/<digest>/statement.json the verified payload (the in-toto Statement, RFC 8785 bytes)
    cards/<digest>/manifest.json  the statement's subjects (RFC 8785)
    cards/<digest>/<rendered>     files render(statement) returned at publication (card.html, ...)
    cards/.staging-<digest>/      a card folder being written; publish renames it into place
    log/entries.jsonl             the append-only log: one RFC 8785 JSON entry per line
    log/checkpoints/<size>.json   the registry key's signed checkpoint of the first <size> lines
    state/state.json              the writer's signed state: size, root, compact range, index root
    state/index.sqlite            the writer's rules index (trie nodes, each checked by its hash)
    .lock                         fcntl.flock target: writers exclusive, verify/readers shared


``Layout`` gives the absolute paths for I/O; the functions give the relative names problems are
located at (``Location(file=...)``), so that messages name files the way a reader of the folder sees
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CONFIG = "registry.json"
REGISTRY_KEY = "registry.pub"
KEYS = "keys"
CARDS = "cards"
LOG_DIR = "log"
LOG_NAME = "entries.jsonl"
LOG = f"{LOG_DIR}/{LOG_NAME}"
CHECKPOINTS = f"{LOG_DIR}/checkpoints"
STATE_DIR = "state"
STATE = f"{STATE_DIR}/state.json"
INDEX = f"{STATE_DIR}/index.sqlite"
LOCK = ".lock"
STAGING_PREFIX = ".staging-"

ENVELOPE = "envelope.json"
STATEMENT = "statement.json"
MANIFEST = "manifest.json"
CARD_FILES = (ENVELOPE, STATEMENT, MANIFEST)  # every card folder's own files; rendered ones join them

_KEY_SUFFIX = ".pub"
_CHECKPOINT_FILE = re.compile(r"(0|[1-9][0-9]{0,15})\.json")


def checkpoint_name(size: int) -> str:
    """``log/checkpoints/<size>.json``."""
    return f"{CHECKPOINTS}/{size}.json"


def checkpoint_size(file_name: str) -> int | None:
    """The size a file in log/checkpoints/ is the checkpoint of; None for any other file (temporary)."""
    if not _CHECKPOINT_FILE.fullmatch(file_name):
        return None
    return int(file_name[: -len(".json")])


def key_file_name(key_id: str) -> str:
    """The file name of a key in keys/."""
    return f"{key_id}{_KEY_SUFFIX}"


def key_name(file_name: str) -> str:
    """``keys/<file name>``."""
    return f"{KEYS}/{file_name}"


def card_name(digest: str, file_name: str | None = None) -> str:
    """``cards/<digest>``, or ``cards/<digest>/<file name>``."""
    return f"{CARDS}/{digest}" if file_name is None else f"{CARDS}/{digest}/{file_name}"


def is_temporary(file_name: str) -> bool:
    """A temporary file acards.files.atomic_write leaves when a crash stops it before its rename."""
    return file_name.startswith(".") and file_name.endswith(".tmp")


@dataclass(frozen=True)
class Layout:
    """The absolute paths of a registry folder's parts."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def registry_key(self) -> Path:
        return self.root / REGISTRY_KEY

    @property
    def keys(self) -> Path:
        return self.root / KEYS

    @property
    def cards(self) -> Path:
        return self.root / CARDS

    @property
    def log(self) -> Path:
        return self.root / LOG

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    @property
    def state(self) -> Path:
        return self.root / STATE

    @property
    def index(self) -> Path:
        return self.root / INDEX

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    def checkpoint(self, size: int) -> Path:
        return self.root / checkpoint_name(size)

    def card(self, digest: str) -> Path:
        return self.cards / digest

    def staging(self, digest: str) -> Path:
        return self.cards / f"{STAGING_PREFIX}{digest}"

    def key(self, key_id: str) -> Path:
        return self.keys / key_file_name(key_id)

    def key_files(self) -> list[Path]:
        """Every key file in keys/, sorted (misfiled ones too: readers judge them)."""
        return sorted(self.keys.glob(f"*{_KEY_SUFFIX}"))
