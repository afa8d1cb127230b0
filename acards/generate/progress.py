"""Progress bars on stderr (tqdm), shown only when stderr is a terminal unless forced."""

from __future__ import annotations

import sys


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def bar(total: int, description: str, enabled: bool | None = None):
    """A tqdm bar on stderr; ``enabled=None`` shows it only when stderr is a terminal."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show or total <= 0:
        return _Silent()
    try:
        from tqdm import tqdm
    except ImportError:
        return _Silent()
    return tqdm(total=total, desc=description, file=sys.stderr, unit="out", dynamic_ncols=True, leave=False)
