"""`acards migrate`: rewrite a standard 1.0 card for 1.1 (comments kept) and say which verdicts change."""

from __future__ import annotations

import os
from pathlib import Path

import click

from acards.cli.main import FORMAT, handled, main, settings
from acards.errors import AcardsError
from acards.vocabulary import DEFAULT_BOOTSTRAP, DEFAULT_SEED


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@FORMAT
@click.option("--check", "dry_run", is_flag=True, help="Print what changes; write nothing.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the migrated card here instead of over CARD (it must not exist, unless --force).")
@click.option("--force", is_flag=True, help="Let -o overwrite an existing file.")
@click.option("--no-generate", is_flag=True, help="Do not regenerate missing outputs: the affected diagnostics stay insufficient.")
@click.option("--device", help="Where to regenerate: cuda, cuda:N, mps or cpu (default: the best present).")
@click.option("--bootstrap", type=click.IntRange(min=100), default=DEFAULT_BOOTSTRAP, show_default=True, help="Subject-bootstrap replicates B.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Master seed, as for verify.")
@click.option("--no-cache", is_flag=True, help="Hash and parse every evidence file again instead of trusting the caches.")
@handled
def migrate(card: Path, fmt: str, dry_run: bool, output: Path | None, force: bool, no_generate: bool, device: str | None,
            bootstrap: int, seed: int, no_cache: bool) -> None:
    """Rewrite CARD, written for standard 1.0, for standard 1.1, and say which verdicts change.

    Only the `acard:` line changes; comments, key order and layout stay. Both versions are verified
    from the same evidence (as `acards verify` does) and every claim verdict, outcome and cell result
    that differs is printed with the reasons. CARD is replaced atomically.
    """
    from acards.evidence.digests import DigestCache
    from acards.files import check_writable, write_output
    from acards.pipeline.migrate import migrate as run
    from acards.present.text import migrate_json, migrate_text

    if dry_run and output is not None:
        raise AcardsError("usage.conflict", "--check writes nothing, so it cannot be combined with -o",
                          "drop -o to see the changes, or drop --check to write them")
    target = None if dry_run else (output or card)
    if output is not None and output.exists() and not force:
        raise AcardsError("usage.exists", f"{output} already exists", "choose another path, or pass --force to overwrite it")
    if target is not None and (output is not None or card.is_file()):
        check_writable(target)  # a missing or read-only folder fails now, not after verifying twice
    config = settings()
    with DigestCache(None if no_cache else config.digests_path) as digests:
        migration = run(card, bootstrap=bootstrap, seed=seed, use_cache=not no_cache, generate=not no_generate,
                        device=device or config.device, digests=digests, cache_dir=config.cache_dir)
    if target is not None:
        # in place, the card keeps its permissions; the write replaces the file whole or not at all
        mode = os.stat(card).st_mode & 0o777 if target == card else 0o644
        write_output(target, migration.data, mode)
    click.echo((migrate_json if fmt == "json" else migrate_text)(migration, card, target))
