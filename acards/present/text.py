"""How results and problems are shown: text for people, JSON for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable

import click

from acards.errors import Problem
from acards.numbers import count, fixed, format_number
from acards.vocabulary import DIAGNOSTICS

if TYPE_CHECKING:  # the report types load msgspec: not needed to print a problem
    from acards.report.model import Audit, AuditSummary, Diagnostic, Report


def problems_text(problems: Iterable[Problem]) -> str:
    lines = []
    for problem in problems:
        lines.append(f"{str(problem.location) or 'acards'}: {click.style(problem.code, bold=True)}: {problem.message}")
        lines.append(f"  hint: {problem.hint}")
    return "\n".join(lines)


def warnings_text(problems: Iterable[Problem]) -> str:
    """Warnings (never fatal), one ``warning: <problem>`` each, the same problem shown once."""
    return "\n".join(f"warning: {problem}" for problem in dict.fromkeys(problems))


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)


def report_json(result: Report | Audit) -> str:
    """The JSON text of a report (or an audit): keys in the types' field order, which is the
    schema's; what `verify --report` writes and `--format json` prints."""
    from acards.report.model import as_builtins

    return dumps(as_builtins(result))


def pointer_table(results) -> str:
    """One line per evidence pointer: status, kind, path."""
    lines = []
    for result in results:
        status = click.style("ok", fg="green") if result.ok else click.style(
            "MISSING" if result.actual is None else "MISMATCH", fg="red", bold=True)
        lines.append(f"  {status:<8} {result.kind:<7} {result.path}")
    return "\n".join(lines)


OUTCOME_STYLE = {"pass": "green", "fail": "red", "insufficient": "yellow"}
# Reasons that describe the evidence rather than explain an outcome.
INFORMATIONAL = {"seed-variance-not-included", "ngram-check-skipped", "weight-signature"}


def _outcome(text: str, width: int) -> str:
    return click.style(f"{text:<{width}}", fg=OUTCOME_STYLE.get(text))


def verify_text(report: Report, signer_names: dict[str, str] | None = None) -> str:
    """A terminal summary of a verification report: cells × diagnostics, then claims.

    ``signer_names``: what to call each envelope signer by keyid (e.g. the key file given), shown
    before the short keyid."""
    from acards.report.model import MechanismDiagnostic, UnsetType

    card = report.card
    lines = [f"card {card.id} v{card.version}  sha256 {card.sha256[:16]}…"]
    if not isinstance(report.envelope, UnsetType):
        names = signer_names or {}
        signers = ", ".join(f"{names[k]} ({k[:16]}…)" if k in names else f"{k[:16]}…" for k in report.envelope.signers)
        lines.append(f"signed by {signers}; payload sha256 {report.envelope.digest[:16]}…")
    lines.append("")
    width = max([len("cell")] + [len(c.id) for c in report.cells]) + 2

    def shown(diagnostic: Diagnostic) -> str:
        observed = diagnostic.observed if isinstance(diagnostic, MechanismDiagnostic) else None
        return f"{diagnostic.outcome} ({observed})" if observed else diagnostic.outcome

    widths = {name: 2 + max([len(name)] + [len(shown(c.diagnostics.by_name(name))) for c in report.cells]) for name in DIAGNOSTICS}
    header = f"{'cell':<{width}}" + "".join(f"{name:<{widths[name]}}" for name in DIAGNOSTICS) + "full card (strict/permissive)"
    lines.append(click.style(header, bold=True))
    for cell in report.cells:
        row = f"{cell.id:<{width}}"
        for name in DIAGNOSTICS:
            row += _outcome(shown(cell.diagnostics.by_name(name)), widths[name])
        full = cell.full_card
        row += f"{'yes' if full.strict else 'no'} / {'yes' if full.permissive else 'no'}"
        lines.append(row)
    lines.append("")
    for cell in report.cells:
        lines += _numbers_lines(cell, width)
    lines.append("")
    for cell in report.cells:
        for name in DIAGNOSTICS:
            diagnostic = cell.diagnostics.by_name(name)
            if diagnostic.outcome == "pass":
                continue
            for item in diagnostic.reasons:
                if item.code not in INFORMATIONAL:
                    lines.append(f"  {cell.id} {name}: {item.message}")
    lines += [line for cell in report.cells if cell.judges for line in _judges_lines(cell.id, cell.judges)]
    lines.append("")
    for claim in report.claims:
        status = click.style("reproduced", fg="green") if claim.reproduced else click.style("NOT reproduced", fg="red", bold=True)
        broken = f" (not supported under {', '.join(claim.broken_by)})" if claim.broken_by else ""
        lines.append(f"claim {claim.id}: {claim.verdict}{broken} — {status}")
        for found in claim.discrepancies:
            lines.append(f"    {found.message}" + (f" [cell {found.cell}]" if found.cell else ""))
    audit = report.audit
    lines += ["", f"full-card passes: {audit.full_card.strict} strict, {audit.full_card.permissive} permissive, of {count(audit.cells, 'cell')}"]
    lines += _preregistration_lines(report)
    return "\n".join(lines)


