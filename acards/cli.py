"""The acards command line: parse arguments, call one function, print, exit.

Heavy modules are imported inside the commands so that `acards --help` stays fast and commands
that do not generate never import torch.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from . import __version__
from .errors import AcardsError, Problem

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
                      help="text for people, json for programs")


def handled(command):
    """Turn AcardsError into printed problems and SPEC §8 exit codes; hide tracebacks unless --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        fmt = kwargs.get("fmt", "text")
        try:
            return command(*args, **kwargs)
        except AcardsError as error:
            if debug:
                raise
            _fail(error.problems, fmt, error.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except Exception as error:  # noqa: BLE001 — the one place unexpected errors are caught
            if debug:
                raise
            problem = Problem("internal.error", f"{type(error).__name__}: {error}",
                              "this is a bug in acards: rerun with --debug and report the traceback")
            _fail([problem], fmt, problem.exit_code)

    return wrapper


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise AcardsError("usage.unreadable", f"cannot read {path}: {error.strerror}", "check the path") from None


def _trusted_keys(paths) -> dict:
    from .signing import keyid, load_public_key

    keys = [load_public_key(path) for path in paths]
    return {keyid(key): key for key in keys}


def _passphrase(path: Path | None = None, confirm: bool = False) -> bytes | None:
    """ACARDS_KEY_PASSPHRASE if set, else a prompt on a terminal; None when there is neither."""
    import os

    value = os.environ.get("ACARDS_KEY_PASSPHRASE")
    if value is not None:
        return value.encode("utf-8")
    if sys.stdin.isatty():
        return click.prompt(f"passphrase{f' for {path}' if path else ''}", hide_input=True,
                            confirmation_prompt=confirm, err=True).encode("utf-8")
    return None


def _fail(problems: list[Problem], fmt: str, code: int) -> None:
    from .reporter import count, dumps, problems_text

    if fmt == "json":
        click.echo(dumps({"ok": False, "exit_code": code, "problems": [p.to_dict() for p in problems]}))
    else:
        click.echo(problems_text(problems), err=True)
        click.echo(count(len(problems), "problem"), err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="acards")
@click.option("--debug", is_flag=True, help="Show Python tracebacks instead of coded errors.")
def main(debug: bool) -> None:
    """Acceptance Cards: verifiable claims that a safe fine-tuning defense works.

    Write a card with `acards init`, check it with `acards validate` and `acards check`.
    """


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="card.yaml")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@handled
def init(path: Path, force: bool) -> None:
    """Write a commented fill-in card to PATH (default card.yaml)."""
    from .render import card_template

    if path.exists() and not force:
        raise AcardsError("usage.exists", f"{path} already exists", "choose another path, or pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(card_template(), encoding="utf-8")
    click.echo(f"wrote {path}: replace every TODO, then run `acards validate {path}`")


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@FORMAT
@handled
def validate(card: Path, fmt: str) -> None:
    """Check CARD against the schema and the standard's rules (no evidence is read)."""
    from .card import load_card
    from .reporter import count, dumps

    loaded = load_card(card)
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
    """Validate CARD and recompute the digest of every evidence file it points at."""
    from .card import load_card
    from .evidence import DigestCache, check_pointers
    from .reporter import count, dumps, pointer_table

    cache = DigestCache(None if no_cache else DigestCache.default_path())
    try:
        if write_digests:
            from .card import write_digests as write

            changed = write(card, cache)
            if fmt == "text":
                click.echo(f"{card}: updated {count(changed, 'digest')}")
        loaded = load_card(card)
        results, problems = check_pointers(loaded.folder, loaded.pointers(), cache)
    finally:
        cache.close()
    if problems:
        raise AcardsError.collect(problems)
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
    from .evidence import DigestCache, digest_top_level, folder_manifest, manifest_bytes

    cache = DigestCache(DigestCache.default_path())
    try:
        for path in paths:
            if manifest and path.is_dir():
                click.echo(manifest_bytes(folder_manifest(path, cache, str(path))).decode("utf-8"))
            else:
                click.echo(f"{digest_top_level(path, cache)}  {path}")
    finally:
        cache.close()


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@FORMAT
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report to this file.")
@click.option("--bootstrap", type=click.IntRange(min=100), default=10_000, show_default=True, help="Subject-bootstrap replicates B.")
@click.option("--seed", type=click.IntRange(min=0), default=20260527, show_default=True, help="Master seed; each cell derives its own stream.")
@click.option("--no-cache", is_flag=True, help="Hash every evidence file again instead of trusting the digest cache.")
@click.option("--envelope", type=click.Path(dir_okay=False, path_type=Path), help="A signed envelope of CARD: check its signatures first.")
@click.option("--trusted-key", "trusted", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A signer's public key (PEM) to trust; repeat for several.")
@click.option("--no-generate", is_flag=True, help="Do not regenerate missing outputs: the affected diagnostics stay insufficient.")
@click.option("--device", help="Where to regenerate: cuda, cuda:N, mps or cpu (default: the best present).")
@click.option("--spot-check", type=click.IntRange(min=0), default=20, show_default=True,
              help="Regenerate this many supplied outputs (seeded choice) and report the exact-match rate; 0 skips.")
@handled
def verify(card: Path, fmt: str, report_path: Path | None, bootstrap: int, seed: int, no_cache: bool,
           envelope: Path | None, trusted: tuple[Path, ...], no_generate: bool, device: str | None, spot_check: int) -> None:
    """Recompute every diagnostic of CARD from its evidence and compare with what it reports.

    Exits 0 when everything the card reports is reproduced, 1 when something is not.
    """
    from .files import atomic_write
    from .reporter import dumps, verify_text
    from .verify import verify as run

    envelope_bytes, keys = None, None
    if envelope:
        if not trusted:
            raise AcardsError("usage.no-trusted-key", "--envelope needs at least one --trusted-key",
                              "pass the public key (PATH.pub) of each signer you trust")
        envelope_bytes, keys = _read_file(envelope), _trusted_keys(trusted)
    report = run(card, bootstrap=bootstrap, seed=seed, use_cache=not no_cache, envelope=envelope_bytes, trusted_keys=keys,
                 generate=not no_generate, device=device, spot_check=spot_check)
    if report_path:
        atomic_write(report_path, (dumps(report) + "\n").encode("utf-8"))
    click.echo(dumps(report) if fmt == "json" else verify_text(report))
    sys.exit(0 if report["reproduced"] else 1)


@main.command()
@click.argument("cards", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "md", "csv"]), default="text", show_default=True)
@click.option("--bootstrap", type=click.IntRange(min=100), default=10_000, show_default=True, help="Subject-bootstrap replicates B.")
@click.option("--seed", type=click.IntRange(min=0), default=20260527, show_default=True, help="Master seed.")
@handled
def audit(cards: tuple[Path, ...], fmt: str, bootstrap: int, seed: int) -> None:
    """The audit table over every cell of CARDS: diagnostics, full-card verdicts, near misses."""
    from .reporter import audit_csv, audit_markdown, audit_text, dumps
    from .verify import audit as run

    result = run(list(cards), bootstrap=bootstrap, seed=seed)
    render = {"text": audit_text, "md": audit_markdown, "csv": audit_csv, "json": dumps}[fmt]
    click.echo(render(result), nl=fmt != "csv")


