"""D4 cross-task transfer (transfer split): the frozen defense also reduces a different installed gap."""

from __future__ import annotations

from msgspec.structs import replace

from acards.diagnostics.common import Comparison
from acards.diagnostics.fresh import generalization
from acards.report.model import Diagnostic, Reason


def transfer(c: Comparison | None, unavailable: list[Reason], heldout_relative: float | None, th: dict, task: str,
             differs_in: list[str]) -> Diagnostic:
    outcome = generalization("transfer", c, unavailable, heldout_relative, th)
    details = outcome.details if isinstance(outcome.details, dict) else {}  # result() always gives a dict
    return replace(outcome, details={**details, "transfer_task": task, "differs_in": differs_in})
