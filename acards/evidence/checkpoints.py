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

Verification computes the signature through :func:`read_signature`: every file is hashed as read
(:func:`acards.evidence.safetensors_io.hashed_reads`), and the digest of what was read is checked
against the digest the card pins, so a file replaced after the digest check, or changed while it is
read, is refused (``evidence.digest-mismatch``) instead of deciding a number.  Full weights are
streamed: the fine-tuned and base checkpoints are read module by module into the signature, so
memory is about one tensor's updates, not the checkpoints.
"""

from __future__ import annotations

import hashlib
import math
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from acards.errors import AcardsError, Location, Problem
from acards.evidence.adapters import is_adapter, read_adapter
from acards.evidence.digests import FileEntry, digest_file, manifest_bytes, walk_folder
from acards.evidence.safetensors_io import (
    FileRead,
    SafetensorsFile,
    fail,
    hashed_reads,
    module_name,
    open_safetensors,
    read_float64,
    read_native,
    refuse_pickles,
    weight_files,
)
from acards.mechanism.deltas import Delta, Dense, LowRank, ReferenceSubspace, storage_noise
from acards.mechanism.signature import streamed_weight_signature, weight_signature

__all__ = [
    "read_full_delta",
    "read_deltas",
    "read_update_pair",
    "read_reference",
    "Pinned",
    "read_signature",
    "read_signature_inputs",
]


# --- Full weights --------------------------------------------------------------------------
#
# A full-weights checkpoint is read as open streams (acards.evidence.safetensors_io.open_safetensors):
# its files' headers are read when they are opened, and a tensor's bytes when the update of its
# module is computed, so the tensors listed are the tensors read and one module is in memory at a
# time.  Modules are visited in the order the base checkpoint stores them; a fine-tune stored in
# another order is still read through once per file (tensors out of order are read again, checked
# against the digest of their bytes as first read).


def _open_checkpoint(path: Path, stack: ExitStack) -> dict[str, SafetensorsFile]:
    """{tensor: the open file that holds it} of a full-weights checkpoint, every file opened once."""
    at: dict[str, SafetensorsFile] = {}
    for file in weight_files(path):
        handle = stack.enter_context(open_safetensors(file))
        for key in handle.keys():
            if key in at:
                raise fail(
                    "weights.bad-safetensors",
                    f"tensor `{key}` is in both {at[key].path.name} and {file.name}",
                    "remove stray files from the checkpoint folder",
                    file,
                )
            at[key] = handle
    return at


def _check_same_tensors(ft_at: dict[str, SafetensorsFile], base_at: dict[str, SafetensorsFile], finetuned: Path) -> None:
    """The fine-tune holds the base's tensors, each of the same shape (from the headers)."""
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
    for key in sorted(ft_at):
        ft_shape, base_shape = ft_at[key].shape(key), base_at[key].shape(key)
        if ft_shape != base_shape:
            raise fail(
                "weights.shape-mismatch",
                f"tensor `{key}` is {tuple(ft_shape)} in the fine-tune but {tuple(base_shape)} in the base",
                "the fine-tune must be of this base model",
                ft_at[key].path,
            )


def _full_updates(
    fine_tunes: list[dict[str, SafetensorsFile]], base_at: dict[str, SafetensorsFile]
) -> Iterator[tuple[str, list[Dense | None]]]:
    """(module, [each fine-tune's W_ft − W_base, or None where it equals the base]) for every 2-D
    tensor (the signature is over weight matrices; norms and biases are not modules), in the
    base's stored order, one at a time."""
    files = list(dict.fromkeys(base_at.values()))  # in weight_files order
    for key in (key for file in files for key in file.stored_order()):
        base_file = base_at[key]
        if len(base_file.shape(key)) != 2:
            continue
        base_value = read_native(base_file, base_file.path, key)
        wide_base = None
        updates: list[Dense | None] = []
        for ft_at in fine_tunes:
            value = read_native(ft_at[key], ft_at[key].path, key)
            # Compare in stored precision; only a changed matrix is widened to float64.
            if np.array_equal(value, base_value):
                updates.append(None)
            else:
                if wide_base is None:
                    wide_base = np.asarray(base_value, dtype=np.float64)
                update = np.asarray(value, dtype=np.float64)
                update -= wide_base
                # the rounding noise of storing W_ft in its dtype: standard 1.1's noise floor (SPEC §10.7)
                updates.append(Dense(update, storage_noise(value, ft_at[key].dtype(key))))
            del value  # one stored-precision copy at a time
        del base_value, wide_base  # not held while the caller works on the updates
        yield module_name(key), updates


