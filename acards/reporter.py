"""How results and problems are shown: text for people, JSON for programs."""

from __future__ import annotations

import json
from typing import Iterable

import click

from .errors import Problem


def problems_text(problems: Iterable[Problem]) -> str:
    lines = []
    for problem in problems:
        lines.append(f"{problem.location}: {click.style(problem.code, bold=True)}: {problem.message}")
        lines.append(f"  hint: {problem.hint}")
    return "\n".join(lines)


def count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def dumps(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False)


def pointer_table(results) -> str:
    """One line per evidence pointer: status, kind, path."""
    lines = []
    for result in results:
        status = click.style("ok", fg="green") if result.ok else click.style(
            "MISSING" if result.actual is None else "MISMATCH", fg="red", bold=True)
        lines.append(f"  {status:<8} {result.kind:<7} {result.path}")
    return "\n".join(lines)
