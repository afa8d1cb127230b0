"""Signer names (`acards registry trust R KEY --name ... --contact ...`): the registry key signs a
display name per trusted key (keys/<keyid>.json); the site shows it in place of the keyid, with the
keyid in the tooltip; a record altered, moved to another key's file or of another registry is a
problem `registry verify` reports.

Real keys, a real `acards verify` report of the shipped example, a real envelope from `acards sign`,
published with `acards publish`; the hostile name is checked in headless Chromium too.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from test_site import invoke, ok, signed_card

from acards.attest.keys import load_private_key
from acards.registry import reader, trust
from acards.registry.layout import Layout

HOSTILE = "<img src=x onerror=alert(1)><b>Eve</b> \"Lab\" & 'co'"
CHROMIUM = os.environ.get("ACARDS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ACARDS_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A registry trusting two authors, one named with a hostile name, the other plainly, and a card
    signed by the first, published and built."""
    root = tmp_path_factory.mktemp("signer-names")
    for name in ("author", "other", "registry"):
        ok("key", "new", "--out", root / f"{name}.key", "--no-passphrase")
    registry = root / "registry"
    ok("registry", "init", registry, "--origin", "acards.test/names", "--key", root / "registry.key")
    trusted = ok("registry", "trust", registry, root / "author.key.pub", "--name", HOSTILE,
                 "--contact", "eve@example.org", "--key", root / "registry.key").output
    ok("registry", "trust", registry, root / "other.key.pub")  # without a name: as before
    envelope = signed_card(root, "card", root / "author.key")
    ok("publish", envelope, "--registry", registry, "--key", root / "registry.key")
    ok("registry", "build", registry)
    author = re.search(r"trusted ([0-9a-f]{64})", trusted)[1]
    return root, registry, author


def test_a_name_round_trips_through_the_reader(named):
    root, registry, author = named
    names = reader.signer_names(registry)
    assert set(names) == {author}  # the other key has no name, and trusting it still worked
    assert names[author] == trust.Signer(author, HOSTILE, "eve@example.org")
    assert len(reader.trusted_keys(registry)) == 2
    ok("registry", "verify", registry)


def test_renaming_is_signed_again_and_replaces_the_name(named, tmp_path):
    root, registry, author = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    ok("registry", "trust", copy, root / "author.key.pub", "--name", "Eve Example", "--key", root / "registry.key")
    assert reader.signer_names(copy)[author] == trust.Signer(author, "Eve Example", "")
    ok("registry", "verify", copy)


@pytest.mark.parametrize(("name", "contact", "expected"), [
    ("x" * 81, "", "more than 80"),
    ("Eve", "c" * 201, "more than 200"),
    ("Eve\nAdmin", "", "U+000A"),
    ("Eve\u202eniamdA", "", "U+202E"),  # a bidirectional override
    ("Eve\u200b", "", "U+200B"),  # zero-width space
    (" Eve", "", "white space"),
    ("", "", "empty"),
    ("Eve", "eve@example.org\x1b[31m", "U+001B"),
])
def test_a_bad_name_or_contact_is_refused_with_a_coded_error_before_anything_is_written(named, tmp_path, name, contact, expected):
    root, registry, _ = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    result = invoke("registry", "trust", copy, root / "other.key.pub", "--name", name, "--contact", contact,
                    "--key", root / "registry.key")
    assert result.exit_code == 2, result.output
    assert "registry.bad-signer-name" in result.output and expected in result.output
    assert "Traceback" not in result.output
    assert not Layout(copy).signer_files() or set(reader.signer_names(copy)) == set(reader.signer_names(registry))


def test_a_name_needs_the_registry_key(named, tmp_path):
    root, registry, _ = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    result = invoke("registry", "trust", copy, root / "other.key.pub", "--name", "Olive")
    assert result.exit_code == 2 and "registry.name-needs-key" in result.output
    result = invoke("registry", "trust", copy, root / "other.key.pub", "--name", "Olive", "--key", root / "author.key")
    assert result.exit_code == 2 and "registry.wrong-key" in result.output
    assert set(reader.signer_names(copy)) == set(reader.signer_names(registry))