@main.group()
def key() -> None:
    """Signing keys (Ed25519)."""


@key.command("new")
@click.option("--out", "path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key file; the public key goes to OUT.pub.")
@click.option("--no-passphrase", is_flag=True, help="Write an unencrypted throwaway key (tests, demos).")
@handled
def key_new(path: Path, no_passphrase: bool) -> None:
    """Create an Ed25519 key: passphrase-encrypted PKCS#8 (mode 0600) and OUT.pub."""
    from .signing import new_key

    passphrase = None if no_passphrase else _passphrase(confirm=True)
    if passphrase is None and not no_passphrase:
        raise AcardsError("key.no-passphrase", "no passphrase for the new key",
                          "set ACARDS_KEY_PASSPHRASE, run on a terminal to be asked, or pass --no-passphrase for a throwaway key")
    click.echo(f"keyid {new_key(path, passphrase)}\nwrote {path} and {path}.pub")


def _load_signing_key(path: Path):
    """The private key at PATH, asking for a passphrase only if it is encrypted."""
    from .signing import load_private_key

    passphrase = _passphrase(path)
    try:
        return load_private_key(path, passphrase)
    except AcardsError as error:
        if passphrase is None and error.code == "key.bad-passphrase":
            raise AcardsError("key.no-passphrase", f"{path} is encrypted and no passphrase was given",
                              "set ACARDS_KEY_PASSPHRASE or run on a terminal to be asked") from None
        raise


