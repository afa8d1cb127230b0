"""Running the acards CLI for a test: in process (never a traceback, and the JSON it printed), or in
a fresh interpreter that also says which modules the command imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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


# Runs the command line in a fresh interpreter, then prints which of the given modules it imported.
_WRAPPER = """
import json, sys
watched = json.loads(sys.argv.pop(1))
sys.argv = ["acards", *sys.argv[1:]]
from acards.cli import main
try:
    main()
except SystemExit as exit_:
    status = exit_.code
print(json.dumps({"status": status, "imported": sorted(m for m in watched if m in sys.modules)}))
"""


def run_fresh(watched: tuple[str, ...], *args: str) -> dict:
    """``{"status": exit code, "imported": the modules of ``watched`` the command imported}``, run in
    a fresh interpreter (so nothing a test imported counts)."""
    done = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(list(watched)), *map(str, args)],
                          capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
