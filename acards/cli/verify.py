"""`acards verify` and `acards audit`: recompute every diagnostic and compare with what cards report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from acards.cli.main import FORMAT, handled, main, read_file, settings, trusted_keys
from acards.errors import AcardsError
from acards.vocabulary import DEFAULT_BOOTSTRAP, DEFAULT_SEED


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@FORMAT
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report to this file.")
@click.option("--bootstrap", type=click.IntRange(min=100), default=DEFAULT_BOOTSTRAP, show_default=True, help="Subject-bootstrap replicates B.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Master seed; each cell derives its own stream.")
@click.option("--no-cache", is_flag=True, help="Hash every evidence file again and parse every records file, instead of trusting the digest and records caches.")
@click.option("--envelope", type=click.Path(dir_okay=False, path_type=Path), help="A signed envelope of CARD: check its signatures first.")
@click.option("--trusted-key", "trusted", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A signer's public key (PEM) to trust; repeat for several.")
@click.option("--no-generate", is_flag=True, help="Do not regenerate missing outputs: the affected diagnostics stay insufficient.")
@click.option("--device", help="Where to regenerate: cuda, cuda:N, mps or cpu (default: the best present).")
@click.option("--spot-check", type=click.IntRange(min=0), default=20, show_default=True,
              help="Regenerate this many supplied outputs (seeded choice) and report the exact-match rate; 0 skips.")
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path),
              help="The registry the card's pre-registration was logged in: its plan and logged time are read there.")
@handled
def verify(card: Path, fmt: str, report_path: Path | None, bootstrap: int, seed: int, no_cache: bool,
           envelope: Path | None, trusted: tuple[Path, ...], no_generate: bool, device: str | None, spot_check: int,
           registry: Path | None) -> None:
    """Recompute every diagnostic of CARD from its evidence and compare with what it reports.

    Exits 0 when everything the card reports is reproduced, 1 when something is not.
    """
    from acards.evidence.digests import DigestCache
    from acards.files import check_writable, write_output
    from acards.pipeline.verify import verify as run
    from acards.present.text import report_json, verify_text

    if report_path:
        check_writable(report_path)  # a missing or read-only folder fails now, not after verifying
    envelope_bytes, keys = None, trusted_keys(trusted) if trusted else None  # --trusted-key also checks a plan's signers
    if envelope:
        if not trusted:
            raise AcardsError("usage.no-trusted-key", "--envelope needs at least one --trusted-key",
                              "pass the public key (PATH.pub) of each signer you trust")
        envelope_bytes = read_file(envelope, "envelope")
    config = settings()
    with DigestCache(None if no_cache else config.digests_path) as digests:
        report = run(card, bootstrap=bootstrap, seed=seed, use_cache=not no_cache, envelope=envelope_bytes, trusted_keys=keys,
                     generate=not no_generate, device=device or config.device, spot_check=spot_check, digests=digests,
                     cache_dir=config.cache_dir, registry=registry)
    if report_path:  # written before anything is printed: a failure is a coded error, never a lost report
        write_output(report_path, (report_json(report) + "\n").encode("utf-8"))
    # Envelope signers are shown by the key file they were trusted through: the user's own name for them.
    key_names = dict(zip(keys, (path.name for path in trusted))) if keys and len(keys) == len(trusted) else {}
    click.echo(report_json(report) if fmt == "json" else verify_text(report, key_names))
    sys.exit(0 if report.reproduced else 1)


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--claim", "claim_ids", multiple=True, metavar="ID", help="Fill only this claim's block; repeat for several (default: every claim).")
@FORMAT
@click.option("--bootstrap", type=click.IntRange(min=100), default=DEFAULT_BOOTSTRAP, show_default=True, help="Subject-bootstrap replicates B.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Master seed; each cell derives its own stream.")
@click.option("--no-cache", is_flag=True, help="Hash and parse every evidence file again instead of trusting the caches.")
@click.option("--no-generate", is_flag=True, help="Do not regenerate missing outputs: the affected diagnostics stay insufficient.")
@click.option("--device", help="Where to regenerate: cuda, cuda:N, mps or cpu (default: the best present).")
@handled
def fill(card: Path, claim_ids: tuple[str, ...], fmt: str, bootstrap: int, seed: int, no_cache: bool, no_generate: bool,
         device: str | None) -> None:
    """Recompute CARD and write the values into its claims' `reported` blocks (comments are kept).

    Each key a block has gets its recomputed value; a claim without a block gets its outcomes,
    observed class and verdict.  Run `acards verify` afterwards.
    """
    from acards.evidence.digests import DigestCache
    from acards.pipeline.fill import fill as run
    from acards.present.text import count, dumps

    config = settings()
    with DigestCache(None if no_cache else config.digests_path) as digests:
        try:
            filled = run(card, claim_ids=list(claim_ids), bootstrap=bootstrap, seed=seed, use_cache=not no_cache,
                         generate=not no_generate, device=device or config.device, digests=digests, cache_dir=config.cache_dir)
        except OSError as error:
            raise AcardsError("usage.cannot-write", f"cannot write {card}: {error.strerror or error}",
                              "check that the card's folder is writable and has free space") from None
    if fmt == "json":
        click.echo(dumps({"ok": True, "card": str(card), "claims": filled.claims,
                          "changes": [{"pointer": p, "old": old, "new": new} for p, old, new in filled.changes]}))
        return
    for pointer, old, new in filled.changes:
        click.echo(f"  {pointer}: " + ("new block" if isinstance(new, dict) else f"{old} -> {new}"))
    click.echo(f"{card}: filled {count(len(filled.claims), 'claim')}, {count(len(filled.changes), 'value')} changed; "
               f"now run `acards verify {card}`")


@main.command()
@click.argument("cards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md", "csv"]), default="text", show_default=True)
@click.option("--bootstrap", type=click.IntRange(min=100), default=DEFAULT_BOOTSTRAP, show_default=True, help="Subject-bootstrap replicates B.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Master seed.")
@handled
def audit(cards: tuple[Path, ...], fmt: str, bootstrap: int, seed: int) -> None:
    """The audit table over every cell of CARDS: diagnostics, full-card verdicts, near misses."""
    from acards.evidence.digests import DigestCache
    from acards.pipeline.audit import audit as run
    from acards.present.text import audit_csv, audit_markdown, audit_text, report_json

    config = settings()
    with DigestCache(config.digests_path) as digests:
        result = run(list(cards), bootstrap=bootstrap, seed=seed, device=config.device, digests=digests,
                     cache_dir=config.cache_dir)
    render = {"text": audit_text, "md": audit_markdown, "csv": audit_csv, "json": report_json}[fmt]
    click.echo(render(result), nl=fmt != "csv")