def _preregistration_lines(report: Report) -> list[str]:
    """Whether the card keeps to its pre-registered plan, and each deviation with its two values."""
    found = report.preregistration
    if not found:
        return []
    when = f"logged {found.logged_at}" if found.logged_at else "logged time unknown (read from the card's folder)"
    status = click.style("matched", fg="green") if found.matched else click.style(
        f"{count(len(found.deviations), 'deviation')} — NOT reproduced", fg="red", bold=True)
    lines = ["", f"pre-registration {found.entry[:16]}… ({when}): {status}"]
    for deviation in found.deviations:
        lines.append(f"    {deviation.kind} at {deviation.pointer}: planned {_brief(deviation.planned)}, "
                     f"now {_brief(deviation.actual)}")
    return lines


def _brief(value) -> str:
    """A deviation's value on one line: JSON, cut at 80 characters."""
    text = "—" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 80 else text[:79] + "…"


def _plus_minus(estimate, se, estimates: dict) -> str:
    """``Δ ± SE``, with standard 1.1's t critical value and df when the report gives them."""
    text = f"{format_number(estimate)} ± {format_number(se)}"
    if estimates.get("critical_value") is not None:
        from acards.diagnostics.common import critical_symbol

        text += f" [{critical_symbol(estimates['critical_value'], estimates.get('df'))}]"
    return text


def _numbers_lines(cell, width: int) -> list[str]:
    """The numbers behind a cell's outcomes, two lines: each split's Δ ± SE_tot (ρ, the retention,
    for fresh and transfer), then D3's α_T/α_A (and the control margin) and the cost guard's δ ± SE."""
    by_name = cell.diagnostics.by_name
    splits = []
    for name in ("reliability", "fresh", "transfer"):
        found = by_name(name).estimates
        if found.get("reduction") is None:
            splits.append(f"{name} —")
            continue
        text = f"{name} Δ {_plus_minus(found['reduction'], found.get('se_total'), found)}"
        if name != "reliability":
            text += f", ρ {format_number(found.get('retention'))}"
        splits.append(text)
    mechanism = by_name("mechanism").estimates
    weights = (f"α_T {format_number(mechanism['alpha_t'])}, α_A {format_number(mechanism.get('alpha_a'))}"
               if mechanism.get("alpha_t") is not None else "α_T/α_A — (no weights)")
    if mechanism.get("control_margin") is not None:
        weights += f", Δ_D − Δ_C {format_number(mechanism['control_margin'])} ± {format_number(mechanism.get('se_control_margin'))}"
    cost = by_name("cost").estimates
    delta = f"δ {_plus_minus(cost['delta'], cost.get('se'), cost)}" if cost.get("delta") is not None else "δ —"
    return [f"{cell.id:<{width}}" + " · ".join(splits), " " * width + f"mechanism {weights} · cost {delta}"]


def _judges_lines(cell_id: str, judges: dict) -> list[str]:
    """Each scorer's held-out Δ and D1 outcome, and κ per split against the primary (acards.pipeline.judges)."""
    deltas = ", ".join(f"{name} {format_number(found['estimates']['heldout'].get('reduction'), 3)} ({found['outcomes']['reliability']})"
                       for name, found in judges["scorers"].items())
    lines = [f"  {cell_id} judges (primary {judges['primary']}): held-out Δ {deltas}"]
    for split, pairs in judges["agreement"].items():
        kappas = ", ".join(f"{pair['scorers'][1]} {format_number(pair['kappa'], 2)}" for pair in pairs if pair["scorers"][0] == judges["primary"])
        if any(pair["n"] for pair in pairs):
            lines.append(f"    κ with {judges['primary']} on {split}: {kappas}")
    return lines


def audit_rows(audit: Audit) -> list[list[str]]:
    """One row per cell: id, each diagnostic's outcome, strict and permissive full-card verdicts."""
    rows = [["cell", *DIAGNOSTICS, "strict", "permissive"]]
    for cell in audit.cells:
        outcomes = [cell.diagnostics.by_name(name).outcome for name in DIAGNOSTICS]
        rows.append([cell.id, *outcomes, "pass" if cell.full_card.strict else "fail",
                     "pass" if cell.full_card.permissive else "fail"])
    return rows


