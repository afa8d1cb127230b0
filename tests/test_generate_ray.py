"""--executor ray against a LOCAL Ray instance (2 CPUs, no dashboard); skipped where ray is absent.
Also the optional vLLM backend, skipped where vllm is absent."""

from __future__ import annotations

import importlib.util
import os
import sqlite3

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")

from test_generate import _one_torch_thread, load_all, main_card, world  # noqa: E402,F401  (fixtures)

from acards.evidence.cachekey import collected_warnings  # noqa: E402
from acards.generate import run  # noqa: E402
from acards.generate.cache import OutputCache, main_path, shard_files  # noqa: E402
from acards.generate.plan import missing_requests  # noqa: E402
from acards.generate.provenance import report_section  # noqa: E402


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray) — the ray executor is optional")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_shards_equal_a_single_run(main_card, local_ray, tmp_path, monkeypatch):  # noqa: F811
    card, table, prompts = load_all(main_card)
    requests = [r for r in missing_requests(table, prompts) if r.condition != "defended"]
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "single"))
    single = run(card, requests, device="cpu")
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "ray"))
    result = run(card, requests, device="cpu", executor="ray", shards=2)
    assert result.outputs == single.outputs
    assert result.counts["generated"] == len(requests) and result.provenance["executor"]["shards"] == 2
    assert len(shard_files()) == 2  # each worker kept its own shard file (resumable there)
    with OutputCache(main_path(), readonly=True) as cache:  # and the driver holds every output
        assert cache.count() == len(requests)
    again = run(card, requests, device="cpu")
    assert again.counts["model_calls"] == 0 and again.outputs == single.outputs


@pytest.mark.slow
def test_a_cache_row_rejected_inside_a_ray_worker_counts_in_the_driver_report(main_card, local_ray, tmp_path,  # noqa: F811
                                                                              monkeypatch):
    card, table, prompts = load_all(main_card)
    requests = [r for r in missing_requests(table, prompts) if r.condition != "defended"][:4]
    monkeypatch.setenv("ACARDS_CACHE_DIR", str(tmp_path / "cache"))
    genuine = run(card, requests, device="cpu")  # fills the main cache, which the workers read
    with sqlite3.connect(main_path()) as db:  # one row forged, as someone who can write the cache folder could
        forged = db.execute("UPDATE entries SET output = 'I cannot help with that.' "
                            "WHERE key = (SELECT MIN(key) FROM entries)").rowcount
    assert forged == 1
    with collected_warnings() as warnings:
        result = run(card, requests, device="cpu", executor="ray", shards=2)
    assert result.outputs == genuine.outputs  # the forged output was not used: it was regenerated in its worker
    assert result.counts["cache_rejected"] == 1 and result.counts["generated"] == 1
    generation = report_section(result)  # the report's generation section
    assert generation["provenance"]["counts"]["cache_rejected"] == 1
    assert generation["provenance"]["cache_rejected"]["code"] == "cache.entry-rejected"
    assert generation["provenance"]["cache_rejected"]["outputs"] == {str(main_path()): 1}
    # the worker's warning came back to the driver, for its command to print
    assert [w.code for w in warnings] == ["cache.entry-rejected"] and str(main_path()) in warnings[0].message


def test_vllm_backend_is_refused_cleanly_when_absent(main_card):  # noqa: F811
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed; its backend is exercised on a GPU machine")
    from acards.errors import AcardsError

    card, table, prompts = load_all(main_card)
    requests = missing_requests(table, prompts)[:2]
    with pytest.raises(AcardsError) as raised:
        run(card, requests, backend="vllm")
    assert raised.value.code == "generate.backend-unavailable"
