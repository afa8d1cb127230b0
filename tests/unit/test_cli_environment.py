"""What the command line sets in its own process before any library reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = ("import json, os, sys; from acards.cli import main; "
         "print(json.dumps([os.environ.get('OPENBLAS_THREAD_TIMEOUT'), 'numpy' in sys.modules]))")


@pytest.mark.parametrize("given, expected", [(None, "4"), ("28", "28")])
def test_openblas_threads_sleep_soon_unless_the_user_says_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    if given is not None:
        env["OPENBLAS_THREAD_TIMEOUT"] = given
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    timeout, numpy_loaded = json.loads(done.stdout)
    assert timeout == expected and not numpy_loaded  # set before numpy (and its OpenBLAS) is loaded
