"""The verification report as types: :mod:`~acards.report.model` holds the Structs every step and
every consumer takes (pure: msgspec only); :mod:`~acards.report.stored` is the one checked reader of
a report that was stored or signed (JSON data → schema check → the same types).

This package's ``__init__`` imports neither, so that the pure diagnostics, which import the model,
never load the reader's schema machinery.
"""
