"""Verifying a registry offline (SPEC §9): every key, log line, checkpoint and card, problems collected.

``verify_registry`` checks the log's lines (form, origin, index, the rules), every checkpoint
(signature by the registry key, origin, root over the log's prefix, each one extending the last),
an optional checkpoint a reader saved earlier (the log must extend it), the writer's state if any
(a warning when it does not describe the log), and every published card
(its envelope's signatures by trusted keys, the digest, the stored statement and manifest, the
logged signers, the rendered pages' hashes, and with ``render`` that they re-render byte for
byte), and every pre-registered plan (``preregistrations.verify_plans``). What a crashed writer leaves is a warning, not a problem (see ``acards.registry.store``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards import merkle
from acards.canonical import canonical_bytes
from acards.errors import AcardsError, Location, Problem
from acards.registry.attestations import verify_attestations
from acards.registry.cards import Render, card_identity, checked_render_output, verified_card
from acards.registry.checkpoints import Checkpoint, bad_checkpoint, open_checkpoint
from acards.registry.disk import (
    LOCK_TIMEOUT,
    Log,
    is_legacy_layout,
    line_location,
    load_trusted_keys,
    locked,
    read_checkpoints,
    read_config,
    read_log,
    read_optional,
    registry_public_key,
)
from acards.registry.entries import HINT_RESTORE, parse_entry, sha256_hex
from acards.registry.index import build_index
from acards.registry.layout import (
    CARD_FILES,
    ENVELOPE,
    KEYS,
    MANIFEST,
    REGISTRY_KEY,
    STATEMENT,
    Layout,
    card_name,
    checkpoint_name,
    key_file_name,
    key_name,
)
from acards.registry.preregistrations import verify_plans
from acards.registry.rules import LogRules
from acards.registry.state import open_state, stale_state
from acards.registry.trust import signer_names


@dataclass
class RegistryVerification:
    """What ``verify_registry`` found. ``ok`` when there are no problems; warnings are what a
    crashed writer can leave, and the next writer repairs."""

    origin: str
    size: int  # complete log lines
    root: str  # hex RFC 6962 root over them
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    revoked: dict[str, str] = field(default_factory=dict)  # digest -> reason
    entries: list[dict] = field(default_factory=list)  # the readable entries, in log order

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        if self.problems:
            raise AcardsError.collect(self.problems)

    def to_dict(self) -> dict:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "ok": self.ok,
            "problems": [problem.to_dict() for problem in self.problems],
            "warnings": [warning.to_dict() for warning in self.warnings],
            "revoked": dict(self.revoked),
        }


def _verify_lines(log: Log, origin: str, result: RegistryVerification) -> LogRules:
    """Each line's form, then the rules over the readable ones."""
    rules = LogRules(origin)
    for index, line in enumerate(log.lines):
        where = line_location(index)
        try:
            entry = parse_entry(line, where)
        except AcardsError as error:
            result.problems += error.problems
            rules.record(None)
            continue
        result.problems += rules.admit(entry, where)
        result.entries.append(entry)
    if log.torn:
        result.warnings.append(Problem(
            "registry.torn-tail",
            f"the log ends in {len(log.torn)} bytes without a newline (an interrupted append)",
            "the next publish removes them; nothing was published by that attempt",
            line_location(len(log.lines)),
        ))
    return rules


