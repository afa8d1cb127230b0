"""`acards preregister`: sign a card's analysis plan before its evidence exists, and log it."""

from __future__ import annotations

import os
from pathlib import Path

import click

from acards.cli.keys import load_signing_key
from acards.cli.main import FORMAT, handled, main


@main.command()
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Your private key: it signs the plan (the registry must trust it as a card signer).")
@click.option("--registry", "directory", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The registry that logs the plan, and so when it was made.")
@click.option("--registry-key", "registry_key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The registry's private key.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to keep a copy of the signed plan (default: CARD's name + .plan.envelope.json).")
@click.option("--private-subjects", is_flag=True,
              help="Publish each split's subjects as a digest and a count only, not by name.")
@click.option("--write", "write_card", is_flag=True,
              help="Name the pre-registration in CARD in place (its comments and layout kept) instead of printing the lines.")
@FORMAT
@handled
def preregister(card: Path, key_path: Path, directory: Path, registry_key_path: Path, out: Path | None,
                private_subjects: bool, write_card: bool, fmt: str) -> None:
    """Pre-register CARD: sign its analysis plan (claims, diagnostics, thresholds, cells, seeds,
    scorers, splits and prompts) and log it in a registry, before any evidence exists.

    Name the printed digest in the card as `preregistration: {entry: DIGEST}` (or pass --write);
    `acards verify --registry R` then lists every deviation from the plan (docs/preregistering.md).
    """
    from acards.attest.dsse import PAYLOAD_TYPE, sign_envelope
    from acards.canonical import canonical_bytes
    from acards.card.edit import set_preregistration
    from acards.card.yaml import read_text
    from acards.files import check_writable, write_output
    from acards.pipeline.preregistration import default_plan_path, plan_card, plan_payload
    from acards.present.text import dumps
    from acards.registry.preregistrations import preregister as log_plan

    out = out or default_plan_path(card)
    check_writable(out)  # before logging: a folder that cannot take the copy fails now
    try:
        local = Path(os.path.relpath(out.resolve(), card.resolve().parent)).as_posix()
    except ValueError:  # another drive
        local = None
    local = None if local is None or local.startswith("../") else local
    if write_card:  # before logging: a card that cannot be edited safely fails now (a trial edit)
        check_writable(card)
        text = read_text(card)[1]
        set_preregistration(text, str(card), _fields("0" * 64, local))
    loaded = plan_card(card)
    payload = plan_payload(loaded, private_subjects)
    # Ed25519 signs deterministically: running the command again after a crash sends the same bytes,
    # and the registry finishes the interrupted entry instead of refusing it.
    envelope = canonical_bytes(sign_envelope(PAYLOAD_TYPE, payload, load_signing_key(key_path)))
    entry = log_plan(directory, envelope, load_signing_key(registry_key_path))
    write_output(out, envelope)  # the exact bytes the registry stored
    if write_card:
        write_output(card, set_preregistration(read_text(card)[1], str(card), _fields(entry["digest"], local)).encode("utf-8"))
    if fmt == "json":
        click.echo(dumps({"ok": True, "entry": entry, "envelope": str(out), "card_written": write_card}))
        return
    lines = "preregistration:\n" + "\n".join(f"  {key}: {value}" for key, value in _fields(entry["digest"], local).items())
    click.echo(f"pre-registered {entry['card_id']} at {entry['time']}\ndigest {entry['digest']}\n"
               f"log index {entry['index']}\nsigned plan: {out}\n\n"
               + (f"named it in {card.name}:\n" if write_card else f"add to {card.name}:\n") + lines)


def _fields(digest: str, local: str | None) -> dict[str, str]:
    """The card's ``preregistration`` fields: the entry, and the plan's copy when it is in the card's folder."""
    return {"entry": digest, **({"envelope": local} if local else {})}
