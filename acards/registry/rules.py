"""SPEC §9's rules over log entries (pure), for publish and verify alike.

No digest is published twice; the versions of one card id strictly increase (a revoked version keeps
its number); each publish entry's ``supersedes`` is the digest of its card id's latest published
version (null for the first); a revocation names a published, not yet revoked digest; every entry
carries this registry's origin and its position as index. An entry of any other kind (a
pre-registration, ...) is logged once per digest (``logged``, keyed ``<kind>:<digest>``);
``KIND_RULES`` holds what else a kind asks.
"""

from __future__ import annotations

from typing import Callable, MutableMapping

from acards.errors import Location, Problem
from acards.registry.entries import HINT_RESTORE


class LogRules:
    """SPEC §9's rules over log entries taken in order.

    ``check`` says what is wrong with the next entry without taking it; ``record`` takes it.
    The same object checks a whole log (verify) and one candidate entry (publish, revoke).
    """

    def __init__(
        self,
        origin: str,
        size: int = 0,
        published: MutableMapping[str, dict] | None = None,
        latest: MutableMapping[str, dict] | None = None,
        revoked: MutableMapping[str, str] | None = None,
        logged: MutableMapping[str, dict] | None = None,
    ):
        """Rules before any entry; a writer resuming from its index (``acards.registry.index``)
        passes the size so far and mappings that look the entries up instead of holding them."""
        self.origin = origin
        self.size = size
        self.published = {} if published is None else published  # digest -> its publish entry
        self.latest = {} if latest is None else latest  # card id -> publish entry of its highest version
        self.revoked = {} if revoked is None else revoked  # digest -> reason
        self.logged = {} if logged is None else logged  # "<kind>:<digest>" -> LOGGED_FIELDS of its entry
        self.superseded_by: dict[str, str] = {}  # digest -> digest of the version after it

    def expected_supersedes(self, card_id: str) -> str | None:
        latest = self.latest.get(card_id)
        return latest["digest"] if latest else None

    def check(self, entry: dict, where: Location = Location()) -> list[Problem]:
        problems = []
        if entry["origin"] != self.origin:
            problems.append(Problem(
                "registry.foreign-origin",
                f"entry names origin {entry['origin']!r}, but this registry is {self.origin!r}",
                "an entry copied from another registry; remove it",
                where,
            ))
        if entry["index"] != self.size:
            problems.append(Problem(
                "registry.bad-index",
                f"entry has index {entry['index']}, expected {self.size}",
                "log lines were deleted, inserted or reordered; " + HINT_RESTORE,
                where,
            ))
        if entry["kind"] == "publish":
            problems += self._check_publish(entry, where)
        elif entry["kind"] == "revoke":
            problems += self._check_revoke(entry, where)
        else:
            problems += self._check_logged(entry, where)
        return problems

    def _check_logged(self, entry: dict, where: Location) -> list[Problem]:
        earlier = self.logged.get(logged_key(entry))
        if earlier is not None:
            return [Problem(
                "registry.duplicate-digest",
                f"{entry['kind']} {entry['digest']} is already in the log (entry {earlier['index']})",
                f"a {entry['kind']} entry is logged once; name the logged one",
                where,
            )]
        extra = KIND_RULES.get(entry["kind"])
        return extra(self, entry, where) if extra else []

    def _check_publish(self, entry: dict, where: Location) -> list[Problem]:
        digest, card_id = entry["digest"], entry["card_id"]
        if digest in self.published:
            return [Problem(
                "registry.duplicate-digest",
                f"card {digest} is already in the log (entry {self.published[digest]['index']})",
                "a card is published once; publish a new version instead",
                where,
            )]
        problems = []
        latest = self.latest.get(card_id)
        if latest is not None and entry["version"] <= latest["version"]:
            problems.append(Problem(
                "registry.version-not-increasing",
                f"{card_id} version {entry['version']} is not above the published "
                f"version {latest['version']}",
                "increase the card's version before signing it again",
                where,
            ))
        expected = self.expected_supersedes(card_id)
        if entry["supersedes"] != expected:
            problems.append(Problem(
                "registry.bad-supersedes",
                f"{card_id} names {entry['supersedes']} as the digest it supersedes, "
                f"but the latest published version is {expected}",
                "a new version supersedes exactly the latest published version of its card",
                where,
            ))
        return problems

    def _check_revoke(self, entry: dict, where: Location) -> list[Problem]:
        target = self.published.get(entry["digest"])
        if target is None:
            message = f"revokes {entry['digest']}, which is not published before it"
        elif entry["digest"] in self.revoked:
            message = f"{entry['digest']} is already revoked"
        elif (target["card_id"], target["version"]) != (entry["card_id"], entry["version"]):
            message = (
                f"names {entry['card_id']} version {entry['version']}, but {entry['digest']} "
                f"is {target['card_id']} version {target['version']}"
            )
        else:
            return []
        return [Problem("registry.bad-revoke", message, "revoke a published card once", where)]

    def record(self, entry: dict | None) -> None:
        """Take the next entry; None stands for a line that could not be read."""
        self.size += 1
        if entry is None:
            return
        digest = entry["digest"]
        if entry["kind"] not in ("publish", "revoke"):
            self.logged.setdefault(logged_key(entry), {name: entry[name] for name in LOGGED_FIELDS})
            return
        if entry["kind"] == "revoke":
            self.revoked.setdefault(digest, entry["reason"])
            return
        self.published.setdefault(digest, entry)
        if entry["supersedes"] is not None:
            self.superseded_by.setdefault(entry["supersedes"], digest)
        latest = self.latest.get(entry["card_id"])
        # Only a higher version moves the head, so one bad entry does not cascade.
        if latest is None or entry["version"] > latest["version"]:
            self.latest[entry["card_id"]] = entry

    def admit(self, entry: dict, where: Location = Location()) -> list[Problem]:
        problems = self.check(entry, where)
        self.record(entry)
        return problems


