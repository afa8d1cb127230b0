"""The control:shrinkage model of one training seed (SPEC §5.3, §10.7), written from its checkpoints.

The control is U's update scaled, module by module, to D's norm: ``ΔC_ℓ = s_ℓ·ΔU_ℓ`` with
``s_ℓ = ‖ΔD_ℓ‖/‖ΔU_ℓ‖`` (acards.mechanism.controls).  Its form follows U's:

- U an adapter: the adapter with each module's B scaled (:func:`acards.evidence.adapters.write_control_shrinkage`);
- U full weights: a full-weights folder ``W_C = W_base + s_ℓ·(W_U − W_base)`` for every weight
  matrix of the signature's modules; every other tensor (norms, biases, ...) is U's as stored.
  Tensors are written in float32 (generation casts to the card's ``generation.dtype``), with U's
  file names, index, config.json and generation_config.json.

D may be either form: with full weights on either side, the scales are computed from the streamed
module pairs (one module's updates in memory at a time), as the signature reads them.
"""

from __future__ import annotations

import os
import shutil
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from acards.evidence.adapters import is_adapter, write_control_shrinkage
from acards.evidence.checkpoints import _open_checkpoint, _streamed_update_pair
from acards.evidence.safetensors_io import fail, module_name, open_safetensors, read_native, weight_files
from acards.mechanism.controls import streamed_control_scales

MODEL_FILES = ("config.json", "generation_config.json")


def control_scales_of(undefended: Path, defended: Path, base: Path | None) -> dict[str, float]:
    """The per-module scales of a pair of checkpoints of which at least one is full weights."""
    with ExitStack() as stack:
        return streamed_control_scales(_streamed_update_pair(undefended, defended, base, stack))


def write_control(undefended: str | os.PathLike, defended: str | os.PathLike, base: str | os.PathLike | None,
                  out: str | os.PathLike) -> dict[str, float]:
    """Write one seed's control:shrinkage model to the folder ``out`` (an adapter when U is one, else
    full weights); returns the per-module scales."""
    undefended, defended, out = Path(undefended), Path(defended), Path(out)
    base_path = Path(base) if base is not None else None
    if is_adapter(undefended) and is_adapter(defended):
        return write_control_shrinkage(undefended, defended, out)
    scales = control_scales_of(undefended, defended, base_path)
    if is_adapter(undefended):
        return write_control_shrinkage(undefended, defended, out, scales)
    assert base_path is not None  # _streamed_update_pair refused full weights without a base
    write_full_control(undefended, base_path, scales, out)
    return scales


def write_full_control(undefended: Path, base: Path, scales: dict[str, float], out: Path) -> None:
    """``W_base + s_ℓ·(W_U − W_base)`` for every module in ``scales``, U's other tensors as they are,
    one of U's files at a time."""
    if out.resolve() in (undefended.resolve(), base.resolve()):
        raise fail("weights.write-failed", "the control:shrinkage model would overwrite one of its inputs",
                   "write the control to a folder of its own", out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with ExitStack() as stack:
            base_at = _open_checkpoint(base, stack)
            for file in weight_files(undefended):
                tensors: dict[str, np.ndarray] = {}
                with open_safetensors(file) as handle:
                    for key in handle.stored_order():
                        value = read_native(handle, file, key)
                        scale = scales.get(module_name(key))
                        if value.ndim == 2 and scale is not None and scale != 1.0:
                            wide_base = np.asarray(read_native(base_at[key], base_at[key].path, key), dtype=np.float64)
                            value = wide_base + scale * (np.asarray(value, dtype=np.float64) - wide_base)
                        tensors[key] = np.ascontiguousarray(value, dtype=np.float32)
                save_file(tensors, str(out / file.name), metadata={"format": "pt"})
                del tensors
        if undefended.is_dir():
            names = list(MODEL_FILES) + [p.name for p in undefended.glob("*.safetensors.index.json")]
            for name in names:
                if (undefended / name).is_file():
                    shutil.copyfile(undefended / name, out / name)
    except OSError as exc:
        raise fail("weights.write-failed", f"cannot write the control:shrinkage model: {exc}",
                   "check that the output folder is writable and the disk is not full", out) from None
