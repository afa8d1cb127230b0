"""The verification pipeline, one module per step, each called by :mod:`acards.pipeline.verify`:

load (card, envelope, digests, records, prompts) → complete (score, regenerate, spot check) →
recompute (per-cell statistics, diagnostics) → claims (verdicts, Holm, discrepancies) → assemble
(the report).  :mod:`~acards.pipeline.audit` runs verify over several cards;
:mod:`~acards.pipeline.generate` is load followed by regeneration alone (`acards generate`).
"""
