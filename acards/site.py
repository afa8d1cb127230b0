"""The registry's static site, and the renderer the registry stores card pages with (SPEC §9).

``build_site(DIR)`` writes ``DIR/site/`` from a registry that verifies::

    index.html                 the latest version of every card id: id, title, version, claims
                               supported / total, full-card passes, signers, digest, status
    filter.js                  the index's row filter (the only script of the site; see below)
    log.html                   every log entry, and the newest signed checkpoint (size, root)
    checkpoint.json            that checkpoint file, byte for byte (pass it to
                               `acards registry verify DIR --checkpoint` later)
    registry.pub, keys/*.pub   the registry key and every trusted signer's key
    cards/<digest>.html        one page per published card version: the stored card.html with the
                               site's header and footer spliced in
    cards/<digest>/card.html   the rendered files exactly as published (byte for byte, so their
    cards/<digest>/card.md     sha256 is the one the log names), and the signed envelope
    cards/<digest>/envelope.json

Safety. Every page is rendered by Jinja with autoescaping and StrictUndefined (``render.environment``);
card text is never marked safe. Card pages carry no script at all and a Content-Security-Policy
(``default-src 'none'``) of their own on top of the one the rendered page has; a stored page holding
``<script``, ``<iframe``, ``<object``, ``<embed`` or ``<base`` is refused. The index and the log
allow only scripts from the site itself (``script-src 'self'``: filter.js, which hides rows and
writes nothing but a count through textContent) and their one inline style by its hash.

Links are relative, so the site works from file:// and from any static host. The output is a pure
function of the registry (sorted; the only times are the log's). The build takes ``DIR/.site.lock``,
writes into a fresh ``DIR/.site-build-*`` folder and then swaps it for ``site/`` in one step
(renameat2 RENAME_EXCHANGE where Linux has it; two renames elsewhere).

``serve_site`` / ``make_server`` serve ``DIR/site`` over HTTP on 127.0.0.1 only, read-only.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import fcntl
import functools
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import markupsafe

from acards import registry
from acards.attest import dsse
from acards.attest.keys import keyid, load_public_key
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location
from acards.resources import data_dir

SITE = "site"
LOOPBACK = "127.0.0.1"
COPIED = ("card.html", "card.md")  # the rendered files the site copies, when the log lists them
CARD_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
SERVER_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_UNSAFE = re.compile(rb"<\s*(script|iframe|object|embed|base)\b", re.IGNORECASE)
_BUILD_PREFIX = ".site-build-"
_LOCK = ".site.lock"


# --- the renderer the registry stores pages with --------------------------------------------------

Render = Callable[[dict], Mapping[str, bytes]]


def render_statement(statement: dict, signers: Sequence[str]) -> dict[str, bytes]:
    """card.html and card.md of a verified card Statement: ``render_card`` of its predicate's card and
    report, the signers being ``signers`` (keyids). Pure and deterministic, so a registry can check
    that the stored pages re-render byte for byte."""
    from acards.present.render import render_card

    predicate = statement.get("predicate") if isinstance(statement, dict) else None
    card = predicate.get("card") if isinstance(predicate, dict) else None
    report = predicate.get("report") if isinstance(predicate, dict) else None
    if not isinstance(card, dict) or not isinstance(report, dict):
        raise AcardsError("registry.bad-card", "the signed predicate holds no card and report to render",
                          "sign the card with `acards sign`, which puts both in the predicate",
                          Location(pointer="/predicate"))
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


def renderer(signers: Sequence[str]) -> Render:
    """The render callable ``registry.publish`` takes, for a card signed by ``signers``."""
    return functools.partial(_render_with, tuple(signers))


def _render_with(signers: tuple[str, ...], statement: dict) -> dict[str, bytes]:
    return render_statement(statement, signers)


def registry_renderer(directory: str | os.PathLike) -> Render:
    """The render callable ``registry.verify_registry`` takes: each card is rendered with the signers
    its publish entry names (the payload digest finds the entry). Unreadable log lines are skipped
    here; verification reports them."""
    signers: dict[str, list[str]] = {}
    try:
        data = (Path(directory) / "log" / "entries.jsonl").read_bytes()
    except OSError:
        data = b""
    for line in data.split(b"\n"):
        try:
            entry = registry.parse_entry(line)
        except AcardsError:
            continue
        if entry["kind"] == "publish":
            signers.setdefault(entry["digest"], entry["signers"])

    def render(statement: dict) -> dict[str, bytes]:
        digest = hashlib.sha256(canonical_bytes(statement)).hexdigest()
        return render_statement(statement, signers.get(digest, []))

    return render


def trusted_keys(directory: str | os.PathLike) -> dict:
    """The registry's keys/ as {keyid: public key}; a misfiled key is left out (publish refuses it)."""
    keys = {}
    for path in sorted((Path(directory) / "keys").glob("*.pub")):
        try:
            public_key = load_public_key(path)
        except AcardsError:
            continue
        if path.name == f"{keyid(public_key)}.pub":
            keys[keyid(public_key)] = public_key
    return keys


