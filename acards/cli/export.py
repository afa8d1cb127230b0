"""`acards export csv|hf-eval-results|eee`: a verification report's per-cell estimates as a table for spreadsheets and
scripts, as the .eval_results files of a Hugging Face model repository, or as an Every Eval Ever log."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import handled, main


@main.group("export")
def export_group() -> None:
    """Write what a verification report holds in other tools' formats (see docs/importing.md)."""


@export_group.command("csv")
@click.argument("report_path", metavar="REPORT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here (atomically) instead of to stdout.")
@handled
def export_csv(report_path: Path, output: Path | None) -> None:
    """The estimates of REPORT as CSV, one row per cell and diagnostic.

    REPORT is the JSON file `acards verify CARD --report REPORT` wrote; the columns are described in
    docs/importing.md."""
    from acards.files import write_output
    from acards.present.render import read_report
    from acards.report.export import estimates_csv

    text = estimates_csv(read_report(report_path))
    if output is None:
        click.echo(text, nl=False)
        return
    write_output(output, text.encode("utf-8"))
    click.echo(f"wrote {output}")


@export_group.command("hf-eval-results")
@click.argument("report_path", metavar="REPORT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dataset", required=True, help="The benchmark dataset's Hub id (ORG/NAME) the results are for.")
@click.option("--source-url", required=True, help="Where the card can be read (its page, or the card file in a repository).")
@click.option("--task-id", default="default", show_default=True, help="The task of the benchmark, as its eval.yaml names it.")
@click.option("--dataset-revision", help="The benchmark dataset's git revision, if the results are for one.")
@click.option("--estimate", "estimate", default="reliability.reduction", show_default=True, metavar="DIAGNOSTIC.ESTIMATE",
              help="The number each entry carries.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path(".eval_results"),
              show_default=True, help="The folder to write the files into (the model repository's .eval_results).")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@handled
def export_hf_eval_results(report_path: Path, dataset: str, source_url: str, task_id: str, dataset_revision: str | None,
                           estimate: str, output: Path, force: bool) -> None:
    """The estimates of REPORT as a Hugging Face model repository's .eval_results/*.yaml files.

    One file per cell whose ESTIMATE has a value, with the card as the source; see docs/importing.md."""
    from acards.errors import AcardsError
    from acards.files import write_output
    from acards.present.render import read_report
    from acards.report.hf_eval_results import Target, eval_results

    diagnostic, _, name = estimate.partition(".")
    target = Target(dataset, source_url, task_id, dataset_revision, diagnostic, name)
    files, skipped = eval_results(read_report(report_path), target)
    existing = [output / file for file in files if (output / file).exists()]
    if existing and not force:
        raise AcardsError("usage.exists", f"{existing[0]} already exists", "choose another folder, or pass --force to overwrite")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot create {output}: {error.strerror or error}",
                          "check that the folder's parent exists and is writable") from None
    for file, text in files.items():
        write_output(output / file, text.encode("utf-8"))
        click.echo(f"wrote {output / file}")
    for reason in skipped:
        click.echo(f"no file for {reason}")


@export_group.command("eee")
@click.argument("report_path", metavar="REPORT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model-id", required=True, help="The model the card is about, as on the Hugging Face Hub (developer/name).")
@click.option("--organization", required=True, help="Who evaluated (source_organization_name).")
@click.option("--evaluator-relationship", required=True, type=click.Choice(["first_party", "third_party", "collaborative", "other"]),
              help="The evaluator's relationship to the model's developer.")
@click.option("--deployment", default="unknown", show_default=True,
              type=click.Choice(["self_deployed", "externally_managed", "unknown"]), help="How the model was run.")
@click.option("--availability", default="unknown", show_default=True,
              type=click.Choice(["open_weights", "closed_weights", "unknown"]), help="The model's weights.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The JSON file to write (atomically).")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handled
def export_eee(report_path: Path, model_id: str, organization: str, evaluator_relationship: str, deployment: str,
               availability: str, output: Path, force: bool) -> None:
    """The diagnostics of REPORT as an Every Eval Ever aggregate log, one result per cell and diagnostic.

    Each result carries its uncertainty; see docs/importing.md#every-eval-ever."""
    from acards.errors import AcardsError
    from acards.files import write_output
    from acards.present.render import read_report
    from acards.report.eee_export import Source, evaluation_log, evaluation_log_json

    if output.exists() and not force:
        raise AcardsError("usage.exists", f"{output} already exists", "choose another path, or pass --force to overwrite it")
    log = evaluation_log(read_report(report_path), Source(organization, evaluator_relationship, model_id, deployment, availability))
    write_output(output, evaluation_log_json(log).encode("utf-8"))
    click.echo(f"wrote {output} ({len(log['evaluation_results'])} results)")
