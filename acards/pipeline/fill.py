"""`acards fill`: recompute a card's claims and write the values into their `reported` blocks.

The card is recomputed exactly as `acards verify` recomputes it (the same load, completion,
recomputation and claim steps, under each claim's thresholds and Holm gate), with its `reported`
blocks set aside, so a block still full of TODO placeholders does not stop it.  Each key a block
already has receives its recomputed value; a claim without a block gets the outcomes of the
diagnostics it requires, the observed mechanism class and the verdict.  Nothing is written unless
every value is known, and the new text is validated before it replaces the card.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from acards.card.model import Card, validate_document
from acards.card.reported import Span, insert_reported, scalar_spans, scalar_text, splice
from acards.card.yaml import child, parse_yaml, read_text
from acards.diagnostics.verdict import combine
from acards.errors import AcardsError, Problem, codes
from acards.numbers import number_text
from acards.report.model import Diagnostics, MechanismDiagnostic
from acards.vocabulary import DEFAULT_BOOTSTRAP, DEFAULT_SEED, FOUR

BOM = "\ufeff"


@dataclass
class Filled:
    """What `fill` wrote: the new card text and each value changed or added, by JSON pointer."""

    text: str
    changes: list[tuple[str, object, object]] = field(default_factory=list)  # (pointer, old, new)
    claims: list[str] = field(default_factory=list)  # the ids of the claims filled

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _in_reported(pointer: str | None) -> bool:
    parts = (pointer or "").split("/")
    return len(parts) >= 4 and parts[1] == "claims" and parts[3] == "reported"


def validate_unfilled(raw: bytes, text: str, path: Path) -> Card:
    """The card validated, allowing TODO placeholders in `reported` blocks (and only there)."""
    try:
        return validate_document(raw, text, path)
    except AcardsError as error:
        remaining = [p for p in error.problems if not (p.code == codes.CARD_PLACEHOLDER and _in_reported(p.location.pointer))]
        if remaining:
            raise AcardsError.collect(remaining) from None
    data, source = parse_yaml(text, str(path))
    return Card(path=path, data=data, source=source, sha256=hashlib.sha256(raw).hexdigest())


def card_without_reported(path: Path) -> tuple[Card, dict, str]:
    """The card validated with every claim's `reported` block set aside (placeholders in those
    blocks are allowed; every other problem is raised), its full data, and its text."""
    raw, text = read_text(path)
    card = validate_unfilled(raw, text, path)
    full = card.data
    stripped = copy.deepcopy(full)
    for claim in stripped["claims"]:
        claim.pop("reported", None)
    return Card(path=card.path, data=stripped, source=card.source, sha256=card.sha256), full, text


def recompute_claims(card: Card, *, bootstrap: int, seed: int, use_cache: bool, generate: bool, device: str | None,
                     digests=None, cache_dir: Path | None = None) -> dict[str, tuple[str, dict[str, Diagnostics]]]:
    """Each claim's verdict and its cells' diagnostics as the claim sees them, by claim id: the steps
    of acards.pipeline.verify, without the comparison with what the card reports."""
    from acards.evidence.digests import DigestCache
    from acards.evidence.records_cache import RecordsCache
    from acards.pipeline.claims import claim_diagnostics, judge_claim
    from acards.pipeline.complete import complete_evidence
    from acards.pipeline.judges import declared, judge_scorers
    from acards.pipeline.load import read_evidence_and_prompts, read_training
    from acards.pipeline.recompute import recompute, thresholds_for

    cache = DigestCache.or_default(digests, use_cache)
    try:
        _pointers, table, prompts = read_evidence_and_prompts(card, cache, RecordsCache.default(cache_dir) if use_cache else None)
    finally:
        cache.close()
    table, _generation = complete_evidence(card, table, prompts, generate=generate, device=device, digests=digests,
                                           cache_dir=cache_dir)
    recomputed = recompute(card, table, prompts, read_training(card), bootstrap=bootstrap, seed=seed)
    _cells, scorers = judge_scorers(card, declared(card), table, recomputed, bootstrap=bootstrap, seed=seed)
    # the verdict is verify's own (under every scorer where the claim requires it)
    return {claim["id"]: (judge_claim(card, recomputed, claim, scorers).verdict,
                          claim_diagnostics(card, recomputed, claim, thresholds_for(card, claim)))
            for claim in card.claims}


class _Values:
    """The recomputed value of each key of one claim's `reported` block."""

    def __init__(self, verdict: str, per_cell: dict[str, Diagnostics]):
        self.verdict, self.per_cell = verdict, per_cell

    def value(self, name: str, key: str, cell: str | None) -> str | float | int | None:
        """The value of `reported[.cells.<cell>].<name>.<key>`; None when there is none."""
        cells = [cell] if cell is not None else list(self.per_cell)
        diagnostics = [self.per_cell[c].by_name(name) for c in cells]
        if key == "outcome":
            return diagnostics[0].outcome if len(diagnostics) == 1 else combine([d.outcome for d in diagnostics])
        if key == "observed":
            observed = {d.observed if isinstance(d, MechanismDiagnostic) else None for d in diagnostics}
            return observed.pop() if len(observed) == 1 else None
        if len(diagnostics) != 1:
            return None
        number = diagnostics[0].estimates.get(key)
        return number if isinstance(number, (int, float)) and not isinstance(number, bool) else None

    def default_block(self, requires: list[str]) -> dict[str, dict | str]:
        """A new block: the outcome of each required diagnostic (and the observed class), the verdict."""
        block: dict[str, dict | str] = {}
        for name in requires:
            entry = {"outcome": self.value(name, "outcome", None)}
            observed = self.value(name, "observed", None) if name == "mechanism" else None
            if observed is not None:
                entry["observed"] = observed
            block[name] = entry
        block["verdict"] = self.verdict
        return block


