"""The weight signature of full-weight checkpoints: peak memory against the checkpoint size.

Data: three full-weight checkpoints of one Llama-shaped model (--layers decoder layers of
q/k/v/o (hidden×hidden), gate/up (ffn×hidden), down (hidden×ffn) and two 1-D norms each, plus a
final norm), written as safetensors in --dtype (F32 or BF16): the base, an undefended fine-tune
(base + a random update in every matrix) and a defended one (the undefended update halved, plus
a small change of its own).  A U reference subspace (rank 8 per module, a few MB) is added, so
the subspace statistics run too.  Every value comes from one seeded numpy Generator.

Measured: `verify`'s signature step in a child process, i.e. the three checkpoints and the reference
read (hashed as read, checked against their digests) and the signature computed from them, with its
wall time and its peak RSS (os.wait4's ru_maxrss).  The child's baseline is a child that imports the
same modules and reads nothing; "signature memory" is the difference, printed as a multiple of one
checkpoint's size and of the largest matrix held in float64.  With --baseline-code DIR, the same
child also runs on another acards source tree (a copy of an older one: DIR holds its acards/,
schema/ and templates/ folders), interleaved with this one, for a before/after from the same run.

Goal: the signature's memory is bounded by a tensor, not by the checkpoints: signature memory
<= 10 × the largest matrix held in float64 (at the default size, 22 MiB each, one checkpoint being
245 MiB in F32), whatever the number of layers.  Before the streaming reader (files read whole, the
session keeping every file's bytes, every update materialised in float64) it was 7.4 × one F32
checkpoint (see benchmarks/README.md).

    python benchmarks/bench_weights.py [--layers 5] [--hidden 1024] [--ffn 2816] [--dtype F32] [--runs 3]
                                       [--dir /tmp] [--baseline-code DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
from _util import load_line, machine, median, mib, run_child, verdict

GOAL_MATRICES = 10  # signature memory, in units of the largest matrix held in float64

CHILD = r"""
import json, sys
from pathlib import Path
from acards.card.validate import threshold_defaults
from acards.evidence import checkpoints
from acards.evidence.digests import digest_path
from acards.mechanism.signature import weight_signature

root = Path(sys.argv[1])
if sys.argv[2] == "baseline":
    print(json.dumps({}))
    sys.exit()
pinned = {name: checkpoints.Pinned(root / name, digest_path(root / name), name) for name in ("undefended", "defended", "base")}
pinned["reference_subspace"] = checkpoints.Pinned(root / "reference.safetensors", None, "reference.safetensors")
th = threshold_defaults()["mechanism"]
if hasattr(checkpoints, "read_signature"):  # the streaming reader
    result = checkpoints.read_signature(pinned, th)
else:  # the code before it: inputs read whole, then the signature from the materialised updates
    undefended, defended, reference = checkpoints.read_signature_inputs(pinned)
    result = weight_signature(undefended, defended, reference, th)
print(json.dumps({"observed": result["observed"], "n_modules": result["estimates"]["n_modules"],
                  "alpha_T": result["estimates"]["alpha_T"], "t_in": result["estimates"]["t_in"]}))
"""


MATRICES = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


def matrix_shapes(hidden: int, ffn: int) -> list[tuple[int, int]]:
    """The shapes of one layer's MATRICES."""
    return [(hidden, hidden)] * 4 + [(ffn, hidden), (ffn, hidden), (hidden, ffn)]


def write_safetensors(path: Path, tensors: dict[str, tuple[str, np.ndarray]]) -> int:
    """A safetensors file written by hand (numpy has no bfloat16): {name: (dtype, little-endian array)}."""
    header, offset = {}, 0
    for name, (dtype, array) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)) + text)
        for _, array in tensors.values():
            handle.write(np.ascontiguousarray(array).tobytes())
    return 8 + len(text) + offset


def stored(values: np.ndarray, dtype: str) -> tuple[str, np.ndarray]:
    """``values`` in the stored dtype (bf16 by truncating float32 to its top 16 bits)."""
    single = values.astype("<f4")
    return (dtype, single) if dtype == "F32" else (dtype, (single.view("<u4") >> 16).astype("<u2"))


