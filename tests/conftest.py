import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def _cache_key_file(tmp_path_factory):
    """The cache MAC key of this test session: kept out of the user's home folder."""
    return tmp_path_factory.mktemp("acards-config") / "cache-mac.key"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch, _cache_key_file):
    """Each test gets its own acards cache folder: no test reads another's digests or outputs."""
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path_factory.mktemp("acards-cache")))
    monkeypatch.setenv("ACARDS_CACHE_KEY", str(_cache_key_file))
    monkeypatch.delenv("ACARDS_KEY_PASSPHRASE", raising=False)
    yield


def pytest_report_header(config):
    return f"acards repo: {REPO}; HF offline: {os.environ.get('HF_HUB_OFFLINE')}"
