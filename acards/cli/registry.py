"""`acards publish` and `acards registry ...`: the append-only registry and its static site."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from acards.cli.keys import load_signing_key, with_key_passphrase
from acards.cli.main import FORMAT, handled, main, read_file


@main.group("registry")
def registry_group() -> None:
    """A card registry: signed cards, an append-only log, checkpoints, a static site (SPEC §9)."""


@registry_group.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--origin", required=True, help="The registry's name: where it is served, e.g. example.org/acards.")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The registry's private key (from `acards key new`); it signs the checkpoints.")
@handled
def registry_init_command(directory: Path, origin: str, key_path: Path) -> None:
    """Create an empty registry in DIRECTORY."""
    from acards.registry.store import init_registry

    config = with_key_passphrase(key_path, lambda passphrase: init_registry(directory, origin, key_path, passphrase))
    click.echo(f"created registry {directory} (origin {config['origin']}, registry key {config['registry_keyid']})")


@registry_group.command("trust")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", help="The signer's display name, shown in place of the keyid (1–80 characters).")
@click.option("--contact", default="", help="How to reach the signer, shown as text (at most 200 characters); with --name.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The registry's private key: it signs the name (needed with --name).")
@handled
def registry_trust_command(directory: Path, public_key: Path, name: str | None, contact: str, key_path: Path | None) -> None:
    """Trust an author's PUBLIC_KEY (PEM, e.g. author.key.pub) to sign cards published to DIRECTORY.

    With --name (and --contact), the registry key signs a display name for it (again to rename)."""
    from acards.errors import AcardsError
    from acards.registry.store import add_trusted_key
    from acards.registry.trust import check_signer_text, name_signer

    if name is None and (contact or key_path):
        raise AcardsError("usage.conflict", "--contact and --key go with --name", "give the signer's --name too")
    if name is not None:
        check_signer_text(name, contact)  # refused before the key is trusted
        if key_path is None:
            raise AcardsError("registry.name-needs-key", "--name needs the registry's private key (--key)",
                              "the registry key signs signer names, so that nobody can rename a signer silently")
        registry_key = load_signing_key(key_path)
    key_id = add_trusted_key(directory, public_key)
    click.echo(f"trusted {key_id} in {directory}")
    if name is not None:
        signer = name_signer(directory, key_id, name, contact, registry_key)
        click.echo(f"named {key_id[:16]}… {signer.name!r}" + (f" ({signer.contact})" if signer.contact else ""))


@registry_group.command("migrate-keys")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@handled
def registry_migrate_keys_command(directory: Path) -> None:
    """Move the registry key of a registry made before registry.pub out of the card signers' keys/."""
    from acards.registry.trust import migrate_keys

    moved = migrate_keys(directory)
    click.echo(f"{directory}: the registry key is in registry.pub" + ("" if moved else " already"))


@main.command("publish")
@click.argument("envelope", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--registry", "directory", required=True, type=click.Path(file_okay=False, path_type=Path), help="The registry folder.")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The registry's private key.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With an attestation (from `acards attest`): the report it names; required for assurance reproduced.")
@FORMAT
@handled
def publish_command(envelope: Path, directory: Path, key_path: Path, report_path: Path | None, fmt: str) -> None:
    """Publish a signed card (ENVELOPE, from `acards sign`) to a registry, with its rendered pages; or a
    reviewer's attestation of a card published there (from `acards attest`, with --report)."""
    from acards.attest.reproduction import is_attestation
    from acards.present.text import dumps
    from acards.registry.store import publish
    from acards.site.renderer import envelope_signers, renderer

    data = read_file(envelope, "envelope")
    registry_key = load_signing_key(key_path)
    if is_attestation(data):
        from acards.registry.attestations import publish_attestation

        entry = publish_attestation(directory, data, registry_key, read_file(report_path, "report") if report_path else None)
        click.echo(dumps({"ok": True, "entry": entry}) if fmt == "json" else
                   f"published the {entry['assurance']} attestation of {entry['card_id']} version {entry['version']} by "
                   f"{entry['reviewer'][:16]}…\ndigest {entry['digest']}\nlog index {entry['index']}")
        return
    if report_path is not None:
        from acards.errors import AcardsError

        raise AcardsError("usage.conflict", "--report goes with an attestation; a signed card carries its report",
                          "leave out --report when publishing a card")
    entry = publish(directory, data, registry_key, render=renderer(envelope_signers(directory, data)))
    if fmt == "json":
        click.echo(dumps({"ok": True, "entry": entry}))
        return
    previous = f", superseding {entry['supersedes']}" if entry["supersedes"] else ""
    click.echo(f"published {entry['card_id']} version {entry['version']}{previous}\n"
               f"digest {entry['digest']}\nlog index {entry['index']}")


