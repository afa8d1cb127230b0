"""Small helpers shared by the benchmark scripts (timing children, medians, the machine).

Only public tools: time.perf_counter for wall time and os.wait4 for the peak RSS of one child
(the same ru_maxrss that resource.getrusage(RUSAGE_CHILDREN) reports, but for that child alone).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
ACARDS = str(VENV_BIN / "acards")


@dataclass
class Child:
    wall: float  # seconds
    peak_rss: int  # bytes
    returncode: int
    stdout: bytes
    cpu: float = 0.0  # seconds of user + system time (os.wait4)


def run_child(argv: list[str], env: dict | None = None, capture: bool = False, check: bool = True) -> Child:
    """Run argv once; its wall time (perf_counter) and its own peak RSS (os.wait4's ru_maxrss)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    out = process.stdout.read() if capture else b""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if capture:
        process.stdout.close()
    if check and process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {process.returncode}")
    return Child(wall, usage.ru_maxrss * 1024, process.returncode, out,  # ru_maxrss is in KiB on Linux
                 usage.ru_utime + usage.ru_stime)


def median(values) -> float:
    return statistics.median(values)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{cores} cores usable ({os.cpu_count()} online), CPU {cpu_model()!r}, Python {platform.python_version()},"
            f" {platform.system()} {platform.release()}; load average {load}")


def load_line() -> str:
    """The 1, 5 and 15 minute load averages (the machine is shared: read figures against this)."""
    return "load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f} MiB"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def timed(function):
    """(function(), wall seconds) for a call made in this process."""
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start
