"""`acards attest` and `acards registry witness`: what reviewers and witnesses sign (docs/reviewing.md)."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.keys import load_signing_key
from acards.cli.main import FORMAT, handled, main, read_file, trusted_keys
from acards.cli.registry import registry_group
from acards.errors import AcardsError, Location

ATTESTATION_SUFFIX = ".attestation.intoto.jsonl"


def default_attestation_path(envelope: Path) -> Path:
    """``card.envelope.json`` → ``card.attestation.intoto.jsonl`` beside it."""
    stem = envelope.name.removesuffix(".json").removesuffix(".envelope")
    return envelope.with_name(stem + ATTESTATION_SUFFIX)


@main.command("attest")
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--report", "report_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The report you recomputed: `acards verify CARD --envelope CARD.envelope.json --report R.json`.")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Your (the reviewer's) private key.")
@click.option("--trusted-key", "trusted", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The public key of a card signer (repeatable): the card's signatures are checked first.")
@click.option("--assurance", type=click.Choice(["self", "third-party", "reproduced"]),
              help="Ask for a lower level than the one earned (reproduced → third-party); never a higher one.")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              help=f"The attestation file (default: the envelope's name with {ATTESTATION_SUFFIX}).")
@FORMAT
@handled
def attest_command(card: Path, report_path: Path, key_path: Path, trusted: tuple[Path, ...], assurance: str | None,
                   out: Path | None, fmt: str) -> None:
    """Attest what you found when you recomputed a signed CARD: its envelope (CARD.envelope.json), or
    card.yaml with its envelope beside it. Writes an in-toto bundle of two signed statements: acards'
    reproduction predicate and the draft in-toto eval-result one."""
    from datetime import datetime, timezone

    from acards.attest.card_statement import default_envelope_path, open_card_envelope
    from acards.attest.keys import keyid
    from acards.attest.reproduction import assurance_level, report_mismatch, reproduction_predicate, sign_attestation
    from acards.canonical import parse_strict_json
    from acards.files import check_writable, write_output
    from acards.present.text import dumps
    from acards.report.consistency import inconsistencies
    from acards.report.stored import check_report

    envelope_path = default_envelope_path(card) if card.suffix in (".yaml", ".yml") else card
    out = out or default_attestation_path(envelope_path)
    check_writable(out)
    private_key = load_signing_key(key_path)
    reviewer = keyid(private_key.public_key())
    keys = {**trusted_keys(trusted), reviewer: private_key.public_key()}
    statement, card_digest, signers = open_card_envelope(read_file(envelope_path, "envelope"), keys)
    data = parse_strict_json(read_file(report_path, "report"), str(report_path))
    report = check_report(data, file=str(report_path))
    mismatch = report_mismatch(data, card_digest, statement)
    if mismatch:
        raise AcardsError("usage.report-mismatch", f"{report_path}: {mismatch}",
                          "recompute the report of this signed card: `acards verify CARD --envelope ENVELOPE --report R.json`",
                          Location(str(report_path)))
    # A report that says it reproduces must hold together with itself and the card (as for `acards
    # sign`); one that does not reproduce is a finding, its discrepancies are the point.
    found = inconsistencies(statement["predicate"]["card"].get("claims", []), report) if report.reproduced else []
    if found:
        raise AcardsError("usage.report-inconsistent", "the report does not hold together with itself and the card: "
                          + "; ".join(found[:5]), "attest the report `acards verify` wrote, unedited", Location(str(report_path)))
    from acards.generate.backends.base import installed_version  # package metadata only: torch stays out

    level = assurance_level(reviewer, list(signers), report.reproduced, assurance)
    predicate = reproduction_predicate(
        card_digest=card_digest, card_statement=statement, card_signers=list(signers), report=data, reviewer=reviewer,
        level=level, time=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), installed=installed_version)
    write_output(out, sign_attestation(predicate, private_key))
    if fmt == "json":
        click.echo(dumps({"ok": True, "out": str(out), "card": card_digest, "assurance": level,
                          "reproduced": report.reproduced, "reviewer": reviewer}))
        return
    outcome = "reproduced" if report.reproduced else f"NOT reproduced ({len(predicate['discrepancies'])} discrepancies)"
    click.echo(f"attested {predicate['card']['id']} version {predicate['card']['version']} ({card_digest[:16]}…): {outcome}; "
               f"assurance {level}, by {reviewer[:16]}…\nwrote {out}")


@registry_group.command("witness")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Your witness key (trusted in the registry; not the registry key).")
@click.option("--state", "state_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Your witness state file: the last checkpoint you co-signed per registry (default: in your config folder).")
@FORMAT
@handled
def registry_witness_command(directory: Path, key_path: Path, state_path: Path | None, fmt: str) -> None:
    """Co-sign the newest checkpoint of DIRECTORY, after checking it extends the last one you co-signed.

    A registry that shows you a log that does not extend it (a fork) is refused (witness.fork, exit 3).
    """
    from acards.present.text import dumps
    from acards.registry.witness import cosign, default_state_path

    done = cosign(directory, load_signing_key(key_path), state_path or default_state_path())
    if fmt == "json":
        click.echo(dumps({"ok": True, **done}))
        return
    since = "first co-signature of this registry" if done["previous"] is None else f"extends size {done['previous']}"
    click.echo(f"witnessed {done['origin']} at size {done['size']} (root {done['root'][:16]}…; {since}) "
               f"as {done['witness'][:16]}…")
