"""Running the acards CLI in process for a test: never a traceback, and the JSON it printed."""

from __future__ import annotations

import json

from click.testing import CliRunner

from acards.cli import main


def run_with_output(*args) -> tuple[int, dict | None, str]:
    """(exit code, stdout parsed as JSON or None, everything printed)."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    try:
        return result.exit_code, json.loads(result.stdout), result.output
    except json.JSONDecodeError:
        return result.exit_code, None, result.output


def run(*args) -> tuple[int, dict | None]:
    """(exit code, stdout parsed as JSON or None)."""
    code, printed, _ = run_with_output(*args)
    return code, printed