def _leaves(reported: dict, pointer: str):
    """(pointer, diagnostic, key, cell) of every value of a `reported` block ("verdict" has no key)."""
    for name, block in reported.items():
        if name == "verdict":
            yield child(pointer, name), name, None, None
        elif name == "cells":
            for cell, blocks in (block or {}).items():
                for diagnostic, values in (blocks or {}).items():
                    for key in values or {}:
                        yield child(child(child(child(pointer, name), cell), diagnostic), key), diagnostic, key, cell
        else:
            for key in block or {}:
                yield child(child(pointer, name), key), name, key, None


def check_claim_ids(data: dict, source, claim_ids: list[str]) -> list[str]:
    """The ids of the claims to fill: those named, which must exist, or every claim."""
    known = [claim["id"] for claim in data["claims"]]
    unknown = [claim_id for claim_id in claim_ids if claim_id not in known]
    if unknown:
        raise AcardsError("fill.unknown-claim", f"the card has no claim {', '.join(map(repr, unknown))}",
                          f"the card's claims are: {', '.join(known)}", source.locate("/claims", at_key=True))
    return claim_ids or known


def fill_text(path: Path, text: str, data: dict, recomputed: dict[str, tuple[str, dict[str, Diagnostics]]],
              claim_ids: list[str]) -> Filled:
    """The card text with the chosen claims' `reported` values written (all claims when none are chosen)."""
    _parsed, source = parse_yaml(text, str(path))
    chosen = check_claim_ids(data, source, claim_ids)
    spans = scalar_spans(text, str(path), "/claims")
    values: dict[Span, str | float | int] = {}
    filled = Filled(text)
    inserts: list[tuple[int, dict]] = []
    problems: list[Problem] = []
    for index, claim in enumerate(data["claims"]):
        if claim["id"] not in chosen:
            continue
        filled.claims.append(claim["id"])
        computed = _Values(*recomputed[claim["id"]])
        pointer = f"/claims/{index}/reported"
        if not isinstance(claim.get("reported"), dict) or not claim["reported"]:
            if pointer in source.values:  # `reported:` with nothing under it
                problems.append(_empty_block(source, pointer))
                continue
            block = computed.default_block(claim.get("requires") or list(FOUR))
            inserts.append((index, block))
            filled.changes.append((pointer, None, block))
            continue
        for leaf, name, key, cell in _leaves(claim["reported"], pointer):
            new = computed.verdict if key is None else computed.value(name, key, cell)
            if new is None:
                problems.append(_no_value(source, leaf, name, key, cell, computed))
                continue
            span = spans[leaf]
            values[span] = new
            if text[span.start:span.end] != scalar_text(new, span.style):
                filled.changes.append((leaf, _at(data, leaf), _as_written(new)))
    if problems:
        raise AcardsError.collect(problems)
    new_text = splice(text, values)
    for index, block in sorted(inserts, reverse=True):  # from the end, so earlier claims keep their place
        new_text = insert_reported(new_text, str(path), index, block)
    filled.text = new_text
    return filled


