"""`acards badge`: the card's SVG badge for a paper's README (docs/badges-and-latex.md)."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import handled, main, settings
from acards.errors import AcardsError, Location


def _from_registry(registry: Path, digest: str):
    from acards.canonical import parse_strict_json
    from acards.present.badge import badge_facts
    from acards.registry import reader
    from acards.report.stored import check_report

    reader.verified(registry)  # a badge is never made from a registry that does not verify
    state = reader.status(registry, digest)["state"]
    statement = parse_strict_json(reader.statement(registry, digest))
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    data = predicate.get("report") if isinstance(predicate, dict) else None
    report = check_report(data, hint="publish cards signed by `acards sign --report`, which holds the report",
                          message="the published report does not match report-1.0: {message}")
    return badge_facts(report, reproductions=reader.reproductions(registry, digest), state=state)


def _from_card(card: Path, report_path: Path | None):
    from acards.card.model import load_card
    from acards.present.badge import badge_facts
    from acards.present.render import read_report

    if report_path is not None:
        return badge_facts(read_report(report_path, load_card(card)))
    from acards.evidence.digests import DigestCache
    from acards.pipeline.verify import verify

    config = settings()
    with DigestCache(config.digests_path) as digests:  # as `acards verify --no-generate --spot-check 0`
        report = verify(card, generate=False, spot_check=0, digests=digests, cache_dir=config.cache_dir, progress=False)
    return badge_facts(report)


@main.command("badge")
@click.argument("target")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the SVG here (atomically) instead of to stdout.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The JSON report `acards verify CARD --report FILE` wrote (default: verify CARD now, without generating).")
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path),
              help="TARGET is the digest of a card published in this registry (its state and reproductions show).")
@handled
def badge_command(target: str, output: Path | None, report_path: Path | None, registry: Path | None) -> None:
    """Write the SVG badge of TARGET: a card file, or with --registry a published card's digest.

    It says the full-card verdict under strict and permissive coding, how many attestations
    reproduce the card, and whether it was pre-registered; a revoked card says only "revoked".
    """
    from acards.files import write_output
    from acards.present.badge import badge_svg

    if registry is not None and report_path is not None:
        raise AcardsError("usage.conflict", "--report and --registry cannot be combined",
                          "a published card's report is the one it was signed with: leave --report out")
    facts = _from_registry(registry, target) if registry is not None else _from_card(Path(target), report_path)
    svg = badge_svg(facts)
    if output is None:
        click.echo(svg, nl=False)
        return
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot create the folder of {output}: {error.strerror or error}",
                          "check that the folder can be created", Location(file=str(output))) from None
    write_output(output, svg.encode("utf-8"))
    click.echo(f"wrote {output}")
