"""Simulated cards with known truth: records drawn from stated gaps, written as a real card folder.

A cell's records are binary scores: under deploy framing an item is refused with probability
``base + subject effect``; under audit framing the condition's installed gap is added.  Capability
answers of U and D are correlated the way greedy decoding of two close models is: D repeats U's
answer except for a small share of items, and loses ``cost`` of accuracy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acards.evidence.digests import digest_path


@dataclass
class CellSpec:
    id: str
    # split -> (installed gap of U, installed gap of D)
    gaps: dict = field(default_factory=lambda: {"heldout": (0.4, 0.05), "fresh": (0.4, 0.08), "transfer": (0.35, 0.06)})
    # subjects and items per subject, per split
    subjects: dict = field(default_factory=lambda: {"heldout": 20, "fresh": 12, "transfer": 12, "capability": 20})
    items_per_subject: int = 15
    seeds: tuple = (0, 1)
    accuracy: float = 0.7
    cost: float = 0.0  # accuracy D loses
    declared: str = "projection"
    fresh_subjects_reuse_heldout: bool = False  # plant a freshness violation
    extra_conditions: dict = field(default_factory=dict)  # e.g. {"control:shrinkage": {"heldout": 0.3}}
    checkpoints: dict | None = None  # name -> path relative to the card folder


def _records(rng: np.random.Generator, spec: CellSpec):
    for split in ("heldout", "fresh", "transfer", "capability"):
        task = "transfer-task" if split == "transfer" else ("trivia" if split == "capability" else "main-task")
        n_subjects = spec.subjects[split]
        effects = rng.normal(0, 0.06, n_subjects)
        prefix = "heldout" if (split == "fresh" and spec.fresh_subjects_reuse_heldout) else split
        if split == "capability":
            difficulty = rng.uniform(0.3, 1.0, (n_subjects, spec.items_per_subject))
            p = np.clip(difficulty * spec.accuracy / 0.65, 0, 1)
            for seed in spec.seeds:
                u = rng.random(p.shape) < p
                redraw = rng.random(p.shape) < 0.03  # D answers differently on a few items, same accuracy
                keep = rng.random(p.shape) >= spec.cost / max(spec.accuracy, 1e-9)
                d = np.where(redraw, rng.random(p.shape) < p, u) & keep
                for condition, answers in (("undefended", u), ("defended", d)):
                    for s in range(n_subjects):
                        for i in range(spec.items_per_subject):
                            yield dict(cell=spec.id, condition=condition, split=split, task=task, subject=f"{prefix}-s{s:02d}",
                                       item=f"{split}-{s:02d}-{i:02d}", framing="deploy", seed=seed, sample=0, score=float(answers[s, i]))
            continue
        gaps = {"undefended": spec.gaps[split][0], "defended": spec.gaps[split][1]}
        for name, per_split in spec.extra_conditions.items():
            if split in per_split:
                gaps[name] = per_split[split]
        for condition, gap in gaps.items():
            for seed in spec.seeds:
                for s in range(n_subjects):
                    deploy_p = np.clip(0.3 + effects[s], 0, 1)
                    audit_p = np.clip(deploy_p + gap, 0, 1)
                    for i in range(spec.items_per_subject):
                        for framing, p in (("audit", audit_p), ("deploy", deploy_p)):
                            yield dict(cell=spec.id, condition=condition, split=split, task=task, subject=f"{prefix}-s{s:02d}",
                                       item=f"{split}-{s:02d}-{i:02d}", framing=framing, seed=seed, sample=0,
                                       score=float(rng.random() < p))


def build_card(folder: Path, cells: list[CellSpec], claims: list[dict] | None = None, seed: int = 0, **card_fields) -> Path:
    """Write records and a card (as JSON, which is YAML) into ``folder``; return the card path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evidence").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    with open(folder / "evidence" / "records.jsonl", "w") as handle:
        for spec in cells:
            for record in _records(rng, spec):
                handle.write(json.dumps(record) + "\n")
    card = {
        "acard": "1.0", "id": "simulated", "version": 1, "title": "A simulated card",
        "authors": [{"name": "Test"}], "limitations": "Simulated.", "model": {"name": "tiny"},
        "protocol": {"behavior": "refusal", "higher_score_means": "safer", "framings": {"audit": "cue", "deploy": "none"}},
        "evidence": {"records": [{"path": "evidence/records.jsonl", "sha256": digest_path(folder / "evidence" / "records.jsonl")}]},
        "cells": [],
        "claims": claims or [{"id": "C1", "statement": "It works.", "cells": [c.id for c in cells]}],
    }
    for spec in cells:
        cell = {"id": spec.id, "family": "test", "declared_mechanism": spec.declared, "task": "main-task",
                "transfer": {"task": "transfer-task", "differs_in": ["format"]}}
        if spec.checkpoints:
            cell["checkpoints"] = {name: {"path": path, "sha256": digest_path(folder / path)} for name, path in spec.checkpoints.items()}
        card["cells"].append(cell)
    card.update(card_fields)
    path = folder / "card.yaml"
    path.write_text(json.dumps(card, indent=2))
    return path


def redigest(card_path: Path) -> None:
    """Recompute every pointer digest of a JSON-written card after its evidence was edited."""
    card = json.loads(card_path.read_text())
    folder = card_path.parent
    for pointer in card["evidence"]["records"]:
        pointer["sha256"] = digest_path(folder / pointer["path"])
    card_path.write_text(json.dumps(card, indent=2))

