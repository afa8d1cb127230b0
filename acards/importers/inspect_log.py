"""`acards import inspect`: inspect_ai eval logs, read through inspect_ai's own reader.

inspect_ai's log format is not frozen, so the file is never parsed here: `read_eval_log` reads it
(`.eval` or `.json`), and each sample becomes a plain source record:

    id, epoch, epoch_index (epoch − 1), input (the text of the last user message), target,
    output (the completion), scores.<scorer> (inspect's value_to_float of a scalar value;
    scores.<scorer>.<key> for a dict value), metadata.<key>, model, task, error

A sample that ended in an error is not imported (reason sample-error).  inspect_ai is imported only
here.
"""

from __future__ import annotations

from typing import Any

from acards.errors import AcardsError, Location
from acards.importers.mapping import Skip
from acards.importers.source import Records, Source, SourceFile, sha256_of

DEFAULTS = {
    "item": {"field": "id"},
    "sample": {"field": "epoch_index"},  # epochs are repeated samples unless the mapping says seeds
    "prompt": {"field": "input"},
    "output": {"field": "output", "optional": True},
    "reference": {"field": "target", "optional": True},
}


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    users = [m for m in value or [] if getattr(m, "role", None) == "user"]
    return users[-1].text if users else None


def _target(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return value[0] if isinstance(value, list) and len(value) == 1 else None


def _scores(scores: dict | None, value_to_float) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, score in (scores or {}).items():
        value = score.value
        if isinstance(value, dict):
            flat[name] = {key: value_to_float()(v) if v is not None else None for key, v in value.items()}
        elif isinstance(value, list):
            flat[name] = [value_to_float()(v) for v in value]
        else:
            flat[name] = value_to_float()(value)
    return flat


def inspect_records(file: SourceFile) -> Records:
    try:
        from inspect_ai.log import read_eval_log
        from inspect_ai.scorer import value_to_float
    except ImportError:
        raise AcardsError("import.missing-extra", "importing inspect_ai logs needs inspect-ai",
                          "pip install inspect-ai", Location(file.name)) from None
    before = sha256_of(file)
    try:
        log = read_eval_log(str(file.path))
    except Exception as error:  # noqa: BLE001 — inspect_ai raises many kinds; each means the log cannot be read
        raise AcardsError("import.bad-source", f"inspect_ai cannot read {file.name}: {type(error).__name__}: {error}",
                          "check that the file is an inspect_ai eval log (.eval or .json)", Location(file.name)) from None
    if sha256_of(file) != before:
        raise AcardsError("import.source-changed", f"{file.name} changed while it was read", "import again once the file is final",
                          Location(file.name))
    file.sha256 = before
    file.size = file.path.stat().st_size
    for sample in log.samples or []:
        where = f"sample {sample.id} epoch {sample.epoch}"
        if sample.error is not None:
            yield where, Skip("sample-error", f"the sample ended in an error: {sample.error.message}")
            continue
        yield where, {
            "id": sample.id, "epoch": sample.epoch, "epoch_index": sample.epoch - 1, "input": _text(sample.input),
            "target": _target(sample.target), "output": sample.output.completion if sample.output else None,
            "scores": _scores(sample.scores, value_to_float), "metadata": sample.metadata or {},
            "model": log.eval.model, "task": log.eval.task,
        }


INSPECT = Source("inspect", inspect_records, DEFAULTS)
