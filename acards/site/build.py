"""``build_site(DIR)``: the static site of a registry that verifies, written to ``DIR/site``.

Links are relative, so the site works from file:// and from any static host. The output is a pure
function of the registry (sorted; the only times are the log's). The build takes ``DIR/.site.lock``,
writes into a fresh ``DIR/.site-build-*`` folder and then swaps it for ``site/`` in one step
(``acards.site.swap``). Everything it reads of the registry comes through ``acards.registry.reader``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import markupsafe

from acards.canonical import parse_strict_json
from acards.registry import reader
from acards.site import SITE
from acards.site.badges import site_badges
from acards.site.preregistration import plan_times, preregistration_view
from acards.site.swap import swap_into_place
from acards.site.view import CARD_CSP, COPIED, Version, check_safe, script, splice, style, templates

_BUILD_PREFIX = ".site-build-"
_LOCK = ".site.lock"


def _write(path: Path, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "xb") as handle:
        handle.write(data)


class _Builder:
    def __init__(self, root: Path, out: Path):
        self.root, self.out = root, out
        self.env = templates()

    def build(self) -> dict:
        result = reader.verified(self.root)
        origin, entries = result.origin, result.entries
        registry_keyid = reader.config(self.root).registry_keyid
        found = reader.newest_checkpoint(self.root, len(entries))

        versions: dict[str, Version] = {}
        badges = {}  # digest -> its inline SVG badges (acards.site.badges)
        preregistrations = {}  # digest -> what its card page says of its pre-registration, if it names one
        logged_plans = plan_times(entries)
        for digest, card_version in reader.card_versions(entries, origin).items():
            statement = parse_strict_json(reader.statement(self.root, digest))
            versions[digest] = Version.of(card_version, statement)
            badges[digest] = site_badges(self.root, digest, statement, card_version.state)
            preregistrations[digest] = preregistration_view(statement, logged_plans)
        by_id: dict[str, list[Version]] = {}
        for version in versions.values():
            by_id.setdefault(version.entry["card_id"], []).append(version)
        for history in by_id.values():
            history.sort(key=lambda v: v.entry["version"])

        self.out.joinpath("cards").mkdir()
        self.out.joinpath("keys").mkdir()
        key_files = reader.key_files(self.root)
        for key_id, data in key_files.items():
            _write(self.out / "keys" / f"{key_id}.pub", data)
        _write(self.out / "registry.pub", reader.registry_key_file(self.root))
        _write(self.out / "filter.js", script("filter.js"))
        if found:
            _write(self.out / "checkpoint.json", found[0])
        checkpoint = found[1] if found else None

        context = {"origin": origin, "registry_keyid": registry_keyid, "size": len(entries),
                   "signer_names": reader.signer_names(self.root),
                   "checkpoint": checkpoint, "root": checkpoint.root.hex() if checkpoint else None}
        context["badges"] = badges
        context["preregistrations"] = preregistrations
        attestations: dict[str, list[dict]] = {}  # card digest -> its attestation entries, in log order
        for entry in entries:
            if entry["kind"] == "attest":
                attestations.setdefault(entry["card"], []).append(entry)
        context["attestations"] = attestations
        context["witnesses"] = reader.witnesses(self.root)
        site_style, style_hash = style("site.css")
        rows = []
        for card_id in sorted(by_id):
            history = by_id[card_id]
            latest = history[-1]
            valid = [v for v in history if v.state != "revoked"]
            rows.append({"v": latest, "fallback": valid[-1] if latest.state == "revoked" and valid else None,
                         "versions": len(history)})
        pages = {
            "index.html": self.env.get_template("site/index.html.j2").render(
                context, rows=rows, style=site_style, style_hash=style_hash, cards=len(versions)),
            "log.html": self.env.get_template("site/log.html.j2").render(
                context, entries=entries, versions=versions, style=site_style, style_hash=style_hash),
        }
        for name, text in pages.items():
            _write(self.out / name, text)

        card_style = markupsafe.Markup(self.env.get_template("site/card_style.html.j2").render())
        header_template = self.env.get_template("site/card_header.html.j2")
        footer_template = self.env.get_template("site/card_footer.html.j2")
        for digest, version in versions.items():
            self._card(digest, version, by_id[version.entry["card_id"]], versions, context,
                       header_template, footer_template, card_style)
        return {"site": str(self.out), "cards": len(by_id), "versions": len(versions), "entries": len(entries),
                "checkpoint": {"size": checkpoint.size, "root": checkpoint.root.hex()} if checkpoint else None,
                "revoked": sorted(result.revoked)}

    def _card(self, digest, version, history, versions, context, header_template, footer_template, card_style):
        entry = version.entry
        folder = self.out / "cards" / digest
        folder.mkdir()
        stored = {}
        for name in COPIED:
            if name not in entry["rendered"]:
                continue
            data = reader.rendered_file(self.root, entry, name)
            if name.endswith(".html"):
                check_safe(data, digest, name)
            stored[name] = data
            _write(folder / name, data)
        _write(folder / "envelope.json", reader.envelope(self.root, digest))
        card_context = dict(context, v=version, history=history, versions=versions, files=sorted(stored),
                            sha256={name: entry["rendered"][name] for name in stored})
        card_style = markupsafe.Markup(self.env.get_template("site/card_style.html.j2").render(card_context))  # per state
        header = header_template.render(card_context)
        footer = footer_template.render(card_context)
        page = splice(stored["card.html"], header, footer, card_style) if "card.html" in stored else None
        if page is None:
            page = self.env.get_template("site/card_page.html.j2").render(
                card_context, header=markupsafe.Markup(header), footer=markupsafe.Markup(footer),
                card_style=card_style, csp=markupsafe.Markup(CARD_CSP)).encode("utf-8")
        check_safe(page, digest, f"site page {digest}.html")
        _write(self.out / "cards" / f"{digest}.html", page)


def build_site(directory: str | os.PathLike, lock_timeout: float | None = None) -> dict:
    """Verify the registry at ``directory`` (raising its problems, if any) and write ``directory/site``.

    Waits at most ``lock_timeout`` seconds (default: the registry's LOCK_TIMEOUT) for another build's lock.

    Returns a summary: {"site", "cards" (ids), "versions", "entries", "checkpoint", "revoked"}.
    """
    root = Path(directory)
    reader.config(root)  # registry.not-a-registry before anything is written
    try:
        lock = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise reader.io_error(f"open {root / _LOCK}", error) from None
    try:
        reader.flock_within(lock, fcntl.LOCK_EX, root / _LOCK, reader.LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
                            "wait for the other site build to finish and try again")
        for stale in root.glob(f"{_BUILD_PREFIX}*"):  # left by a build that crashed; builds hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        try:
            out = Path(tempfile.mkdtemp(prefix=_BUILD_PREFIX, dir=root))
        except OSError as error:
            raise reader.io_error(f"create a folder in {root}", error) from None
        try:
            os.chmod(out, 0o755)
            summary = _Builder(root, out).build()
            swap_into_place(out, root / SITE, _BUILD_PREFIX)
        except OSError as error:
            shutil.rmtree(out, ignore_errors=True)
            raise reader.io_error(f"build the site in {root / SITE}", error) from None
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    finally:
        os.close(lock)
    summary["site"] = str(root / SITE)
    return summary
