"""``make_server(DIR)``: ``DIR/site`` over HTTP on 127.0.0.1 only (never another address), read-only.

GET and HEAD of the site's files only: no directory listings, nothing outside the site, with
``X-Content-Type-Options: nosniff`` and a Content-Security-Policy header on every answer.
"""

from __future__ import annotations

import functools
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from acards.errors import AcardsError, Location
from acards.site import SITE

LOOPBACK = "127.0.0.1"
SERVER_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
              "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class _ReadOnlyHandler(SimpleHTTPRequestHandler):
    """GET and HEAD of the site's files only: no directory listings, nothing outside the site."""

    server_version = "acards-site"
    sys_version = ""

    def list_directory(self, path):  # noqa: ARG002 — the base class's signature; folders are not listed
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


class _QuietHandler(_ReadOnlyHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the base class's name
        pass


def _site_folder(directory: str | os.PathLike) -> Path:
    """``directory/site``, once it holds a built site."""
    site = Path(directory) / SITE
    if not (site / "index.html").is_file():
        raise AcardsError("usage.unreadable", f"{site} holds no built site",
                          f"build it first: `acards registry build {directory}`", Location(file=str(site)))
    return site


def make_server(directory: str | os.PathLike, port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """An HTTP server for ``directory/site`` bound to 127.0.0.1 (never another address); call
    ``serve_forever()`` on it, and ``shutdown()`` / ``server_close()`` to stop it. Port 0 picks a free port."""
    site = _site_folder(directory)
    handler = functools.partial(_QuietHandler if quiet else _ReadOnlyHandler, directory=str(site.resolve()))
    try:
        server = ThreadingHTTPServer((LOOPBACK, port), handler)
    except OSError as error:
        raise AcardsError("registry.io-error", f"cannot listen on {LOOPBACK}:{port}: {error.strerror or error}",
                          "choose another --port (0 picks a free one)") from None
    server.daemon_threads = True
    return server