@main.command("submit")
@click.argument("envelope", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--out", "out", required=True, type=click.Path(path_type=Path), help="The bundle folder to write (must not exist).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A verification report (`acards verify --report`) to carry along.")
@click.option("--attestation", "attestation_paths", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="An attestation of this card (`acards attest`) to publish with it; repeat for several.")
@click.option("--render", is_flag=True, help="Include the rendered pages; the registry must render the same bytes.")
@handled
def submit_command(envelope: Path, out: Path, report_path: Path | None, attestation_paths: tuple[Path, ...], render: bool) -> None:
    """Write a submission bundle of a signed card (ENVELOPE, from `acards sign`) for a registry you do not run.

    Its maintainer checks and publishes it with `acards registry accept REGISTRY BUNDLE --key REGISTRY_KEY`."""
    from acards.registry.bundle import attestation_files, preview_statement, write_bundle
    from acards.site.renderer import render_statement

    data = read_file(envelope, "envelope")
    attestations = attestation_files(data, [(path, read_file(path, "attestation")) for path in attestation_paths])
    pages = None
    if render:
        statement, _, keyids = preview_statement(data)
        pages = render_statement(statement, keyids)
    report = read_file(report_path, "report") if report_path else None
    manifest = write_bundle(out, data, pages=pages, report=report, attestations=attestations)
    click.echo(f"wrote {out}: {manifest['card_id']} version {manifest['version']} (digest {manifest['digest']}), "
               f"{len(manifest['files'])} files\nsend it to the registry's maintainer: "
               f"`acards registry accept REGISTRY {out} --key REGISTRY_KEY`")


@registry_group.command("accept")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The registry's private key.")
@FORMAT
@handled
def registry_accept_command(directory: Path, bundle: Path, key_path: Path, fmt: str) -> None:
    """Check a submission BUNDLE (from `acards submit`) and publish its card and attestations to DIRECTORY, or refuse it whole.

    The signature must be by a key DIRECTORY trusts, every file must match the bundle's manifest,
    pages in the bundle must be exactly what the registry renders, and every attestation must verify
    (its reviewer trusted here, its report in the bundle when it is `reproduced`)."""
    from acards.present.text import dumps
    from acards.registry.bundle import accept
    from acards.site.renderer import envelope_signers, renderer

    registry_key = load_signing_key(key_path)
    entry, attested, _ = accept(directory, bundle, registry_key, lambda data: renderer(envelope_signers(directory, data)))
    if fmt == "json":
        click.echo(dumps({"ok": True, "entry": entry, "attestations": attested}))
        return
    previous = f", superseding {entry['supersedes']}" if entry["supersedes"] else ""
    click.echo(f"accepted {bundle}: published {entry['card_id']} version {entry['version']}{previous}\n"
               f"digest {entry['digest']}\nlog index {entry['index']}")
    for logged in attested:
        click.echo(f"published attestation {logged['digest']} ({logged['assurance']}, by {logged['reviewer'][:16]}…), "
                   f"log index {logged['index']}")


@registry_group.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint file you saved earlier (e.g. site/checkpoint.json): the log must extend it.")
@click.option("--no-render", is_flag=True, help="Do not re-render the cards (stored pages are still checked against the log).")
@click.option("--witnesses", type=click.IntRange(min=0), default=0, show_default=True,
              help="Require this many independent witness co-signatures (distinct trusted keys) on the newest checkpoint.")
@FORMAT
@handled
def registry_verify_command(directory: Path, checkpoint_path: Path | None, no_render: bool, witnesses: int, fmt: str) -> None:
    """Verify a registry offline: log, checkpoints, signatures, rules, and every rendered page byte for byte.

    Exits 0 when there is no problem (warnings are what an interrupted publish leaves), 3 otherwise.
    """
    from acards.present.text import count, dumps, problems_text
    from acards.registry.audit import verify_registry
    from acards.site.renderer import registry_renderer

    saved = read_file(checkpoint_path, "checkpoint") if checkpoint_path else None
    result = verify_registry(directory, saved, None if no_render else registry_renderer(directory))
    from acards.registry.witness import count_witnesses

    witnessed = count_witnesses(directory, witnesses)  # always counted (shown); --witnesses N makes fewer a problem
    result.problems += witnessed.problems
    result.warnings += witnessed.warnings
    revoked = [{"digest": e["digest"], "card_id": e["card_id"], "version": e["version"], "reason": e["reason"],
                "index": e["index"]} for e in result.entries if e["kind"] == "revoke"]
    code = 0 if result.ok else 3
    if fmt == "json":
        click.echo(dumps({**result.to_dict(), "exit_code": code, "empty": result.size == 0, "revoked_cards": revoked,
                          "witnessed": witnessed.to_dict()}))
        sys.exit(code)
    click.echo(f"registry {directory} (origin {result.origin}): {result.size} log entr{'y' if result.size == 1 else 'ies'}, root {result.root}")
    for item in revoked:
        click.echo(f"revoked: {item['card_id']} version {item['version']} ({item['digest']}): {item['reason']}")
    if witnessed.witnesses or witnesses:
        click.echo(f"witnesses of checkpoint {witnessed.size}: {len(witnessed.witnesses)} ({witnesses} required)")
    if result.warnings:
        click.echo("warnings:\n" + problems_text(result.warnings))
    if result.ok:
        empty = "; empty registry: no card published yet" if result.size == 0 else ""
        click.echo(f"OK: the registry verifies ({count(len(result.warnings), 'warning')}){empty}")
    else:
        click.echo(problems_text(result.problems), err=True)
        click.echo(count(len(result.problems), "problem"), err=True)
    sys.exit(code)


@registry_group.command("prove")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--inclusion", "digest", metavar="DIGEST",
              help="Prove that the publish entry of the card DIGEST is in the log of the newest checkpoint.")
