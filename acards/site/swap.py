"""Putting a freshly built folder in place of the site in one step, so a reader never sees half a site.

Linux renameat2(RENAME_EXCHANGE) swaps the two folders atomically; where it is missing, two renames
(the old site moves aside, the new one into place).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if function(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def swap_into_place(built: Path, site: Path, scratch_prefix: str) -> None:
    """Make ``built`` the folder at ``site`` and remove what was there; ``scratch_prefix`` names the
    folder the old site passes through where the exchange is unsupported."""
    if not os.path.lexists(site):
        os.rename(built, site)
        return
    if _exchange(built, site):
        shutil.rmtree(built)  # now the previous site
        return
    old = Path(tempfile.mkdtemp(prefix=scratch_prefix, dir=site.parent))
    os.rename(site, old / "old")
    os.rename(built, site)
    shutil.rmtree(old)
