"""How results and problems are shown: text for people, JSON for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Iterable

import click

from acards.errors import Problem
from acards.numbers import fixed
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


def count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


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


def verify_text(report: Report) -> str:
    """A terminal summary of a verification report: cells × diagnostics, then claims."""
    from acards.report.model import MechanismDiagnostic

    card = report.card
    lines = [f"card {card.id} v{card.version}  sha256 {card.sha256[:16]}…", ""]
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
        for name in DIAGNOSTICS:
            diagnostic = cell.diagnostics.by_name(name)
            if diagnostic.outcome == "pass":
                continue
            for item in diagnostic.reasons:
                if item.code not in INFORMATIONAL:
                    lines.append(f"  {cell.id} {name}: {item.message}")
    lines.append("")
    for claim in report.claims:
        status = click.style("reproduced", fg="green") if claim.reproduced else click.style("NOT reproduced", fg="red", bold=True)
        lines.append(f"claim {claim.id}: {claim.verdict} — {status}")
        for found in claim.discrepancies:
            lines.append(f"    {found.message}" + (f" [cell {found.cell}]" if found.cell else ""))
    audit = report.audit
    lines += ["", f"full-card passes: {audit.full_card.strict} strict, {audit.full_card.permissive} permissive, of {count(audit.cells, 'cell')}"]
    return "\n".join(lines)


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
