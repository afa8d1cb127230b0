"""Pre-registration (docs/preregistering.md): the plan of a card before its evidence exists, signing
it, and checking a finished card against the plan it names.

``plan_card`` reads a card as it stands before the experiment: every rule of the schema holds, but
placeholders (TODO) may remain outside the plan (evidence digests, reported numbers, the title);
a placeholder inside the plan is refused. ``check_preregistration`` is the step of `acards verify`
that compares the card with its pre-registered plan: from the registry's log with ``registry``
(the logged time is the registry's), else from the copy in the card's folder (no logged time: a
warning says so).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from acards.canonical import canonical_bytes
from acards.card.analysis_plan import analysis_plan, deviations
from acards.card.model import Card
from acards.card.validate import placeholders, schema_problems, semantic_problems
from acards.card.yaml import parse_yaml, read_text
from acards.errors import AcardsError, Location, Problem
from acards.evidence.cachekey import record_warning
from acards.evidence.paths import open_inside
from acards.evidence.prompts import Prompts
from acards.pipeline.load import read_card_prompts
from acards.report.model import Preregistration, PreregistrationDeviation

MAX_PLAN_ENVELOPE = 16 * 1024 * 1024


def plan_card(path: str | Path) -> Card:
    """The card at ``path`` as it stands before its evidence exists (see the module docstring)."""
    path = Path(path)
    raw, text = read_text(path)
    data, source = parse_yaml(text, str(path))
    if not isinstance(data, dict):
        raise AcardsError("schema.type", "a card is a YAML mapping of fields", "start from `acards init`", source.locate(""))
    problems = schema_problems(data, source, set(placeholders(data))) + semantic_problems(data, source)
    if problems:
        raise AcardsError.collect(problems)
    return Card(path=path, data=data, source=source, sha256=hashlib.sha256(raw).hexdigest())


def split_subjects(prompts: Prompts) -> dict[str, list[str]] | None:
    """The subjects each split of the prompts file lists; None when the card names no prompts file."""
    if prompts.file is None:
        return None
    found: dict[str, set[str]] = {}
    for prompt in prompts.index.values():
        found.setdefault(prompt.split, set()).add(prompt.subject)
    return {split: sorted(subjects) for split, subjects in found.items()}


def card_plan(card: Card, private_subjects: bool = False, prompts: Prompts | None = None) -> dict:
    """The analysis plan of ``card``, its subjects read from its prompts file (``prompts`` when read
    already); a placeholder in the plan is refused (preregistration.placeholder)."""
    unfinished = list(placeholders(analysis_plan(card.data)))
    if unfinished:
        raise AcardsError.collect([Problem(
            "preregistration.placeholder", f"the analysis plan still holds a TODO placeholder at {pointer}",
            "fix every claim, threshold, cell, seed, scorer and the prompts file before pre-registering; "
            "placeholders may remain only in evidence digests and reported values", Location(file=str(card.path), pointer=pointer),
        ) for pointer in unfinished])
    prompts = read_card_prompts(card) if prompts is None else prompts
    return analysis_plan(card.data, split_subjects(prompts), private_subjects=private_subjects, prompts_sha256=prompts.sha256)


def plan_payload(card: Card, private_subjects: bool = False) -> bytes:
    """The payload `acards preregister` signs: the plan's in-toto Statement, RFC 8785 bytes."""
    from acards.attest.plan_statement import plan_statement

    prompts = (card.data.get("evidence") or {}).get("prompts")
    pinned = prompts if prompts and "path" in prompts else None  # `{from: import}` prompts: bound by the plan's digest alone
    return canonical_bytes(plan_statement(card_plan(card, private_subjects), pinned))


def default_plan_path(card_path: Path) -> Path:
    return card_path.with_name(card_path.stem + ".plan.envelope.json")


# --- verify: the card against its plan --------------------------------------------------------


def _read_local_copy(card: Card, relative: str) -> bytes:
    location = card.source.locate("/preregistration/envelope")
    with open_inside(card.folder, relative, location) as handle:
        data = handle.read(MAX_PLAN_ENVELOPE + 1)
    if len(data) > MAX_PLAN_ENVELOPE:
        raise AcardsError("preregistration.bad-plan", f"{relative} is over {MAX_PLAN_ENVELOPE} bytes",
                          "keep the envelope `acards preregister` wrote", location)
    return data


def _plan_source(card: Card, registry: Path | None, trusted_keys: dict | None) -> tuple[dict, str | None, str, list[str]]:
    """(the plan Statement, logged_at, source, verified signers) of the plan the card names."""
    # imported here: the signature code is only needed for a pre-registered card
    from acards.attest.plan_statement import open_plan_envelope, open_plan_unverified

    named = card.data["preregistration"]
    digest, location = named["entry"], card.source.locate("/preregistration/entry")
    if registry is not None:
        from acards.registry import reader
        from acards.registry.preregistrations import logged_plan

        entry, envelope = logged_plan(registry, digest)
        keys = {**reader.trusted_keys(registry), **(trusted_keys or {})}
        statement, payload_digest, signers = open_plan_envelope(envelope, keys)
        logged_at, source = entry["time"], "registry"
    elif named.get("envelope"):
        envelope = _read_local_copy(card, named["envelope"])
        if trusted_keys:
            statement, payload_digest, signers = open_plan_envelope(envelope, trusted_keys)
        else:
            (statement, payload_digest), signers = open_plan_unverified(envelope), ()
            record_warning(Problem("preregistration.unverified", "the plan's signatures were not checked (no registry "
                                   "and no --trusted-key)", "pass --registry, or --trusted-key with the author's key",
                                   location))
        logged_at, source = None, "card folder"
        record_warning(Problem("preregistration.not-logged-here", "the plan was read from the card's folder: when it "
                               "was logged is unknown", "pass --registry with the registry the plan was logged in", location))
    else:
        raise AcardsError("preregistration.unavailable", "the card names a pre-registration but there is neither a "
                          "registry nor a local copy to read it from",
                          "pass --registry, or keep the plan's envelope in the card's folder as preregistration.envelope",
                          location)
    if payload_digest != digest:
        raise AcardsError("preregistration.digest-mismatch", f"the plan's payload has digest {payload_digest}, the card "
                          f"names {digest}", "the plan's envelope was altered or replaced; do not trust it", location)
    return statement, logged_at, source, list(signers)


def check_preregistration(card: Card, prompts: Prompts, registry: Path | None = None,
                          trusted_keys: dict | None = None) -> Preregistration | None:
    """The card against the plan it names (None when it names none): every deviation, with the two
    values. Raises when the plan cannot be found or does not check out."""
    if not card.data.get("preregistration"):
        return None
    statement, logged_at, source, signers = _plan_source(card, registry, trusted_keys)
    planned = statement["predicate"]["plan"]
    private = any("subjects" not in split for split in (planned.get("splits") or {}).values())
    actual = analysis_plan(card.data, split_subjects(prompts), private_subjects=private, prompts_sha256=prompts.sha256)
    found = [PreregistrationDeviation(**deviation.as_json()) for deviation in deviations(planned, actual)]
    return Preregistration(entry=card.data["preregistration"]["entry"], logged_at=logged_at, matched=not found,
                           deviations=found, source=source, signers=signers)