def _require_registry(root: Path) -> None:
    if not (root / "registry.json").is_file():
        raise AcardsError("registry.not-a-registry", f"{root} holds no registry.json",
                          "give the folder made by `acards registry init`", Location(file=str(root / "registry.json")))


def envelope_signers(directory: str | os.PathLike, envelope_bytes: bytes) -> list[str]:
    """The keyids of the registry's trusted keys that validly signed ``envelope_bytes``."""
    _require_registry(Path(directory))
    return list(dsse.verify_envelope(envelope_bytes, trusted_keys(directory)).keyids)


# --- what the site shows ---------------------------------------------------------------------------


@dataclass
class _Version:
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

    @property
    def digest(self) -> str:
        return self.entry["digest"]

    @property
    def search(self) -> str:
        """What the index filter matches against (lower case)."""
        words = [self.entry["card_id"], self.title, f"v{self.entry['version']}", self.state,
                 self.digest, *self.entry["signers"]]
        return " ".join(words).lower()


def _summary(statement: dict) -> dict:
    """Title, claim and full-card counts from a statement's predicate, tolerating odd shapes."""
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
    return {
        "title": title if isinstance(title, str) else "",
        "claims_supported": sum(1 for c in claims if c.get("verdict") == "supported"),
        "claims_total": len(claims),
        "full_passes": sum(1 for c in cells if passes(c)),
        "cells": len(cells),
        "coding_mode": mode,
        "reproduced": reproduced if isinstance(reproduced, bool) else None,
    }


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise AcardsError("registry.missing-file", f"cannot read {path}: {error.strerror or error}",
                          "run `acards registry verify` and restore the registry from a trusted mirror",
                          Location(file=str(path))) from None


def _registry_keyid(root: Path) -> str:
    value = parse_strict_json(_read(root / "registry.json"), "registry.json")
    return value["registry_keyid"]


def _newest_checkpoint(root: Path, size: int, registry_key) -> tuple[bytes, registry.Checkpoint] | None:
    """The newest checkpoint file covering at most ``size`` entries, with its verified body."""
    folder = root / "log" / "checkpoints"
    sizes = sorted((int(name[:-5]) for name in os.listdir(folder) if re.fullmatch(r"(0|[1-9][0-9]{0,15})\.json", name)),
                   reverse=True)
    for number in sizes:
        if number <= size:
            data = _read(folder / f"{number}.json")
            return data, registry.open_checkpoint(data, registry_key, Location(file=f"log/checkpoints/{number}.json"))
    return None


# --- building -------------------------------------------------------------------------------------


def _templates():
    from acards.present.render import environment

    env = environment()
    env.filters["short"] = lambda value, n=12: str(value)[:n]
    return env


def _style(name: str) -> tuple[markupsafe.Markup, str]:
    """A stylesheet from templates/site/ to inline, and its CSP hash source."""
    text = (data_dir("templates") / "site" / name).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return markupsafe.Markup(text), markupsafe.Markup(f"'sha256-{digest}'")


def _splice(page: bytes, header: str, footer: str, style: str) -> bytes | None:
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
    return "".join((text[:head], csp, text[head:head_end], style, text[head_end:body], "\n", header,
                    text[body:end], footer, "\n", text[end:])).encode("utf-8")


def _check_safe(data: bytes, digest: str, name: str) -> None:
    if _UNSAFE.search(data):
        raise AcardsError("registry.bad-render",
                          f"{name} holds a <script>, <iframe>, <object>, <embed> or <base> element; the site shows none",
                          "render cards with acards' renderer (`acards publish`), which writes none",
                          Location(file=f"cards/{digest}/{name}"))


