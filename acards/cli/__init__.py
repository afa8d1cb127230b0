"""The acards command line: one thin module per command group (parse, call one function, print, exit).

Heavy modules are imported inside the commands so that `acards --help` stays fast and commands
that do not generate never import torch.
"""

import os

# numpy's OpenBLAS starts a thread per core, and after every call each busy-waits for more work
# (2**28 cycles, ~0.1 s) before it sleeps. acards makes only small BLAS calls, so that spinning is
# CPU taken from other jobs for nothing: a fully cached re-verify spent 0.15 s of its ~0.8 s CPU in
# it on a shared 2-core machine. Set before anything imports numpy; a value the user set wins.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

# Each module registers its commands.
from acards.cli import attest, badge, card, export, generate, importing, keys, migrate, plan, preregister, registry, render, schema, verify  # noqa: F401
from acards.cli.main import main

__all__ = ["main"]
