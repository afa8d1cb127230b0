"""The backend interface, decoding settings, device choice and package versions."""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from acards.errors import AcardsError


@dataclass(frozen=True)
class Decoding:
    """The card's ``generation`` section, as a backend needs it."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    seed: int
    batch_size: int
    dtype: str

    @classmethod
    def from_card(cls, card) -> "Decoding":
        s = card.section("generation")
        return cls(int(s["max_new_tokens"]), bool(s["do_sample"]), float(s["temperature"]), float(s["top_p"]),
                   int(s["seed"]), int(s["batch_size"]), str(s["dtype"]))


class Backend(Protocol):
    """What :mod:`acards.generate.runner` needs of a backend.

    ``model_calls`` counts batched generate calls and ``generated`` the outputs produced, so that
    a caller can see (and a test can assert) that a cached run never touched a model.
    """

    name: str
    dtype: str
    model_calls: int
    generated: int

    @staticmethod
    def versions() -> dict[str, str]: ...  # packages whose versions are part of the cache key

    def device_name(self) -> str: ...

    def generate(self, spec, prompts: list[list[int]], decoding: Decoding, seeds: list[int] | None,
                 pad_id: int, eos_ids: list[int]) -> list[list[int]]: ...  # generated ids per prompt

    def close(self) -> None: ...


# The packages whose versions name a backend's outputs in the cache key (read from metadata, so the
# key of a fully cached run is computed without importing any of them).
BACKEND_PACKAGES = {"transformers": ("transformers", "torch", "peft"), "vllm": ("vllm", "torch")}


@lru_cache(maxsize=None)
def platform_name() -> str:
    """The system as ``platform.platform()`` names it, but on Linux without the processor: Python
    asks ``uname -p`` for it in a subprocess (12 ms of a cached re-verify's ~0.5 s), and on Linux it
    is mostly "unknown", which ``platform.platform()`` leaves out too."""
    import platform

    system = platform.uname()  # its fields, not its processor
    if system.system != "Linux":
        return platform.platform()
    libc, version = platform.libc_ver()
    name = "-".join(part for part in (system.system, system.release, system.machine, "with", libc + version) if part)
    name = name.replace(" ", "_").translate(_FILENAME_OBSTACLES).replace("unknown", "")  # as platform.platform() cleans it
    return re.sub("-{2,}", "-", name).rstrip("-")


_FILENAME_OBSTACLES = str.maketrans({c: "-" for c in '/\\:;"()'})


def package_versions(*names: str) -> dict[str, str | None]:
    """Installed versions (from package metadata: nothing is imported; None when not installed)."""
    return {name: installed_version(name) for name in names}


@lru_cache(maxsize=None)
def installed_version(name: str) -> str | None:
    """One package's installed version (None when not installed), looked up once per process (each lookup scans sys.path: milliseconds)."""
    decided, found = _dist_info_version(name)
    if decided:
        return found
    from importlib import metadata  # egg-info, zips, other finders: its import alone costs 40 ms

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _dist_info_version(name: str) -> tuple[bool, str | None]:
    """``(True, version)`` as importlib.metadata would give it, read the way it reads it, when the
    first match on sys.path is a ``.dist-info`` folder (what pip installs): the ``Version:`` header of
    its METADATA; ``(True, None)`` when no folder on sys.path holds the package and only the standard
    path finder finds distributions.  ``(False, None)`` otherwise (egg-info, a zip on sys.path, another
    finder): importlib.metadata answers, so the answer never differs from it."""
    import importlib.machinery

    wanted, decided = _normalized(name), True
    for entry in sys.path:
        listing = _distributions_in(os.path.abspath(entry or "."))
        if listing is None:  # a zip, or a folder not readable: only importlib.metadata can tell
            decided = False
            continue
        if wanted in listing:
            child, kind = listing[wanted]
            if kind == "egg-info" or not decided:
                return False, None
            return True, _metadata_version(Path(entry or ".", child, "METADATA"))
    others = [f for f in sys.meta_path if hasattr(f, "find_distributions") and f is not importlib.machinery.PathFinder]
    return decided and not others, None


@lru_cache(maxsize=None)
def _distributions_in(folder: str) -> dict[str, tuple[str, str]] | None:
    """{normalized name: (folder name, "dist-info" or "egg-info")} of the first distribution folder
    of each name in ``folder`` (in listing order, as the lookup meets them); {} when there is no such
    folder, None when it cannot be listed.  Listed once per process, as versions are looked up once."""
    try:
        children = os.listdir(folder)
    except FileNotFoundError:
        return {}
    except OSError:
        return None
    found: dict[str, tuple[str, str]] = {}
    for child in children:
        stem, dot, kind = child.rpartition(".")
        if dot and kind.lower() in ("dist-info", "egg-info"):
            found.setdefault(_normalized(stem.partition("-")[0]), (child, kind.lower()))
    return found


def _metadata_version(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    return None  # the headers end at the first blank line
                if line.lower().startswith("version:"):
                    return line.split(":", 1)[1].strip() or None
    except (OSError, UnicodeDecodeError):
        return None
    return None


CGROUP_QUOTAS = (  # (quota file, period file or None), cgroup v2 then v1, as a container sees its own
    (Path("/sys/fs/cgroup/cpu.max"), None),
    (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")),
    (Path("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us")),
)


def _cgroup_cpus() -> float | None:
    """The CPU quota of this process's cgroup in cores (e.g. 2.5), or None when there is none."""
    for quota_file, period_file in CGROUP_QUOTAS:
        try:
            if period_file is None:  # v2: "max 100000" or "<quota> <period>"
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
            if quota in ("max", "-1"):
                return None
            return int(quota) / int(period)
        except (OSError, ValueError):
            continue
    return None


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity (else os.cpu_count()), capped by its
    cgroup's CPU quota when one is set (a container limited to 2 CPUs on a 64-core host: 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cpu_threads(setting: tuple[str, str] | None = None) -> tuple[int, str]:
    """torch's intra-op threads for generating on the CPU, and why.

    ``setting`` (``$ACARDS_CPU_THREADS``, else ``$OMP_NUM_THREADS``; read by acards.settings) wins.
    Otherwise: the usable cores (:func:`usable_cores`) that other processes leave idle: the machine's
    cores less its 1-minute load average (less the one this process adds), at least 1.  torch's own
    default is every core of the machine; on cores that other processes keep busy its threads wait
    for each other at every operation (docs/generation.md, "CPU threads": one thread about 6× faster
    than two on 2 shared cores).
    """
    if setting is not None:
        name, value = setting
        try:
            threads = int(value.split(",")[0])  # OMP_NUM_THREADS may list one count per nesting level
        except ValueError:
            threads = 0
        if threads < 1:
            raise AcardsError("usage.bad-threads", f"{name}={value!r} is not a number of threads",
                              f"set {name} to a whole number of at least 1, or unset it to let acards choose")
        return threads, f"{name}={value}"
    cores = usable_cores()
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return cores, f"{cores} usable cores"
    others = max(0.0, load - 1)  # this process has been running (one thread) before it generates
    idle = max(1, min(cores, round((os.cpu_count() or cores) - others)))
    return idle, f"{cores} usable cores, load average {load:.1f} on {os.cpu_count()} cores"


def select_device(override: str | None = None) -> str:
    """``override``, else ``$ACARDS_DEVICE`` (read by acards.settings), else the best present: cuda, then mps, then cpu."""
    import torch

    from acards.settings import current

    choice = override or current().device
    if choice is None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    kind = choice.split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if kind not in available:
        raise AcardsError("usage.bad-device", f"unknown device {choice!r}", "use cuda, cuda:N, mps or cpu (or leave it out to choose automatically)")
    if not available[kind]:
        raise AcardsError("generate.no-device", f"device {choice!r} is not available here",
                          "leave --device out to use the best device present, or install a torch build for it")
    return choice