def read_full_delta(finetuned: str | os.PathLike, base: str | os.PathLike) -> dict[str, Dense]:
    """``W_ft − W_base`` for every 2-D tensor that differs, keyed by module name (no ``.weight``)."""
    with ExitStack() as stack:
        ft_at = _open_checkpoint(Path(finetuned), stack)
        base_at = _open_checkpoint(Path(base), stack)
        _check_same_tensors(ft_at, base_at, Path(finetuned))
        return {module: update for module, (update,) in _full_updates([ft_at], base_at) if update is not None}


def _missing_base(path: Path) -> AcardsError:
    return fail(
        "weights.missing-base",
        f"{path} holds full weights; their update needs the base checkpoint",
        "add the base model under the cell's checkpoints.base",
        path,
    )


def read_deltas(path: str | os.PathLike, base: str | os.PathLike | None = None) -> dict[str, Delta]:
    """A checkpoint's update relative to base: LowRank per module for an adapter folder, Dense per
    changed 2-D tensor for full weights (which need ``base``).  With ``base``, an adapter is also
    checked against the base model's module names and shapes."""
    path = Path(path)
    if is_adapter(path):
        return read_adapter(path, base)
    if base is None:
        raise _missing_base(path)
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
            mine[name] = _zero_update(other[name].shape)
    return undefended_updates, defended_updates


def _zero_update(shape: tuple[int, int]) -> LowRank:
    d_out, d_in = shape
    return LowRank(np.zeros((d_out, 0)), np.zeros((0, d_in)), 1.0)


def _streamed_update_pair(
    undefended: Path, defended: Path, base: Path | None, stack: ExitStack
) -> Iterator[tuple[str, Delta, Delta]]:
    """:func:`read_update_pair`'s (module, ΔU, ΔD) one module at a time, for a pair that is not two
    adapters.  Adapters are read and every header is checked now, in read_update_pair's order; the
    full-weight tensors are read as the iterator is consumed, from the files left open in ``stack``."""
    adapters: list[dict[str, LowRank] | None] = []
    fine_tunes: list[dict[str, SafetensorsFile]] = []
    base_at: dict[str, SafetensorsFile] | None = None
    for path in (undefended, defended):
        if is_adapter(path):
            adapters.append(read_adapter(path, base))
            continue
        if base is None:
            raise _missing_base(path)
        ft_at = _open_checkpoint(path, stack)
        base_at = base_at if base_at is not None else _open_checkpoint(base, stack)
        _check_same_tensors(ft_at, base_at, path)
        adapters.append(None)
        fine_tunes.append(ft_at)
    assert base_at is not None  # not two adapters, so one side is full weights
    return _update_pairs(adapters, _full_updates(fine_tunes, base_at))


def _update_pairs(
    adapters: list[dict[str, LowRank] | None], full: Iterator[tuple[str, list[Dense | None]]]
) -> Iterator[tuple[str, Delta, Delta]]:
    """Each side's update of a module (an adapter's, or the next of ``full``), a zero update on the
    side that left it at base weights; modules neither side changed are left out."""
    seen: set[str] = set()
    for module, updates in full:
        streamed = iter(updates)
        pair = [next(streamed) if adapter is None else adapter.get(module) for adapter in adapters]
        seen.add(module)
        present = [update for update in pair if update is not None]
        if present:
            zero = _zero_update(present[0].shape)
            undefended, defended = (update if update is not None else zero for update in pair)
            yield module, undefended, defended
    for side, adapter in enumerate(adapters):  # adapters fit the base, so this finds none; kept for safety
        for module in sorted(set(adapter) - seen) if adapter is not None else ():
            update, zero = adapter[module], _zero_update(adapter[module].shape)
            yield (module, update, zero) if side == 0 else (module, zero, update)


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