def _verify_stored_checkpoints(
    stored: Mapping[int, bytes],
    registry_key: Ed25519PublicKey,
    origin: str,
    tree: merkle.Tree,
    roots: list[bytes],
    result: RegistryVerification,
) -> None:
    size = tree.size
    valid: dict[int, Checkpoint] = {}
    for number in sorted(stored):
        where = Location(file=checkpoint_name(number))
        try:
            checkpoint = open_checkpoint(stored[number], registry_key, where)
        except AcardsError as error:
            result.problems += error.problems
            continue
        if checkpoint.origin != origin:
            result.problems.append(Problem(
                "registry.foreign-origin",
                f"checkpoint names origin {checkpoint.origin!r}, not {origin!r}",
                "a checkpoint copied from another registry; " + HINT_RESTORE,
                where,
            ))
        elif checkpoint.size != number:
            result.problems.append(bad_checkpoint(
                f"the file for size {number} holds the checkpoint for size {checkpoint.size}", where
            ).problems[0])
        elif number > size:
            result.problems.append(Problem(
                "registry.log-truncated",
                f"a signed checkpoint covers {number} entries, but the log has {size}",
                "log lines were deleted; " + HINT_RESTORE,
                where,
            ))
        elif checkpoint.root != roots[number]:
            result.problems.append(Problem(
                "registry.root-mismatch",
                f"the log's first {number} entries do not hash to the signed root",
                "log lines were edited, deleted or reordered; " + HINT_RESTORE,
                where,
            ))
        else:
            valid[number] = checkpoint
    _check_checkpoint_sequence(valid, tree, result)
    _report_missing_checkpoints(stored, size, result)


def _check_checkpoint_sequence(
    valid: Mapping[int, Checkpoint], tree: merkle.Tree, result: RegistryVerification
) -> None:
    """Each checkpoint must extend the one before it (RFC 9162 consistency proofs).

    Implied when every root matches the log, but checked through merkle's own verifier so that
    the prefix-root shortcut is never the only thing standing between a log and its checkpoints.
    Each proof comes from the one tree of the whole log in O(log n): O(n log n) hashes in all.
    """
    sizes = [number for number in sorted(valid) if number > 0]
    for old, new in zip(sizes, sizes[1:]):
        proof = tree.consistency_proof(old, new)
        try:
            merkle.verify_consistency(old, new, valid[old].root, valid[new].root, proof)
        except AcardsError as error:
            result.problems.append(Problem(
                "registry.inconsistent-checkpoint",
                f"checkpoint {new} does not extend checkpoint {old}: {error.problems[0].message}",
                HINT_RESTORE,
                Location(file=checkpoint_name(new)),
            ))


def _report_missing_checkpoints(
    stored: Mapping[int, bytes], size: int, result: RegistryVerification
) -> None:
    for number in range(size + 1):
        if number in stored:
            continue
        where = Location(file=checkpoint_name(number))
        if number == size and number - 1 in stored:  # a crash between a line and its checkpoint
            result.warnings.append(Problem(
                "registry.unsigned-head",
                f"the newest entry has no checkpoint for size {number} yet",
                "the next publish signs it; readers see the log up to size "
                f"{number - 1} until then",
                where,
            ))
        else:
            result.problems.append(Problem(
                "registry.missing-checkpoint",
                f"there is no checkpoint for size {number}",
                HINT_RESTORE,
                where,
            ))


def _verify_external_checkpoint(
    data: bytes,
    registry_key: Ed25519PublicKey,
    origin: str,
    tree: merkle.Tree,
    roots: list[bytes],
    result: RegistryVerification,
) -> None:
    """The log must extend a checkpoint a reader saved earlier: detects rewritten history."""
    where = Location(file="<saved checkpoint>")
    try:
        saved = open_checkpoint(data, registry_key, where)
    except AcardsError as error:
        result.problems += error.problems
        return
    if saved.origin != origin:
        result.problems.append(Problem(
            "registry.foreign-origin",
            f"the saved checkpoint is for origin {saved.origin!r}, not {origin!r}",
            "compare a registry only with checkpoints it signed",
            where,
        ))
        return
    size = tree.size
    inconsistent = None
    if saved.size > size:
        inconsistent = f"the saved checkpoint covers {saved.size} entries, the log only {size}"
    elif saved.size == 0:
        if saved.root != merkle.EMPTY_ROOT:
            inconsistent = "the saved checkpoint for size 0 has a root other than the empty root"
    else:
        try:
            proof = tree.consistency_proof(saved.size, size)
            merkle.verify_consistency(saved.size, size, saved.root, roots[size], proof)
        except AcardsError as error:
            inconsistent = error.problems[0].message
    if inconsistent:
        result.problems.append(Problem(
            "registry.inconsistent-checkpoint",
            f"the log does not extend the saved checkpoint (size {saved.size}): {inconsistent}",
            "the registry's history was rewritten since you saved that checkpoint; do not trust it",
            where,
        ))


