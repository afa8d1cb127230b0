"""Read checkpoints as per-module weight updates relative to the base model (SPEC §4 D3, §5.3).

I/O only; the mathematics is in acards.mechanism.signature, whose ``LowRank``/``Dense`` updates this module
produces.  Two checkpoint forms are understood:

- a PEFT LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), read as
  ``scaling·B·A`` per module, named as in the base model (``model.layers.0.self_attn.q_proj``);
- full weights (a ``*.safetensors`` file, or a folder of them, sharded with an index or not), read
  as ``W_ft − W_base`` for every 2-D tensor that differs.

Nothing is ever unpickled: a folder holding only ``.bin``/``.pt`` files is refused.  Updates are in
float64, in the layout the base checkpoint stores the weight (``fan_in_fan_out`` adapters are
transposed to it), so adapters, full weights and reference matrices can be compared directly.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import tempfile
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from acards.errors import AcardsError, Location
from acards.mechanism.controls import control_scales
from acards.mechanism.deltas import Delta, Dense, LowRank, ReferenceSubspace

__all__ = [
    "Dense",
    "LowRank",
    "ReferenceSubspace",
    "is_adapter",
    "read_adapter",
    "read_full_delta",
    "read_deltas",
    "read_update_pair",
    "read_reference",
    "write_control_shrinkage",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

# `<module>.lora_A.weight`, optionally with PEFT's prefix and an adapter-name infix.
_LORA_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+?)\.lora_(?P<factor>[AB])(?:\.[^.]+)?\.weight$")

# LoraConfig fields that switch on a LoRA variant whose update is not scaling·B·A on an unchanged
# base weight.  Any truthy value is refused.
_UNSUPPORTED_FIELDS = {
    "use_dora": "DoRA (use_dora) rescales the weight by a learned magnitude vector",
    "lora_bias": "lora_bias trains a bias next to B",
    "use_qalora": "QALoRA (use_qalora) pools the inputs before A",
    "use_bdlora": "block-diagonal LoRA (use_bdlora)",
    "velora_config": "VeLoRA (velora_config)",
    "monteclora_config": "MonteCLoRA (monteclora_config) samples its update",
    "kasa_config": "KaSA (kasa_config) adds a singular-value adapter",
    "arrow_config": "Arrow routing (arrow_config) mixes several adapters",
    "alora_invocation_tokens": "activated LoRA applies its update only after invocation tokens",
    "target_parameters": "target_parameters wraps raw parameters, not modules",
    "trainable_token_indices": "trainable_token_indices trains embedding rows outside LoRA",
    "layer_replication": "layer_replication changes the base model's layers",
}
# init_lora_weights values that rewrite the base weights (W_res = W − BA): the adapter alone is then
# not an update of the published base model.
_BASE_REWRITING_INITS = ("pissa", "corda", "olora", "loftq", "lora_ga")


def _fail(code: str, message: str, hint: str, path: Path | str) -> AcardsError:
    return AcardsError(code, message, hint, Location(file=str(path)))


# --- Reading safetensors ---------------------------------------------------------------------


@contextmanager
def _open(path: Path) -> Iterator:
    try:
        handle = safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError) as exc:
        raise _fail(
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


def _shape(path: Path, key: str) -> tuple[int, ...]:
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


def _read_native(handle, path: Path, key: str) -> np.ndarray:
    """A float tensor in its stored precision (bf16 as float32, exactly); non-finite is an error."""
    dtype = _header(path)[1][key]["dtype"]
    if dtype in ("F64", "F32", "F16"):
        array = handle.get_tensor(key)
    elif dtype == "BF16":
        array = _read_bf16(path, key)
    else:
        raise _fail(
            "weights.unsupported-dtype",
            f"tensor `{key}` has dtype {dtype}; acards reads float64/32/16 and bfloat16 weights",
            "dequantize the checkpoint (or save the adapter in float32/bfloat16) before auditing it",
            path,
        )
    if not np.isfinite(array).all():
        raise _fail(
            "weights.non-finite",
            f"tensor `{key}` holds NaN or infinite values",
            "the checkpoint is corrupt or training diverged; audit a checkpoint with finite weights",
            path,
        )
    return array


def _read_float64(handle, path: Path, key: str) -> np.ndarray:
    return np.asarray(_read_native(handle, path, key), dtype=np.float64)


def _refuse_pickles(folder: Path) -> None:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise _fail(
            "weights.not-safetensors",
            f"{folder.name} holds only pickle-based weights ({', '.join(pickles[:4])}); acards never unpickles",
            "convert the checkpoint to safetensors (save_pretrained(..., safe_serialization=True))",
            folder,
        )


# --- PEFT LoRA adapters ------------------------------------------------------------------


def is_adapter(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PEFT adapter folder (it holds ``adapter_config.json``)."""
    path = Path(path)
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def _read_adapter_config(folder: Path) -> dict:
    path = folder / ADAPTER_CONFIG

    def bad(why: str) -> AcardsError:
        hint = "re-save the adapter with PEFT's save_pretrained"
        return _fail("weights.bad-adapter-config", f"{ADAPTER_CONFIG}: {why}", hint, path)

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise bad("the top level is not a JSON object")
    if config.get("peft_type") != "LORA":
        raise _fail(
            "weights.unsupported-adapter",
            f"peft_type is {config.get('peft_type')!r}; acards reads LoRA adapters only",
            "audit a LoRA adapter, or merge the adapter and audit full weights",
            path,
        )
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise bad(f"`r` must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise bad(f"`lora_alpha` must be a number, got {alpha!r}")
    for field in ("rank_pattern", "alpha_pattern"):
        pattern = config.get(field) or {}
        if not isinstance(pattern, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in pattern.values()
        ):
            raise bad(f"`{field}` must map module patterns to positive numbers")
        for key in pattern:
            try:
                re.compile(rf"(.*\.)?({key})$")
            except re.error as exc:
                raise bad(f"`{field}` key {key!r} is not a valid regular expression ({exc})") from None
    if not isinstance(config.get("use_rslora", False), bool):
        raise bad("`use_rslora` must be true or false")

    for field, why in _UNSUPPORTED_FIELDS.items():
        if config.get(field):
            raise _fail(
                "weights.unsupported-adapter",
                f"the adapter uses {why}; acards reads plain LoRA updates only",
                "merge the adapter into the base model and audit the full weights instead",
                path,
            )
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise _fail(
            "weights.unsupported-adapter",
            f"init_lora_weights={init!r} rewrites the base weights, so scaling·B·A is not the update "
            "relative to the published base model",
            "convert the adapter to plain LoRA (save_pretrained(path_initial_model_for_weight_conversion=...)) "
            "or merge it and audit full weights",
            path,
        )
    return config


def _pattern_value(patterns: dict, module: str, default):
    # PEFT's get_pattern_key: the first pattern key that matches the end of the module name.
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return patterns[key]
    return default


def _parse_lora_key(key: str, path: Path) -> tuple[str, str]:
    """(module name, "A" or "B") for a LoRA factor key; anything else is refused with its reason."""
    match = _LORA_KEY.match(key)
    if match:
        return match["module"], match["factor"]
    if "lora_magnitude_vector" in key:
        why = "a DoRA magnitude vector (use_dora)"
    elif key.endswith(".bias"):
        why = "a trained bias"
    elif "lora_embedding" in key:
        why = "a LoRA on an embedding layer"
    elif "trainable_tokens" in key or "token_adapter" in key:
        why = "trainable token rows"
    else:
        why = "a full weight saved with the adapter (modules_to_save or save_embedding_layers)"
    raise _fail(
        "weights.unsupported-adapter",
        f"tensor `{key}` is {why}; acards reads plain LoRA A/B factors only",
        "merge the adapter into the base model and audit the full weights instead",
        path,
    )


def _adapter_weights_path(folder: Path) -> Path:
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        _refuse_pickles(folder)
        raise _fail(
            "weights.not-found",
            f"the adapter folder has no {ADAPTER_WEIGHTS}",
            "save the adapter with PEFT's save_pretrained (safetensors is its default)",
            folder,
        )
    return path


def read_adapter(folder: str | os.PathLike) -> dict[str, LowRank]:
    """A PEFT LoRA adapter folder as {base-model module name: LowRank(B, A, scaling)}."""
    folder = Path(folder)
    if not is_adapter(folder):
        raise _fail(
            "weights.not-an-adapter",
            f"{folder} is not a PEFT adapter folder (no {ADAPTER_CONFIG})",
            "point at the folder written by PEFT's save_pretrained",
            folder,
        )
    config = _read_adapter_config(folder)
    path = _adapter_weights_path(folder)
    factors: dict[str, dict[str, np.ndarray]] = {}
    with _open(path) as handle:
        for key in handle.keys():
            module, factor = _parse_lora_key(key, path)
            slot = factors.setdefault(module, {})
            if factor in slot:
                raise _fail(
                    "weights.unsupported-adapter",
                    f"module {module} has more than one lora_{factor} (several adapters in one file)",
                    "save each adapter to its own folder",
                    path,
                )
            slot[factor] = _read_float64(handle, path, key)

    updates: dict[str, LowRank] = {}
    for module in sorted(factors):
        pair = factors[module]
        if set(pair) != {"A", "B"}:
            raise _fail(
                "weights.bad-adapter",
                f"module {module} has lora_{''.join(pair)} but not its partner factor",
                "the adapter file is incomplete; re-save it",
                path,
            )
        A, B = pair["A"], pair["B"]
        if A.ndim != 2 or B.ndim != 2 or A.shape[0] != B.shape[1]:
            raise _fail(
                "weights.shape-mismatch",
                f"module {module}: lora_A {A.shape} and lora_B {B.shape} are not r×d_in and d_out×r",
                "acards reads LoRA on linear layers only (not convolutions); re-save the adapter",
                path,
            )
        rank = _pattern_value(config.get("rank_pattern") or {}, module, config["r"])
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
        if A.shape[0] != rank:
            # A wrong rank would silently give a wrong scaling alpha/r.
            raise _fail(
                "weights.shape-mismatch",
                f"module {module}: the tensors have rank {A.shape[0]} but the config (r, rank_pattern) says {rank}",
                "the adapter_config.json does not belong to these weights; re-save the adapter",
                path,
            )
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        if config.get("fan_in_fan_out"):
            # The base stores this weight transposed (d_in×d_out); keep the update in that layout.
            updates[module] = LowRank(A.T, B.T, float(scaling))
        else:
            updates[module] = LowRank(B, A, float(scaling))
    if not updates:
        raise _fail("weights.bad-adapter", "the adapter holds no LoRA factors", "re-save the adapter", path)
    return updates


# --- Full weights --------------------------------------------------------------------------


def _weight_files(path: Path) -> list[Path]:
    """The safetensors files of a full-weights checkpoint (a file, or a folder, sharded or not)."""
    if not path.exists():
        raise _fail("weights.not-found", f"{path} does not exist", "check the checkpoint path in the card", path)
    if path.is_file():
        if path.suffix == ".safetensors":
            return [path]
        if path.suffix in PICKLE_SUFFIXES:
            raise _fail(
                "weights.not-safetensors",
                f"{path.name} is a pickle-based checkpoint; acards never unpickles",
                "convert the checkpoint to safetensors (save_pretrained(..., safe_serialization=True))",
                path,
            )
        raise _fail("weights.not-found", f"{path.name} is not a .safetensors file", "point at safetensors weights", path)
    indexes = sorted(path.glob("*.safetensors.index.json"))
    if len(indexes) > 1:
        raise _fail("weights.bad-index", "the folder has several safetensors index files", "keep one index", path)
    if indexes:
        try:
            weight_map = json.loads(indexes[0].read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise _fail(
                "weights.bad-index", f"unreadable index ({exc!r})", "re-save the checkpoint", indexes[0]
            ) from None
        strange = [n for n in names if not isinstance(n, str) or Path(n).name != n or n in ("", ".", "..")]
        if strange:
            raise _fail(
                "weights.bad-index",
                f"the index names shard(s) outside the folder: {', '.join(map(str, strange[:4]))}",
                "an index may only name files in its own folder",
                indexes[0],
            )
        files = [path / name for name in names]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise _fail(
                "weights.bad-index",
                f"the index names shard(s) that are not in the folder: {', '.join(missing[:4])}",
                "copy every shard the index lists",
                indexes[0],
            )
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        _refuse_pickles(path)
        raise _fail("weights.not-found", f"no .safetensors weights in {path}", "point at the checkpoint folder", path)
    return files


def _tensor_locations(path: Path) -> dict[str, Path]:
    """Which file holds each tensor of a full-weights checkpoint."""
    locations: dict[str, Path] = {}
    for file in _weight_files(path):
        with _open(file) as handle:
            for key in handle.keys():
                if key in locations:
                    raise _fail(
                        "weights.bad-safetensors",
                        f"tensor `{key}` is in both {locations[key].name} and {file.name}",
                        "remove stray files from the checkpoint folder",
                        file,
                    )
                locations[key] = file
    return locations


def _module_name(tensor_key: str) -> str:
    return tensor_key[: -len(".weight")] if tensor_key.endswith(".weight") else tensor_key


def read_full_delta(finetuned: str | os.PathLike, base: str | os.PathLike) -> dict[str, Dense]:
    """``W_ft − W_base`` for every 2-D tensor that differs, keyed by module name (no ``.weight``)."""
    finetuned, base = Path(finetuned), Path(base)
    ft_at, base_at = _tensor_locations(finetuned), _tensor_locations(base)
    only_ft, only_base = set(ft_at) - set(base_at), set(base_at) - set(ft_at)
    if only_ft or only_base:
        sample = sorted(only_ft)[:3] + sorted(only_base)[:3]
        raise _fail(
            "weights.module-mismatch",
            f"the fine-tuned and base checkpoints hold different tensors ({len(only_ft)} only in the "
            f"fine-tune, {len(only_base)} only in the base; e.g. {', '.join(sample)})",
            "both must be full checkpoints of the same architecture, saved the same way (tied weights included)",
            finetuned,
        )
    updates: dict[str, Dense] = {}
    with ExitStack() as stack:
        handles: dict[Path, object] = {}

        def handle_for(file: Path):
            if file not in handles:
                handles[file] = stack.enter_context(_open(file))
            return handles[file]

        for key in sorted(ft_at):
            ft_handle, base_handle = handle_for(ft_at[key]), handle_for(base_at[key])
            ft_shape, base_shape = _shape(ft_at[key], key), _shape(base_at[key], key)
            if ft_shape != base_shape:
                raise _fail(
                    "weights.shape-mismatch",
                    f"tensor `{key}` is {tuple(ft_shape)} in the fine-tune but {tuple(base_shape)} in the base",
                    "the fine-tune must be of this base model",
                    ft_at[key],
                )
            if len(ft_shape) != 2:
                continue  # the signature is over weight matrices (norms and biases are not modules)
            ft_value = _read_native(ft_handle, ft_at[key], key)
            base_value = _read_native(base_handle, base_at[key], key)
            # Compare in stored precision; only a changed matrix is widened to float64.
            if not np.array_equal(ft_value, base_value):
                updates[_module_name(key)] = Dense(
                    np.asarray(ft_value, dtype=np.float64) - np.asarray(base_value, dtype=np.float64)
                )
    return updates


def _check_against_base(updates: dict[str, LowRank], adapter: Path, base: Path) -> None:
    """Every adapter module must be a weight of the base model, of the same shape."""
    shapes: dict[str, tuple] = {}
    for file in _weight_files(base):
        with _open(file) as handle:
            for key in handle.keys():
                shapes[_module_name(key)] = _shape(file, key)
    missing = sorted(m for m in updates if m not in shapes)
    if missing:
        raise _fail(
            "weights.module-mismatch",
            f"the adapter trains module(s) the base model does not have: {', '.join(missing[:4])}",
            "the adapter must belong to this base model",
            adapter,
        )
    for module, update in updates.items():
        if tuple(update.shape) != shapes[module]:
            raise _fail(
                "weights.shape-mismatch",
                f"module {module}: the adapter's update is {update.shape} but the base weight is {shapes[module]}",
                "the adapter must belong to this base model",
                adapter,
            )


def read_deltas(path: str | os.PathLike, base: str | os.PathLike | None = None) -> dict[str, Delta]:
    """A checkpoint's update relative to base: LowRank per module for an adapter folder, Dense per
    changed 2-D tensor for full weights (which need ``base``).  With ``base``, an adapter is also
    checked against the base model's module names and shapes."""
    path = Path(path)
    if is_adapter(path):
        updates = read_adapter(path)
        if base is not None:
            _check_against_base(updates, path, Path(base))
        return updates
    if base is None:
        raise _fail(
            "weights.missing-base",
            f"{path} holds full weights; their update needs the base checkpoint",
            "add the base model under the cell's checkpoints.base",
            path,
        )
    return read_full_delta(path, base)


def read_update_pair(
    undefended: str | os.PathLike, defended: str | os.PathLike, base: str | os.PathLike | None = None
) -> tuple[dict[str, Delta], dict[str, Delta]]:
    """(ΔU, ΔD) ready for signature.weight_signature.

    Two adapters are returned as read (their module sets must agree, which the signature checks).
    When either side is full weights, a module absent from one side was left at base weights, so it
    becomes a zero (rank-0) update there: a defense that restores base weights is an ablation."""
    undefended_updates, defended_updates = read_deltas(undefended, base), read_deltas(defended, base)
    if is_adapter(undefended) and is_adapter(defended):
        return undefended_updates, defended_updates
    for mine, other in ((undefended_updates, defended_updates), (defended_updates, undefended_updates)):
        for name in set(other) - set(mine):
            d_out, d_in = other[name].shape
            mine[name] = LowRank(np.zeros((d_out, 0)), np.zeros((0, d_in)), 1.0)
    return undefended_updates, defended_updates


# --- Reference subspace ----------------------------------------------------------------------


def _reference_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) == 1:
            return files[0]
        if not files:
            _refuse_pickles(path)
        raise _fail(
            "weights.bad-reference",
            f"the reference subspace must be one safetensors file; {path} holds {len(files)}",
            "point the card at the single file holding `<module>.V` or `<module>.U` tensors",
            path,
        )
    raise _fail("weights.not-found", f"{path} does not exist", "check the reference_subspace path", path)


def read_reference(path: str | os.PathLike, orthonormal_tol: float = 1e-4) -> ReferenceSubspace:
    """A reference subspace file: per module `<module>.V` (d_out×d_in) or `<module>.U` (orthonormal
    d_out×k, checked to ``orthonormal_tol`` in max |UᵀU − I|); one kind per file."""
    file = _reference_file(Path(path))
    matrices: dict[str, np.ndarray] = {}
    kinds: set[str] = set()
    with _open(file) as handle:
        for key in handle.keys():
            module, _, kind = key.rpartition(".")
            if not module or kind not in ("V", "U"):
                raise _fail(
                    "weights.bad-reference",
                    f"tensor `{key}` is neither `<module>.V` nor `<module>.U`",
                    "name each tensor after the base-model module, e.g. model.layers.0.self_attn.q_proj.V",
                    file,
                )
            matrix = _read_float64(handle, file, key)
            if matrix.ndim != 2:
                raise _fail(
                    "weights.shape-mismatch",
                    f"reference `{key}` has shape {matrix.shape}; it must be a matrix",
                    "store V as d_out×d_in and U as d_out×k",
                    file,
                )
            matrices[module] = matrix
            kinds.add(kind)
    if len(kinds) != 1:
        raise _fail(
            "weights.bad-reference",
            "the reference file mixes V and U tensors" if kinds else "the reference file is empty",
            "store either V for every module (then e_C is computed) or U for every module",
            file,
        )
    kind = kinds.pop()
    for module, matrix in matrices.items():
        if kind == "V" and not np.any(matrix):
            raise _fail(
                "weights.bad-reference",
                f"reference `{module}.V` is all zeros, so it spans no subspace",
                "leave out modules that alignment did not change only if no adapter trains them",
                file,
            )
        if kind == "U":
            d_out, k = matrix.shape
            error = float(np.max(np.abs(matrix.T @ matrix - np.eye(k)))) if k <= d_out else math.inf
            if not error <= orthonormal_tol:
                raise _fail(
                    "weights.not-orthonormal",
                    f"reference `{module}.U` ({d_out}×{k}) is not orthonormal: max |UᵀU − I| = {error:.3g} "
                    f"> {orthonormal_tol:g}",
                    "store an orthonormal basis in float32 or float64 (e.g. numpy.linalg.qr of the spanning vectors)",
                    file,
                )
    return ReferenceSubspace(kind, matrices)


# --- control:shrinkage ---------------------------------------------------------------------


def write_control_shrinkage(
    undefended: str | os.PathLike, defended: str | os.PathLike, out: str | os.PathLike
) -> dict[str, float]:
    """Write the control:shrinkage adapter (SPEC §5.3) to the folder ``out``: the undefended adapter
    with each module's B scaled so that ‖ΔU_ℓ‖ = ‖ΔD_ℓ‖.  Same config and tensor names, float32.
    Returns the per-module scales."""
    undefended, defended, out = Path(undefended), Path(defended), Path(out)
    if out.resolve() in (undefended.resolve(), defended.resolve()):
        raise _fail(
            "weights.write-failed",
            "the control:shrinkage adapter would overwrite one of its inputs",
            "write the control to a folder of its own",
            out,
        )
    scales = control_scales(read_adapter(undefended), read_adapter(defended))
    source = _adapter_weights_path(undefended)
    tensors: dict[str, np.ndarray] = {}
    with _open(source) as handle:
        for key in handle.keys():
            module, factor = _parse_lora_key(key, source)
            value = _read_float64(handle, source, key)
            if factor == "B":
                value = value * scales[module]
            tensors[key] = value.astype(np.float32)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # Write next to the target and rename, so that a reader never sees half a file.
        with tempfile.NamedTemporaryFile(dir=out, suffix=".tmp", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        try:
            save_file(tensors, str(tmp_path), metadata={"format": "pt"})
            os.replace(tmp_path, out / ADAPTER_WEIGHTS)
        finally:
            tmp_path.unlink(missing_ok=True)
        (out / ADAPTER_CONFIG).write_bytes((undefended / ADAPTER_CONFIG).read_bytes())
    except OSError as exc:
        raise _fail(
            "weights.write-failed",
            f"cannot write the control:shrinkage adapter: {exc}",
            "check that the output folder is writable and the disk is not full",
            out,
        ) from None
    return scales
