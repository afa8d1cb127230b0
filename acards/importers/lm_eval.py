"""`acards import lm-eval`: the per-sample JSONL that `lm_eval --log_samples` writes.

Each line is one (document, filter) of a task: `doc_id`, the dataset row under `doc`, `target`,
the request `arguments`, the model's `resps` and `filtered_resps`, `filter`, and one key per metric
(`exact_match`, `acc`...).  A file with several filters has one line per filter and document: map
`select: {filter: ...}` to keep one.
"""

from __future__ import annotations

from acards.importers.jsonl_source import jsonl_pieces, jsonl_records
from acards.importers.source import Source

DEFAULTS = {
    "item": {"field": "doc_id"},
    "prompt": {"field": "arguments.gen_args_0.arg_0"},  # the context of the first request
    "output": {"field": "filtered_resps.0", "optional": True},  # generated text (not for log-likelihood tasks)
    "reference": {"field": "target", "optional": True},
}

LM_EVAL = Source("lm-eval", jsonl_records, DEFAULTS, jsonl_pieces)