def _audit_footer(summary: AuditSummary) -> list[str]:
    lines = [f"cells: {summary.cells}; passes: " + ", ".join(f"{k} {v}" for k, v in summary.passes.items()),
             f"full card: {summary.full_card.strict} strict, {summary.full_card.permissive} permissive"]
    for rank, near in enumerate(summary.near_misses[:10], 1):
        shortfall = "categorical" if near.shortfall is None else fixed(near.shortfall, 4)
        lines.append(f"near miss {rank}: {near.cell} passed {near.passed}/4, failed {', '.join(near.failed)}, shortfall {shortfall}")
    return lines


def audit_text(audit: Audit) -> str:
    rows = audit_rows(audit)
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(len(rows[0]))]
    lines = ["".join(f"{value:<{w}}" for value, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines + [""] + _audit_footer(audit.summary))


def audit_markdown(audit: Audit) -> str:
    rows = audit_rows(audit)
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(escape(v) for v in rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(escape(v) for v in row) + " |" for row in rows[1:]]
    return "\n".join(lines + [""] + [f"- {line}" for line in _audit_footer(audit.summary)])


def audit_csv(audit: Audit) -> str:
    import csv
    import io

    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(audit_rows(audit))
    return buffer.getvalue()


def _was(value) -> str:
    if value is True or value is False:
        return "yes" if value else "no"
    return "none" if value is None else str(value)


def migrate_text(migration, card_path, written) -> str:
    """What `acards migrate` did (``written``: the path written, or None for --check) and which results
    the new standard changes: per claim its verdict and outcomes, then per cell under the card's thresholds."""
    diff, before = migration.diff, migration.before
    card = before.card
    action = f"wrote {written}" if written is not None else "--check: nothing written"
    lines = [f"card {card.id} v{card.version} ({card_path}): standard {migration.source} → {migration.target}; {action}", ""]
    if diff.seed_shortfalls:
        lines.append(click.style(f"Under {migration.target}, D1, D2 and D4 are insufficient (too-few-seeds) in "
                                 f"{count(len(diff.seed_shortfalls), 'cell')} with too few training seeds:", bold=True))
        for short in diff.seed_shortfalls:
            lines.append(f"  {short.cell}: {short.seeds_undefended} undefended and {short.seeds_defended} defended seeds, "
                         f"min_seeds = {short.min_seeds} ({', '.join(short.diagnostics)} insufficient)")
        lines += ["  Train at least that many seeds per condition, or lower thresholds.reliability.min_seeds with a",
                  "  justification (for the card, or for one claim); migrate never lowers it for you.", ""]

    def why(change) -> str:
        return f" ({', '.join(change.reasons)})" if change.reasons else ""

    by_claim = [c for c in diff.changes if c.claim is not None]
    by_cell = [c for c in diff.changes if c.claim is None]
    for claim in migration.after.claims:
        mine = [c for c in by_claim if c.claim == claim.id]
        verdict = next((c for c in mine if c.what == "verdict"), None)
        head = f"claim {claim.id}: " + (f"{verdict.before} → {verdict.after}" if verdict else f"{claim.verdict} (unchanged)")
        lines.append(click.style(head, bold=verdict is not None))
        for change in mine:
            if change.what == "outcome":
                lines.append(f"    {change.cell} {change.diagnostic}: {_was(change.before)} → {change.after}{why(change)}")
            elif change.what == "reproduced":
                state = "reproduced" if change.after else "NOT reproduced"
                lines.append(f"    now {state}" + (f": what it reports ({', '.join(change.reasons)}) no longer matches; "
                                                   "update its `reported` block" if not change.after else ""))
    if by_cell:
        lines += ["", "cells, under the card's thresholds:"]
        for change in by_cell:
            name = {"observed": "mechanism observed", "full-card": f"full card {change.diagnostic}"}.get(change.what, change.diagnostic)
            lines.append(f"  {change.cell} {name}: {_was(change.before)} → {_was(change.after)}{why(change)}")
    changed = sum(c.what == "verdict" for c in diff.changes)
    lines += ["", "no verdict changes" if not changed else f"{count(changed, 'verdict')} change{'s' if changed == 1 else ''}"]
    if written is not None:
        lines.append(f"the card's file digest changed: verify it again (`acards verify {written}`) before signing or publishing it")
    return "\n".join(lines)


def migrate_json(migration, card_path, written) -> str:
    diff = migration.diff
    return dumps({"ok": True, "card": str(card_path), "from": migration.source, "to": migration.target,
                  "written": None if written is None else str(written), "verdicts_change": diff.verdicts_change,
                  "claims": [{"id": a.id, "verdict_before": b.verdict, "verdict_after": a.verdict,
                              "reproduced_before": b.reproduced, "reproduced_after": a.reproduced}
                             for b, a in zip(migration.before.claims, migration.after.claims)],
                  "changes": [c.as_json() for c in diff.changes],
                  "too_few_seeds": [s.as_json() for s in diff.seed_shortfalls]})
