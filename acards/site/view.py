"""What the site's pages show (pure, bar reading the templates): card summaries, the templates, the
stored card page with the site's header and footer spliced in, and the refusal of active content.

Safety. Every page is rendered by Jinja with autoescaping and StrictUndefined (``render.environment``);
card text is never marked safe. Card pages carry no script at all and a Content-Security-Policy
(``default-src 'none'``) of their own on top of the one the rendered page has; a stored page holding
``<script``, ``<iframe``, ``<object``, ``<embed`` or ``<base`` is refused. The index and the log
allow only scripts from the site itself (``script-src 'self'``: filter.js, which hides rows and
writes nothing but a count through textContent) and their one inline style by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

import markupsafe

from acards.errors import AcardsError, Location
from acards.registry.reader import CardVersion
from acards.resources import data_dir

COPIED = ("card.html", "card.md")  # the rendered files the site copies, when the log lists them
CARD_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_UNSAFE = re.compile(rb"<\s*(script|iframe|object|embed|base)\b", re.IGNORECASE)


@dataclass
class Version:
    """One published card version as the site shows it."""

    entry: dict
    title: str
    claims_supported: int
    claims_total: int
    full_passes: int
    cells: int
    coding_mode: str
    reproduced: bool | None
    state: str  # current | superseded | revoked
    reason: str | None
    superseded_by: str | None
    revoked_at: str | None
    # verdict first (docs/rendering.md#verdict-first): the headline claim {id, verdict}, the authors' names,
    # the full-card passes under each coding
    headline: dict | None = None
    authors: list[str] = field(default_factory=list)
    strict_passes: int = 0
    permissive_passes: int = 0

    @classmethod
    def of(cls, version: CardVersion, statement: dict) -> Version:
        return cls(entry=version.entry, **summary(statement), state=version.state, reason=version.reason,
                   superseded_by=version.superseded_by, revoked_at=version.revoked_at)

    @property
    def digest(self) -> str:
        return self.entry["digest"]

    @property
    def search(self) -> str:
        """What the index filter matches against (lower case)."""
        words = [self.entry["card_id"], self.title, f"v{self.entry['version']}", self.state,
                 self.digest, *self.entry["signers"], *self.authors]
        return " ".join(words).lower()


def summary(statement: dict) -> dict:
    """Title, claim and full-card counts from a statement's predicate, tolerating odd shapes.

    Lenient on purpose, and so not through the typed report reader (acards.report.stored): the
    index lists every card the registry accepted, whatever its predicate holds (a registry signs
    and stores payloads of any shape; its tests publish minimal predicates such as
    ``{"report": {"acards_version": ..., "claims": [...]}}``).  A missing or odd field only gives a
    smaller summary here; rendering the card page itself (acards.site.renderer) is strict."""
    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    predicate = predicate if isinstance(predicate, dict) else {}
    card = predicate.get("card") if isinstance(predicate.get("card"), dict) else {}
    report = predicate.get("report") if isinstance(predicate.get("report"), dict) else {}
    claims = [c for c in report.get("claims", []) if isinstance(c, dict)] if isinstance(report.get("claims"), list) else []
    cells = [c for c in report.get("cells", []) if isinstance(c, dict)] if isinstance(report.get("cells"), list) else []
    mode = card.get("coding_mode") if card.get("coding_mode") in ("strict", "permissive") else "strict"

    def passes(cell: dict) -> bool:
        full = cell.get("full_card")
        return isinstance(full, dict) and full.get("headline", full.get(mode)) is True

    title = card.get("title")
    reproduced = report.get("reproduced")
    card_claims = [c for c in card.get("claims", []) if isinstance(c, dict)] if isinstance(card.get("claims"), list) else []
    first = card_claims[0].get("id") if card_claims else (claims[0].get("id") if claims else None)
    verdict = next((c.get("verdict") for c in claims if c.get("id") == first), None)
    authors = card.get("authors") if isinstance(card.get("authors"), list) else []

    def coded(cell: dict, coding: str) -> bool:
        return isinstance(cell.get("full_card"), dict) and cell["full_card"].get(coding) is True

    return {
        "headline": {"id": str(first), "verdict": verdict if isinstance(verdict, str) else "unknown"} if first is not None else None,
        "authors": [a["name"] for a in authors if isinstance(a, dict) and isinstance(a.get("name"), str)],
        "strict_passes": sum(1 for c in cells if coded(c, "strict")),
        "permissive_passes": sum(1 for c in cells if coded(c, "permissive")),
        "title": title if isinstance(title, str) else "",
        "claims_supported": sum(1 for c in claims if c.get("verdict") == "supported"),
        "claims_total": len(claims),
        "full_passes": sum(1 for c in cells if passes(c)),
        "cells": len(cells),
        "coding_mode": mode,
        "reproduced": reproduced if isinstance(reproduced, bool) else None,
    }


def templates():
    """The Jinja environment of ``render.environment``, with the site's ``short`` filter; text from
    signed payloads (titles, revoke reasons) holding a bidirectional control is isolated in <bdi>
    as on the card pages, and shown as [U+XXXX] by ``bidi_visible`` where no element can isolate."""
    from acards.present.render import environment, isolate_bidi, visible_bidi

    env = environment().overlay(finalize=isolate_bidi)
    env.filters["short"] = lambda value, n=12: str(value)[:n]
    env.filters["bidi_visible"] = visible_bidi
    return env


def style(name: str) -> tuple[markupsafe.Markup, str]:
    """A stylesheet from templates/site/ to inline, and its CSP hash source."""
    text = (data_dir("templates") / "site" / name).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return markupsafe.Markup(text), markupsafe.Markup(f"'sha256-{digest}'")


def script(name: str) -> bytes:
    """A script from templates/site/, copied as it is."""
    return (data_dir("templates") / "site" / name).read_bytes()


def splice(page: bytes, header: str, footer: str, card_style: str) -> bytes | None:
    """The stored card page with the site's CSP, style, header and footer added; None when the page
    does not have the <head>, <body>, </body> shape acards' renderer writes."""
    try:
        text = page.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = text.find("<head>")
    head_end = text.find("</head>", head)
    body = text.find("<body>", head_end)
    end = text.rfind("</body>")
    if head < 0 or not head < head_end < body < end:
        return None
    csp = f'\n<meta http-equiv="Content-Security-Policy" content="{CARD_CSP}">'
    head += len("<head>")
    body += len("<body>")
    return "".join((text[:head], csp, text[head:head_end], card_style, text[head_end:body], "\n", header,
                    text[body:end], footer, "\n", text[end:])).encode("utf-8")


def check_safe(data: bytes, digest: str, name: str) -> None:
    """Refuse a page holding an element that could run or load active content."""
    if _UNSAFE.search(data):
        raise AcardsError("registry.bad-render",
                          f"{name} holds a <script>, <iframe>, <object>, <embed> or <base> element; the site shows none",
                          "render cards with acards' renderer (`acards publish`), which writes none",
                          Location(file=f"cards/{digest}/{name}"))
