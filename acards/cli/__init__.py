"""The acards command line: one thin module per command group (parse, call one function, print, exit).

Heavy modules are imported inside the commands so that `acards --help` stays fast and commands
that do not generate never import torch.
"""

# Each module registers its commands.
from acards.cli import attest, badge, card, export, generate, importing, keys, migrate, plan, preregister, registry, render, schema, verify  # noqa: F401
from acards.cli.main import main

__all__ = ["main"]
