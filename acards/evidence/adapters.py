"""PEFT LoRA adapters (SPEC §4 D3, §5.3): the one rule set for what acards accepts as an adapter.

An adapter is a folder with ``adapter_config.json`` and ``adapter_model.safetensors`` whose update
is ``scaling·B·A`` per module on an unchanged base weight.  :func:`check_adapter` applies every rule
from the config and the safetensors header alone (no tensor is read) and, given the base model,
checks that the adapter fits it; verification (:func:`read_adapter`) and generation
(acards.generate.models) both go through it, so an adapter one refuses the other refuses too.
:func:`write_control_shrinkage` writes the control:shrinkage adapter of SPEC §5.3.

Updates are float64, named as in the base model (``model.layers.0.self_attn.q_proj``) and in the
layout the base stores the weight (``fan_in_fan_out`` adapters are transposed to it).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from acards.errors import AcardsError
from acards.evidence.safetensors_io import (
    fail,
    hashed_reads,
    header_shapes,
    module_name,
    open_safetensors,
    read_bytes,
    read_float64,
    refuse_pickles,
    tensor_shape,
    weight_files,
)
from acards.mechanism.controls import control_scales
from acards.mechanism.deltas import LowRank

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

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


def is_adapter(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PEFT adapter folder (it holds ``adapter_config.json``)."""
    path = Path(path)
    return path.is_dir() and (path / ADAPTER_CONFIG).is_file()