def _write(path: Path, data: bytes | str) -> None:
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(path, "xb") as handle:
        handle.write(data)


class _Builder:
    def __init__(self, root: Path, out: Path):
        self.root, self.out = root, out
        self.env = _templates()

    def build(self) -> dict:
        result = registry.verify_registry(self.root)
        result.raise_for_problems()
        origin, entries = result.origin, result.entries
        registry_keyid = _registry_keyid(self.root)
        registry_key = load_public_key(self.root / "keys" / f"{registry_keyid}.pub")
        found = _newest_checkpoint(self.root, len(entries), registry_key)

        rules = registry.LogRules(origin)
        revoked_at: dict[str, str] = {}
        for entry in entries:
            rules.record(entry)
            if entry["kind"] == "revoke":
                revoked_at.setdefault(entry["digest"], entry["time"])
        versions: dict[str, _Version] = {}
        statements: dict[str, bytes] = {}
        for digest in sorted(rules.published):
            entry = rules.published[digest]
            data = _read(self.root / "cards" / digest / "statement.json")
            if hashlib.sha256(data).hexdigest() != digest:
                raise AcardsError("registry.digest-mismatch", "statement.json is not the logged payload",
                                  "run `acards registry verify`", Location(file=f"cards/{digest}/statement.json"))
            statements[digest] = data
            state = ("revoked" if digest in rules.revoked else "superseded" if digest in rules.superseded_by
                     else "current")
            versions[digest] = _Version(entry=entry, **_summary(parse_strict_json(data)), state=state,
                                        reason=rules.revoked.get(digest), superseded_by=rules.superseded_by.get(digest),
                                        revoked_at=revoked_at.get(digest))
        by_id: dict[str, list[_Version]] = {}
        for version in versions.values():
            by_id.setdefault(version.entry["card_id"], []).append(version)
        for history in by_id.values():
            history.sort(key=lambda v: v.entry["version"])

        self.out.joinpath("cards").mkdir()
        self.out.joinpath("keys").mkdir()
        for key_path in sorted((self.root / "keys").glob("*.pub")):
            _write(self.out / "keys" / key_path.name, _read(key_path))
        _write(self.out / "registry.pub", _read(self.root / "keys" / f"{registry_keyid}.pub"))
        _write(self.out / "filter.js", (data_dir("templates") / "site" / "filter.js").read_bytes())
        if found:
            _write(self.out / "checkpoint.json", found[0])
        checkpoint = found[1] if found else None

        context = {"origin": origin, "registry_keyid": registry_keyid, "size": len(entries),
                   "checkpoint": checkpoint, "root": checkpoint.root.hex() if checkpoint else None}
        style, style_hash = _style("site.css")
        rows = []
        for card_id in sorted(by_id):
            history = by_id[card_id]
            latest = history[-1]
            valid = [v for v in history if v.state != "revoked"]
            rows.append({"v": latest, "fallback": valid[-1] if latest.state == "revoked" and valid else None,
                         "versions": len(history)})
        pages = {
            "index.html": self.env.get_template("site/index.html.j2").render(
                context, rows=rows, style=style, style_hash=style_hash, cards=len(versions)),
            "log.html": self.env.get_template("site/log.html.j2").render(
                context, entries=entries, versions=versions, style=style, style_hash=style_hash),
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
                "revoked": sorted(rules.revoked)}

    def _card(self, digest, version, history, versions, context, header_template, footer_template, card_style):
        entry = version.entry
        folder = self.out / "cards" / digest
        folder.mkdir()
        stored = {}
        for name in COPIED:
            if name not in entry["rendered"]:
                continue
            data = _read(self.root / "cards" / digest / name)
            if hashlib.sha256(data).hexdigest() != entry["rendered"][name]:
                raise AcardsError("registry.render-mismatch", f"{name} is not the file that was published",
                                  "run `acards registry verify` and restore the registry from a trusted mirror",
                                  Location(file=f"cards/{digest}/{name}"))
            if name.endswith(".html"):
                _check_safe(data, digest, name)
            stored[name] = data
            _write(folder / name, data)
        _write(folder / "envelope.json", _read(self.root / "cards" / digest / "envelope.json"))
        card_context = dict(context, v=version, history=history, versions=versions, files=sorted(stored),
                            sha256={name: entry["rendered"][name] for name in stored})
        header = header_template.render(card_context)
        footer = footer_template.render(card_context)
        page = _splice(stored["card.html"], header, footer, card_style) if "card.html" in stored else None
        if page is None:
            page = self.env.get_template("site/card_page.html.j2").render(
                card_context, header=markupsafe.Markup(header), footer=markupsafe.Markup(footer),
                card_style=card_style, csp=markupsafe.Markup(CARD_CSP)).encode("utf-8")
        _check_safe(page, digest, f"site page {digest}.html")
        _write(self.out / "cards" / f"{digest}.html", page)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if function(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _swap_into_place(built: Path, site: Path) -> None:
    if not os.path.lexists(site):
        os.rename(built, site)
        return
    if _exchange(built, site):
        shutil.rmtree(built)  # now the previous site
        return
    old = Path(tempfile.mkdtemp(prefix=_BUILD_PREFIX, dir=site.parent))
    os.rename(site, old / "old")
    os.rename(built, site)
    shutil.rmtree(old)


def _io_error(action: str, error: OSError) -> AcardsError:
    return AcardsError("registry.io-error", f"cannot {action}: {error.strerror or error} ({error.filename or ''})",
                       "check that the registry folder exists, is writable and has free space")


def build_site(directory: str | os.PathLike) -> dict:
    """Verify the registry at ``directory`` (raising its problems, if any) and write ``directory/site``.

    Returns a summary: {"site", "cards" (ids), "versions", "entries", "checkpoint", "revoked"}.
    """
    root = Path(directory)
    _require_registry(root)
    try:
        lock = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise _io_error(f"open {root / _LOCK}", error) from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in root.glob(f"{_BUILD_PREFIX}*"):  # left by a build that crashed; builds hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        try:
            out = Path(tempfile.mkdtemp(prefix=_BUILD_PREFIX, dir=root))
        except OSError as error:
            raise _io_error(f"create a folder in {root}", error) from None
        try:
            os.chmod(out, 0o755)
            summary = _Builder(root, out).build()
            _swap_into_place(out, root / SITE)
        except OSError as error:
            shutil.rmtree(out, ignore_errors=True)
            raise _io_error(f"build the site in {root / SITE}", error) from None
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)
            raise
    finally:
        os.close(lock)
    summary["site"] = str(root / SITE)
    return summary