@main.command()
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Your private key.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="The author-run report (from `acards verify --report`); run now when omitted.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Envelope file (default: CARD's name + .envelope.json).")
@click.option("--co-sign", is_flag=True, help="Add your signature to the existing envelope at --out.")
@handled
def sign(card: Path, key_path: Path, report_path: Path | None, out: Path | None, co_sign: bool) -> None:
    """Sign CARD: a DSSE envelope over an in-toto Statement of the card, its evidence and report."""
    import json

    from .attestation import check_card_against_statement, default_envelope_path, payload_bytes
    from .canonical import parse_strict_json
    from .card import load_card
    from .files import atomic_write
    from .signing import PAYLOAD_TYPE, add_signature, keyid, open_statement, sign_envelope

    private_key = _load_signing_key(key_path)
    loaded = load_card(card)
    out = out or default_envelope_path(card)
    if co_sign:
        import base64

        envelope = parse_strict_json(_read_file(out), str(out))
        try:
            payload = base64.b64decode(envelope["payload"], validate=True)
            statement = open_statement(envelope["payloadType"], payload)
        except (KeyError, TypeError, ValueError):
            raise AcardsError("envelope.malformed", f"{out} is not a DSSE envelope", "co-sign an envelope made by `acards sign`") from None
        check_card_against_statement(loaded, statement)
        envelope = add_signature(envelope, private_key)
    else:
        if report_path:
            report = parse_strict_json(_read_file(report_path), str(report_path))
        else:
            from .verify import verify as run

            report = run(card)
        if not report.get("reproduced"):
            raise AcardsError("reproduce.not-reproduced", "the card's reported results are not reproduced by its evidence",
                              "run `acards verify` and fix the card before signing it")
        if report.get("card", {}).get("sha256") != loaded.sha256:
            raise AcardsError("usage.report-mismatch", f"{report_path} is the report of another card (or an older version of it)",
                              "run `acards verify CARD --report FILE` again")
        envelope = sign_envelope(PAYLOAD_TYPE, payload_bytes(loaded, report), private_key)
    atomic_write(out, json.dumps(envelope, indent=2).encode("utf-8") + b"\n")
    signer = keyid(private_key.public_key())
    click.echo(f"{'co-signed' if co_sign else 'signed'} {card} as {signer[:16]}…: {out}")


# --- regeneration (acards.generate) -------------------------------------------------------------

