"""`acards import eee`: Every Eval Ever instance-level records (the `<uuid>_samples.jsonl` files).

Each line is one scored sample of one evaluation (schema/instance_level_eval.schema.json of the
every_eval_ever package): `schema_version`, `evaluation_id`, `model_id`, `evaluation_name`,
`evaluation_result_id`, `sample_id`, `sample_hash`, `interaction_type`, `input` (`raw`,
`reference`, `choices`), `output` (`raw`, a list), `messages`, `answer_attribution`, `evaluation`
(`score`, `is_correct`), `error`, `metadata`.  The lines are read with acards' JSONL reader, so
importing needs no package; a sample whose `error` is set is not imported (sample-error).
"""

from __future__ import annotations

from acards.importers.jsonl_source import jsonl_records
from acards.importers.mapping import Skip
from acards.importers.source import Records, Source, SourceFile

DEFAULTS: dict[str, dict] = {
    "item": {"field": "sample_id"},
    "score": {"field": "evaluation.score"},
    "prompt": {"field": "input.raw"},
    "output": {"field": "output.raw.0", "optional": True},  # a multi-turn sample has messages instead
    "reference": {"field": "input.reference.0", "optional": True},
}


def eee_records(file: SourceFile) -> Records:
    for where, record in jsonl_records(file):
        error = record.get("error")
        if error:
            yield where, Skip("sample-error", f"the sample ended in an error: {error}")
        else:
            yield where, record


EEE = Source("eee", eee_records, DEFAULTS)
