"""acards — the reference implementation of Acceptance Cards (see docs/standard.md)."""

__version__ = "0.1.0"
SUPPORTED_CARD_VERSIONS = ("1.0", "1.1")  # 1.1: SPEC §10, calibrated statistics