def _as_written(value: str | float | int) -> str | float | int:
    """The value a reader of the filled card gets: a number as rounded by number_text."""
    if isinstance(value, str):
        return value
    text = number_text(value)
    return float(text) if "." in text else int(text)


def _at(data, pointer: str):
    node = data
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _empty_block(source, pointer: str) -> Problem:
    return Problem("fill.empty-block", "this claim's `reported` block holds no keys to fill",
                   "delete the `reported:` line (fill then writes a whole block) or list the keys to fill",
                   source.locate(pointer, at_key=True))


def _no_value(source, pointer: str, name: str, key: str, cell: str | None, computed: _Values) -> Problem:
    cells = [cell] if cell is not None else list(computed.per_cell)
    outcomes = ", ".join(f"{c}: {computed.per_cell[c].by_name(name).outcome}" for c in cells)
    if key == "observed":
        why = "the cells observe different classes, or none" if len(cells) > 1 else "the mechanism class was not observed"
    elif len(cells) > 1:
        why = "a number of a claim over several cells belongs under reported.cells"
    else:
        why = f"the recomputation has no {name}.{key}"
    return Problem("fill.no-value", f"{name}.{key} cannot be filled: {why} ({outcomes})",
                   "remove this key from the `reported` block, or put it under `reported.cells.<cell id>`; "
                   "run `acards verify --format json` to see what is recomputed", source.locate(pointer, at_key=True))


def fill(card_path: str | Path, *, claim_ids: list[str] | None = None, bootstrap: int = DEFAULT_BOOTSTRAP,
         seed: int = DEFAULT_SEED, use_cache: bool = True, generate: bool = True, device: str | None = None,
         digests=None, cache_dir: Path | None = None, write: bool = True) -> Filled:
    """Recompute the card and write the values into its `reported` blocks (every claim, or those of
    ``claim_ids``).  The file is replaced atomically, and only when something changed."""
    from acards.files import atomic_write

    path = Path(card_path)
    card, data, text = card_without_reported(path)
    check_claim_ids(data, card.source, list(claim_ids or []))  # before the work of recomputing
    recomputed = recompute_claims(card, bootstrap=bootstrap, seed=seed, use_cache=use_cache, generate=generate,
                                  device=device, digests=digests, cache_dir=cache_dir)
    filled = fill_text(path, text, data, recomputed, list(claim_ids or []))
    if filled.text != text:
        raw, _ = read_text(path)
        bom = BOM if raw.startswith(BOM.encode("utf-8")) else ""
        new_raw = (bom + filled.text).encode("utf-8")
        check = validate_unfilled(new_raw, filled.text, path)  # what is written must be a valid card
        _check_written(check.data, filled)
        if write:
            atomic_write(path, new_raw)
    return filled


def _check_written(data: dict, filled: Filled) -> None:
    """The values read back from the new text are the values written (a guard on the splicing)."""
    for pointer, _old, new in filled.changes:
        got = _at(data, pointer)
        if got != new:
            raise AcardsError("internal.error", f"fill wrote {new!r} at {pointer} but reads back {got!r}",
                              "this is a bug in acards: report it with the card")