def read_adapter_config(folder: Path) -> dict:
    """``adapter_config.json`` of a plain LoRA adapter; any other PEFT type or LoRA variant is refused."""
    path = folder / ADAPTER_CONFIG

    def bad(why: str) -> AcardsError:
        hint = "re-save the adapter with PEFT's save_pretrained"
        return fail("weights.bad-adapter-config", f"{ADAPTER_CONFIG}: {why}", hint, path)

    try:
        config = json.loads(read_bytes(path).decode("utf-8"))  # hashed as read inside hashed_reads
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not readable JSON ({exc})") from None
    if not isinstance(config, dict):
        raise bad("the top level is not a JSON object")
    if config.get("peft_type") != "LORA":
        raise fail(
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
    max_alpha = 1e6  # beyond it, scaling·B·A and its squared norms can overflow to infinity
    if abs(alpha) > max_alpha:
        raise bad(f"`lora_alpha` is {alpha!r}, beyond ±{max_alpha:g}, the largest acards computes with")
    for field in ("rank_pattern", "alpha_pattern"):
        pattern = config.get(field) or {}
        if not isinstance(pattern, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= max_alpha for v in pattern.values()
        ):
            raise bad(f"`{field}` must map module patterns to positive numbers up to {max_alpha:g}")
        for key in pattern:
            if not _SAFE_PATTERN_KEY.fullmatch(key):
                raise fail(
                    "weights.unsupported-pattern",
                    f"`{field}` key {key[:80]!r} is not a plain module-name suffix",
                    "name the modules literally (letters, digits, '_', '-', '.', '\\.', a leading '^' and '|' "
                    f"between alternatives, at most {_MAX_PATTERN_KEY} characters)",
                    path,
                )
    if not isinstance(config.get("use_rslora", False), bool):
        raise bad("`use_rslora` must be true or false")

    for field, why in _UNSUPPORTED_FIELDS.items():
        if config.get(field):
            raise fail(
                "weights.unsupported-adapter",
                f"the adapter uses {why}; acards reads plain LoRA updates only",
                "merge the adapter into the base model and audit the full weights instead",
                path,
            )
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise fail(
            "weights.unsupported-adapter",
            f"init_lora_weights={init!r} rewrites the base weights, so scaling·B·A is not the update "
            "relative to the published base model",
            "convert the adapter to plain LoRA (save_pretrained(path_initial_model_for_weight_conversion=...)) "
            "or merge it and audit full weights",
            path,
        )
    return config


# rank_pattern/alpha_pattern keys: PEFT matches them with re.match(rf"(.*\.)?({key})$", module). acards
# accepts only keys whose regex has no quantifier, class or group: literal name characters, '.' (any
# character, as PEFT reads it), '\.', a leading '^' and top-level '|'. Every branch then matches a
# fixed number of characters, so a match costs at most len(module)·len(key) steps (the one '.*' is
# PEFT's prefix), and the match is exactly PEFT's. Anything else is weights.unsupported-pattern.
_MAX_PATTERN_KEY = 1000
_SAFE_PATTERN_KEY = re.compile(r"(?=.{1,%d}\Z)\^?(?:[A-Za-z0-9_.-]|\\\.)+(?:\|\^?(?:[A-Za-z0-9_.-]|\\\.)+)*\Z" % _MAX_PATTERN_KEY, re.S)


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
    raise fail(
        "weights.unsupported-adapter",
        f"tensor `{key}` is {why}; acards reads plain LoRA A/B factors only",
        "merge the adapter into the base model and audit the full weights instead",
        path,
    )


def _adapter_weights_path(folder: Path) -> Path:
    path = folder / ADAPTER_WEIGHTS
    if not path.is_file():
        refuse_pickles(folder)
        raise fail(
            "weights.not-found",
            f"the adapter folder has no {ADAPTER_WEIGHTS}",
            "save the adapter with PEFT's save_pretrained (safetensors is its default)",
            folder,
        )
    return path


@dataclass(frozen=True)
class AdapterModule:
    """One adapted module as the header describes it: its factor keys, scaling and update shape."""

    a_key: str
    b_key: str
    scaling: float
    shape: tuple[int, int]  # the update's shape in the base layout (d_in×d_out for fan_in_fan_out)


@dataclass(frozen=True)
class Adapter:
    """An adapter folder that passed every rule; nothing but its config and header has been read."""

    folder: Path
    config: dict
    weights: Path
    modules: dict[str, AdapterModule]  # sorted by module name

    @property
    def fan_in_fan_out(self) -> bool:
        return bool(self.config.get("fan_in_fan_out"))


def check_adapter(folder: str | os.PathLike, base: str | os.PathLike | None = None) -> Adapter:
    """Every adapter rule, from ``adapter_config.json`` and the safetensors header (no tensor is read).

    With ``base`` (a full-weights checkpoint), every adapted module must also be a weight of the base
    model of the update's shape: an adapter trained for another base model is refused."""
    folder = Path(folder)
    if not is_adapter(folder):
        raise fail(
            "weights.not-an-adapter",
            f"{folder} is not a PEFT adapter folder (no {ADAPTER_CONFIG})",
            "point at the folder written by PEFT's save_pretrained",
            folder,
        )
    config = read_adapter_config(folder)
    path = _adapter_weights_path(folder)
    keys: dict[str, dict[str, str]] = {}
    with open_safetensors(path) as handle:
        shapes = {key: tensor_shape(handle, key) for key in handle.keys()}
        for key in handle.keys():
            module, factor = _parse_lora_key(key, path)
            slot = keys.setdefault(module, {})
            if factor in slot:
                raise fail(
                    "weights.unsupported-adapter",
                    f"module {module} has more than one lora_{factor} (several adapters in one file)",
                    "save each adapter to its own folder",
                    path,
                )
            slot[factor] = key

    modules: dict[str, AdapterModule] = {}
    for module in sorted(keys):
        pair = keys[module]
        if set(pair) != {"A", "B"}:
            raise fail(
                "weights.bad-adapter",
                f"module {module} has lora_{''.join(pair)} but not its partner factor",
                "the adapter file is incomplete; re-save it",
                path,
            )
        a_shape, b_shape = shapes[pair["A"]], shapes[pair["B"]]
        if len(a_shape) != 2 or len(b_shape) != 2 or a_shape[0] != b_shape[1]:
            raise fail(
                "weights.shape-mismatch",
                f"module {module}: lora_A {a_shape} and lora_B {b_shape} are not r×d_in and d_out×r",
                "acards reads LoRA on linear layers only (not convolutions); re-save the adapter",
                path,
            )
        rank = _pattern_value(config.get("rank_pattern") or {}, module, config["r"])
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, config["lora_alpha"])
        if a_shape[0] != rank:
            # A wrong rank would silently give a wrong scaling alpha/r.
            raise fail(
                "weights.shape-mismatch",
                f"module {module}: the tensors have rank {a_shape[0]} but the config (r, rank_pattern) says {rank}",
                "the adapter_config.json does not belong to these weights; re-save the adapter",
                path,
            )
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        # fan_in_fan_out: the base stores this weight transposed (d_in×d_out).
        shape = (a_shape[1], b_shape[0]) if config.get("fan_in_fan_out") else (b_shape[0], a_shape[1])
        modules[module] = AdapterModule(pair["A"], pair["B"], float(scaling), shape)
    if not modules:
        raise fail("weights.bad-adapter", "the adapter holds no LoRA factors", "re-save the adapter", path)
    adapter = Adapter(folder, config, path, modules)
    if base is not None:
        _check_fits(adapter, Path(base))
    return adapter


