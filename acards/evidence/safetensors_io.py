"""Weights on disk: safetensors headers and tensors, the files of a checkpoint, and the one pickle refusal.

Nothing is ever unpickled: where safetensors weights were expected and only pickle-based files are
found, :func:`refuse_pickles` raises ``weights.not-safetensors`` (verification, generation and the
classifier scorer all call it).  Tensors are read in their stored precision (bfloat16 decoded
exactly as float32); anything else is refused.

Files are read whole, once, and parsed from the bytes read (never mapped or reopened by path);
inside :func:`hashed_reads` those bytes are hashed as read so verification can check that the
numbers come from the bytes the card pins.  Reading whole files means a full-weights checkpoint is
held in memory while it is read (see the note below): accepted for now.
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
# Every file is read whole, once, through one descriptor (no link followed, a regular file by fstat),
# and tensors are parsed from those bytes, never from the path again.  Inside :func:`hashed_reads`
# (verification's weight signature) the bytes are also hashed as read and kept, so a second read of
# the same path in that session returns the same bytes, and the caller can check the sha256 of what
# was actually parsed against the digest the card pins (acards.evidence.checkpoints).
#
# Memory: a file costs its size while it is parsed, and inside a session every file read stays in
# memory until the session ends (for full weights: the fine-tuned and the base checkpoint together).
# That is small for adapters and reference subspaces and accepted for now for large full weights.

MAX_HEADER = 100_000_000  # the safetensors format's own limit on the JSON header
_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
           "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "u1",
           "F8_E4M3": "u1", "F8_E5M2": "u1"}


@dataclass(frozen=True)
class FileRead:
    """The bytes of one file as read, with their size and sha256."""

    data: bytes
    size: int
    sha256: str


_session: ContextVar[dict[str, FileRead] | None] = ContextVar("acards_weight_reads", default=None)


@contextmanager
def hashed_reads() -> Iterator[dict[str, FileRead]]:
    """A session in which every weights file is read once and hashed as read: yields
    {absolute path: FileRead} of every file read (in full) inside it.  Inside a session already
    open, it is that session (so a reader can always open one to read each file once)."""
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


def read_bytes(path: Path | str) -> bytes:
    """The whole file, read through one descriptor that follows no link and is a regular file."""
    key = os.path.abspath(path)
    reads = _session.get()
    if reads is not None and key in reads:
        return reads[key].data
    with closing(_open_nofollow(path, str(path))) as handle:
        try:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise AcardsError("evidence.special-file", f"{path} is not a regular file",
                                  "evidence must be plain files", Location(file=str(path)))
            data = handle.readall()
        except OSError as error:
            raise AcardsError("evidence.unreadable", f"{path}: {error.strerror or error}",
                              "check the file's permissions and the disk", Location(file=str(path))) from None
    if reads is not None:
        reads[key] = FileRead(data, len(data), hashlib.sha256(data).hexdigest())
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


class SafetensorsFile:
    """A safetensors file parsed from the bytes read once (see :func:`read_bytes`)."""

    def __init__(self, path: Path, data: bytes):
        self.path = Path(path)
        self._data = data
        self._length, self._tensors = _parse_header(self.path, data, len(data))

    def keys(self) -> list[str]:
        return sorted(self._tensors)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._tensors[key]["shape"])

    def dtype(self, key: str) -> str:
        return self._tensors[key]["dtype"]

    def raw(self, key: str) -> np.ndarray:
        """The stored values of ``key`` as a new array (bf16 as its uint16 bit patterns)."""
        entry = self._tensors[key]
        begin, end = entry["data_offsets"]
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        array = np.frombuffer(self._data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=8 + self._length + begin)
        return array.astype(dtype.newbyteorder("="), copy=True).reshape(entry["shape"])


@contextmanager
def open_safetensors(path: Path) -> Iterator[SafetensorsFile]:
    yield SafetensorsFile(Path(path), read_bytes(path))


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{tensor: shape} from the header alone (the bytes already read in this session, when there are):
    for checks that decide no number, such as whether an adapter fits its base model."""
    reads = _session.get()
    known = reads.get(os.path.abspath(path)) if reads is not None else None
    if known is not None:
        tensors = _parse_header(Path(path), known.data, known.size)[1]
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
        array = (handle.raw(key).astype(np.uint32) << 16).view(np.float32)
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
