"""`acards init`, `validate`, `check` and `hash`: writing a card and checking it and its evidence digests."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import FORMAT, handled, main, settings
from acards.errors import AcardsError


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--mapping", is_flag=True, help="Write an `acards import` mapping file instead (default PATH mapping.yaml).")
@click.option("--schema-url", help="The schema the first line names for editors (default: the local schema file; "
              "`acards schema path`), e.g. https://acards.dev/schema/acard-1.0.schema.json.")
@handled
def init(path: Path | None, force: bool, mapping: bool, schema_url: str | None) -> None:
    """Write a commented fill-in card to PATH (default card.yaml)."""
    import re

    from acards.present.render import card_template

    if schema_url is not None and not re.fullmatch(r"[^\s#]+", schema_url):
        raise AcardsError("usage.bad-schema-url", f"--schema-url {schema_url!r} is empty or holds a space, line break or '#'",
                          "give a URL or path without whitespace (percent-encode spaces: %20)")

    path = path or Path("mapping.yaml" if mapping else "card.yaml")
    if path.exists() and not force:
        raise AcardsError("usage.exists", f"{path} already exists", "choose another path, or pass --force to overwrite it")
    from acards.files import write_output

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot create the folder of {path}: {error.strerror or error}",
                          "check that the folder can be created") from None
    if mapping:
        from acards.importers.mapping import mapping_template

        write_output(path, mapping_template(schema_url).encode("utf-8"))
        click.echo(f"wrote {path}: replace every TODO, then run `acards import SOURCE FILES... --mapping {path} --records ...`")
        return
    write_output(path, card_template(schema_url).encode("utf-8"))
    click.echo(f"wrote {path}: replace every TODO, then run `acards validate {path}`")


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@FORMAT
@handled
def validate(card: Path, fmt: str) -> None:
    """Check CARD against the schema and the standard's rules (no evidence is read)."""
    from acards.card.model import load_card
    from acards.importers.reimport import pinned_import
    from acards.present.text import count, dumps

    loaded = load_card(card)
    pinned_import(loaded)  # records or prompts {from: import}: the sources are one import
    if fmt == "json":
        click.echo(dumps({"ok": True, "card": str(card), "sha256": loaded.sha256, "problems": []}))
    else:
        click.echo(f"{card}: valid ({count(len(loaded.cells), 'cell')}, {count(len(loaded.claims), 'claim')})")


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@FORMAT
@click.option("--write-digests", is_flag=True, help="Write each evidence pointer's current sha256 into CARD (comments are kept).")
@click.option("--no-cache", is_flag=True, help="Hash every file again instead of trusting the digest cache.")
@handled
def check(card: Path, fmt: str, write_digests: bool, no_cache: bool) -> None:
    """Validate CARD and recompute the digest of every evidence file it points at (and check the
    mapping of records imported from the sources)."""
    from acards.card.model import load_card
    from acards.evidence.digests import DigestCache, check_pointers
    from acards.importers.reimport import check_import, pinned_import
    from acards.present.text import count, dumps, pointer_table

    with DigestCache(None if no_cache else settings().digests_path) as cache:
        if write_digests:
            from acards.card.edit import write_digests as write

            try:
                changed = write(card, cache)
            except OSError as error:
                raise AcardsError("usage.cannot-write", f"cannot write {card}: {error.strerror or error}",
                                  "check that the card's folder is writable and has free space") from None
            if fmt == "text":
                click.echo(f"{card}: updated {count(changed, 'digest')}")
        loaded = load_card(card)
        pinned_import(loaded)
        results, problems = check_pointers(loaded.folder, loaded.pointers(), cache)
    if problems:
        raise AcardsError.collect(problems)
    check_import(loaded)  # the pins hold: the mapping resolves for the pinned sources, none of which is parsed
    if fmt == "json":
        click.echo(dumps({"ok": True, "card": str(card), "evidence": [r.as_json() for r in results], "problems": []}))
    else:
        click.echo(pointer_table(results))
        click.echo(f"{card}: valid; every evidence digest matches ({count(len(results), 'pointer')})")


@main.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--manifest", is_flag=True, help="Print a folder's manifest (the JSON its digest is taken over).")
@handled
def hash_command(paths: tuple[Path, ...], manifest: bool) -> None:
    """Print the sha256 a card pointer needs for each file or folder (like sha256sum)."""
    from acards.evidence.digests import (
        DigestCache,
        digest_top_level,
        folder_manifest,
        manifest_bytes,
    )

    with DigestCache(settings().digests_path) as cache:
        for path in paths:
            if manifest and path.is_dir():
                click.echo(manifest_bytes(folder_manifest(path, cache, str(path))).decode("utf-8"))
            else:
                click.echo(f"{digest_top_level(path, cache)}  {path}")
