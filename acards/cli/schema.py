"""`acards schema path` and `acards schema show`: the packaged JSON Schemas, offline (docs/editors.md)."""

from __future__ import annotations

import click

from acards.cli.main import handled, main

_NAME = click.argument("name", default="card")


@main.group()
def schema() -> None:
    """The JSON Schemas acards checks documents against (card, report, mapping, record, prompt, training)."""


@schema.command("path")
@_NAME
@click.option("--uri", is_flag=True, help="Print a file:// URI instead of a path.")
@handled
def path_command(name: str, uri: bool) -> None:
    """Print the local path of schema NAME (default card): for editors, CI and offline validators."""
    from acards.schemas import schema_file

    found = schema_file(name)
    click.echo(found.as_uri() if uri else str(found))


@schema.command("show")
@_NAME
@handled
def show_command(name: str) -> None:
    """Print schema NAME (default card) as JSON."""
    from acards.schemas import schema_file

    click.echo(schema_file(name).read_text(encoding="utf-8"), nl=False)


@schema.command("list")
@handled
def list_command() -> None:
    """Print each schema's short name, full name and path."""
    from acards.schemas import SCHEMA_ALIASES, schema_file, schema_names

    short = {full: alias for alias, full in SCHEMA_ALIASES.items()}
    for full in schema_names():
        click.echo(f"{short.get(full, '-'):<9} {full:<13} {schema_file(full)}")
