"""acards.files.enable_wal: the WAL switch waits out a connection that is creating the same file."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from acards.files import enable_wal


def _locked_by_another(path, seconds: float) -> threading.Thread:
    """A connection that holds the file's exclusive lock for ``seconds``, as a creator does."""
    ready = threading.Event()

    def hold():
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        db.execute("CREATE TABLE t (x)")
        ready.set()
        time.sleep(seconds)
        db.execute("COMMIT")
        db.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    return thread


def test_the_switch_waits_for_the_creator(tmp_path):
    path = tmp_path / "c.sqlite"
    holder = _locked_by_another(path, 0.3)
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    with pytest.raises(sqlite3.OperationalError):  # what a single try gets while the creator holds the lock
        db.execute("PRAGMA journal_mode=WAL")
    enable_wal(db, timeout_s=10)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    holder.join()


def test_the_wait_is_bounded(tmp_path):
    path = tmp_path / "c.sqlite"
    holder = _locked_by_another(path, 1.5)
    db = sqlite3.connect(path, isolation_level=None, timeout=0)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(db, timeout_s=0.2)
    assert time.monotonic() - started < 1.2
    holder.join()