@main.command("generate")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--shard", metavar="I/N", help="Generate only shard I of N (stable hash of each record's identity), into a cache file of its own.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="ray: run --shards shards as Ray tasks (local Ray, or the cluster RAY_ADDRESS names).")
@click.option("--shards", type=int, help="Number of Ray tasks (default: the cluster's GPUs, at least 1).")
@click.option("--device", help="cuda, cuda:N, mps or cpu (default: the best present; or $ACARDS_DEVICE).")
@click.option("--backend", type=click.Choice(["transformers", "vllm"]), default="transformers", show_default=True)
@click.option("--controls/--no-controls", default=True, show_default=True, help="Also generate missing control:shrinkage records.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the regenerated records, scored, as JSONL.")
@FORMAT
@handled
def generate_command(card: Path, shard, executor, shards, device, backend, controls, out, fmt: str) -> None:
    """Regenerate CARD's missing outputs (and missing controls) into the output cache."""
    from .generate.commands import generate_card
    from .reporter import dumps

    summary = generate_card(card, shard=shard, executor=None if executor == "local" else executor, shards=shards,
                            device=device, backend=backend, controls=controls, out=out)
    if fmt == "json":
        click.echo(dumps({"ok": True, **summary}))
        return
    counts = summary["counts"]
    click.echo(f"{card}: {summary['requests']} outputs needed; {counts.get('cache_hits', 0)} from the cache, "
               f"{counts.get('generated', 0)} generated in {counts.get('model_calls', 0)} model calls"
               + (f" (shard {shard}: {counts.get('in_shard', 0)} of them)" if shard else ""))
    if summary.get("out"):
        click.echo(f"wrote {summary['written']} records to {summary['out']}")


@main.command("spot-check")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("-n", "n", type=int, default=20, show_default=True, help="How many supplied outputs to regenerate.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random choice of records.")
@click.option("--device", help="cuda, cuda:N, mps or cpu (default: the best present).")
@click.option("--backend", type=click.Choice(["transformers", "vllm"]), default="transformers", show_default=True)
@FORMAT
@handled
def spot_check_command(card: Path, n: int, seed: int, device, backend, fmt: str) -> None:
    """Regenerate a random subset of CARD's supplied outputs and report the exact-match rate."""
    from .generate.commands import spot_check_card
    from .reporter import dumps

    result = spot_check_card(card, n=n, seed=seed, device=device, backend=backend)
    if fmt == "json":
        click.echo(dumps({"ok": True, **result}))
        return
    if not result["checked"]:
        click.echo(f"{card}: {result['note']}")
        return
    click.echo(f"{card}: {result['matches']}/{result['checked']} regenerated outputs equal the supplied ones "
               f"(exact-match rate {result['exact_match_rate']:.2f}; seed {seed})")
    for item in result["mismatches"]:
        click.echo(f"  differs: {item['location']} {item['cell']} {item['condition']} {item['item']} {item['framing']}")
    if result.get("note"):
        click.echo(f"note: {result['note']}")


@main.group("cache")
def cache_group() -> None:
    """The output cache of regenerated outputs (under the user cache folder, or $ACARDS_CACHE_DIR)."""


@cache_group.command("info")
@FORMAT
@handled
def cache_info_command(fmt: str) -> None:
    """Where the output cache is, how many outputs it holds, and which shard files wait to be merged."""
    from .generate.cache import info
    from .reporter import dumps

    found = info()
    if fmt == "json":
        click.echo(dumps({"ok": True, **found}))
        return
    main_file = found["main"]
    click.echo(f"{main_file['path']}: {main_file['outputs']} outputs, {main_file['bytes']} bytes, {len(found['models'])} models")
    for shard in found["shards"]:
        click.echo(f"  shard {shard['path']}: {shard['outputs']} outputs (merge with `acards cache merge`)")
    if found["controls"]:
        click.echo(f"  {len(found['controls'])} control:shrinkage adapters")


@cache_group.command("clear")
@click.option("--keep-controls", is_flag=True, help="Keep the control:shrinkage adapters.")
@FORMAT
@handled
def cache_clear_command(keep_controls: bool, fmt: str) -> None:
    """Delete every cached output (and the control:shrinkage adapters)."""
    from .generate.cache import clear
    from .reporter import dumps

    removed = clear(include_controls=not keep_controls)
    if fmt == "json":
        click.echo(dumps({"ok": True, **removed}))
    else:
        click.echo(f"removed {len(removed['removed'])} files and folders")


@cache_group.command("merge")
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("--into", type=click.Path(dir_okay=False, path_type=Path), help="Target cache file (default: the main cache).")
@click.option("--remove", is_flag=True, help="Delete each shard file once merged.")
@FORMAT
@handled
def cache_merge_command(sources, into, remove: bool, fmt: str) -> None:
    """Merge shard cache files (default: every file under outputs/shards) into the main cache."""
    from .generate.cache import merge
    from .reporter import dumps

    merged = merge(list(sources) or None, into, remove)
    if fmt == "json":
        click.echo(dumps({"ok": True, **merged}))
    else:
        click.echo(f"merged {len(merged['sources'])} files into {merged['into']}: {merged['added']} new outputs, {merged['outputs']} in all")


@main.command("render")
@click.argument("card", type=click.Path(path_type=Path))
@click.option("--report", "report_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The JSON report `acards verify CARD --report FILE` wrote for this card.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "svg"]), default=None,
              help="md or html page, or the svg forest plot alone  [default: from -o's suffix, else html]")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here (atomically) instead of to stdout.")
@handled
def render_command(card: Path, report_path: Path, fmt: str | None, output: Path | None) -> None:
    """Render CARD and its verification report as a page (docs/rendering.md)."""
    from .card import load_card
    from .files import atomic_write
    from .render import read_report, render_card
    from .plots import forest_svg

    if fmt is None:
        fmt = {".md": "md", ".svg": "svg"}.get(output.suffix.lower() if output else "", "html")
    loaded = load_card(card)
    report = read_report(report_path, loaded)
    text = forest_svg(report) if fmt == "svg" else render_card(loaded.data, report, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, text.encode("utf-8"))
    click.echo(f"wrote {output}")


# --- the registry (acards.registry) and its static site (acards.site) -----------------------------

def _with_key_passphrase(path: Path, action):
    """Run action(passphrase) with the passphrase of the private key at PATH (ACARDS_KEY_PASSPHRASE or a
    prompt), turning a missing passphrase for an encrypted key into key.no-passphrase."""
    passphrase = _passphrase(path)
    try:
        return action(passphrase)
    except AcardsError as error:
        if passphrase is None and error.code == "key.bad-passphrase":
            raise AcardsError("key.no-passphrase", f"{path} is encrypted and no passphrase was given",
                              "set ACARDS_KEY_PASSPHRASE or run on a terminal to be asked") from None
        raise


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
    from .registry import init_registry

    config = _with_key_passphrase(key_path, lambda passphrase: init_registry(directory, origin, key_path, passphrase))
    click.echo(f"created registry {directory} (origin {config['origin']}, registry key {config['registry_keyid']})")


@registry_group.command("trust")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path))
@handled
def registry_trust_command(directory: Path, public_key: Path) -> None:
    """Trust an author's PUBLIC_KEY (PEM, e.g. author.key.pub) to sign cards published to DIRECTORY."""
    from .registry import add_trusted_key

    click.echo(f"trusted {add_trusted_key(directory, public_key)} in {directory}")


