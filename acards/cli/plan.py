"""`acards plan`: the subjects, items, seeds and samples an experiment needs, before it runs (docs/planning.md)."""

from __future__ import annotations

import math
from pathlib import Path

import click

from acards.cli.main import FORMAT, handled, main
from acards.errors import AcardsError, Location
from acards.vocabulary import DEFAULT_SEED

THRESHOLD_OPTIONS = {"z": ("reliability", "fresh", "transfer"), "margin": ("reliability",), "min_subjects": ("reliability",),
                     "min_seeds": ("reliability",), "min_retention": ("fresh", "transfer")}


@main.command("plan")
@click.option("--mde", "target", type=float, help="The MDE to reach on the held-out split (score units). Without it, --subjects is required.")
@click.option("--true-reduction", type=float, help="The true held-out reduction to predict pass rates at  [default: the target MDE]")
@click.option("--pilot", type=click.Path(dir_okay=False, path_type=Path), help="A pilot records file: the variance components are estimated from its held-out split.")
@click.option("--cell", "cell_id", help="The pilot's cell (needed when the file holds several).")
@click.option("--task", help="The pilot's held-out task (default: every task of the cell's held-out split).")
@click.option("--subject-sd", type=float, help="Stated: sd across subjects of a subject's true reduction.")
@click.option("--seed-sd", type=float, help="Stated: sd across training seeds of the per-seed reduction (needed with a one-seed pilot).")
@click.option("--item-sd", type=float, default=None, help="Stated: sd of an item's true reduction around its subject's  [default: 0]")
@click.option("--noise-sd", type=float, help="Stated, continuous scores: sd of one sample's U−D gap difference around its item's value.")
@click.option("--base-rate", type=float, help="Stated, binary scores: the deploy-framing score rate (the noise follows from it).")
@click.option("--gap", type=float, help="Stated: the undefended installed gap G_U (a pilot gives its own).")
@click.option("--subjects", type=click.IntRange(min=1), help="Fix the number of held-out subjects instead of finding it.")
@click.option("--items-per-subject", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Training seeds of U and D (paired).")
@click.option("--samples", type=click.IntRange(min=1), default=1, show_default=True, help="Sampled generations per item and framing.")
@click.option("--fresh-subjects", type=click.IntRange(min=1), help="Subjects of the fresh split  [default: the held-out subjects]")
@click.option("--transfer-subjects", type=click.IntRange(min=1), help="Subjects of the transfer split  [default: the held-out subjects]")
@click.option("--fresh-retention", type=float, default=1.0, show_default=True, help="Assumed true ρ_fresh / ρ_heldout.")
@click.option("--transfer-retention", type=float, default=1.0, show_default=True, help="Assumed true ρ_transfer / ρ_heldout.")
@click.option("--card", type=click.Path(path_type=Path), help="Take the thresholds in force from this card (its own, not its claims').")
@click.option("--z", type=float, help="Override the z of D1, D2 and D4.")
@click.option("--margin", type=float, help="Override D1's margin.")
@click.option("--min-subjects", type=click.IntRange(min=2), help="Override D1's min_subjects.")
@click.option("--min-seeds", type=click.IntRange(min=1), help="Override min_seeds (D1, D2 and D4).")
@click.option("--min-retention", type=float, help="Override D2's and D4's min_retention.")
@click.option("--cells", type=click.IntRange(min=1), default=2000, show_default=True, help="Simulated cells behind the pass probabilities.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULT_SEED, show_default=True, help="Seed of the simulation's generator.")
@FORMAT
@handled
def plan_command(fmt: str, target: float | None, true_reduction: float | None, pilot: Path | None, cell_id: str | None, task: str | None,
                 card: Path | None, cells: int, seed: int, **options) -> None:
    """The design an experiment needs for a target MDE under standard 1.1, and the probability
    that D1, D2 and D4 pass at an assumed true reduction (docs/planning.md)."""
    from acards.diagnostics import planning
    from acards.present.text import dumps

    thresholds = _thresholds(card, options)
    components = _pilot(pilot, cell_id, task, options) if pilot else _stated(options)
    if target is None and options["subjects"] is None:
        raise AcardsError("plan.bad-design", "neither a target MDE nor a number of subjects was given",
                          "give --mde to have the subjects found, or --subjects to evaluate a design", Location())
    reduction = true_reduction if true_reduction is not None else target
    if reduction is None:
        raise AcardsError("plan.bad-design", "--subjects without --mde needs the true reduction to predict pass rates at",
                          "give --true-reduction", Location())
    template = planning.Design(options["subjects"] or 0, options["items_per_subject"], options["seeds"], options["samples"])
    setting = planning.Setting(reduction, options["fresh_subjects"], options["transfer_subjects"],
                               options["fresh_retention"], options["transfer_retention"])
    result = planning.plan(components, thresholds, template, target, setting, cells=cells, seed=seed,
                           fixed_subjects=options["subjects"] is not None)
    document = _finite(result.to_dict())
    click.echo(dumps(document) if fmt == "json" else plan_text(document))


def _thresholds(card: Path | None, options: dict) -> dict[str, dict]:
    from acards.card.validate import threshold_defaults

    if card is not None:
        from acards.card.model import load_card

        loaded = load_card(card)
        thresholds = {name: loaded.thresholds(name) for name in ("reliability", "fresh", "transfer")}
    else:
        thresholds = {name: values for name, values in threshold_defaults("1.1").items() if name in ("reliability", "fresh", "transfer")}
    for key, groups in THRESHOLD_OPTIONS.items():
        if options.get(key) is not None:
            for group in groups:
                thresholds[group][key] = options[key]
    return thresholds


def _stated(options: dict):
    from acards.diagnostics import planning

    missing = [f"--{name.replace('_', '-')}" for name in ("subject_sd", "seed_sd", "gap") if options[name] is None]
    if options["noise_sd"] is None and options["base_rate"] is None:
        missing.append("--noise-sd or --base-rate")
    if missing:
        raise AcardsError("plan.bad-components", f"without --pilot the variance model needs {', '.join(missing)}",
                          "state every component, or give a --pilot records file to estimate them from", Location())
    return planning.Components(gap_undefended=options["gap"], subject_sd=options["subject_sd"], seed_sd=options["seed_sd"],
                               item_sd=options["item_sd"] or 0.0, noise_sd=options["noise_sd"], base_rate=options["base_rate"])


def _pilot(path: Path, cell_id: str | None, task: str | None, options: dict):
    """Estimate the components from the held-out split of one cell of a pilot records file, read by
    the records reader verify uses and turned into item values by the same code."""
    import dataclasses

    import numpy as np

    from acards.diagnostics import planning
    from acards.diagnostics.values import GroupIndex, split_values
    from acards.evidence.records import read_records

    path = path.resolve()
    table = read_records(path.parent, [(path.name, Location(file=str(path)))],
                         formats=["parquet" if path.suffix == ".parquet" else "arrow" if path.suffix in (".arrow", ".feather") else "jsonl"])
    where = Location(file=str(path))
    cells = table.vocab["cell"]
    if cell_id is None:
        if len(cells) != 1:
            raise AcardsError("plan.pilot-too-small", f"the pilot holds {len(cells)} cells: {', '.join(cells[:5])}",
                              "name one with --cell", where)
        cell_id = cells[0]
    index = GroupIndex(table)
    values = split_values(index, cell_id, "heldout", task)
    if not {"undefended", "defended"} <= set(values.conditions):
        raise AcardsError("plan.pilot-too-small", f"cell {cell_id!r} has no held-out records of both undefended and defended",
                          "a pilot needs held-out records of U and D on the same items", where)
    u, d = values.conditions["undefended"], values.conditions["defended"]
    if list(u.seeds) != list(d.seeds):
        raise AcardsError("plan.pilot-too-small", "the pilot's U and D were trained from different seeds",
                          "pilot U and D from the same seeds (plan models paired seeds)", where)
    a, b, subjects, _ = values.paired("undefended", "defended")
    rows = index.rows(cell_id, "heldout", task)
    columns = {name: table.columns[name][rows] for name in ("score", "framing", "condition")}
    mine = np.isin(columns["condition"], [table.code("condition", "undefended"), table.code("condition", "defended")])
    scores = columns["score"][mine]
    scored = scores[np.isfinite(scores)]
    binary = bool(len(scored)) and bool(np.all((scored == 0) | (scored == 1)))
    deploy = scores[columns["framing"][mine] == table.code("framing", "deploy")]
    deploy_mean = float(np.nanmean(deploy)) if binary and len(deploy) else None
    # records per item, framing and seed: the samples each item value of the pilot averages
    samples = max(1.0, int(mine.sum()) / (2 * len(values.items) * (len(u.seeds) + len(d.seeds))))
    components = planning.components_from_pilot(a, b, subjects, deploy_mean, samples, options["seed_sd"])
    if options["gap"] is not None:
        components = dataclasses.replace(components, gap_undefended=options["gap"])
    return components


def _finite(value):
    """NaN and infinity as null, for JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _n(value, places: int = 3) -> str:
    from acards.numbers import fixed

    return "n/a" if value is None else fixed(value, places)


def plan_text(doc: dict) -> str:
    """The plan as a readable table."""
    c, d, e, s = doc["components"], doc["design"], doc["expected"], doc["setting"]
    th = doc["thresholds"]["reliability"]
    noise = f"binary, base rate {_n(c['base_rate'])}" if c["binary"] else f"noise sd {_n(c['noise_sd'])}"
    lines = [
        f"acards plan (standard {doc['standard']}; variance model {c['source']})",
        f"  components: subject sd {_n(c['subject_sd'])}, seed sd {_n(c['seed_sd'])}, item sd {_n(c['item_sd'])}, {noise}; "
        f"G_U {_n(c['gap_undefended'])}",
        f"  rules: z {th['z']}, margin {th['margin']}, min_subjects {th['min_subjects']}, min_seeds {th['min_seeds']}, "
        f"min_retention {doc['thresholds']['fresh']['min_retention']}",
        "",
        "design" + (f" for a target MDE of {_n(doc['target_mde'])}" if doc["target_mde"] is not None else " (as given)"),
        f"  subjects            {d['subjects']}",
        f"  items per subject   {d['items_per_subject']}",
        f"  seeds               {d['seeds']}",
        f"  samples             {d['samples']}",
        f"  outputs per split   {d['generations']}  (U and D, both framings)",
        f"  expected SE_tot {_n(e['se_total'], 4)} (SE_cl {_n(e['se_cluster'], 4)}), df {_n(e['df'], 1)}, "
        f"critical value {_n(e['critical_value'], 2)}, MDE {_n(e['mde'], 4)}",
        "",
        f"pass probability at a true reduction of {_n(s['true_reduction'])} "
        f"({doc['simulation']['cells']} simulated cells, seed {doc['simulation']['seed']}):",
        "  diagnostic    P(pass)   ± MC error",
    ]
    for name, label in (("reliability", "D1 held-out"), ("fresh", "D2 fresh"), ("transfer", "D4 transfer"), ("all", "D1+D2+D4")):
        rate = doc["pass_probability"].get(name)
        if rate is None:
            continue
        lines.append(f"  {label:<12}  {_n(rate['value'] * 100 if rate['value'] is not None else None, 1):>6}%   ±{_n(rate['mc_error'] * 100 if rate['mc_error'] is not None else None, 1)}")
    lines.append(f"  mean MDE D1 reported in the simulated cells: {_n(doc['mean_reported_mde'], 4)}")
    if doc["alternatives"]:
        lines += ["", "other designs reaching the target MDE (fewest subjects each):",
                  "  seeds  items/subject  subjects  outputs per split  expected MDE"]
        for alt in doc["alternatives"]:
            lines.append(f"  {alt['seeds']:>5}  {alt['items_per_subject']:>13}  {alt['subjects'] if alt['subjects'] is not None else 'none':>8}  "
                         f"{alt['generations'] if alt['generations'] is not None else '-':>17}  {_n(alt['mde'], 4):>12}")
    for note in doc["notes"]:
        lines += ["", f"note: {note}"]
    return "\n".join(lines)
