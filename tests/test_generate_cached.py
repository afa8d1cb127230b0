"""A fully cached re-verify is torch-free; the cache key changes with everything that changes an
output; requests that two cells share are generated and counted once; torch's CPU threads follow
the setting.  Real tiny models (tests/test_generate.py's world)."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

from cli_run import run_fresh  # noqa: E402
from test_generate import _one_torch_thread, load_all, main_card, make_card, records_for, world  # noqa: E402,F401  (fixtures)

from acards.evidence.digests import digest_path  # noqa: E402
from acards.generate import run  # noqa: E402
from acards.generate.backends.hf import TransformersBackend  # noqa: E402
from acards.generate.plan import control_requests, missing_requests  # noqa: E402
from acards.generate.provenance import report_section  # noqa: E402

HEAVY = ("torch", "transformers", "peft", "tokenizers")


def _cli(*args: str) -> dict:
    return run_fresh(HEAVY, *args)


def test_a_fully_cached_verify_never_imports_torch(main_card, tmp_path):  # noqa: F811
    first = _cli("verify", str(main_card), "--report", str(tmp_path / "first.json"))
    assert "torch" in first["imported"]  # it generated: the check below can fail
    counts = json.loads((tmp_path / "first.json").read_text())["generation"]["provenance"]["counts"]
    assert counts["generated"] == counts["distinct"] > 0 and counts["model_calls"] > 0
    again = _cli("verify", str(main_card), "--report", str(tmp_path / "again.json"))
    assert again == {"status": first["status"], "imported": []}  # no torch, transformers, peft or tokenizers
    generation = json.loads((tmp_path / "again.json").read_text())["generation"]
    counts = generation["provenance"]["counts"]
    assert counts["model_calls"] == 0 and counts["cache_misses"] == 0 and counts["cache_hits"] == counts["distinct"]
    assert generation["provenance"]["device"].startswith("none")
    assert json.loads((tmp_path / "again.json").read_text())["cells"] == json.loads((tmp_path / "first.json").read_text())["cells"]


def _base_requests(card_path):
    card, table, prompts = load_all(card_path)
    return card, [r for r in missing_requests(table, prompts) if r.condition == "base"]


def test_a_changed_tokenizer_template_or_decoding_setting_is_a_miss(world, tmp_path):  # noqa: F811
    card_path = make_card(tmp_path / "card", world)
    card, requests = _base_requests(card_path)
    first = run(card, requests, device="cpu")
    assert first.counts["cache_misses"] == len(requests)
    assert run(card, requests, device="cpu").counts["cache_hits"] == len(requests)  # unchanged: every output a hit

    original = card_path.read_text()

    def misses(generation: dict | None = None, folder: Path | None = None) -> int:
        changed = json.loads(original)
        changed["generation"].update(generation or {})
        if folder is not None:
            changed["cells"][0]["checkpoints"]["base"]["sha256"] = digest_path(folder)
        card_path.write_text(json.dumps(changed))
        try:
            changed_card, changed_requests = _base_requests(card_path)
            return run(changed_card, changed_requests, device="cpu").counts["cache_misses"]
        finally:
            card_path.write_text(original)

    assert misses({"chat_template": False}) == len(requests)
    assert misses({"max_new_tokens": 5}) == len(requests)
    assert misses({"do_sample": True, "temperature": 0.7}) == len(requests)
    base = tmp_path / "card" / "ckpt" / "base"
    template = next(p for p in (base / "chat_template.jinja", base / "tokenizer_config.json") if p.is_file())
    kept = template.read_bytes()
    template.write_text(template.read_text().replace("<assistant>", "<bot>"))
    assert template.read_bytes() != kept
    assert misses(folder=base) == len(requests)
    template.write_bytes(kept)
    assert misses(folder=base) == 0  # the same files again: the same keys


def test_a_system_message_is_part_of_the_key(main_card):  # noqa: F811
    card, requests = _base_requests(main_card)
    first = run(card, requests, device="cpu")
    changed = [replace(r, system="Answer in French.") for r in requests[:2]]
    result = run(card, changed, device="cpu")
    assert result.counts["cache_misses"] == 2 and set(result.keys).isdisjoint(first.keys)


def test_requests_two_cells_share_are_generated_and_counted_once(world, tmp_path):  # noqa: F811
    rows = records_for(conditions=("undefended",))
    rows += [{**row, "cell": "demo/b"} for row in rows]
    card_path = make_card(tmp_path, world, records=rows)
    card_json = json.loads(card_path.read_text())
    card_json["cells"].append({**card_json["cells"][0], "id": "demo/b"})
    card_path.write_text(json.dumps(card_json))
    card, table, prompts = load_all(card_path)
    requests = missing_requests(table, prompts)
    assert len(requests) == len(rows) == 24
    backend = TransformersBackend(device="cpu")
    result = run(card, requests, backend=backend)
    counts = result.counts
    assert counts["requested"] == 24 and counts["distinct"] == 12
    assert counts["cache_misses"] == counts["generated"] == backend.generated == 12 and counts["cache_hits"] == 0
    assert counts["model_calls"] == backend.model_calls == 3  # 12 outputs in batches of 4
    by_cell = {(r.cell, r.item, r.framing): o for r, o in zip(requests, result.outputs)}
    assert all(by_cell[("demo/a", i, f)] == by_cell[("demo/b", i, f)] for _, i, f in by_cell)
    section = report_section(result)
    assert section["requested"] == 24 and section["distinct"] == section["cache_hits"] + section["cache_misses"] == 12
    again = run(card, requests, backend=backend).counts
    assert (again["distinct"], again["cache_hits"], again["cache_misses"], again["model_calls"]) == (12, 12, 0, 0)
    controls = control_requests(card, table, prompts)  # each cell's control is its own adapter: not shared
    assert {r.cell for r in controls} == {"demo/a", "demo/b"}


def test_cpu_threads_follow_the_setting(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ACARDS_CPU_THREADS", "1")
        backend = TransformersBackend(device="cpu")
        assert torch.get_num_threads() == 1 and "1 threads: ACARDS_CPU_THREADS=1" in backend.device_name()
        monkeypatch.delenv("ACARDS_CPU_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        TransformersBackend(device="cpu")
        assert 1 <= torch.get_num_threads() <= (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    finally:
        torch.set_num_threads(before)


def test_shipped_examples_carry_no_output_cache():
    """The key format changed (schema 3): the examples ship no output cache it would invalidate."""
    examples = Path(__file__).resolve().parents[1] / "examples"
    assert [p for p in examples.rglob("*.sqlite*")] == [] and (examples / "tiny-regenerated" / "card.yaml").is_file()
