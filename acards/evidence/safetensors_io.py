"""Weights on disk: safetensors headers and tensors, the files of a checkpoint, and the one pickle refusal.

Nothing is ever unpickled: where safetensors weights were expected and only pickle-based files are
found, :func:`refuse_pickles` raises ``weights.not-safetensors`` (verification, generation and the
classifier scorer all call it).  Tensors are read in their stored precision (bfloat16 decoded
exactly as float32); anything else is refused.
"""

from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
from safetensors import SafetensorError, safe_open

from acards.errors import AcardsError, Location

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


@contextmanager
def open_safetensors(path: Path) -> Iterator:
    try:
        handle = safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError) as exc:
        raise fail(
            "weights.bad-safetensors",
            f"cannot read {path.name} as safetensors: {exc}",
            "the file must be a complete safetensors file (re-download or re-save it)",
            path,
        ) from None
    with handle:
        yield handle


@lru_cache(maxsize=16)
def _parse_header(path: str, _size: int, _mtime_ns: int) -> tuple[int, dict]:
    # Only called after safe_open accepted the file; size and mtime are in the cache key so that a
    # rewritten file is parsed again.
    with open(path, "rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        return length, json.loads(stream.read(length))


def _header(path: Path) -> tuple[int, dict]:
    """(header length, {tensor: {dtype, shape, data_offsets}}) of a safetensors file."""
    stat = path.stat()
    return _parse_header(str(path), stat.st_size, stat.st_mtime_ns)


def tensor_shape(path: Path, key: str) -> tuple[int, ...]:
    """The shape of tensor ``key`` of a file safe_open has accepted, from its header."""
    return tuple(_header(path)[1][key]["shape"])


def _read_bf16(path: Path, key: str) -> np.ndarray:
    """numpy has no bfloat16: a bf16 value is the top half of a float32, so shift its bits up."""
    length, tensors = _header(path)
    begin, end = tensors[key]["data_offsets"]
    with open(path, "rb") as stream:
        stream.seek(8 + length + begin)
        raw = stream.read(end - begin)
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).reshape(tensors[key]["shape"])


def read_native(handle, path: Path, key: str) -> np.ndarray:
    """A float tensor in its stored precision (bf16 as float32, exactly); non-finite is an error."""
    dtype = _header(path)[1][key]["dtype"]
    if dtype in ("F64", "F32", "F16"):
        array = handle.get_tensor(key)
    elif dtype == "BF16":
        array = _read_bf16(path, key)
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


def read_float64(handle, path: Path, key: str) -> np.ndarray:
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
            weight_map = json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
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