def _check_writer_state(
    layout: Layout, registry_key: Ed25519PublicKey, tree: merkle.Tree, rules: LogRules, result: RegistryVerification
) -> None:
    """The writer's state, if there is one, must describe this log: otherwise a warning (a crash
    after the checkpoint leaves one behind; the next writer replays the log and writes it again)."""
    data = read_optional(layout.state)
    if data is None:  # a registry from before the state, or a copy without it
        return
    try:
        state = open_state(data, registry_key)
        if state.origin != result.origin or state.size != tree.size:
            raise stale_state(f"the state describes {state.size} entries of {state.origin!r}, the log has "
                              f"{tree.size} of {result.origin!r}")
        if state.frontier != tree.frontier(state.size):
            raise stale_state("the state's compact range is not the log's")
        if state.index != build_index(rules)[0]:
            raise stale_state("the state's rules index is not the log's")
    except AcardsError as error:
        result.warnings += error.problems


def _card_problem(
    code: str, message: str, digest: str, name: str, hint: str = HINT_RESTORE
) -> Problem:
    return Problem(code, message, hint, Location(file=card_name(digest, name)))


def _verify_card(
    layout: Layout, entry: dict, keys: Mapping[str, Ed25519PublicKey], render: Render | None
) -> list[Problem]:
    """The stored card against its entry: signatures, digest, copies, rendered files."""
    digest = entry["digest"]
    folder = layout.card(digest)
    stored = {name: read_optional(folder / name) for name in (*CARD_FILES, *entry["rendered"])}
    missing = [name for name, data in stored.items() if data is None]
    problems = [
        _card_problem("registry.missing-file", f"{name} is missing", digest, name) for name in missing
    ]
    if stored[ENVELOPE] is None:
        return problems
    try:
        payload, statement, signers = verified_card(stored[ENVELOPE], keys)
        card_id, version, claimed = card_identity(statement)
    except AcardsError as error:
        first = error.problems[0]
        return problems + [_card_problem(
            "registry.bad-envelope", f"{first.code}: {first.message}", digest, ENVELOPE
        )]
    if sha256_hex(payload) != digest:
        problems.append(_card_problem(
            "registry.digest-mismatch", "the envelope's payload does not have the logged digest",
            digest, ENVELOPE,
        ))
    if not set(entry["signers"]) <= set(signers):
        problems.append(_card_problem(
            "registry.signer-mismatch",
            "keys the log names as signers did not sign this envelope (or are no longer trusted)",
            digest, ENVELOPE,
        ))
    if (card_id, version) != (entry["card_id"], entry["version"]):
        problems.append(_card_problem(
            "registry.entry-mismatch",
            f"the card is {card_id} version {version}, the log says {entry['card_id']} "
            f"version {entry['version']}", digest, ENVELOPE,
        ))
    if claimed is not None and claimed != entry["supersedes"]:
        problems.append(_card_problem(
            "registry.bad-supersedes",
            f"the signed card supersedes {claimed}, the log says {entry['supersedes']}",
            digest, ENVELOPE,
        ))
    if stored[STATEMENT] is not None and stored[STATEMENT] != payload:
        problems.append(_card_problem(
            "registry.digest-mismatch",
            f"{STATEMENT} is not the verified payload", digest, STATEMENT,
        ))
    manifest = stored[MANIFEST]
    if manifest is not None and manifest != canonical_bytes(statement["subject"]):
        problems.append(_card_problem(
            "registry.manifest-mismatch",
            f"{MANIFEST} is not the statement's subject list", digest, MANIFEST,
        ))
    problems += _verify_rendered(entry, stored, statement, render)
    return problems