def build(folder: Path, layers: int, hidden: int, ffn: int, dtype: str) -> int:
    """base/, undefended/, defended/ (one model.safetensors each) and reference.safetensors; returns
    one checkpoint's size in bytes."""
    rng = np.random.default_rng(20240917)
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(layers):
        prefix = f"model.layers.{layer}."
        for name, shape in zip(MATRICES, matrix_shapes(hidden, ffn)):
            shapes[f"{prefix}{name}.weight"] = shape
        shapes[f"{prefix}input_layernorm.weight"] = (hidden,)
        shapes[f"{prefix}post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    checkpoints: dict[str, dict[str, tuple[str, np.ndarray]]] = {"base": {}, "undefended": {}, "defended": {}}
    reference: dict[str, tuple[str, np.ndarray]] = {}
    # One tensor at a time, written out at the end: the builder holds the three checkpoints, the
    # child that is measured does not.
    for key, shape in shapes.items():
        base = rng.standard_normal(shape, dtype=np.float32) * 0.02
        checkpoints["base"][key] = stored(base, dtype)
        if len(shape) == 2:
            update = rng.standard_normal(shape, dtype=np.float32) * 0.002
            checkpoints["undefended"][key] = stored(base + update, dtype)
            checkpoints["defended"][key] = stored(base + 0.5 * update + 0.0002 * rng.standard_normal(shape, dtype=np.float32), dtype)
            basis, _ = np.linalg.qr(rng.standard_normal((shape[0], 8)))
            reference[key[: -len(".weight")] + ".U"] = ("F32", basis.astype("<f4"))
        else:
            checkpoints["undefended"][key] = checkpoints["defended"][key] = checkpoints["base"][key]
    size = 0
    for name, tensors in checkpoints.items():
        (folder / name).mkdir()
        size = write_safetensors(folder / name / "model.safetensors", tensors)
    write_safetensors(folder / "reference.safetensors", reference)
    return size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--ffn", type=int, default=2816)
    parser.add_argument("--dtype", choices=("F32", "BF16"), default="F32")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (deleted at the end)")
    parser.add_argument("--baseline-code", default=None, metavar="DIR",
                        help="also measure another acards source tree (DIR holds its acards/, schema/ and templates/), interleaved")
    parser.add_argument("--build", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        print(build(Path(args.build), args.layers, args.hidden, args.ffn, args.dtype))
        return
    print(machine())
    folder = Path(tempfile.mkdtemp(prefix="acards-bench-weights-", dir=args.dir))
    try:
        # Built in a child: a child's ru_maxrss starts from its parent's RSS, so this process stays small.
        size = int(run_child([sys.executable, __file__, "--build", str(folder), "--layers", str(args.layers),
                              "--hidden", str(args.hidden), "--ffn", str(args.ffn), "--dtype", args.dtype],
                             capture=True).stdout)
        print(f"three {args.dtype} checkpoints of {mib(size)} each ({args.layers} layers, hidden {args.hidden}, "
              f"ffn {args.ffn}) in {folder}")
        argv = [sys.executable, "-P", "-c", CHILD, str(folder)]  # -P: the acards of PYTHONPATH, not the cwd's
        largest = max(rows * cols for rows, cols in matrix_shapes(args.hidden, args.ffn)) * 8
        trees: dict[str, dict | None] = {"this tree": None}
        if args.baseline_code:
            trees["baseline tree"] = {**os.environ, "PYTHONPATH": str(Path(args.baseline_code).resolve())}
        peaks: dict[str, list[int]] = {name: [] for name in trees}
        walls: dict[str, list[float]] = {name: [] for name in trees}
        bases, outputs = [], {}
        for _ in range(args.runs):
            bases.append(run_child(argv + ["baseline"]).peak_rss)
            for name, env in trees.items():
                child = run_child(argv + ["signature"], env=env, capture=True)
                peaks[name].append(child.peak_rss)
                walls[name].append(child.wall)
                outputs[name] = child.stdout.decode().strip()
        base = median(bases)
        print(f"imports alone: peak RSS {mib(base)}; largest matrix in float64: {mib(largest)}")
        for name in trees:
            peak = median(peaks[name])
            share = (peak - base) / size
            print(f"\n{name}: {outputs[name]}")
            print(f"  signature step, median of {args.runs}: {median(walls[name]):.2f} s wall, peak RSS {mib(peak)}")
            print(f"  signature memory (peak - imports) = {mib(peak - base)} = {share:.3f} x one checkpoint "
                  f"= {(peak - base) / largest:.1f} x the largest matrix in float64; peak RSS = {peak / size:.3f} x one checkpoint")
            print(f"  goal signature memory <= {GOAL_MATRICES} x the largest matrix in float64: "
                  f"{verdict(peak - base <= GOAL_MATRICES * largest)}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(load_line())


if __name__ == "__main__":
    main()
