"""Read checkpoints as per-module weight updates relative to the base model (SPEC §4 D3, §5.3).

I/O only; the mathematics is in acards.mechanism, whose ``LowRank``/``Dense`` updates this module
produces.  Two checkpoint forms are understood:

- a PEFT LoRA adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``), read as
  ``scaling·B·A`` per module by :mod:`acards.evidence.adapters`, which holds every adapter rule;
- full weights (a ``*.safetensors`` file, or a folder of them, sharded with an index or not), read
  as ``W_ft − W_base`` for every 2-D tensor that differs.

Nothing is ever unpickled (:func:`acards.evidence.safetensors_io.refuse_pickles`).  Updates are in
float64, in the layout the base checkpoint stores the weight, so adapters, full weights and
reference matrices can be compared directly.

Verification reads them through :func:`read_signature_inputs`: every file is read once and hashed as
read (:func:`acards.evidence.safetensors_io.hashed_reads`), and the digest of what was read is
checked against the digest the card pins, so a file replaced after the digest check is refused
(``evidence.digest-mismatch``) instead of deciding a number.  Files are read whole: a full-weights
checkpoint (fine-tuned and base) is held in memory while its update is computed, accepted for now.
"""

from __future__ import annotations

import hashlib
import math
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acards.errors import AcardsError, Location, Problem
from acards.evidence.adapters import is_adapter, read_adapter
from acards.evidence.digests import FileEntry, digest_file, manifest_bytes, walk_folder
from acards.evidence.safetensors_io import (
    FileRead,
    fail,
    hashed_reads,
    module_name,
    open_safetensors,
    read_float64,
    read_native,
    refuse_pickles,
    tensor_shape,
    weight_files,
)
from acards.mechanism.deltas import Delta, Dense, LowRank, ReferenceSubspace

__all__ = [
    "read_full_delta",
    "read_deltas",
    "read_update_pair",
    "read_reference",
    "Pinned",
    "read_signature_inputs",
]


# --- Full weights --------------------------------------------------------------------------


def _tensor_locations(path: Path) -> dict[str, Path]:
    """Which file holds each tensor of a full-weights checkpoint."""
    locations: dict[str, Path] = {}
    for file in weight_files(path):
        with open_safetensors(file) as handle:
            for key in handle.keys():
                if key in locations:
                    raise fail(
                        "weights.bad-safetensors",
                        f"tensor `{key}` is in both {locations[key].name} and {file.name}",
                        "remove stray files from the checkpoint folder",
                        file,
                    )
                locations[key] = file
    return locations


def read_full_delta(finetuned: str | os.PathLike, base: str | os.PathLike) -> dict[str, Dense]:
    """``W_ft − W_base`` for every 2-D tensor that differs, keyed by module name (no ``.weight``)."""
    with hashed_reads():  # each file read once: the tensors listed are the tensors read
        return _full_delta(Path(finetuned), Path(base))


