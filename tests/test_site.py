"""The registry end to end through the CLI, and its static site (acards.site).

Real keys, real `acards verify` reports of the shipped example, real envelopes from `acards sign`,
published with `acards publish` into a registry made by `acards registry init`. The `world` fixture
(session scoped) is shared with tests/test_browser.py, which opens the same site in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from acards.attest import dsse, in_toto
from acards.attest.keys import keyid, load_private_key, load_public_key, new_key
from acards.canonical import canonical_bytes
from acards.cli import main
from acards.errors import AcardsError
from acards.registry import audit, checkpoints, reader, store
from acards.site.build import build_site
from acards.site.renderer import render_statement
from acards.site.serve import make_server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny-defense"
ORIGIN = "acards.test/site"
XSS_TITLE = "<script>alert(1)</script><img src=x onerror=alert(2)> & \"quoted\" 'card'"
NO_PASSPHRASE = {"ACARDS_KEY_PASSPHRASE": None}


def invoke(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env={**NO_PASSPHRASE, **(env or {})})


def ok(*args, env=None):
    result = invoke(*args, env=env)
    assert result.exit_code == 0, result.output
    return result


@dataclass
class World:
    """A registry holding tiny-defense versions 1 and 2 and an XSS-titled card, with its site built."""

    root: Path
    registry: Path
    author_key: Path
    registry_key: Path
    digests: dict  # name (v1, v2, xss) -> card digest
    envelopes: dict  # name -> envelope path
    publish_output: dict  # name -> what `acards publish` printed

    @property
    def site(self) -> Path:
        return self.registry / "site"

    def page(self, name: str) -> Path:
        return self.site / "cards" / f"{self.digests[name]}.html"

    def copy_registry(self, target: Path) -> Path:
        shutil.copytree(self.registry, target)
        return target


def signed_card(root: Path, name: str, author_key: Path, edit=None) -> Path:
    """Copy the example to root/name, apply ``edit`` to its card.yaml text, verify it and sign it."""
    folder = root / name
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("*.envelope.json"))
    card = folder / "card.yaml"
    if edit:
        card.write_text(edit(card.read_text(encoding="utf-8")), encoding="utf-8")
    report = root / f"{name}.report.json"
    ok("verify", card, "--bootstrap", 500, "--report", report)
    ok("sign", card, "--key", author_key, "--report", report)
    return folder / "card.envelope.json"


def make_world(root: Path) -> World:
    ok("key", "new", "--out", root / "author.key", "--no-passphrase")
    ok("key", "new", "--out", root / "registry.key", "--no-passphrase")
    directory = root / "registry"
    ok("registry", "init", directory, "--origin", ORIGIN, "--key", root / "registry.key")
    ok("registry", "trust", directory, root / "author.key.pub")
    envelopes = {
        "v1": signed_card(root, "v1", root / "author.key"),
        "v2": signed_card(root, "v2", root / "author.key", lambda text: text.replace("\nversion: 1\n", "\nversion: 2\n", 1)),
        "xss": signed_card(root, "xss", root / "author.key", lambda text: text.replace(
            "id: tiny-defense", "id: xss-probe", 1).replace(
            "title: A subspace-projection defense under the installed-gap protocol (worked example)",
            "title: " + json.dumps(XSS_TITLE), 1)),
    }
    outputs, digests = {}, {}
    for name, envelope in envelopes.items():
        outputs[name] = ok("publish", envelope, "--registry", directory, "--key", root / "registry.key").output
        digests[name] = re.search(r"digest ([0-9a-f]{64})", outputs[name])[1]
    ok("registry", "build", directory)
    return World(root, directory, root / "author.key", root / "registry.key", digests, envelopes, outputs)


_WORLD: list[World] = []  # built once per session, though test_browser.py imports the fixture too


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    if not _WORLD:
        _WORLD.append(make_world(tmp_path_factory.mktemp("site-world")))
    return _WORLD[0]


def entries(world_or_path) -> list[dict]:
    path = world_or_path.registry if isinstance(world_or_path, World) else world_or_path
    return reader.entries(path)


# --- the CLI: init, trust, publish, verify, revoke ------------------------------------------------


def test_publish_prints_the_digest_and_the_log_index(world):
    for index, name in enumerate(("v1", "v2", "xss")):
        output = world.publish_output[name]
        assert f"log index {index}" in output
        payload = json.loads(world.envelopes[name].read_text())["payload"]
        assert world.digests[name] == hashlib.sha256(base64.b64decode(payload)).hexdigest()
    assert "superseding " + world.digests["v1"] in world.publish_output["v2"]


def test_the_second_version_supersedes_the_first(world):
    log = entries(world)
    assert [(e["card_id"], e["version"], e["supersedes"]) for e in log] == [
        ("tiny-defense", 1, None), ("tiny-defense", 2, world.digests["v1"]), ("xss-probe", 1, None)]
    author = keyid(load_public_key(world.author_key.with_name("author.key.pub")))
    assert all(e["signers"] == [author] for e in log)
    assert reader.status(world.registry, world.digests["v1"])["state"] == "superseded"
    assert [e["digest"] for e in reader.latest_cards(world.registry)] == [world.digests["v2"], world.digests["xss"]]


def test_the_stored_pages_are_render_card_of_the_signed_predicate(world):
    from acards.present.render import render_card
    from acards.report.stored import check_report

    folder = world.registry / "cards" / world.digests["v2"]
    statement = json.loads((folder / "statement.json").read_bytes())
    signers = [{"keyid": k} for k in entries(world)[1]["signers"]]
    card, report = statement["predicate"]["card"], check_report(statement["predicate"]["report"])
    assert (folder / "card.html").read_text(encoding="utf-8") == render_card(card, report, "html", signers)
    assert (folder / "card.md").read_text(encoding="utf-8") == render_card(card, report, "md", signers)
    assert signers[0]["keyid"] in (folder / "card.html").read_text(encoding="utf-8")


def test_registry_verify_re_renders_every_card_and_passes(world):
    result = invoke("registry", "verify", world.registry)
    assert result.exit_code == 0, result.output
    assert "OK: the registry verifies" in result.output and "3 log entries" in result.output
    result = invoke("registry", "verify", world.registry, "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["ok"] is True and document["size"] == 3 and document["problems"] == []
    assert document["revoked_cards"] == []


def test_registry_verify_extends_a_saved_checkpoint(world, tmp_path):
    saved = tmp_path / "checkpoint.json"
    saved.write_bytes((world.site / "checkpoint.json").read_bytes())
    assert invoke("registry", "verify", world.registry, "--checkpoint", saved).exit_code == 0
    other = tmp_path / "other"
    ok("registry", "init", other, "--origin", "elsewhere.test/reg", "--key", world.registry_key)
    foreign = invoke("registry", "verify", world.registry, "--checkpoint", other / "log" / "checkpoints" / "0.json")
    assert foreign.exit_code == 3 and "registry.foreign-origin" in foreign.output


def test_a_tampered_rendered_page_fails_verify_and_the_site_is_not_rebuilt(world, tmp_path):
    directory = world.copy_registry(tmp_path / "registry")
    page = directory / "cards" / world.digests["v1"] / "card.html"
    page.write_bytes(page.read_bytes().replace(b"Claims</h2>", b"Claims (all supported!)</h2>", 1))
    result = invoke("registry", "verify", directory)
    assert result.exit_code == 3 and "registry.render-mismatch" in result.output
    assert f"cards/{world.digests['v1']}/card.html" in result.output and "Traceback" not in result.output
    document = json.loads(invoke("registry", "verify", directory, "--format", "json").stdout)
    assert document["ok"] is False and document["exit_code"] == 3
    assert {p["code"] for p in document["problems"]} == {"registry.render-mismatch"}
    before = sorted(p.relative_to(directory) for p in (directory / "site").rglob("*"))
    built = invoke("registry", "build", directory)
    assert built.exit_code == 3 and "registry.render-mismatch" in built.output
    assert sorted(p.relative_to(directory) for p in (directory / "site").rglob("*")) == before  # old site kept
    assert not list(directory.glob(".site-build-*"))


def test_a_re_render_that_differs_is_reported_even_when_the_hash_matches(world, tmp_path, monkeypatch):
    """verify re-renders from the payload: a template change since publication is caught."""
    from acards.present import render as render_module

    original = render_module.render_card
    monkeypatch.setattr(render_module, "render_card", lambda *a, **k: original(*a, **k).replace("Claims", "Claimz"))
    result = invoke("registry", "verify", world.registry)
    assert result.exit_code == 3 and "registry.render-mismatch" in result.output
    assert "does not re-render byte for byte" in result.output


def test_revoke_shows_in_verify_and_on_the_site(world, tmp_path):
    directory = world.copy_registry(tmp_path / "registry")
    reason = "Evidence <b>withdrawn</b> by the authors"
    result = ok("registry", "revoke", directory, world.digests["v2"], "--reason", reason, "--key", world.registry_key)
    assert "revoked tiny-defense version 2" in result.output and "log index 3" in result.output
    verified = invoke("registry", "verify", directory)
    assert verified.exit_code == 0, verified.output
    assert f"revoked: tiny-defense version 2 ({world.digests['v2']}): {reason}" in verified.output
    document = json.loads(invoke("registry", "verify", directory, "--format", "json").stdout)
    assert document["revoked"] == {world.digests["v2"]: reason}
    assert document["revoked_cards"][0]["card_id"] == "tiny-defense"
    again = invoke("registry", "revoke", directory, world.digests["v2"], "--reason", "twice", "--key", world.registry_key)
    assert again.exit_code == 3 and "registry.bad-revoke" in again.output

    ok("registry", "build", directory)
    index = (directory / "site" / "index.html").read_text(encoding="utf-8")
    row = re.search(r'<tr class="revoked"[^>]*>.*?</tr>', index, re.S)[0]
    assert "tiny-defense" in row and 'badge revoked">revoked<' in row
    assert "Evidence &lt;b&gt;withdrawn&lt;/b&gt; by the authors" in row and "<b>" not in row
    assert f'href="cards/{world.digests["v1"]}.html">version 1</a>' in row  # the latest unrevoked version
    page = (directory / "site" / "cards" / f"{world.digests['v2']}.html").read_text(encoding="utf-8")
    assert 'id="registry-status">Revoked on ' in page and "Evidence &lt;b&gt;withdrawn" in page
    log = (directory / "site" / "log.html").read_text(encoding="utf-8")
    assert "revoked: Evidence &lt;b&gt;withdrawn&lt;/b&gt; by the authors" in log


def test_publishing_the_same_card_again_or_an_untrusted_card_is_refused(world, tmp_path):
    directory = world.copy_registry(tmp_path / "registry")
    again = invoke("publish", world.envelopes["v1"], "--registry", directory, "--key", world.registry_key)
    assert again.exit_code == 3 and "registry.duplicate-digest" in again.output
    ok("key", "new", "--out", tmp_path / "stranger.key", "--no-passphrase")
    folder = tmp_path / "card"
    shutil.copytree(world.envelopes["v1"].parent, folder)
    ok("sign", folder / "card.yaml", "--key", tmp_path / "stranger.key", "--report", world.root / "v1.report.json",
       "--out", tmp_path / "stranger.envelope.json")
    stranger = invoke("publish", tmp_path / "stranger.envelope.json", "--registry", directory, "--key", world.registry_key)
    assert stranger.exit_code == 3 and "envelope.unknown-keyid" in stranger.output
    wrong_key = invoke("publish", world.envelopes["v1"], "--registry", directory, "--key", world.author_key)
    assert wrong_key.exit_code == 2 and "registry.wrong-key" in wrong_key.output
    assert len(entries(directory)) == 3


def test_registry_init_reads_the_key_passphrase_like_other_commands(world, tmp_path):
    ok("key", "new", "--out", tmp_path / "reg.key", env={"ACARDS_KEY_PASSPHRASE": "s3cret"})
    missing = invoke("registry", "init", tmp_path / "r", "--origin", ORIGIN, "--key", tmp_path / "reg.key")
    assert missing.exit_code == 2 and "key.no-passphrase" in missing.output
    assert not (tmp_path / "r" / "registry.json").exists()
    ok("registry", "init", tmp_path / "r", "--origin", ORIGIN, "--key", tmp_path / "reg.key",
       env={"ACARDS_KEY_PASSPHRASE": "s3cret"})
    again = invoke("registry", "init", tmp_path / "r", "--origin", ORIGIN, "--key", tmp_path / "reg.key",
                   env={"ACARDS_KEY_PASSPHRASE": "s3cret"})
    assert again.exit_code == 2 and "registry.exists" in again.output
    for args in (("registry", "build", tmp_path / "nothing"),
                 ("publish", world.envelopes["v1"], "--registry", tmp_path / "nothing", "--key", world.registry_key)):
        result = invoke(*args)
        assert result.exit_code == 2 and "registry.not-a-registry" in result.output, result.output


# --- the site -------------------------------------------------------------------------------------


def site_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_site_has_an_index_a_log_and_a_page_per_card_version(world):
    files = site_files(world.site)
    for name in ("index.html", "log.html", "checkpoint.json", "filter.js", "registry.pub"):
        assert name in files
    for digest in world.digests.values():
        assert f"cards/{digest}.html" in files
        for name in ("card.html", "card.md"):  # byte for byte as published
            assert files[f"cards/{digest}/{name}"] == (world.registry / "cards" / digest / name).read_bytes()
        assert files[f"cards/{digest}/envelope.json"] == (world.registry / "cards" / digest / "envelope.json").read_bytes()
    assert files["checkpoint.json"] == (world.registry / "log" / "checkpoints" / "3.json").read_bytes()

    index = files["index.html"].decode("utf-8")
    rows = re.findall(r"<tr class=\"(\w+)\" data-search=\"[^\"]*\">(.*?)</tr>", index, re.S)
    assert [state for state, _ in rows] == ["current", "current"]
    tiny, xss = (body for _, body in rows)
    assert f'href="cards/{world.digests["v2"]}.html"><code>tiny-defense</code>' in tiny  # the latest version only
    assert "A subspace-projection defense under the installed-gap protocol (worked example)" in tiny
    assert ">2 <span class=\"muted\">(of 2)</span>" in tiny
    assert "1 / 2</td>" in tiny  # claims supported / total
    assert "1 / 2 strict<br>1 / 2 permissive</td>" in tiny  # full-card passes under each coding
    assert '<td class="verdict"><span class="badge supported" title="headline claim C1">supported</span></td>' in tiny
    assert world.digests["v2"][:16] in tiny and "badge current" in tiny
    log = files["log.html"].decode("utf-8")
    checkpoint = checkpoints.parse_checkpoint_body(
        base64.b64decode(json.loads(files["checkpoint.json"])["payload"]))
    assert f"{checkpoint.size} entries" in log and checkpoint.root.hex() in log
    assert all(f'id="entry-{i}"' in log for i in range(3))
    v1 = world.page("v1").read_text(encoding="utf-8")
    assert f'Superseded by <a href="{world.digests["v2"]}.html">version 2</a>' in v1


def test_card_text_is_escaped_everywhere_and_card_pages_have_no_script(world):
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    for path in (world.site / "index.html", world.page("xss"), world.site / "cards" / world.digests["xss"] / "card.html"):
        text = path.read_text(encoding="utf-8")
        assert escaped in text, path
        assert "<script>alert" not in text and "<img src=x" not in text
    for path in (world.site / "cards").rglob("*.html"):
        text = path.read_text(encoding="utf-8").lower()
        assert "<script" not in text and "javascript:" not in text
        assert "default-src 'none'" in text
    index = (world.site / "index.html").read_text(encoding="utf-8")
    assert re.findall(r"<script[^>]*>", index) == ['<script src="filter.js" defer>']
    assert "script-src 'self';" in index and "unsafe-inline" not in index and "unsafe-eval" not in index
    script = (world.site / "filter.js").read_text(encoding="utf-8")
    assert "innerHTML" not in script.replace("no innerHTML", "") and "eval(" not in script


def test_links_are_relative(world):
    for path in world.site.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for link in re.findall(r'(?:href|src)="([^"]*)"', text):
            assert not re.match(r"(/|[a-z][a-z0-9+.-]*:)", link, re.I) or link.startswith("https://"), (path, link)
            if not link.startswith(("https://", "#")):
                target = (path.parent / link.split("#")[0]).resolve()
                assert target.is_file(), (path, link)
                assert world.site.resolve() in target.parents


def test_the_build_is_deterministic_and_atomic(world, tmp_path):
    directory = world.copy_registry(tmp_path / "registry")
    first = site_files(directory / "site")
    ok("registry", "build", directory)
    assert site_files(directory / "site") == first
    assert site_files(directory / "site") == site_files(world.site)  # the same registry in another folder
    assert not list(directory.glob(".site-build-*"))
    (directory / ".site-build-crashed").mkdir()  # what a build killed half-way leaves
    (directory / "site" / "stale.html").write_text("left from an older build")
    build_site(directory)
    assert not (directory / "site" / "stale.html").exists() and not (directory / ".site-build-crashed").exists()
    assert audit.verify_registry(directory).ok  # the site does not disturb the registry


def test_concurrent_builds_all_leave_a_whole_site(world, tmp_path):
    directory = world.copy_registry(tmp_path / "registry")
    expected = site_files(directory / "site")
    errors = []

    def build():
        try:
            build_site(directory)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and site_files(directory / "site") == expected


# --- the site builder on registries published through the API ---------------------------------------


def api_registry(tmp_path: Path, render) -> tuple[Path, str]:
    new_key(tmp_path / "registry.key")
    new_key(tmp_path / "author.key")
    directory = tmp_path / "registry"
    store.init_registry(directory, ORIGIN, tmp_path / "registry.key")
    store.add_trusted_key(directory, tmp_path / "author.key.pub")
    predicate = {"card": {"id": "api-card", "version": 1, "title": "<b>bold</b>"}, "report": {"claims": []}}
    payload = canonical_bytes(in_toto.statement([("card.yaml", "ab" * 32)], in_toto.PREDICATE_TYPE, predicate))
    envelope = canonical_bytes(dsse.sign_envelope(dsse.PAYLOAD_TYPE, payload, load_private_key(tmp_path / "author.key")))
    entry = store.publish(directory, envelope, load_private_key(tmp_path / "registry.key"), render=render)
    return directory, entry["digest"]


def test_a_stored_page_with_a_script_is_refused(tmp_path):
    directory, digest = api_registry(tmp_path, lambda s: {"card.html": b"<html><head></head><body><SCRIPT>alert(1)</script></body></html>"})
    with pytest.raises(AcardsError) as caught:
        build_site(directory)
    assert caught.value.code == "registry.bad-render" and not (directory / "site").exists()


def test_a_card_without_a_rendered_page_gets_a_plain_page(tmp_path):
    directory, digest = api_registry(tmp_path, None)
    summary = build_site(directory)
    assert summary["versions"] == 1 and summary["checkpoint"]["size"] == 1
    page = (directory / "site" / "cards" / f"{digest}.html").read_text(encoding="utf-8")
    assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page and "No rendered page was published" in page
    assert "<script" not in page.lower() and "default-src 'none'" in page


def test_a_render_callable_that_cannot_render_a_predicate_raises_a_coded_error():
    with pytest.raises(AcardsError) as caught:
        render_statement({"predicate": {"card": {"id": "x", "version": 1}}}, [])
    assert caught.value.code == "registry.bad-card"
    with pytest.raises(AcardsError) as caught:
        render_statement({"predicate": {"card": {"id": "x", "version": 1}, "report": {"card": {"id": "x", "version": 1}}}}, [])
    assert caught.value.code == "usage.bad-report"


# --- serving --------------------------------------------------------------------------------------


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on ``port`` (IPv4 and IPv6), from /proc/net."""
    found = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_serve_binds_loopback_only_and_serves_the_site_read_only(world):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ACARDS_KEY_PASSPHRASE", None)
    process = subprocess.Popen(
        # Ctrl-C as a terminal gives it, even where the test runs with SIGINT ignored (a background job)
        [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "from acards.cli import main; sys.exit(main())", "registry", "serve", str(world.registry), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        port = int(match[1])
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing else
        base = f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(base + "index.html", timeout=10) as response:
            body = response.read()
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert body == (world.site / "index.html").read_bytes()
        with urllib.request.urlopen(base, timeout=10) as response:
            assert response.read() == body
        for path, method, status in (("cards/", "GET", 404), ("../registry.json", "GET", 404),
                                     ("%2e%2e/registry.json", "GET", 404), ("nope.html", "GET", 404),
                                     ("index.html", "POST", 501), ("index.html", "PUT", 501), ("index.html", "DELETE", 501)):
            request = urllib.request.Request(base + path, data=b"x" if method != "GET" else None, method=method)
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(request, timeout=10)
            caught.value.close()
            assert caught.value.code == status, (path, method)
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "stopped" in out


def test_make_server_has_no_other_address_and_needs_a_built_site(world, tmp_path):
    server = make_server(world.registry, port=0, quiet=True)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.server_close()
    directory = world.copy_registry(tmp_path / "registry")
    shutil.rmtree(directory / "site")
    result = invoke("registry", "serve", directory, "--port", 0)
    assert result.exit_code == 2 and "acards registry build" in result.output