LOGGED_FIELDS = ("digest", "index", "kind")  # what ``logged`` keeps of an entry (and the index stores)

# What a kind beyond publish and revoke asks of the log before it, besides being logged once:
# kind -> check(rules, entry, where). A pre-registration asks nothing more (its card comes later).
KIND_RULES: dict[str, Callable[[LogRules, dict, Location], list[Problem]]] = {}


def _check_attestation(rules: LogRules, entry: dict, where: Location) -> list[Problem]:
    """An attestation names a card published (and not revoked) before it, as the log names it, and
    a ``reproduced`` one its report. (Whether the reviewer signed the card, and so may attest at
    ``self`` only, is read from the stored envelope: acards.registry.attestations.)"""
    card = rules.published.get(entry["card"])
    if card is None or entry["card"] in rules.revoked:
        state = "not published before it" if card is None else "revoked before it"
        return [Problem("registry.attestation-card", f"the attestation names card {entry['card']}, {state}",
                        "publish the card first, to this registry", where)]
    problems = []
    if (card["card_id"], card["version"]) != (entry["card_id"], entry["version"]):
        problems.append(Problem("registry.attestation-card", f"the attestation names {entry['card_id']} version "
                                f"{entry['version']}, but {entry['card']} is {card['card_id']} version {card['version']}",
                                HINT_RESTORE, where))
    if entry["assurance"] == "reproduced" and (entry["report"] is None or not entry["reproduced"]):
        problems.append(Problem("registry.attestation-report", "a reproduced attestation without the report that "
                                "reproduced", "publish the attestation with its report (--report)", where))
    return problems


KIND_RULES["attest"] = _check_attestation


def logged_key(entry: dict) -> str:
    return f"{entry['kind']}:{entry['digest']}"


def replay(entries: list[dict], origin: str) -> LogRules:
    """The rules after taking ``entries`` unchecked: what is published, latest, revoked, superseded."""
    rules = LogRules(origin)
    for entry in entries:
        rules.record(entry)
    return rules
