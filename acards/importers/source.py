"""What every source of `acards import` shares: an input file, its digest, and hashed reading."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from acards.errors import AcardsError, Location

Records = Iterator[tuple[str, Any]]  # (where in the file: "line 12", "sample q3 epoch 2"; the source record)


@dataclass
class SourceFile:
    """One input file as named on the command line (or in a card, relative to its ``root``), and
    the sha256 of the bytes that were read."""

    name: str
    sha256: str | None = None
    size: int = 0
    root: Path | None = None  # the card's folder, when a card's evidence.sources are imported again

    @property
    def path(self) -> Path:
        return Path(self.name) if self.root is None else self.root / self.name


@dataclass(frozen=True)
class Source:
    """A kind of input: its name, its default rules (mapping specs), and its reader.  A JSONL source
    also reads a file in pieces of whole lines (``pieces``, giving acards.importers.jsonl_source.Piece,
    or None for a file it reads only record by record), which the batch import
    (acards.importers.batch) maps a piece at a time."""

    name: str
    read: Callable[[SourceFile], Records]
    defaults: dict[str, dict] = field(default_factory=dict)
    pieces: Callable[[SourceFile], Iterator[Any] | None] | None = None


class HashingReader(io.RawIOBase):
    """A binary file object that hashes what is read through it (for readers that stream)."""

    def __init__(self, handle: BinaryIO):
        super().__init__()
        self._handle, self._digest, self.size = handle, hashlib.sha256(), 0

    def readinto(self, buffer) -> int:
        count = self._handle.readinto(buffer) or 0
        self._digest.update(memoryview(buffer)[:count])
        self.size += count
        return count

    def readable(self) -> bool:
        return True

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def open_source(file: SourceFile) -> BinaryIO:
    """The input file opened for reading; a missing or unreadable one is a coded problem."""
    try:
        if file.path.is_dir():
            raise AcardsError("usage.not-a-file", f"{file.name} is a folder", "give the files themselves", Location(file.name))
        return open(file.path, "rb")  # noqa: SIM115 — the caller closes it
    except FileNotFoundError:
        raise AcardsError("evidence.missing", f"{file.name} does not exist", "check the path", Location(file.name)) from None
    except OSError as error:
        raise AcardsError("evidence.unreadable", f"cannot read {file.name}: {error.strerror or error}",
                          "check the file's permissions", Location(file.name)) from None


def sha256_of(file: SourceFile) -> str:
    """The sha256 of the file's bytes (for readers that read the file themselves)."""
    from acards.evidence.digests import sha256_stream

    with open_source(file) as handle:
        return sha256_stream(handle, label=file.name)
