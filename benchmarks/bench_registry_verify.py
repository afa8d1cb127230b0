"""How long `verify_registry` takes over a 1,000-entry registry (goal: ≤ 5 s).

Builds the registry in a temporary folder through the real `publish` (signed in-toto cards, two
rendered files each), then times verification with and without re-rendering, and the reader's
proofs. Prints numbers; it is not a test.

    python benchmarks/bench_registry_verify.py [ENTRIES]
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from acards.attest import dsse, in_toto
from acards.attest.keys import load_private_key, new_key
from acards.registry import audit, proofs, store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import timed  # noqa: E402

from acards.canonical import canonical_bytes

GOAL_SECONDS = 5.0


def signed_card(author: Ed25519PrivateKey, card_id: str, version: int) -> bytes:
    predicate = {
        "card": {"id": card_id, "version": version, "title": f"{card_id} v{version}"},
        "report": {"acards_version": "0.1.0", "claims": [{"id": "C1", "verdict": "supported"}]},
    }
    card_digest = hashlib.sha256(f"{card_id}@{version}".encode()).hexdigest()
    subjects = [("card.yaml", card_digest), ("evidence/records.jsonl", "ab" * 32)]
    payload = canonical_bytes(in_toto.statement(subjects, in_toto.PREDICATE_TYPE, predicate))
    return canonical_bytes(dsse.sign_envelope(dsse.PAYLOAD_TYPE, payload, author))


def render(statement: dict) -> dict[str, bytes]:
    card = statement["predicate"]["card"]
    return {
        "card.md": f"# {card['title']}\n".encode(),
        "card.html": f"<h1>{card['title']}</h1>\n".encode(),
    }


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        new_key(folder / "registry.key")
        new_key(folder / "author.key")
        root = folder / "registry"
        store.init_registry(root, "bench.acards/registry", folder / "registry.key")
        store.add_trusted_key(root, folder / "author.key.pub")
        registry_key = load_private_key(folder / "registry.key")
        author = load_private_key(folder / "author.key")
        now = datetime(2026, 5, 1, tzinfo=timezone.utc)
        # A quarter of the cards get a second and third version, so supersedes chains are checked.
        envelopes = [signed_card(author, f"card-{i % (size // 2)}", 1 + i // (size // 2))
                     for i in range(size)]
        _, build = timed(lambda: [store.publish(root, e, registry_key, render, now) for e in envelopes])
        result, plain = timed(lambda: audit.verify_registry(root))
        assert result.ok and result.size == size, [str(p) for p in result.problems[:5]]
        result, rerendered = timed(lambda: audit.verify_registry(root, render=render))
        assert result.ok
        saved = (root / "log" / "checkpoints" / "1.json").read_bytes()
        result, external = timed(lambda: audit.verify_registry(root, checkpoint=saved))
        assert result.ok
        public_key = registry_key.public_key()
        digest = result.entries[size // 2]["digest"]
        proof, included = timed(lambda: proofs.inclusion(root, digest))
        _, included_check = timed(lambda: proofs.verify_inclusion_proof(proof, public_key, digest))
        proof, consistent = timed(lambda: proofs.consistency(root, 1))
        _, consistent_check = timed(lambda: proofs.verify_consistency_proof(proof, public_key, saved))
        print(f"entries                          {size}")
        print(f"build via publish                {build:7.2f} s  ({build / size * 1000:.1f} ms per publish)")
        print(f"verify_registry                  {plain:7.2f} s  (goal ≤ {GOAL_SECONDS:g} s)")
        print(f"verify_registry, re-rendering    {rerendered:7.2f} s")
        print(f"verify_registry, saved checkpoint{external:7.2f} s")
        print(f"inclusion proof (make, check)    {included:7.2f} s, {included_check:.4f} s")
        print(f"consistency proof (make, check)  {consistent:7.2f} s, {consistent_check:.4f} s")
        print(f"ratio to goal                    {plain / GOAL_SECONDS:7.2f}")


if __name__ == "__main__":
    main()