@main.command("publish")
@click.argument("envelope", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--registry", "directory", required=True, type=click.Path(file_okay=False, path_type=Path), help="The registry folder.")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The registry's private key.")
@FORMAT
@handled
def publish_command(envelope: Path, directory: Path, key_path: Path, fmt: str) -> None:
    """Publish a signed card (ENVELOPE, from `acards sign`) to a registry, with its rendered pages."""
    from .registry import publish
    from .reporter import dumps
    from .site import envelope_signers, renderer

    data = _read_file(envelope)
    registry_key = _load_signing_key(key_path)
    entry = publish(directory, data, registry_key, render=renderer(envelope_signers(directory, data)))
    if fmt == "json":
        click.echo(dumps({"ok": True, "entry": entry}))
        return
    previous = f", superseding {entry['supersedes']}" if entry["supersedes"] else ""
    click.echo(f"published {entry['card_id']} version {entry['version']}{previous}\n"
               f"digest {entry['digest']}\nlog index {entry['index']}")


@registry_group.command("verify")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A checkpoint file you saved earlier (e.g. site/checkpoint.json): the log must extend it.")
@click.option("--no-render", is_flag=True, help="Do not re-render the cards (stored pages are still checked against the log).")
@FORMAT
@handled
def registry_verify_command(directory: Path, checkpoint_path: Path | None, no_render: bool, fmt: str) -> None:
    """Verify a registry offline: log, checkpoints, signatures, rules, and every rendered page byte for byte.

    Exits 0 when there is no problem (warnings are what an interrupted publish leaves), 3 otherwise.
    """
    from .registry import verify_registry
    from .reporter import count, dumps, problems_text
    from .site import registry_renderer

    saved = _read_file(checkpoint_path) if checkpoint_path else None
    result = verify_registry(directory, saved, None if no_render else registry_renderer(directory))
    revoked = [{"digest": e["digest"], "card_id": e["card_id"], "version": e["version"], "reason": e["reason"],
                "index": e["index"]} for e in result.entries if e["kind"] == "revoke"]
    code = 0 if result.ok else 3
    if fmt == "json":
        click.echo(dumps({**result.to_dict(), "exit_code": code, "revoked_cards": revoked}))
        sys.exit(code)
    click.echo(f"registry {directory} (origin {result.origin}): {result.size} log entr{'y' if result.size == 1 else 'ies'}, root {result.root}")
    for item in revoked:
        click.echo(f"revoked: {item['card_id']} version {item['version']} ({item['digest']}): {item['reason']}")
    if result.warnings:
        click.echo("warnings:\n" + problems_text(result.warnings))
    if result.ok:
        click.echo(f"OK: the registry verifies ({count(len(result.warnings), 'warning')})")
    else:
        click.echo(problems_text(result.problems), err=True)
        click.echo(count(len(result.problems), "problem"), err=True)
    sys.exit(code)


@registry_group.command("revoke")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("digest")
@click.option("--reason", required=True, help="Why the card is withdrawn (shown with it).")
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The registry's private key.")
@handled
def registry_revoke_command(directory: Path, digest: str, reason: str, key_path: Path) -> None:
    """Revoke the published card DIGEST: append a revocation entry to the log."""
    from .registry import revoke

    entry = revoke(directory, digest, reason, _load_signing_key(key_path))
    click.echo(f"revoked {entry['card_id']} version {entry['version']} ({entry['digest']})\nlog index {entry['index']}")


@registry_group.command("build")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@handled
def registry_build_command(directory: Path) -> None:
    """Verify DIRECTORY and write its static site to DIRECTORY/site (works from file:// and any static host)."""
    from .reporter import count
    from .site import build_site

    summary = build_site(directory)
    click.echo(f"built {summary['site']}: {count(summary['cards'], 'card')}, {count(summary['versions'], 'version')}, "
               f"log of {summary['entries']} entr{'y' if summary['entries'] == 1 else 'ies'}; open {Path(summary['site']) / 'index.html'}")


@registry_group.command("serve")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@handled
def registry_serve_command(directory: Path, port: int) -> None:
    """Serve DIRECTORY/site read-only over HTTP on 127.0.0.1 (loopback only); Ctrl-C stops it."""
    from .site import make_server

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
