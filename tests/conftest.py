import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own acards cache folder: no test reads another's digests or outputs."""
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path_factory.mktemp("acards-cache")))
    monkeypatch.delenv("ACARDS_KEY_PASSPHRASE", raising=False)
    yield


def pytest_report_header(config):
    return f"acards repo: {REPO}; HF offline: {os.environ.get('HF_HUB_OFFLINE')}"
