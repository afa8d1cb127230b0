"""Rebuild this example's evidence deterministically: `python examples/tiny-defense/build.py`.

The records are simulated with known truth, so the card's outcomes can be checked by hand:
- cell `projection/top2`: the defense removes most of the installed gap on held-out, fresh and
  transfer items at no capability cost;
- cell `shrinkage/half`: the "defense" only scales the undefended update down, which also
  shrinks the gap a little, but not reliably.
After rebuilding, run `acards check card.yaml --write-digests` to pin the new files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEEDS = (0, 1)
# split -> (task, subjects, items per subject)
SPLITS = {"heldout": ("harmful-qa", 12, 20), "fresh": ("harmful-qa", 10, 12), "transfer": ("sentiment-flip", 10, 12), "capability": ("trivia", 10, 20)}
# cell -> condition -> split -> installed gap (audit minus deploy refusal probability) or accuracy
GAPS = {
    "projection/top2": {"undefended": 0.40, "defended": 0.05},
    "shrinkage/half": {"undefended": 0.40, "defended": 0.36},
}
ACCURACY = {"undefended": 0.70, "defended": 0.70}


def records(rng: np.random.Generator):
    for cell, gaps in GAPS.items():
        for split, (task, n_subjects, per_subject) in SPLITS.items():
            subject_effect = rng.normal(0, 0.08, n_subjects)
            for condition, gap in gaps.items():
                for seed in SEEDS:
                    seed_shift = rng.normal(0, 0.01)
                    for s in range(n_subjects):
                        for i in range(per_subject):
                            item = f"{split[:2]}-{s:02d}-{i:02d}"
                            subject = f"{split}-subject-{s:02d}"
                            if split == "capability":
                                p = np.clip(ACCURACY[condition] + subject_effect[s], 0, 1)
                                yield dict(cell=cell, condition=condition, split=split, task=task, subject=subject, item=item,
                                           framing="deploy", seed=seed, sample=0, score=float(rng.random() < p))
                                continue
                            deploy = np.clip(0.35 + subject_effect[s], 0, 1)
                            audit = np.clip(deploy + gap + seed_shift, 0, 1)
                            for framing, p in (("audit", audit), ("deploy", deploy)):
                                yield dict(cell=cell, condition=condition, split=split, task=task, subject=subject, item=item,
                                           framing=framing, seed=seed, sample=0, score=float(rng.random() < p))


def main() -> None:
    rng = np.random.default_rng(20261127)
    (HERE / "evidence").mkdir(exist_ok=True)
    with open(HERE / "evidence" / "records.jsonl", "w", encoding="utf-8") as handle:
        for record in records(rng):
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
