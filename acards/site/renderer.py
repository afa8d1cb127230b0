"""The renderer the registry stores card pages with: card.html and card.md of a signed card.

``acards publish`` stores what ``renderer(signers)`` makes; ``acards registry verify`` re-renders
every card with ``registry_renderer(DIR)`` and compares byte for byte (SPEC §9).
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import Callable, Sequence

from acards.attest import dsse
from acards.canonical import canonical_bytes
from acards.errors import AcardsError, Location
from acards.registry import reader


def render_statement(statement: dict, signers: Sequence[str]) -> dict[str, bytes]:
    """card.html and card.md of a verified card Statement: ``render_card`` of its predicate's card and
    report, the signers being ``signers`` (keyids). Pure and deterministic, so a registry can check
    that the stored pages re-render byte for byte."""
    from acards.present.render import render_card
    from acards.report.stored import check_report

    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    card = predicate.get("card") if isinstance(predicate, dict) else None
    data = predicate.get("report") if isinstance(predicate, dict) else None
    if not isinstance(card, dict) or not isinstance(data, dict):
        raise AcardsError("registry.bad-card", "the signed predicate holds no card and report to render",
                          "sign the card with `acards sign`, which puts both in the predicate",
                          Location(pointer="/predicate"))
    # The one checked reader: a signed report that is not a report-1.0 report is usage.bad-report.
    report = check_report(data, hint="sign a card acards loaded and verified (`acards sign --report`)",
                          message="the signed report does not match report-1.0: {message}")
    people = [{"keyid": keyid} for keyid in sorted(set(signers))]
    try:
        pages = {"card.html": render_card(card, report, "html", people),
                 "card.md": render_card(card, report, "md", people)}
    except AcardsError:
        raise
    except Exception as error:  # noqa: BLE001 — a signed predicate is data someone else wrote
        message = f"{type(error).__name__}: {error}"
        raise AcardsError("usage.bad-report", f"the signed card cannot be rendered: {message[:200]}",
                          "sign a card acards loaded and verified (`acards sign --report`)") from None
    return {name: text.encode("utf-8") for name, text in pages.items()}


def renderer(signers: Sequence[str]) -> Callable[[dict], dict[str, bytes]]:
    """The render callable ``registry.store.publish`` takes, for a card signed by ``signers``."""
    return functools.partial(_render_with, tuple(signers))


def _render_with(signers: tuple[str, ...], statement: dict) -> dict[str, bytes]:
    return render_statement(statement, signers)


def registry_renderer(directory: str | os.PathLike) -> Callable[[dict], dict[str, bytes]]:
    """The render callable ``registry.audit.verify_registry`` takes: each card is rendered with the
    signers its publish entry names (the payload digest finds the entry). Unreadable log lines are
    skipped here; verification reports them."""
    signers = reader.publish_signers(directory)

    def render(statement: dict) -> dict[str, bytes]:
        digest = hashlib.sha256(canonical_bytes(statement)).hexdigest()
        return render_statement(statement, signers.get(digest, []))

    return render


def envelope_signers(directory: str | os.PathLike, envelope_bytes: bytes) -> list[str]:
    """The keyids of the registry's trusted keys that validly signed ``envelope_bytes``."""
    return list(dsse.verify_envelope(envelope_bytes, reader.trusted_keys(directory)).keyids)
