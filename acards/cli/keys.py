"""`acards key new` and `acards sign`: Ed25519 keys and signed card envelopes."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import handled, main, read_file, read_passphrase, settings, trusted_keys
from acards.errors import AcardsError, Location, codes


@main.group()
def key() -> None:
    """Signing keys (Ed25519)."""


@key.command("new")
@click.option("--out", "path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key file; the public key goes to OUT.pub.")
@click.option("--no-passphrase", is_flag=True, help="Write an unencrypted throwaway key (tests, demos).")
@handled
def key_new(path: Path, no_passphrase: bool) -> None:
    """Create an Ed25519 key: passphrase-sealed with scrypt (mode 0600) and OUT.pub."""
    from acards.attest.keys import new_key

    passphrase = None if no_passphrase else read_passphrase(confirm=True)
    if passphrase is None and not no_passphrase:
        raise AcardsError(codes.KEY_NO_PASSPHRASE, "no passphrase for the new key",
                          "set ACARDS_KEY_PASSPHRASE, run on a terminal to be asked, or pass --no-passphrase for a throwaway key")
    click.echo(f"keyid {new_key(path, passphrase)}\nwrote {path} and {path}.pub")


@key.command("reencrypt")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@handled
def key_reencrypt(path: Path) -> None:
    """Rewrite an encrypted key (e.g. PKCS#8 from an earlier acards) sealed with scrypt, same passphrase."""
    from acards.attest.keys import reencrypt_key

    passphrase = read_passphrase(path)
    if passphrase is None:
        raise AcardsError(codes.KEY_NO_PASSPHRASE, f"no passphrase for {path}",
                          "set ACARDS_KEY_PASSPHRASE or run on a terminal to be asked")
    done = reencrypt_key(path, passphrase)
    click.echo(f"{'re-encrypted' if done else 'already sealed with scrypt at the default cost:'} {path}")


def load_signing_key(path: Path):
    """The private key at PATH, asking for a passphrase only if it is encrypted."""
    from acards.attest.keys import load_private_key

    passphrase = read_passphrase(path)
    try:
        return load_private_key(path, passphrase)
    except AcardsError as error:
        if passphrase is None and error.code == codes.KEY_BAD_PASSPHRASE:
            raise AcardsError(codes.KEY_NO_PASSPHRASE, f"{path} is encrypted and no passphrase was given",
                              "set ACARDS_KEY_PASSPHRASE or run on a terminal to be asked") from None
        raise


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Your private key.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The author-run report (from `acards verify --report`); run now when omitted.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Envelope file (default: CARD's name + .envelope.json).")
@click.option("--co-sign", is_flag=True, help="Add your signature to the existing envelope at --out.")
@click.option("--trusted-key", "trusted_key_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="With --co-sign: the public key of a signer already on the envelope (repeatable); every existing "
                   "signature must verify before you add yours.")
@handled
def sign(card: Path, key_path: Path, report_path: Path | None, out: Path | None, co_sign: bool,
         trusted_key_paths: tuple[Path, ...]) -> None:
    """Sign CARD: a DSSE envelope over an in-toto Statement of the card, its evidence and report."""
    import json

    from acards.attest.card_statement import (
        check_card_against_statement,
        default_envelope_path,
        payload_bytes,
    )
    from acards.attest.dsse import PAYLOAD_TYPE, add_signature, sign_envelope, verify_envelope
    from acards.attest.in_toto import open_statement
    from acards.attest.keys import keyid
    from acards.canonical import canonical_bytes, parse_strict_json
    from acards.card.model import load_card
    from acards.files import check_writable, write_output
    from acards.report.model import as_builtins

    private_key = load_signing_key(key_path)
    loaded = load_card(card)
    out = out or default_envelope_path(card)
    check_writable(out)
    if co_sign:
        existing = parse_strict_json(read_file(out, "envelope"), str(out))
        # Every signature already there must verify before anything in the payload is read.
        envelope = add_signature(existing, private_key, trusted_keys(trusted_key_paths))
        verified = verify_envelope(canonical_bytes(envelope), {keyid(private_key.public_key()): private_key.public_key()})
        check_card_against_statement(loaded, open_statement(verified.payload_type, verified.payload))
    else:
        if report_path:
            from acards.report.stored import check_report

            report = check_report(parse_strict_json(read_file(report_path, "report"), str(report_path)), file=str(report_path))
        else:
            from acards.evidence.digests import DigestCache
            from acards.pipeline.verify import verify as run

            config = settings()
            with DigestCache(config.digests_path) as digests:
                report = run(card, device=config.device, digests=digests, cache_dir=config.cache_dir)
        if not report.reproduced:
            raise AcardsError("reproduce.not-reproduced", "the card's reported results are not reproduced by its evidence",
                              "run `acards verify` and fix the card before signing it")
        if report.card.sha256 != loaded.sha256:
            raise AcardsError("usage.report-mismatch", f"{report_path} is the report of another card (or an older version of it)",
                              "run `acards verify CARD --report FILE` again")
        from acards.report.consistency import inconsistencies

        found = inconsistencies(loaded.claims, report)
        if found:
            raise AcardsError("usage.report-inconsistent", "the report does not hold together with itself and the card: "
                              + "; ".join(found[:5]), "sign the report `acards verify CARD --report REPORT.json` wrote, "
                              "unedited", Location(str(report_path or card)))
        envelope = sign_envelope(PAYLOAD_TYPE, payload_bytes(loaded, as_builtins(report)), private_key)
    write_output(out, json.dumps(envelope, indent=2).encode("utf-8") + b"\n")
    signer = keyid(private_key.public_key())
    click.echo(f"{'co-signed' if co_sign else 'signed'} {card} as {signer[:16]}…: {out}")


def with_key_passphrase(path: Path, action):
    """Run action(passphrase) with the passphrase of the private key at PATH (ACARDS_KEY_PASSPHRASE or a
    prompt), turning a missing passphrase for an encrypted key into key.no-passphrase."""
    passphrase = read_passphrase(path)
    try:
        return action(passphrase)
    except AcardsError as error:
        if passphrase is None and error.code == codes.KEY_BAD_PASSPHRASE:
            raise AcardsError(codes.KEY_NO_PASSPHRASE, f"{path} is encrypted and no passphrase was given",
                              "set ACARDS_KEY_PASSPHRASE or run on a terminal to be asked") from None
        raise
