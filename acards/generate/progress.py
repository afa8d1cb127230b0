"""Progress on stderr: a tqdm bar on a terminal; elsewhere (a log, CI, `./scripts/demo | tee`) a
plain line at most every ``LINE_INTERVAL`` seconds, so a long step never looks hung and a short one
prints nothing."""

from __future__ import annotations

import sys
import time

LINE_INTERVAL = 10.0  # seconds between two progress lines when stderr is not a terminal


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Lines(_Silent):
    """``<description>: done/total (pct%), elapsed`` every LINE_INTERVAL seconds, and a last line
    when it printed any (so a log shows how the step ended)."""

    def __init__(self, total: int, description: str, stream, interval: float = LINE_INTERVAL) -> None:
        self.total, self.description, self.stream, self.interval = total, description, stream, interval
        self.done, self.printed = 0, False
        self.start = self.last = time.monotonic()

    def _line(self, now: float) -> None:
        share = 100 * self.done / self.total
        self.stream.write(f"{self.description}: {self.done:,}/{self.total:,} ({share:.0f}%), {now - self.start:.0f} s\n")
        self.stream.flush()
        self.printed, self.last = True, now

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self._line(now)

    def close(self) -> None:
        if self.printed:
            self._line(time.monotonic())
            self.printed = False


def bar(total: int, description: str, enabled: bool | None = None):
    """Progress over ``total`` units: a tqdm bar when stderr is a terminal (or ``enabled=True``),
    progress lines when it is not (``enabled=None``), nothing when ``enabled=False``."""
    if total <= 0 or enabled is False:
        return _Silent()
    if enabled is None and not sys.stderr.isatty():
        return _Lines(total, description, sys.stderr)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Lines(total, description, sys.stderr)
    return tqdm(total=total, desc=description, file=sys.stderr, unit="out", dynamic_ncols=True, leave=False)