def _check_fits(adapter: Adapter, base: Path) -> None:
    """Every adapter module must be a weight of the base model, of the same shape (headers only)."""
    shapes: dict[str, tuple] = {}
    for file in weight_files(base):  # headers only: the fit decides a refusal, never a number
        for key, shape in header_shapes(file).items():
            shapes[module_name(key)] = shape
    missing = sorted(m for m in adapter.modules if m not in shapes)
    if missing:
        raise fail(
            "weights.module-mismatch",
            f"the adapter trains module(s) the base model does not have: {', '.join(missing[:4])}",
            "the adapter must belong to this base model",
            adapter.folder,
        )
    for module, entry in adapter.modules.items():
        if entry.shape != shapes[module]:
            raise fail(
                "weights.shape-mismatch",
                f"module {module}: the adapter's update is {entry.shape} but the base weight is {shapes[module]}",
                "the adapter must belong to this base model",
                adapter.folder,
            )


def read_adapter(folder: str | os.PathLike, base: str | os.PathLike | None = None) -> dict[str, LowRank]:
    """A PEFT LoRA adapter folder as {base-model module name: LowRank(B, A, scaling)}, after
    :func:`check_adapter` (with ``base``, also checked to fit the base model)."""
    with hashed_reads():  # the header checked and the tensors read are the same bytes (both reads must hash alike)
        adapter = check_adapter(folder, base)
        updates: dict[str, LowRank] = {}
        with open_safetensors(adapter.weights) as handle:
            for module, entry in adapter.modules.items():
                A = read_float64(handle, adapter.weights, entry.a_key)
                B = read_float64(handle, adapter.weights, entry.b_key)
                # fan_in_fan_out: keep the update in the base's (transposed) layout.
                updates[module] = (
                    LowRank(A.T, B.T, entry.scaling) if adapter.fan_in_fan_out else LowRank(B, A, entry.scaling)
                )
    return updates


# --- control:shrinkage ---------------------------------------------------------------------


def write_control_shrinkage(
    undefended: str | os.PathLike, defended: str | os.PathLike, out: str | os.PathLike,
    scales: dict[str, float] | None = None,
) -> dict[str, float]:
    """Write the control:shrinkage adapter (SPEC §5.3) to the folder ``out``: the undefended adapter
    with each module's B scaled so that ‖ΔU_ℓ‖ = ‖ΔD_ℓ‖.  Same config and tensor names, float32.
    ``scales``: the per-module factors when the caller computed them (a defended checkpoint of full
    weights, acards.evidence.controls); else from the two adapters.  Returns the scales."""
    undefended, defended, out = Path(undefended), Path(defended), Path(out)
    if out.resolve() in (undefended.resolve(), defended.resolve()):
        raise fail(
            "weights.write-failed",
            "the control:shrinkage adapter would overwrite one of its inputs",
            "write the control to a folder of its own",
            out,
        )
    if scales is None:
        scales = control_scales(read_adapter(undefended), read_adapter(defended))
    source = _adapter_weights_path(undefended)
    tensors: dict[str, np.ndarray] = {}
    with open_safetensors(source) as handle:
        for key in handle.keys():
            module, factor = _parse_lora_key(key, source)
            value = read_float64(handle, source, key)
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
        raise fail(
            "weights.write-failed",
            f"cannot write the control:shrinkage adapter: {exc}",
            "check that the output folder is writable and the disk is not full",
            out,
        ) from None
    return scales