@click.option("--consistency", "old_size", type=int, metavar="N",
              help="Prove that the log of size N (a checkpoint you hold) is a prefix of the newest checkpoint's.")
@click.option("--verify-with", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              help="With --consistency: a checkpoint file you saved (of size N); the proof must start from it.")
@handled
def registry_prove_command(directory: Path, digest: str | None, old_size: int | None, checkpoint_path: Path | None) -> None:
    """Print a Merkle proof against the newest signed checkpoint of DIRECTORY, as JSON (SPEC §9).

    A reader who holds only the registry's public key checks it: acards.registry.proofs'
    verify_inclusion_proof and verify_consistency_proof.
    """
    from acards.errors import AcardsError
    from acards.present.text import dumps
    from acards.registry import proofs, reader

    if (digest is None) == (old_size is None):
        raise AcardsError("registry.bad-proof-request", "give exactly one of --inclusion DIGEST and --consistency N",
                          "--inclusion proves a card is logged; --consistency proves the log only grew")
    if checkpoint_path is not None and old_size is None:
        raise AcardsError("registry.bad-proof-request", "--verify-with goes with --consistency N",
                          "give the size of the checkpoint you saved as N")
    if digest is not None:
        click.echo(dumps(proofs.inclusion(directory, digest)))
        return
    proof = proofs.consistency(directory, old_size)
    if checkpoint_path is not None:
        new = proofs.verify_consistency_proof(proof, reader.registry_key(directory), read_file(checkpoint_path, "checkpoint"))
        click.echo(f"verified: the log of your checkpoint (size {old_size}) is a prefix of the signed log of size "
                   f"{new.size}", err=True)
    click.echo(dumps(proof))


@registry_group.command("revoke")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("digest")
@click.option("--reason", required=True, help="Why the card is withdrawn (shown with it).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The registry's private key.")
@handled
def registry_revoke_command(directory: Path, digest: str, reason: str, key_path: Path) -> None:
    """Revoke the published card DIGEST: append a revocation entry to the log."""
    from acards.registry.store import revoke

    entry = revoke(directory, digest, reason, load_signing_key(key_path))
    click.echo(f"revoked {entry['card_id']} version {entry['version']} ({entry['digest']})\nlog index {entry['index']}")


@registry_group.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@handled
def registry_build_command(directory: Path) -> None:
    """Verify DIRECTORY and write its static site to DIRECTORY/site (works from file:// and any static host)."""
    from acards.present.text import count
    from acards.site.build import build_site

    summary = build_site(directory)
    if summary["entries"] == 0:
        click.echo(f"empty registry {directory}: no card published yet; the site says so")
    click.echo(f"built {summary['site']}: {count(summary['cards'], 'card')}, {count(summary['versions'], 'version')}, "
               f"log of {summary['entries']} entr{'y' if summary['entries'] == 1 else 'ies'}; open {Path(summary['site']) / 'index.html'}")


@registry_group.command("serve")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@handled
def registry_serve_command(directory: Path, port: int) -> None:
    """Serve DIRECTORY/site read-only over HTTP on 127.0.0.1 (loopback only); Ctrl-C stops it."""
    from acards.site.serve import make_server

    server = make_server(directory, port)
    host, bound = server.server_address[:2]
    click.echo(f"serving {directory / 'site'} at http://{host}:{bound}/ (read-only, loopback only; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    click.echo("stopped")
