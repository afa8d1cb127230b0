"""Weights on disk: safetensors headers and tensors, the files of a checkpoint, and the one pickle refusal.

Nothing is ever unpickled: where safetensors weights were expected and only pickle-based files are
found, :func:`refuse_pickles` raises ``weights.not-safetensors`` (verification, generation and the
classifier scorer all call it).  Tensors are read in their stored precision (bfloat16 decoded
exactly as float32); anything else is refused.

A safetensors file is read as one stream through one descriptor (never mapped or reopened by
path), each tensor parsed from the bytes the stream read; inside :func:`hashed_reads` every byte is
hashed as read so verification can check that the numbers come from the bytes the card pins.
Memory is one tensor at a time, not the file (see the note below).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import struct
from contextlib import closing, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from acards.errors import AcardsError, Location
from acards.evidence.paths import _open_nofollow

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
PICKLE_HINT = "convert the checkpoint to safetensors (save_pretrained(..., safe_serialization=True))"


def fail(code: str, message: str, hint: str, path: Path | str) -> AcardsError:
    return AcardsError(code, message, hint, Location(file=str(path)))


def refuse_pickles(path: Path, location: Location | None = None) -> None:
    """Refuse ``path`` if it is a pickle-based weights file, or a folder holding pickle-based weights.

    Call it where safetensors weights were expected and none were found; it returns when there is
    nothing pickled to refuse (the caller then reports the missing weights its own way)."""
    where = location or Location(file=str(path))
    if path.is_file():
        if path.suffix in PICKLE_SUFFIXES:
            raise AcardsError("weights.not-safetensors",
                              f"{path.name} is a pickle-based checkpoint; acards never unpickles", PICKLE_HINT, where)
        return
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES) if path.is_dir() else []
    if pickles:
        raise AcardsError(
            "weights.not-safetensors",
            f"{path.name} holds only pickle-based weights ({', '.join(pickles[:4])}); acards never unpickles",
            PICKLE_HINT,
            where,
        )


# --- Reading safetensors ---------------------------------------------------------------------
#
# A safetensors file is read front to back through one descriptor (no link followed, a regular file
# by fstat), and every byte read is hashed as read: the header first, then each tensor's bytes in the
# order they are stored.  Tensors are served from that stream, never from the path again:
#
# - a tensor further on is reached by reading (and hashing) the ones before it, each of which keeps
#   the sha256 of its own bytes;
# - a tensor already passed is read again through the same descriptor and served only if those
#   bytes hash as they did in the stream (else evidence.digest-mismatch: the file changed while it
#   was read).
#
# So the numbers always come from bytes the file's digest covers, in whatever order the tensors are
# asked for, and memory is the tensor asked for (plus a chunk), never the file.  Inside
# :func:`hashed_reads` (verification's weight signature) a file is read to its end when it is closed,
# and the session keeps its size and sha256 (and its header), so the caller can check the digest of
# what was parsed against the digest the card pins (acards.evidence.checkpoints).  A file read twice
# in a session must hash the same both times.  Small files read whole (:func:`read_bytes`: configs,
# indexes) keep their bytes in the session, so a second read returns the same bytes.

MAX_HEADER = 100_000_000  # the safetensors format's own limit on the JSON header
CHUNK = 2**20  # bytes read at a time when passing over tensors and draining a file
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1",
           "F8_E4M3": "u1", "F8_E5M2": "u1"}
_CHANGED_HINT = "make sure nothing writes the evidence during `acards verify`, and run it again"


@dataclass(frozen=True)
class FileRead:
    """One file as read in a session: its size and sha256, whether it read differently twice
    (``changed``: never a match), and for a small file read whole its bytes, for a safetensors
    file its header (the 8-byte length and the JSON)."""

    size: int
    sha256: str
    data: bytes | None = None
    head: bytes | None = None
    changed: bool = False


_session: ContextVar[dict[str, FileRead] | None] = ContextVar("acards_weight_reads", default=None)


@contextmanager
def hashed_reads() -> Iterator[dict[str, FileRead]]:
    """A session in which every weights file is hashed as read: yields {absolute path: FileRead} of
    every file read (in full) inside it.  Inside a session already open, it is that session (so a
    reader can always open one)."""
    outer = _session.get()
    if outer is not None:
        yield outer
        return
    reads: dict[str, FileRead] = {}
    token = _session.set(reads)
    try:
        yield reads
    finally:
        _session.reset(token)


def _changed_error(path: Path | str, what: str) -> AcardsError:
    return AcardsError("evidence.digest-mismatch", f"{Path(path).name} changed while it was read: {what}",
                       _CHANGED_HINT, Location(file=str(path)))


def _record(path: Path | str, read: FileRead) -> None:
    """Keep ``read`` in the session (when one is open); a second read of the path that hashed
    differently marks it changed and is refused."""
    reads = _session.get()
    if reads is None:
        return
    key = os.path.abspath(path)
    earlier = reads.get(key)
    if earlier is not None and (earlier.sha256 != read.sha256 or earlier.changed):
        reads[key] = FileRead(read.size, read.sha256, changed=True)
        raise _changed_error(path, "two reads of it gave different bytes")
    if earlier is None:
        reads[key] = read


def _open_regular(path: Path | str):
    """``path`` opened through one descriptor that follows no link and is a regular file."""
    handle = _open_nofollow(path, str(path))
    try:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise AcardsError("evidence.special-file", f"{path} is not a regular file",
                              "evidence must be plain files", Location(file=str(path)))
    except BaseException:
        handle.close()
        raise
    return handle


def _unreadable(path: Path | str, error: OSError) -> AcardsError:
    return AcardsError("evidence.unreadable", f"{path}: {error.strerror or error}",
                       "check the file's permissions and the disk", Location(file=str(path)))


def read_bytes(path: Path | str) -> bytes:
    """The whole file (a small one: a config, an index), read through one descriptor that follows
    no link and is a regular file; inside a session, the bytes of its first read."""
    reads = _session.get()
    known = reads.get(os.path.abspath(path)) if reads is not None else None
    if known is not None and known.data is not None:
        return known.data
    with closing(_open_regular(path)) as handle:
        try:
            data = handle.readall()
        except OSError as error:
            raise _unreadable(path, error) from None
    _record(path, FileRead(len(data), hashlib.sha256(data).hexdigest(), data=data))
    return data


def _bad(path: Path, why: str) -> AcardsError:
    return fail("weights.bad-safetensors", f"cannot read {Path(path).name} as safetensors: {why}",
                "the file must be a complete safetensors file (re-download or re-save it)", path)


def _parse_header(path: Path, head: bytes, total: int | None) -> tuple[int, dict]:
    """(header length, {tensor: {dtype, shape, data_offsets}}) from the first bytes of a file; with
    ``total`` (the file's size), the tensors must tile the data exactly, as safetensors requires."""
    if len(head) < 8:
        raise _bad(path, "shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", head[:8])
    if length > MAX_HEADER or (total is not None and 8 + length > total) or len(head) < 8 + length:
        raise _bad(path, "the header length is out of range")
    try:
        header = json.loads(head[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(path, f"the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise _bad(path, "the header is not a JSON object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    spans = []
    for key, entry in tensors.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
            ok = (dtype in _DTYPES and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
                  and all(isinstance(n, int) and not isinstance(n, bool) for n in (begin, end)) and 0 <= begin <= end)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise _bad(path, f"tensor `{key}` has an invalid header entry")
        if end - begin != math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize:
            raise _bad(path, f"tensor `{key}`: its byte length does not match its dtype and shape")
        spans.append((begin, end))
    if total is not None:
        position = 0
        for begin, end in sorted(spans):
            if begin != position:
                raise _bad(path, "the tensors do not cover the data exactly (a gap or an overlap)")
            position = end
        if 8 + length + position != total:
            raise _bad(path, "the data is not the length the header says")
    return length, tensors


class _HashedStream:
    """A file read front to back through one descriptor, every byte hashed as read."""

    def __init__(self, path: Path, handle):
        self.path, self.handle = path, handle
        self.size = os.fstat(handle.fileno()).st_size  # the size when opened: only the header check uses it
        self.position = 0
        self.digest = hashlib.sha256()
        self.changed = False

    def read(self, n: int, into: memoryview | None = None, part=None) -> memoryview:
        """The next ``n`` bytes (fewer at the end of the file), hashed into the file's digest and
        ``part``'s; into ``into`` when given, else into a new buffer."""
        view = into if into is not None else memoryview(np.empty(n, dtype=np.uint8))  # not zero-filled
        done = 0
        try:
            while done < n:
                got = self.handle.readinto(view[done:n])
                if not got:
                    break
                done += got
        except OSError as error:
            raise _unreadable(self.path, error) from None
        self.position += done
        self.digest.update(view[:done])
        if part is not None:
            part.update(view[:done])
        return view[:done]

    def drain(self, head: bytes | None) -> FileRead:
        """Read (and hash) the rest of the file; what was read in all, for the session."""
        size = min(CHUNK, max(2**16, self.size - self.position))
        buffer = memoryview(bytearray(size))
        while len(self.read(size, buffer)):
            pass
        return FileRead(self.position, self.digest.hexdigest(), head=head, changed=self.changed)


class SafetensorsFile:
    """A safetensors file read through one hashed stream (see the note above): the header when it
    is opened, each tensor's bytes when asked for (those before it on the way).  Each tensor is
    served once per opened file: its values are not kept, and its bytes not hashed on their own."""

    def __init__(self, stream: _HashedStream):
        self.path, self._stream = stream.path, stream
        head = bytes(stream.read(8))
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if length <= MAX_HEADER and 8 + length <= stream.size:
            head += bytes(stream.read(length))
        self.head = head
        self._length, self._tensors = _parse_header(self.path, head, stream.size)
        # The tensors tile the data (checked above), so the stream meets them in offset order.
        self._order = sorted(self._tensors, key=lambda k: tuple(self._tensors[k]["data_offsets"]))
        self._next = 0  # the index in _order of the next tensor the stream meets
        self._digests: dict[str, bytes] = {}  # sha256 of each tensor passed over, as the stream read it
        self._served: set[str] = set()  # tensors read from the stream (each is served once)

    def keys(self) -> list[str]:
        return sorted(self._tensors)

    def stored_order(self) -> list[str]:
        """The tensors in the order their bytes are stored (the order that reads the file once)."""
        return list(self._order)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key]["shape"])

    def dtype(self, key: str) -> str:
        return self._tensors[key]["dtype"]

    def _span(self, key: str) -> tuple[int, int]:
        begin, end = self._tensors[key]["data_offsets"]
        return 8 + self._length + begin, end - begin

    def _take(self, key: str) -> memoryview:
        """The next tensor of the stream (``key``): its bytes, hashed into the file's digest."""
        start, n = self._span(key)
        data = self._stream.read(n)
        self._check_end(key, start + n)
        self._served.add(key)
        return data

    def _pass(self, key: str) -> None:
        """Pass over the next tensor of the stream (``key``), in chunks: hashed into the file's digest,
        and on its own, so that it can be read again later (:meth:`_reread`)."""
        start, n = self._span(key)
        part, buffer, left = hashlib.sha256(), memoryview(bytearray(min(n, CHUNK))), n
        while left and len(got := self._stream.read(min(left, CHUNK), buffer, part)):
            left -= len(got)
        self._check_end(key, start + n)
        self._digests[key] = part.digest()

    def _check_end(self, key: str, end: int) -> None:
        self._next += 1
        if self._stream.position != end:
            raise _bad(self.path, f"the file ended inside tensor `{key}`")

    def _reread(self, key: str) -> memoryview:
        """A tensor the stream passed, read again through the same descriptor; refused unless its
        bytes are the ones the stream hashed."""
        start, n = self._span(key)
        view, done = memoryview(np.empty(n, dtype=np.uint8)), 0
        try:
            while done < n:
                got = os.preadv(self._stream.handle.fileno(), [view[done:]], start + done)
                if not got:
                    break
                done += got
        except OSError as error:
            raise _unreadable(self.path, error) from None
        if done < n or hashlib.sha256(view).digest() != self._digests[key]:
            self._stream.changed = True
            raise _changed_error(self.path, f"tensor `{key}` read again is not the bytes read before")
        return view

    def raw(self, key: str) -> np.ndarray:
        """The stored values of ``key`` as a new array (bf16 as its uint16 bit patterns)."""
        entry = self._tensors[key]
        if key in self._served:
            # Its bytes were hashed into the file's digest only, so a second read could not be checked.
            raise RuntimeError(f"tensor `{key}` of {self.path} was already read through this handle")
        if key in self._digests:
            data = self._reread(key)
        else:
            while self._order[self._next] != key:
                self._pass(self._order[self._next])
            data = self._take(key)
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        array = np.frombuffer(data, dtype=dtype).reshape(entry["shape"])
        # frombuffer views a buffer of its own, read for this call: a copy only where byte order differs
        return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


@contextmanager
def open_safetensors(path: Path) -> Iterator[SafetensorsFile]:
    """``path`` opened as one hashed stream (see the note above).  Inside a session the file is read
    to its end when closed (also when an error ends the reading, so that a refusal of bytes that
    are not the pinned ones shows as the mismatch) and kept in the session."""
    in_session = _session.get() is not None
    with closing(_open_regular(path)) as handle:
        stream, head = _HashedStream(Path(path), handle), None
        try:
            file = SafetensorsFile(stream)
            head = file.head
            yield file
        except AcardsError:
            if in_session:
                try:
                    _record(path, stream.drain(head))
                except AcardsError:
                    pass  # the first error is the one to report; the session now holds what was read
            raise
        if in_session:
            _record(path, stream.drain(head))


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor: shape} from the header alone (the header already read in this session, when there is
    one): for checks that decide no number, such as whether an adapter fits its base model."""
    reads = _session.get()
    known = reads.get(os.path.abspath(path)) if reads is not None else None
    if known is not None and known.head is not None:
        tensors = _parse_header(Path(path), known.head, None)[1]
    else:
        with closing(_open_nofollow(path, str(path))) as handle:
            try:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise _bad(Path(path), "not a regular file")
                head = handle.read(8)
                length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
                if length <= MAX_HEADER:
                    head += handle.read(length)
            except OSError as error:
                raise _bad(Path(path), error.strerror or str(error)) from None
        tensors = _parse_header(Path(path), head, None)[1]
    return {key: tuple(entry["shape"]) for key, entry in tensors.items()}


def tensor_shape(handle: SafetensorsFile, key: str) -> tuple[int, ...]:
    """The shape of tensor ``key``, from the header."""
    return handle.shape(key)


def read_native(handle: SafetensorsFile, path: Path, key: str) -> np.ndarray:
    """A float tensor in its stored precision (bf16 as float32, exactly); non-finite is an error."""
    dtype = handle.dtype(key)
    if dtype in ("F64", "F32", "F16"):
        array = handle.raw(key)
    elif dtype == "BF16":
        # numpy has no bfloat16: a bf16 value is the top half of a float32, so shift its bits up.
        bits = handle.raw(key).astype(np.uint32)
        bits <<= 16  # in place: one float32-sized array, not two
        array = bits.view(np.float32)
    else:
        raise fail(
            "weights.unsupported-dtype",
            f"tensor `{key}` has dtype {dtype}; acards reads float64/32/16 and bfloat16 weights",
            "dequantize the checkpoint (or save the adapter in float32/bfloat16) before auditing it",
            path,
        )
    if not np.isfinite(array).all():
        raise fail(
            "weights.non-finite",
            f"tensor `{key}` holds NaN or infinite values",
            "the checkpoint is corrupt or training diverged; audit a checkpoint with finite weights",
            path,
        )
    return array


def read_float64(handle: SafetensorsFile, path: Path, key: str) -> np.ndarray:
    return np.asarray(read_native(handle, path, key), dtype=np.float64)


# --- The files of a full-weights checkpoint ----------------------------------------------------


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a full-weights checkpoint (a file, or a folder, sharded or not)."""
    if not path.exists():
        raise fail("weights.not-found", f"{path} does not exist", "check the checkpoint path in the card", path)
    if path.is_file():
        if path.suffix == ".safetensors":
            return [path]
        refuse_pickles(path)
        raise fail("weights.not-found", f"{path.name} is not a .safetensors file", "point at safetensors weights", path)
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise fail("weights.bad-index", "the folder has several safetensors index files", "keep one index", path)
    if indexes:
        try:
            weight_map = json.loads(read_bytes(indexes[0]).decode("utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise fail(
                "weights.bad-index", f"unreadable index ({exc!r})", "re-save the checkpoint", indexes[0]
            ) from None
        strange = [n for n in names if not isinstance(n, str) or Path(n).name != n or n in ("", ".", "..")]
        if strange:
            raise fail(
                "weights.bad-index",
                f"the index names shard(s) outside the folder: {', '.join(map(str, strange[:4]))}",
                "an index may only name files in its own folder",
                indexes[0],
            )
        files = [path / name for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise fail(
                "weights.bad-index",
                f"the index names shard(s) that are not in the folder: {', '.join(missing[:4])}",
                "copy every shard the index lists",
                indexes[0],
            )
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        refuse_pickles(path)
        raise fail("weights.not-found", f"no .safetensors weights in {path}", "point at the checkpoint folder", path)
    return files


def module_name(tensor_key: str) -> str:
    return tensor_key[: -len(".weight")] if tensor_key.endswith(".weight") else tensor_key
