"""D4 cross-task transfer (transfer split): the frozen defense also reduces a different installed gap."""

from __future__ import annotations

from acards.diagnostics.common import Comparison
from acards.diagnostics.fresh import generalization


def transfer(c: Comparison | None, unavailable: list[dict], heldout_relative: float | None, th: dict, task: str, differs_in: list[str]) -> dict:
    outcome = generalization("transfer", c, unavailable, heldout_relative, th)
    outcome["details"]["transfer_task"] = task
    outcome["details"]["differs_in"] = differs_in
    return outcome
