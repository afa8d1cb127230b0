"""The four diagnostics and the cost guard (SPEC §4), one module each, plus the verdicts.

Each diagnostic is a pure function from precomputed statistics and thresholds to a result dict
shaped like the report schema's diagnostic: outcome, reasons, estimates, thresholds, details.
The expensive, threshold-free statistics (``common.compare``) are computed once per split and
reused for every claim, however its thresholds differ.
"""
