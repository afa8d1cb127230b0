"""How long `acards registry build` takes for a registry of 1,000 cards (goal: ≤ 10 s).

Publishes N synthetic cards through the real `registry.store.publish`, each a signed in-toto Statement
whose predicate is the shipped example's card (with its own id and title) and its real
verification report, rendered to card.html and card.md by the same renderer `acards publish`
uses (render_card). Then times `site.build.build_site` — which verifies the whole registry first — and,
for the breakdown, `verify_registry` alone. Prints numbers; it is not a test.

    python benchmarks/bench_site.py [CARDS]
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _util import machine, timed, verdict  # noqa: E402

from acards.attest import dsse, in_toto  # noqa: E402
from acards.attest.keys import load_private_key, new_key  # noqa: E402
from acards.canonical import canonical_bytes  # noqa: E402
from acards.card.model import load_card  # noqa: E402
from acards.pipeline.verify import verify  # noqa: E402
from acards.registry import audit, store  # noqa: E402
from acards.site.build import build_site  # noqa: E402
from acards.site.renderer import renderer  # noqa: E402

GOAL_SECONDS = 10.0
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny-defense"


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        shutil.copytree(EXAMPLE, folder / "card")
        card = load_card(folder / "card" / "card.yaml")
        report = verify(folder / "card" / "card.yaml", bootstrap=200)
        new_key(folder / "registry.key")
        new_key(folder / "author.key")
        root = folder / "registry"
        store.init_registry(root, "bench.acards/site", folder / "registry.key")
        author_id = store.add_trusted_key(root, folder / "author.key.pub")
        registry_key = load_private_key(folder / "registry.key")
        author = load_private_key(folder / "author.key")
        render = renderer([author_id])
        now = datetime(2026, 5, 1, tzinfo=timezone.utc)

        def envelope(i: int) -> bytes:
            data = copy.deepcopy(card.data)
            data["id"], data["title"] = f"synthetic-{i:04d}", f"Synthetic card {i} <b>not bold</b>"
            card_report = copy.deepcopy(report)
            card_report["card"]["id"] = data["id"]
            subjects = [("card.yaml", hashlib.sha256(data["id"].encode()).hexdigest()),
                        ("evidence/records.jsonl", card.data["evidence"]["records"][0]["sha256"])]
            statement = in_toto.statement(subjects, in_toto.PREDICATE_TYPE, {"card": data, "report": card_report})
            return canonical_bytes(dsse.sign_envelope(dsse.PAYLOAD_TYPE, canonical_bytes(statement), author))

        envelopes = [envelope(i) for i in range(size)]
        _, publishing = timed(lambda: [store.publish(root, e, registry_key, render, now) for e in envelopes])
        result, verifying = timed(lambda: audit.verify_registry(root))
        assert result.ok and result.size == size, [str(p) for p in result.problems[:5]]
        summary, cold = timed(lambda: build_site(root))
        assert summary["versions"] == size
        _, warm = timed(lambda: build_site(root))  # replaces an existing site/
        files = list((root / "site").rglob("*"))
        total = sum(path.stat().st_size for path in files if path.is_file())
        print(f"machine                          {machine()}")
        print(f"cards                            {size} (real publish, rendered with render_card)")
        print(f"publish all                      {publishing:7.2f} s  ({publishing / size * 1000:.1f} ms per card)")
        print(f"verify_registry alone            {verifying:7.2f} s")
        print(f"registry build (first)           {cold:7.2f} s")
        print(f"registry build (over a site)     {warm:7.2f} s  (goal ≤ {GOAL_SECONDS:g} s: {verdict(max(cold, warm) <= GOAL_SECONDS)})")
        print(f"site                             {len(files)} files, {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