# --- serving --------------------------------------------------------------------------------------


class _ReadOnlyHandler(SimpleHTTPRequestHandler):
    """GET and HEAD of the site's files only: no directory listings, nothing outside the site."""

    server_version = "acards-site"
    sys_version = ""

    def list_directory(self, path):  # noqa: D102 — folders are not listed
        self.send_error(404, "not found")
        return None

    def translate_path(self, path: str) -> str:
        translated = super().translate_path(path)
        base = os.path.realpath(self.directory)
        real = os.path.realpath(translated)
        if real != base and not real.startswith(base + os.sep):
            return os.path.join(base, ".acards-outside-the-site")  # does not exist: 404
        return translated

    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy", SERVER_CSP)
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


def site_folder(directory: str | os.PathLike) -> Path:
    """``directory/site``, once it holds a built site."""
    site = Path(directory) / SITE
    if not (site / "index.html").is_file():
        raise AcardsError("usage.unreadable", f"{site} holds no built site",
                          f"build it first: `acards registry build {directory}`", Location(file=str(site)))
    return site


def make_server(directory: str | os.PathLike, port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """An HTTP server for ``directory/site`` bound to 127.0.0.1 (never another address); call
    ``serve_forever()`` on it, and ``shutdown()`` / ``server_close()`` to stop it. Port 0 picks a free port."""
    site = site_folder(directory)
    handler = functools.partial(_QuietHandler if quiet else _ReadOnlyHandler, directory=str(site.resolve()))
    try:
        server = ThreadingHTTPServer((LOOPBACK, port), handler)
    except OSError as error:
        raise AcardsError("registry.io-error", f"cannot listen on {LOOPBACK}:{port}: {error.strerror or error}",
                          "choose another --port (0 picks a free one)") from None
    server.daemon_threads = True
    return server


class _QuietHandler(_ReadOnlyHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base class's name
        pass


def iter_site_files(directory: str | os.PathLike) -> Iterator[Path]:
    """Every file of the built site, sorted (tests and benchmarks compare builds with it)."""
    site = Path(directory) / SITE
    return iter(sorted(path for path in site.rglob("*") if path.is_file()))
