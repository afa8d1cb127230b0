"""`acards export csv`: a verification report's per-cell estimates as a table for spreadsheets and scripts."""

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
