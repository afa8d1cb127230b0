"""`acards generate`, `spot-check` and `cache`: regenerate missing outputs ahead of `verify`."""

from __future__ import annotations

from pathlib import Path

import click

from acards.cli.main import FORMAT, handled, main, settings
from acards.numbers import fixed


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
    from acards.evidence.digests import DigestCache
    from acards.pipeline.generate import generate_card
    from acards.present.text import dumps

    config = settings()
    with DigestCache(config.digests_path) as digests:
        summary = generate_card(card, shard=shard, executor=None if executor == "local" else executor, shards=shards,
                                device=device or config.device, backend=backend, controls=controls, out=out,
                                digests=digests, cache_dir=config.cache_dir)
    if fmt == "json":
        click.echo(dumps({"ok": True, **summary}))
        return
    counts = summary["counts"]
    shared = counts.get("in_shard", 0) - counts.get("distinct", counts.get("in_shard", 0))  # requests sharing an output
    click.echo(f"{card}: {summary['requests']} outputs needed"
               + (f" ({counts['distinct']} distinct: {shared} shared with another request)" if shared > 0 else "")
               + f"; {counts.get('cache_hits', 0)} from the cache, "
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
    from acards.evidence.digests import DigestCache
    from acards.pipeline.generate import spot_check_card
    from acards.present.text import dumps

    config = settings()
    with DigestCache(config.digests_path) as digests:
        result = spot_check_card(card, n=n, seed=seed, device=device or config.device, backend=backend, digests=digests,
                                 cache_dir=config.cache_dir)
    if fmt == "json":
        click.echo(dumps({"ok": True, **result}))
        return
    if not result["checked"]:
        click.echo(f"{card}: {result['note']}")
        return
    click.echo(f"{card}: {result['matches']}/{result['checked']} regenerated outputs equal the supplied ones "
               f"(exact-match rate {fixed(result['exact_match_rate'], 2)}; seed {seed})")
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
    from acards.generate.cache import info
    from acards.present.text import dumps

    found = info(settings().cache_dir)
    if fmt == "json":
        click.echo(dumps({"ok": True, **found}))
        return
    main_file = found["main"]
    click.echo(f"{main_file['path']}: {main_file['outputs']} outputs, {main_file['bytes']} bytes, {len(found['models'])} models")
    for shard in found["shards"]:
        click.echo(f"  shard {shard['path']}: {shard['outputs']} outputs (merge with `acards cache merge`)")
    if found["controls"]:
        click.echo(f"  {len(found['controls'])} control:shrinkage adapters")
    if found["records"]["files"]:
        click.echo(f"  decoded records: {found['records']['files']} files, {found['records']['bytes']} bytes in {found['records']['path']}")


@cache_group.command("clear")
@click.option("--keep-controls", is_flag=True, help="Keep the control:shrinkage adapters.")
@FORMAT
@handled
def cache_clear_command(keep_controls: bool, fmt: str) -> None:
    """Delete every cached output and decoded records file (and the control:shrinkage adapters)."""
    from acards.generate.cache import clear
    from acards.present.text import dumps

    removed = clear(include_controls=not keep_controls, cache_dir=settings().cache_dir)
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
    """Merge shard cache files (default: every file under outputs/shards) into the main cache.

    Only outputs whose MAC verifies under your cache key are merged; the others are rejected and counted."""
    from acards.generate.cache import merge
    from acards.present.text import dumps

    merged = merge(list(sources) or None, into, remove, cache_dir=settings().cache_dir)
    if fmt == "json":
        click.echo(dumps({"ok": True, **merged}))
    else:
        click.echo(f"merged {len(merged['sources'])} files into {merged['into']}: {merged['added']} new outputs, {merged['outputs']} in all"
                   + (f"; {merged['rejected']} rejected (cache.entry-rejected: their MAC does not verify under your cache key)"
                      if merged["rejected"] else ""))