def _full_delta(finetuned: Path, base: Path) -> dict[str, Dense]:
    ft_at, base_at = _tensor_locations(finetuned), _tensor_locations(base)
    only_ft, only_base = set(ft_at) - set(base_at), set(base_at) - set(ft_at)
    if only_ft or only_base:
        sample = sorted(only_ft)[:3] + sorted(only_base)[:3]
        raise fail(
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
                handles[file] = stack.enter_context(open_safetensors(file))
            return handles[file]

        for key in sorted(ft_at):
            ft_handle, base_handle = handle_for(ft_at[key]), handle_for(base_at[key])
            ft_shape, base_shape = tensor_shape(ft_handle, key), tensor_shape(base_handle, key)
            if ft_shape != base_shape:
                raise fail(
                    "weights.shape-mismatch",
                    f"tensor `{key}` is {tuple(ft_shape)} in the fine-tune but {tuple(base_shape)} in the base",
                    "the fine-tune must be of this base model",
                    ft_at[key],
                )
            if len(ft_shape) != 2:
                continue  # the signature is over weight matrices (norms and biases are not modules)
            ft_value = read_native(ft_handle, ft_at[key], key)
            base_value = read_native(base_handle, base_at[key], key)
            # Compare in stored precision; only a changed matrix is widened to float64.
            if not np.array_equal(ft_value, base_value):
                updates[module_name(key)] = Dense(
                    np.asarray(ft_value, dtype=np.float64) - np.asarray(base_value, dtype=np.float64)
                )
    return updates


def read_deltas(path: str | os.PathLike, base: str | os.PathLike | None = None) -> dict[str, Delta]:
    """A checkpoint's update relative to base: LowRank per module for an adapter folder, Dense per
    changed 2-D tensor for full weights (which need ``base``).  With ``base``, an adapter is also
    checked against the base model's module names and shapes."""
    path = Path(path)
    if is_adapter(path):
        return read_adapter(path, base)
    if base is None:
        raise fail(
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
            refuse_pickles(path)
        raise fail(
            "weights.bad-reference",
            f"the reference subspace must be one safetensors file; {path} holds {len(files)}",
            "point the card at the single file holding `<module>.V` or `<module>.U` tensors",
            path,
        )
    raise fail("weights.not-found", f"{path} does not exist", "check the reference_subspace path", path)


def read_reference(path: str | os.PathLike, orthonormal_tol: float = 1e-4) -> ReferenceSubspace:
    """A reference subspace file: per module `<module>.V` (d_out×d_in) or `<module>.U` (orthonormal
    d_out×k, checked to ``orthonormal_tol`` in max |UᵀU − I|); one kind per file."""
    file = _reference_file(Path(path))
    matrices: dict[str, np.ndarray] = {}
    kinds: set[str] = set()
    with open_safetensors(file) as handle:
        for key in handle.keys():
            module, _, kind = key.rpartition(".")
            if not module or kind not in ("V", "U"):
                raise fail(
                    "weights.bad-reference",
                    f"tensor `{key}` is neither `<module>.V` nor `<module>.U`",
                    "name each tensor after the base-model module, e.g. model.layers.0.self_attn.q_proj.V",
                    file,
                )
            matrix = read_float64(handle, file, key)
            if matrix.ndim != 2:
                raise fail(
                    "weights.shape-mismatch",
                    f"reference `{key}` has shape {matrix.shape}; it must be a matrix",
                    "store V as d_out×d_in and U as d_out×k",
                    file,
                )
            matrices[module] = matrix
            kinds.add(kind)
    if len(kinds) != 1:
        raise fail(
            "weights.bad-reference",
            "the reference file mixes V and U tensors" if kinds else "the reference file is empty",
            "store either V for every module (then e_C is computed) or U for every module",
            file,
        )
    kind = kinds.pop()
    for module, matrix in matrices.items():
        if kind == "V" and not np.any(matrix):
            raise fail(
                "weights.bad-reference",
                f"reference `{module}.V` is all zeros, so it spans no subspace",
                "leave out modules that alignment did not change only if no adapter trains them",
                file,
            )
        if kind == "U":
            d_out, k = matrix.shape
            if k == 0:
                raise fail("weights.bad-reference", f"reference `{module}.U` ({d_out}×0) has no columns, so it spans no subspace",
                           "store a d_out×k orthonormal basis with k ≥ 1", file)
            error = float(np.max(np.abs(matrix.T @ matrix - np.eye(k)))) if k <= d_out else math.inf
            if not error <= orthonormal_tol:
                raise fail(
                    "weights.not-orthonormal",
                    f"reference `{module}.U` ({d_out}×{k}) is not orthonormal: max |UᵀU − I| = {error:.3g} "
                    f"> {orthonormal_tol:g}",
                    "store an orthonormal basis in float32 or float64 (e.g. numpy.linalg.qr of the spanning vectors)",
                    file,
                )
    return ReferenceSubspace(kind, matrices)


# --- The bytes read are the bytes pinned -------------------------------------------------------


@dataclass(frozen=True)
class Pinned:
    """One checkpoint pointer of a cell: the resolved path, the digest the card pins, as written."""

    path: Path
    sha256: str | None
    relative: str
    location: Location | None = None


def read_signature_inputs(
    pinned: dict[str, Pinned],
) -> tuple[dict[str, Delta], dict[str, Delta], ReferenceSubspace | None]:
    """(ΔU, ΔD, reference) of a cell (``pinned`` by checkpoint name: undefended, defended, and
    optionally base and reference_subspace), each file read once and hashed as read; then the
    digest of the bytes read under each pointer must be the pinned one (:func:`check_reads`)."""
    with hashed_reads() as reads:
        try:
            base = pinned["base"].path if "base" in pinned else None
            undefended, defended = read_update_pair(pinned["undefended"].path, pinned["defended"].path, base)
            reference = read_reference(pinned["reference_subspace"].path) if "reference_subspace" in pinned else None
        except AcardsError:
            # a refusal of bytes that are not the pinned ones is the mismatch, not what they hold
            _raise_mismatches(reads, pinned)
            raise
    _raise_mismatches(reads, pinned)
    return undefended, defended, reference


def _raise_mismatches(reads: dict[str, FileRead], pinned: dict[str, Pinned]) -> None:
    problems = [problem for entry in pinned.values() for problem in check_reads(reads, entry)]
    if problems:
        raise AcardsError.collect(problems) from None


def check_reads(reads: dict[str, FileRead], pinned: Pinned) -> list[Problem]:
    """The pointer's digest recomputed with the sha256 of the bytes actually read for every file read
    under it (a folder's other files, which decide no number, are hashed now): [] when it is the
    pinned digest (or nothing under it was read in full), else one evidence.digest-mismatch naming
    the files read."""
    root = os.path.abspath(pinned.path)
    mine = {key: read for key, read in reads.items() if key == root or key.startswith(root + os.sep)}
    if not mine or pinned.sha256 is None:
        return []
    if root in mine:  # a file pointer
        actual, folder = mine[root].sha256, False
    else:
        entries, seen = [], set()
        for relative, file in walk_folder(Path(root), pinned.relative):
            key = os.path.abspath(file)
            if key in mine:
                seen.add(key)
                entries.append(FileEntry(relative, mine[key].size, mine[key].sha256))
            else:
                entries.append(FileEntry(relative, *digest_file(Path(file), None, f"{pinned.relative}/{relative}")))
        actual, folder = hashlib.sha256(manifest_bytes(entries)).hexdigest(), True
    gone = set(mine) - seen if folder else set()  # read, then removed from the folder: never a match
    if actual == pinned.sha256 and not gone:
        return []
    names = ", ".join(sorted(Path(key).relative_to(root).as_posix() if folder else Path(key).name for key in mine))
    what = "the folder manifest" if folder else "the file"
    return [Problem(
        "evidence.digest-mismatch",
        f"{pinned.relative}: the weights read for the signature ({names}) are not the bytes the card pins: "
        f"{what} digest of what was read is {actual}, the card says {pinned.sha256}",
        "the checkpoint changed while it was being verified (after its digest was checked): make sure nothing"
        " writes the evidence during `acards verify`, and run it again",
        pinned.location or Location(file=str(pinned.path)),
    )]
