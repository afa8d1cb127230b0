"""`acards import table|lm-eval|inspect|eee`: records (and prompts) from the tools researchers evaluate with."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import FORMAT, handled, main
from acards.errors import AcardsError


@main.group("import")
def import_group() -> None:
    """Write acards records (and prompts) from evaluation logs, under a mapping file.

    Start the mapping with `acards init --mapping`; see docs/importing.md.
    """


def _common(command):
    options = [
        click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path)),
        click.option("--mapping", "-m", "mapping_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="The mapping file (YAML): how source fields become record fields."),
        click.option("--records", "records_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="The records JSONL file to write."),
        click.option("--prompts", "prompts_path", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the prompts JSONL file (the sources' prompts, one per item and framing)."),
        click.option("--allow-skipped", is_flag=True,
                     help="Write the records that map even when others cannot be mapped (they are counted and reported)."),
        click.option("--force", is_flag=True, help="Overwrite existing output files."),
        FORMAT,
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _run(source, files: tuple[Path, ...], mapping_path: Path, records_path: Path, prompts_path: Path | None,
         allow_skipped: bool, force: bool, fmt: str) -> None:
    from acards.importers.mapping import load_mapping
    from acards.importers.run import run_import
    from acards.present.text import dumps

    for output in (records_path, prompts_path):
        if output is not None and output.exists() and not force:
            raise AcardsError("usage.exists", f"{output} already exists", "choose another path, or pass --force to overwrite it")
    if prompts_path is not None and prompts_path.resolve() == records_path.resolve():
        raise AcardsError("usage.conflict", "--records and --prompts name the same file", "write them to two files")
    mapping = load_mapping(mapping_path)
    try:
        summary = run_import(source, [str(f) for f in files], mapping, records_path, prompts_path, allow_skipped=allow_skipped)
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot write the output: {error.strerror or error}",
                          "check that the output folder is writable and has free space") from None
    if fmt == "json":
        click.echo(dumps({"ok": True, **summary.as_json()}))
        return
    for file in summary.files:
        skipped = ", ".join(f"{count:,} {reason}" for reason, count in sorted(file.skipped.items()))
        click.echo(f"{file.path}: {file.read:,} read, {file.imported:,} imported" + (f", skipped: {skipped}" if skipped else "")
                   + f"\n  sha256 {file.sha256}")
        for reason, examples in file.examples.items():
            for example in examples:
                click.echo(f"  {reason}: {example}")
    wrote = f"wrote {summary.records:,} records to {summary.records_path}"
    if summary.prompts_path:
        wrote += f" and {summary.prompts:,} prompts to {summary.prompts_path}"
    click.echo(wrote)


@import_group.command("table")
@_common
@click.option("--table-format", type=click.Choice(["csv", "jsonl", "parquet"]),
              help="The files' format (default: from the name: .csv, .jsonl, .parquet).")
@handled
def table(files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt, table_format) -> None:
    """Import CSV, JSONL or Parquet FILES whose columns the mapping names."""
    from acards.importers.table import table_source

    _run(table_source(table_format), files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt)


@import_group.command("lm-eval")
@_common
@handled
def lm_eval(files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt) -> None:
    """Import the per-sample JSONL files that `lm_eval --log_samples` writes."""
    from acards.importers.lm_eval import LM_EVAL

    _run(LM_EVAL, files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt)


@import_group.command("inspect")
@_common
@handled
def inspect_logs(files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt) -> None:
    """Import inspect_ai eval logs (.eval or .json), read through inspect_ai's own reader."""
    from acards.importers.inspect_log import INSPECT

    _run(INSPECT, files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt)


@import_group.command("eee")
@_common
@handled
def eee(files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt) -> None:
    """Import Every Eval Ever instance-level records (the <uuid>_samples.jsonl files)."""
    from acards.importers.eee import EEE

    _run(EEE, files, mapping_path, records_path, prompts_path, allow_skipped, force, fmt)
