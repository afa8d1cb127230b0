"""`acards render`: the card as a Markdown or HTML page with its forest plot."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import click

from acards.cli.main import handled, main
from acards.errors import AcardsError, Location


def plot_files(page: Path, kinds) -> dict[str, Path]:
    """Where a Markdown page's plots go: beside it, named after it (card.md -> card.forest.svg,
    card.paired.svg), so pages rendered into one folder keep their own plots. The name is a plain
    file name (never a path): nothing is written outside the page's folder."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", page.stem).lstrip("._-") or "card"
    return {kind: page.with_name(f"{stem}.{kind}.svg") for kind in kinds}


def _check_replaceable(path: Path, kind: str) -> None:
    """Refuse to replace a file that is not a plot of this kind acards wrote (a re-render replaces its
    own plots; anything else there, a link included, is the user's)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot check {path}: {error.strerror or error}",
                          "check the folder's permissions", Location(file=str(path))) from None
    opening = f'<svg xmlns="http://www.w3.org/2000/svg" class="{kind}"'.encode()
    if stat.S_ISREG(info.st_mode):
        with open(path, "rb") as handle:
            if handle.read(len(opening)) == opening:
                return
    raise AcardsError("usage.exists", f"{path} exists and is not a {kind} plot acards wrote; the page's {kind} plot "
                      "goes there", "move that file, or write the page under another name (-o)", Location(file=str(path)))


@main.command("render")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--report", "report_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The JSON report `acards verify CARD --report FILE` wrote for this card.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "svg", "latex"]), default=None,
              help="md or html page, the svg forest plot alone, or latex tables for a paper appendix  "
                   "[default: from -o's suffix, else html]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically) instead of to stdout.")
@handled
def render_command(card: Path, report_path: Path, fmt: str | None, output: Path | None) -> None:
    """Render CARD and its verification report as a page (docs/rendering.md)."""
    from acards.card.model import load_card
    from acards.files import write_output
    from acards.present.forest import forest_svg
    from acards.present.paired import has_means, paired_svg
    from acards.present.render import read_report, render_card

    if fmt is None:
        fmt = {".md": "md", ".svg": "svg", ".tex": "latex"}.get(output.suffix.lower() if output else "", "html")
    loaded = load_card(card)
    report = read_report(report_path, loaded)
    # A Markdown page written to a file gets its plots as files beside it (HTML embeds them).
    plots = {"forest": forest_svg, **({"paired": paired_svg} if has_means(report) else {})}
    plot_paths = plot_files(output, plots) if fmt == "md" and output is not None else {}
    if fmt == "latex":  # docs/badges-and-latex.md
        from acards.present.latex import render_latex

        text = render_latex(loaded.data, report)
    elif fmt == "svg":
        text = forest_svg(report)
    else:
        text = render_card(loaded.data, report, fmt, **{f"{kind}_file": path.name for kind, path in plot_paths.items()})
    if output is None:
        click.echo(text, nl=False)
        return
    for kind, path in plot_paths.items():
        _check_replaceable(path, kind)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot create the folder of {output}: {error.strerror or error}",
                          "check that the folder can be created", Location(file=str(output))) from None
    for kind, path in plot_paths.items():
        write_output(path, plots[kind](report).encode("utf-8"))
    write_output(output, text.encode("utf-8"))
    click.echo("wrote " + ", ".join(str(path) for path in [output, *plot_paths.values()]))
