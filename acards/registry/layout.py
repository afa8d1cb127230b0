"""Where everything lives in a registry folder: the one module that knows its file and folder names.

::

    registry.json                 {"origin", "registry_keyid"} (RFC 8785); written last by init
    registry.pub                  the registry key's public key (PEM): it signs checkpoints and state
    keys/<keyid>.pub              the public keys trusted to sign cards (PEM); the registry key is one
                                  only when trusted explicitly (a registry from before registry.pub
                                  kept it here: ``trust.migrate_keys``)
    keys/<keyid>.json             a trusted signer's display name and contact, signed by the registry
                                  key (``trust.signer_record``); optional
    cards/<digest>/envelope.json  the signed card exactly as published (DSSE envelope bytes)
    cards/<digest>/statement.json the verified payload (the in-toto Statement, RFC 8785 bytes)
    cards/<digest>/manifest.json  the statement's subjects (RFC 8785)
    cards/<digest>/<rendered>     files render(statement) returned at publication (card.html, ...)
    cards/.staging-<digest>/      a card folder being written; publish renames it into place
    plans/<digest>/envelope.json  a signed analysis plan exactly as pre-registered (DSSE envelope bytes)
    plans/<digest>/statement.json its verified payload; plans/.staging-<digest>/ as for cards
    log/entries.jsonl             the append-only log: one RFC 8785 JSON entry per line
    log/checkpoints/<size>.json   the registry key's signed checkpoint of the first <size> lines
    log/witness/<size>/<keyid>.json  a witness's co-signature of the checkpoint of <size> (DSSE;
                                  acards.registry.witness)
    attestations/<digest>/attestation.intoto.jsonl  a reviewer's signed attestation as published
    attestations/<digest>/report.json  the report it names, when published with it
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
PLANS = "plans"
ATTESTATIONS = "attestations"
ATTESTATION = "attestation.intoto.jsonl"
REPORT = "report.json"
LOG_DIR = "log"
LOG_NAME = "entries.jsonl"
LOG = f"{LOG_DIR}/{LOG_NAME}"
CHECKPOINTS = f"{LOG_DIR}/checkpoints"
WITNESS = f"{LOG_DIR}/witness"
STATE_DIR = "state"
STATE = f"{STATE_DIR}/state.json"
INDEX = f"{STATE_DIR}/index.sqlite"
LOCK = ".lock"
STAGING_PREFIX = ".staging-"

ENVELOPE = "envelope.json"
STATEMENT = "statement.json"
MANIFEST = "manifest.json"
CARD_FILES = (ENVELOPE, STATEMENT, MANIFEST)  # every card folder's own files; rendered ones join them

# The folder each entry kind that stores files keeps them in, one subfolder per logged digest.
STORED_FOLDERS = {"publish": CARDS, "preregister": PLANS, "attest": ATTESTATIONS}

_KEY_SUFFIX = ".pub"
_SIGNER_SUFFIX = ".json"
_CHECKPOINT_FILE = re.compile(r"(0|[1-9][0-9]{0,15})\.json")


def checkpoint_name(size: int) -> str:
    """``log/checkpoints/<size>.json``."""
    return f"{CHECKPOINTS}/{size}.json"


def checkpoint_size(file_name: str) -> int | None:
    """The size a file in log/checkpoints/ is the checkpoint of; None for any other file (temporary)."""
    if not _CHECKPOINT_FILE.fullmatch(file_name):
        return None
    return int(file_name[: -len(".json")])


def witness_name(size: int, key_id: str | None = None) -> str:
    """``log/witness/<size>``, or ``log/witness/<size>/<keyid>.json``."""
    return f"{WITNESS}/{size}" if key_id is None else f"{WITNESS}/{size}/{key_id}.json"


def witness_key_id(file_name: str) -> str | None:
    """The keyid a co-signature's file name claims; None for any other file (temporary)."""
    stem = file_name[: -len(".json")] if file_name.endswith(".json") else ""
    return stem if re.fullmatch(r"[0-9a-f]{64}", stem) else None


def key_file_name(key_id: str) -> str:
    """The file name of a key in keys/."""
    return f"{key_id}{_KEY_SUFFIX}"


def signer_file_name(key_id: str) -> str:
    """The file name of a signer's name record in keys/."""
    return f"{key_id}{_SIGNER_SUFFIX}"


def signer_key_id(file_name: str) -> str:
    """The keyid a name record's file name claims (``<keyid>.json``)."""
    return file_name[: -len(_SIGNER_SUFFIX)]


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

    def stored(self, kind: str, digest: str) -> Path:
        """The folder of the files an entry of ``kind`` stores (``STORED_FOLDERS``)."""
        return self.root / STORED_FOLDERS[kind] / digest

    def stored_staging(self, kind: str, digest: str) -> Path:
        return self.root / STORED_FOLDERS[kind] / f"{STAGING_PREFIX}{digest}"

    def key(self, key_id: str) -> Path:
        return self.keys / key_file_name(key_id)

    def witness(self, size: int, key_id: str | None = None) -> Path:
        return self.root / witness_name(size, key_id)

    def signer(self, key_id: str) -> Path:
        return self.keys / signer_file_name(key_id)

    def signer_files(self) -> list[Path]:
        """Every name record in keys/, sorted (misfiled ones too: readers judge them)."""
        return sorted(self.keys.glob(f"*{_SIGNER_SUFFIX}"))

    def key_files(self) -> list[Path]:
        """Every key file in keys/, sorted (misfiled ones too: readers judge them)."""
        return sorted(self.keys.glob(f"*{_KEY_SUFFIX}"))
