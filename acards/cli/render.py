"""`acards render`: the card as a Markdown or HTML page with its forest plot."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import handled, main
from acards.errors import AcardsError, Location


@main.command("render")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--report", "report_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The JSON report `acards verify CARD --report FILE` wrote for this card.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "svg"]), default=None,
              help="md or html page, or the svg forest plot alone  [default: from -o's suffix, else html]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically) instead of to stdout.")
@handled
def render_command(card: Path, report_path: Path, fmt: str | None, output: Path | None) -> None:
    """Render CARD and its verification report as a page (docs/rendering.md)."""
    from acards.card.model import load_card
    from acards.files import write_output
    from acards.present.forest import forest_svg
    from acards.present.render import read_report, render_card

    if fmt is None:
        fmt = {".md": "md", ".svg": "svg"}.get(output.suffix.lower() if output else "", "html")
    loaded = load_card(card)
    report = read_report(report_path, loaded)
    text = forest_svg(report) if fmt == "svg" else render_card(loaded.data, report, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot create the folder of {output}: {error.strerror or error}",
                          "check that the folder can be created", Location(file=str(output))) from None
    write_output(output, text.encode("utf-8"))
    click.echo(f"wrote {output}")
