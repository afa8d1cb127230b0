"""A card page with a reviewer's attestation, in headless Chromium (the driver of tests/test_browser.py):
the reviewer's display name holds an <img onerror> payload; the page shows it as text and runs nothing.

Skipped, saying so, only when /usr/bin/chromium or /usr/bin/chromedriver is absent.
"""

from __future__ import annotations

from test_attest import NOW, registry, run, world  # noqa: F401 — fixtures shared with the attestation tests
from test_browser import assert_no_alert, driver, open_file, pytestmark  # noqa: F401 — the browser and its skip

from acards.registry.attestations import publish_attestation

HOSTILE = '<img src=x onerror="alert(1)">Reviewer & co'


def test_the_attestation_line_shows_a_hostile_reviewer_name_as_text(driver, world, registry):  # noqa: F811
    from selenium.webdriver.common.by import By

    run("registry", "trust", registry, f"{world.keys['reviewer']}.pub", "--name", HOSTILE, "--key", world.keys["registry"])
    publish_attestation(registry, world.attestation("full-pass").read_bytes(), world.key("registry"),
                        world.report("full-pass").read_bytes(), now=NOW)
    run("registry", "build", registry)
    open_file(driver, registry / "site" / "cards" / f"{world.digest('full-pass')}.html")
    assert_no_alert(driver)
    line = driver.find_element(By.ID, "registry-attestations")
    assert line.text.startswith(f"Attested by {HOSTILE} (reproduced, ")
    assert line.find_elements(By.TAG_NAME, "img") == []
    assert driver.execute_script("return document.querySelectorAll('[onerror],[onload],[onclick]').length") == 0
    assert_no_alert(driver)