def read_reference(path: str | os.PathLike, orthonormal_tol: float = 1e-4, rank: int | None = None) -> ReferenceSubspace:
    """A reference subspace file: per module `<module>.V` (d_out×d_in) or `<module>.U` (orthonormal
    d_out×k, checked to ``orthonormal_tol`` in max |UᵀU − I|); one kind per file.  ``rank`` (the
    card's ``reference_subspace.rank``) fixes the subspace rank of a V file; a U file has its own."""
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
    if rank is not None and kind == "U":
        raise fail("weights.bad-reference", f"the card gives reference_subspace.rank {rank}, but the file holds "
                   "orthonormal bases (`.U`), whose number of columns is the rank",
                   "drop `rank` from the card, or store V matrices", file)
    for module, matrix in matrices.items():
        if rank is not None and rank > min(matrix.shape):
            raise fail("weights.bad-reference", f"reference_subspace.rank {rank} exceeds the rank of `{module}.V` "
                       f"({matrix.shape[0]}×{matrix.shape[1]})", "give a rank no larger than the smaller side of V", file)
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
    return ReferenceSubspace(kind, matrices, rank)


# --- The bytes read are the bytes pinned -------------------------------------------------------


@dataclass(frozen=True)
class Pinned:
    """One checkpoint pointer of a cell: the resolved path, the digest the card pins, as written."""

    path: Path
    sha256: str | None
    relative: str
    location: Location | None = None


def read_signature(pinned: dict[str, Pinned], thresholds: Mapping[str, object], standard: str = "1.0",
                   reference_rank: int | None = None) -> dict:
    """The weight signature of a cell (acards.mechanism.signature) under ``thresholds``, from its
    checkpoints (``pinned`` as for :func:`read_signature_inputs`), every file hashed as read and then
    checked against the pinned digest.  Full weights are streamed into the signature one module at a
    time, so memory is about one tensor's updates (and the reference subspace), not the checkpoints.
    ``standard`` and ``reference_rank`` as for weight_signature and read_reference."""
    with hashed_reads() as reads:
        try:
            signature = _signature(pinned, thresholds, standard, reference_rank)
        except AcardsError:
            # a refusal of bytes that are not the pinned ones is the mismatch, not what they hold
            _raise_mismatches(reads, pinned)
            raise
    _raise_mismatches(reads, pinned)
    return signature


def _signature(pinned: dict[str, Pinned], thresholds: Mapping[str, object], standard: str, rank: int | None) -> dict:
    undefended, defended = pinned["undefended"].path, pinned["defended"].path
    base = pinned["base"].path if "base" in pinned else None

    def reference() -> ReferenceSubspace | None:
        return read_reference(pinned["reference_subspace"].path, rank=rank) if "reference_subspace" in pinned else None

    if is_adapter(undefended) and is_adapter(defended):
        updates = read_update_pair(undefended, defended, base)
        return weight_signature(*updates, reference(), thresholds, standard)
    with ExitStack() as stack:
        pairs = _streamed_update_pair(undefended, defended, base, stack)  # headers checked before the reference
        return streamed_weight_signature(pairs, reference(), thresholds, standard)


def read_signature_inputs(
    pinned: dict[str, Pinned],
) -> tuple[dict[str, Delta], dict[str, Delta], ReferenceSubspace | None]:
    """(ΔU, ΔD, reference) of a cell (``pinned`` by checkpoint name: undefended, defended, and
    optionally base and reference_subspace), each file hashed as read; then the digest of the bytes
    read under each pointer must be the pinned one (:func:`check_reads`).  Every update is held at
    once: verification uses :func:`read_signature`, which streams full weights."""
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
    changed = sorted(Path(key).name for key, read in mine.items() if read.changed)
    if actual == pinned.sha256 and not gone and not changed:
        return []
    names = ", ".join(sorted(Path(key).relative_to(root).as_posix() if folder else Path(key).name for key in mine))
    what = "the folder manifest" if folder else "the file"
    why = (f"{', '.join(changed)} changed while it was read (bytes read twice differ)" if changed
           else f"{what} digest of what was read is {actual}, the card says {pinned.sha256}")
    return [Problem(
        "evidence.digest-mismatch",
        f"{pinned.relative}: the weights read for the signature ({names}) are not the bytes the card pins: {why}",
        "the checkpoint changed while it was being verified (after its digest was checked): make sure nothing"
        " writes the evidence during `acards verify`, and run it again",
        pinned.location or Location(file=str(pinned.path)),
    )]
