"""A verification report as the `.eval_results/*.yaml` files of a Hugging Face model repository.

One file per cell, each a list of one entry (a cell is one variant of the results, and the Hub
keeps one file per variant): the benchmark dataset and task the user names, the value of one
estimate of one diagnostic (by default the reliability diagnostic's held-out reduction Δ), the
card as the source, and notes that say what the number is and which card it comes from.  The
entries are made and serialized by huggingface_hub's own ``EvalResultEntry`` and
``eval_result_entries_to_yaml``; huggingface_hub is imported only here.
"""

from __future__ import annotations

from dataclasses import dataclass

from acards.errors import AcardsError, Location
from acards.report.export import ESTIMATE_COLUMNS
from acards.report.model import Report
from acards.vocabulary import DIAGNOSTICS


@dataclass(frozen=True)
class Target:
    """Where the results go on the Hub, and which number of each cell is the value."""

    dataset: str  # the benchmark dataset's Hub id, e.g. "my-org/harmful-qa"
    source_url: str  # where the card can be read
    task_id: str = "default"
    dataset_revision: str | None = None
    diagnostic: str = "reliability"
    estimate: str = "reduction"


def _hub():
    try:
        import huggingface_hub
        import yaml
    except ImportError:
        raise AcardsError("export.missing-extra", "writing .eval_results files needs huggingface_hub",
                          "pip install huggingface_hub") from None
    if not hasattr(huggingface_hub, "EvalResultEntry"):
        raise AcardsError("export.missing-extra",
                          f"huggingface_hub {huggingface_hub.__version__} has no EvalResultEntry (.eval_results files)",
                          "pip install -U huggingface_hub") from None
    return huggingface_hub, yaml


def file_name(card_id: str, cell_id: str) -> str:
    """The file of one cell under .eval_results/ (ids may hold '/', which a file name cannot)."""
    return f"{card_id}__{cell_id}".replace("/", "__") + ".yaml"


def eval_results(report: Report, target: Target) -> tuple[dict[str, str], list[str]]:
    """({file name: YAML text} of the cells that have the estimate, [why each other cell has no file])."""
    hub, yaml = _hub()
    if target.diagnostic not in DIAGNOSTICS or target.estimate not in ESTIMATE_COLUMNS:
        raise AcardsError("export.bad-option", f"no estimate {target.diagnostic}.{target.estimate}",
                          f"diagnostics: {', '.join(DIAGNOSTICS)}; estimates: {', '.join(ESTIMATE_COLUMNS)}")
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(target.dataset)
    except HFValidationError as error:
        raise AcardsError("export.bad-option", f"--dataset {target.dataset!r} is not a Hub dataset id: {error}",
                          "name the benchmark dataset as ORG/NAME, as on huggingface.co/datasets") from None
    if not report.reproduced:
        raise AcardsError("export.not-reproduced", "the report says the card was not reproduced",
                          "export the report of a card that `acards verify` reproduced (exit 0)")
    card = report.card
    files: dict[str, str] = {}
    skipped: list[str] = []
    for cell in report.cells:
        diagnostic = cell.diagnostics.by_name(target.diagnostic)
        value = diagnostic.estimates.get(target.estimate)
        what = f"{target.diagnostic} {target.estimate}"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            skipped.append(f"cell {cell.id}: no {what} (outcome {diagnostic.outcome})")
            continue
        entry = hub.EvalResultEntry(
            dataset_id=target.dataset, task_id=target.task_id, value=float(value), dataset_revision=target.dataset_revision,
            source_url=target.source_url, source_name=f"Acceptance Card {card.id} v{card.version}",
            notes=f"acards {what} of cell {cell.id} (outcome {diagnostic.outcome}); card {card.id} v{card.version} "
                  f"sha256 {card.sha256}, reproduced by acards {report.acards_version}")
        name = file_name(card.id, cell.id)
        if name in files:
            raise AcardsError("export.bad-option", f"cells of card {card.id} share the file name {name}",
                              "give the cells ids that differ in more than '/' and '__'", Location())
        header = (f"# Written by `acards export hf-eval-results` from Acceptance Card {card.id} v{card.version}\n"
                  f"# (sha256 {card.sha256}); see {target.source_url}\n")
        files[name] = header + yaml.safe_dump(hub.eval_result_entries_to_yaml([entry]), sort_keys=False, allow_unicode=True)
    if not files:
        raise AcardsError("export.no-value", f"no cell of the report has a {target.diagnostic} {target.estimate}: "
                          + "; ".join(skipped), "an insufficient diagnostic has few estimates; export another, or add evidence")
    return files, skipped
