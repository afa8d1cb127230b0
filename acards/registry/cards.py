"""A signed card as the registry takes it (pure): its verified payload, its identity, its pages.

``predicate.card`` gives the card id and version, ``predicate.supersedes`` (optional) the digest
the signers say it supersedes; ``render(statement)`` returns the pages stored beside it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from acards.attest import dsse, in_toto
from acards.errors import AcardsError, Location
from acards.registry.entries import is_card_id, is_render_name, is_sha256, is_version
from acards.registry.layout import CARD_FILES

Render = Callable[[dict], Mapping[str, bytes]]


def _bad_card(message: str, pointer: str) -> AcardsError:
    return AcardsError(
        "registry.bad-card",
        message,
        "sign a predicate {card: {id, version, ...}, report: {...}} with `acards sign`",
        Location(pointer=pointer),
    )


def card_identity(statement: dict) -> tuple[str, int, str | None]:
    """(card id, version, the digest the predicate says it supersedes or None) of a statement."""
    predicate = statement["predicate"]
    card = predicate.get("card")
    if not isinstance(card, dict):
        raise _bad_card("the predicate has no card object", "/predicate/card")
    if not is_card_id(card.get("id")):
        raise _bad_card("the card id is missing or not a slug [a-z0-9/-]", "/predicate/card/id")
    if not is_version(card.get("version")):
        raise _bad_card("the card version must be an integer ≥ 1", "/predicate/card/version")
    claimed = predicate.get("supersedes")
    if claimed is not None and not is_sha256(claimed):
        raise _bad_card("supersedes must be a sha256 hex digest", "/predicate/supersedes")
    return card["id"], card["version"], claimed


def checked_render_output(files: Any) -> dict[str, bytes]:
    """What a render callable returned, once it is plain file names (not the card's own) to bytes."""
    if not isinstance(files, Mapping):
        raise AcardsError(
            "registry.bad-render", "render() must return a mapping of file name to bytes",
            "return e.g. {'card.html': b'...'}",
        )
    for name, data in files.items():
        if not is_render_name(name) or not isinstance(data, (bytes, bytearray)):
            raise AcardsError(
                "registry.bad-render",
                f"rendered file {name!r} must have a plain file name and bytes content",
                f"use names like card.html, other than {', '.join(CARD_FILES)}",
            )
    return {name: bytes(data) for name, data in files.items()}


def verified_card(
    envelope_bytes: bytes, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[bytes, dict, list[str]]:
    """(payload, statement, signer keyids) of an envelope every trusted signature of which holds."""
    verified = dsse.verify_envelope(envelope_bytes, keys)
    if verified.invalid_keyids:
        raise AcardsError(
            "envelope.bad-signature",
            f"signatures by {', '.join(verified.invalid_keyids)} do not match the payload",
            "the envelope was altered after signing; sign the card again",
        )
    statement = in_toto.open_statement(verified.payload_type, verified.payload)
    return verified.payload, statement, list(verified.keyids)