def test_the_hostile_name_is_escaped_on_every_page_with_the_keyid_in_the_tooltip(named):
    _, registry, author = named
    site = registry / "site"
    pages = [site / "index.html", site / "log.html", *sorted((site / "cards").glob("*.html"))]
    assert len(pages) == 3
    escaped = "&lt;img src=x onerror=alert(1)&gt;&lt;b&gt;Eve&lt;/b&gt; &#34;Lab&#34; &amp; &#39;co&#39;"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text and "<b>Eve" not in text, page
        assert f'<span class="signer" title="{author} · eve@example.org">{escaped}</span>' in text, page


def _driver():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.skip(f"needs {' and '.join(missing)}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--window-size=1280,1200"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def test_chromium_shows_the_hostile_name_as_text_with_the_keyid_as_tooltip(named, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    _, registry, author = named
    driver = _driver()
    try:
        for page in ("index.html", "log.html"):
            driver.get((registry / "site" / page).resolve().as_uri())
            signers = driver.find_elements(By.CSS_SELECTOR, "span.signer")
            assert [element.text for element in signers] == [HOSTILE]
            assert signers[0].get_attribute("title") == f"{author} · eve@example.org"
            assert not signers[0].find_elements(By.CSS_SELECTOR, "*")  # no element made of the name
            with pytest.raises(NoAlertPresentException):
                driver.switch_to.alert  # noqa: B018 — raises when no alert is open
    finally:
        driver.quit()


def _verify_codes(registry: Path) -> str:
    result = invoke("registry", "verify", registry)
    assert result.exit_code == 3, result.output
    return result.output


def test_an_edited_name_record_is_detected_and_not_shown(named, tmp_path):
    _, registry, author = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    record = Layout(copy).signer(author)
    record.write_bytes(record.read_bytes().replace(b'"payload":"', b'"payload":"e', 1))
    assert "registry.bad-signer-record" in _verify_codes(copy)
    assert reader.signer_names(copy) == {}  # the keyid is shown instead
    assert invoke("registry", "build", copy).exit_code == 3


def test_a_name_record_moved_to_another_keys_file_is_detected(named, tmp_path):
    root, registry, author = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    other = [key for key in reader.trusted_keys(copy) if key != author][0]
    layout = Layout(copy)
    os.rename(layout.signer(author), layout.signer(other))  # give the other signer the first one's name
    output = _verify_codes(copy)
    assert "registry.bad-signer-record" in output and "not the key of its file" in output
    assert reader.signer_names(copy) == {}


def test_a_name_record_signed_by_another_key_or_for_another_registry_is_detected(named, tmp_path):
    root, registry, author = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    forged = trust.signer_record("acards.test/names", trust.Signer(author, "Mallory", ""),
                                 load_private_key(root / "author.key"))
    Layout(copy).signer(author).write_bytes(forged)
    assert "not signed by the registry key" in _verify_codes(copy)
    foreign = trust.signer_record("elsewhere.test/r", trust.Signer(author, "Mallory", ""),
                                  load_private_key(root / "registry.key"))
    Layout(copy).signer(author).write_bytes(foreign)
    assert "another registry" in _verify_codes(copy)


def test_a_name_record_for_an_untrusted_key_is_detected(named, tmp_path):
    root, registry, author = named
    copy = Path(shutil.copytree(registry, tmp_path / "copy"))
    stranger = "ab" * 32
    record = trust.signer_record("acards.test/names", trust.Signer(stranger, "Stranger", ""),
                                 load_private_key(root / "registry.key"))
    Layout(copy).signer(stranger).write_bytes(record)
    assert "not a trusted key" in _verify_codes(copy)


def test_verify_envelope_names_each_signer_by_the_key_file_it_was_trusted_through(named):
    root, _, author = named
    result = ok("verify", root / "card" / "card.yaml", "--envelope", root / "card" / "card.envelope.json",
                "--trusted-key", root / "author.key.pub", "--bootstrap", 500)
    assert f"signed by author.key.pub ({author[:16]}…); payload sha256 " in result.output


def test_the_index_filter_matches_signer_names(named):
    _, registry, _ = named
    text = (registry / "site" / "index.html").read_text(encoding="utf-8")
    [search] = re.findall(r'data-search="([^"]*)"', text)
    assert "&lt;b&gt;eve&lt;/b&gt; &#34;lab&#34; &amp; &#39;co&#39;" in search
