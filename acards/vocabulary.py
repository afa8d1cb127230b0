"""The standard's words, each list once (SPEC §2): diagnostics, splits, framings, conditions.

Everything that names a diagnostic, a split or a condition takes it from here, so that adding one
is one edit.  The card schema spells the same words for validation; a test keeps the two in step.
"""

from __future__ import annotations

# The four diagnostics a full card needs, in the order the standard lists them, then the guard.
FOUR = ("reliability", "fresh", "mechanism", "transfer")
DIAGNOSTICS = FOUR + ("cost",)

SPLITS = ("heldout", "fresh", "transfer", "capability")
# The split each gap diagnostic reads, with the label people see (capability belongs to the cost guard).
GAP_SPLITS = (("heldout", "reliability", "held-out"), ("fresh", "fresh", "fresh"), ("transfer", "transfer", "transfer"))
FRAMINGS = ("audit", "deploy")

BASE, UNDEFENDED, DEFENDED = "base", "undefended", "defended"
CONTROL_SHRINKAGE = "control:shrinkage"
# The confirmation bootstrap's replicates (SPEC §3: B = 10,000 by default) and the master seed every
# cell's random stream derives from; both are `acards verify` options.
DEFAULT_BOOTSTRAP = 10_000
DEFAULT_SEED = 20260527

# The conditions acards can build a model for when it regenerates outputs (SPEC §5.3).
BUILDABLE_CONDITIONS = (BASE, UNDEFENDED, DEFENDED, CONTROL_SHRINKAGE)
