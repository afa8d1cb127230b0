"""Settings from the environment, read once, at the edge, and passed down.

The command line builds one :class:`Settings` in its root group (``Settings.from_environ()``) and
keeps it on the click context; commands pass its values on as explicit parameters (the cache
folder, the device, the key passphrase).  Library functions take those parameters too; a library
caller who leaves one out gets :func:`current` here, which reads the environment at that call, so
setting ``ACARDS_CACHE_DIR`` or ``ACARDS_DEVICE`` before calling keeps working.

This module is the one place that reads these variables:

- ``ACARDS_CACHE_DIR``: the folder for the digest cache, regenerated outputs and control adapters
  (default: the platform's user cache folder for acards);
- ``ACARDS_DEVICE``: where to regenerate outputs when no device is given (default: the best present);
- ``ACARDS_KEY_PASSPHRASE``: the passphrase of private keys (default: ask on a terminal);
- ``ACARDS_CACHE_KEY``: the file of the secret that authenticates cache entries (default:
  ``cache-mac.key`` in the platform's user config folder for acards, never inside the cache folder;
  see acards.evidence.cachekey);
- ``ACARDS_SNAPSHOT_DIR``: where the private copy of a model is made before it is loaded (default:
  the system temp folder; see acards.evidence.snapshot);
- ``ACARDS_CPU_THREADS``: torch's threads when generating on the CPU (default: ``OMP_NUM_THREADS``
  when set, else the usable cores that are idle; see acards.generate.backends.base.cpu_threads).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from acards.errors import AcardsError, Location

CACHE_DIR = "ACARDS_CACHE_DIR"
DEVICE = "ACARDS_DEVICE"
KEY_PASSPHRASE = "ACARDS_KEY_PASSPHRASE"
CACHE_KEY = "ACARDS_CACHE_KEY"
SNAPSHOT_DIR = "ACARDS_SNAPSHOT_DIR"
CPU_THREADS = "ACARDS_CPU_THREADS"
OMP_NUM_THREADS = "OMP_NUM_THREADS"  # OpenMP's own, which torch reads too: the default of CPU_THREADS

DIGESTS_FILE = "digests.sqlite"
CACHE_KEY_FILE = "cache-mac.key"  # the secret that MACs cache entries


@dataclass(frozen=True)
class Settings:
    """What the environment says, read once; nothing below the edge reads the environment itself."""

    cache_dir: Path
    device: str | None = None
    key_passphrase: str | None = field(default=None, repr=False)  # never printed
    cache_key: Path | None = None  # $ACARDS_CACHE_KEY; None: the platform default (cache_key_path)
    snapshot_dir: Path | None = None  # $ACARDS_SNAPSHOT_DIR; None: the system temp folder
    cpu_threads: tuple[str, str] | None = None  # (variable, value) of $ACARDS_CPU_THREADS, else $OMP_NUM_THREADS; None: automatic

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        override = env.get(CACHE_DIR)
        return cls(
            cache_dir=Path(override) if override else platform_cache_dir(),
            device=env.get(DEVICE) or None,
            key_passphrase=env.get(KEY_PASSPHRASE),
            cache_key=Path(env[CACHE_KEY]) if env.get(CACHE_KEY) else None,
            snapshot_dir=Path(env[SNAPSHOT_DIR]) if env.get(SNAPSHOT_DIR) else None,
            cpu_threads=next(((name, env[name]) for name in (CPU_THREADS, OMP_NUM_THREADS) if env.get(name)), None),
        )

    @property
    def digests_path(self) -> Path:
        """The digest cache's SQLite file (see acards.evidence.digests.DigestCache)."""
        return self.cache_dir / DIGESTS_FILE

    @property
    def cache_key_path(self) -> Path:
        """The file of the secret that MACs cache entries: kept outside the cache folder, so that
        whoever can write a (shared) cache folder cannot make entries this user trusts."""
        if self.cache_key is not None:
            return self.cache_key
        import platformdirs

        return Path(platformdirs.user_config_dir("acards", appauthor=False)) / CACHE_KEY_FILE


def platform_cache_dir() -> Path:
    """The platform's user cache folder for acards (what ``ACARDS_CACHE_DIR`` overrides)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("acards", appauthor=False))


def current() -> Settings:
    """The settings as the environment gives them now: the default of library callers."""
    return Settings.from_environ()


def cache_dir() -> Path:
    """``$ACARDS_CACHE_DIR`` if set, else the platform's user cache folder for acards (library default)."""
    return current().cache_dir


def usable_cache_dir(folder: Path) -> Path:
    """``folder`` (the cache folder, or one inside it), created if missing; ``cache.unusable-folder``
    (exit 4) when it is a file, lies under a file, or cannot be created or written."""
    hint = f"point {CACHE_DIR} at a folder you can write, or unset it to use the platform's cache folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = {FileExistsError: "it is a file, not a folder", NotADirectoryError: "a part of the path is a file"}.get(
            type(error), error.strerror or str(error))
        raise AcardsError("cache.unusable-folder", f"the cache folder {folder} cannot be created: {reason}", hint,
                          Location(str(folder))) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AcardsError("cache.unusable-folder", f"the cache folder {folder} is not writable", hint,
                          Location(str(folder)))
    return folder