def _verify_rendered(
    entry: dict, stored: Mapping[str, bytes | None], statement: dict, render: Render | None
) -> list[Problem]:
    digest, problems = entry["digest"], []
    for name, expected in entry["rendered"].items():
        data = stored[name]
        if data is not None and sha256_hex(data) != expected:
            problems.append(_card_problem(
                "registry.render-mismatch", f"{name} is not the file that was published",
                digest, name,
            ))
    if render is None:
        return problems
    try:
        fresh = checked_render_output(render(statement))
    except AcardsError as error:
        first = error.problems[0]
        message = f"render failed: {first.code}: {first.message}"
        return problems + [_card_problem("registry.render-mismatch", message, digest, "")]
    if set(fresh) != set(entry["rendered"]):
        problems.append(_card_problem(
            "registry.render-mismatch",
            f"rendering now makes {sorted(fresh)}, the log lists {sorted(entry['rendered'])}",
            digest, "", "render with the template version the registry was built with",
        ))
    for name in sorted(set(fresh) & set(entry["rendered"])):
        if stored[name] is not None and fresh[name] != stored[name]:
            problems.append(_card_problem(
                "registry.render-mismatch",
                f"{name} does not re-render byte for byte from the verified payload",
                digest, name, "the file was altered, or the templates changed since publication",
            ))
    return problems


def _report_orphans(
    layout: Layout, published: Mapping[str, dict], result: RegistryVerification
) -> None:
    try:
        names = sorted(os.listdir(layout.cards))
    except OSError:
        names = []
    for name in names:
        if name not in published:
            result.warnings.append(Problem(
                "registry.orphan-card",
                f"{card_name(name)} is not in the log (left by an interrupted publish)",
                "the next publish removes it; it is not part of the registry",
                Location(file=card_name(name)),
            ))


def verify_registry(
    directory: str | os.PathLike,
    checkpoint: bytes | None = None,
    render: Render | None = None,
    lock_timeout: float = LOCK_TIMEOUT,
) -> RegistryVerification:
    """Verify the registry offline; problems are collected, not raised.

    Raises AcardsError only when ``directory`` is not a registry (or cannot be read at all).
    ``checkpoint``: the bytes of a checkpoint file a reader saved earlier; the log must extend it.
    ``render``: re-render every card from its verified payload and compare byte for byte.
    """
    layout = Layout(Path(directory))
    config = read_config(layout)
    with locked(layout, exclusive=False, timeout=lock_timeout):
        log = read_log(layout)
        stored_checkpoints = read_checkpoints(layout)
        keys, key_problems = load_trusted_keys(layout)
        tree = merkle.Tree([merkle.leaf_hash(line) for line in log.lines])
        roots = [tree.root(size) for size in range(tree.size + 1)]
        result = RegistryVerification(config.origin, tree.size, roots[-1].hex(), key_problems)
        rules = _verify_lines(log, config.origin, result)
        try:
            registry_key = registry_public_key(layout, config)
        except AcardsError as error:
            result.problems += error.problems
        else:
            if is_legacy_layout(layout):
                result.warnings.append(Problem(
                    "registry.legacy-keys",
                    f"the registry key is filed in {KEYS}/ and so trusted to sign cards (a registry from before "
                    f"{REGISTRY_KEY})",
                    "run `acards registry migrate-keys DIR` (any publish, revoke or trust does it too)",
                    Location(file=key_name(key_file_name(config.registry_keyid))),
                ))
            result.problems += signer_names(layout, config, registry_key, keys)[1]
            _verify_stored_checkpoints(
                stored_checkpoints, registry_key, config.origin, tree, roots, result
            )
            if checkpoint is not None:
                _verify_external_checkpoint(
                    checkpoint, registry_key, config.origin, tree, roots, result
                )
            if not result.problems:
                _check_writer_state(layout, registry_key, tree, rules, result)
        for entry in rules.published.values():
            result.problems += _verify_card(layout, entry, keys, render)
        result.problems += verify_attestations(layout, result.entries, keys)
        _report_orphans(layout, rules.published, result)
        plan_problems, plan_warnings = verify_plans(layout, result.entries, keys)
        result.problems += plan_problems
        result.warnings += plan_warnings
        result.revoked = dict(rules.revoked)
    return result


def check_registry(
    directory: str | os.PathLike, checkpoint: bytes | None = None, render: Render | None = None
) -> RegistryVerification:
    """``verify_registry``, raising every problem together if there is any."""
    result = verify_registry(directory, checkpoint, render)
    result.raise_for_problems()
    return result
