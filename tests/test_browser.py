"""The registry's static site in a real browser: headless Chromium driven by Selenium + chromedriver.

The site is opened from the file system (file:// URLs), as a reader who downloaded a registry would.
It is the site tests/test_site.py builds (its session fixture `world`): tiny-defense versions 1 and
2, and a card whose title holds a <script> and an <img onerror> payload.

These tests need /usr/bin/chromium and /usr/bin/chromedriver (Debian: `apt-get install chromium
chromium-driver`; .ci/run installs them) and are skipped, saying so, only when those are absent.
Screenshots go to tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from test_site import XSS_TITLE, world  # noqa: F401 — the session fixture, shared with the site tests

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = os.environ.get("ACARDS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ACARDS_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600")


def _missing() -> list[str]:
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(path) and os.access(path, os.X_OK))]


pytestmark = pytest.mark.skipif(
    bool(_missing()),
    reason=f"headless browser tests need {' and '.join(_missing())} "
           "(Debian: apt-get install chromium chromium-driver; .ci/run installs them)",
)


@pytest.fixture(scope="module")
def driver():
    from selenium import (
        webdriver,  # the test extra's dependency: an ImportError here is a real failure
    )
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="acards-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_file(driver, path: Path) -> None:
    driver.get(path.resolve().as_uri())


def assert_no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 — the property raises when no alert is open


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path)), path
    assert path.stat().st_size > 1000
    return path


def visible_rows(driver):
    from selenium.webdriver.common.by import By

    return [row for row in driver.find_elements(By.CSS_SELECTOR, "#cards tbody tr") if row.is_displayed()]


def test_the_index_lists_the_cards(driver, world):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, world.site / "index.html")
    assert driver.title == "Acceptance Cards · acards.test/site"
    rows = visible_rows(driver)
    assert [row.find_element(By.TAG_NAME, "code").text for row in rows] == ["tiny-defense", "xss-probe"]
    assert "A subspace-projection defense under the installed-gap protocol (worked example)" in rows[0].text
    assert "current" in rows[0].text and "1 / 2" in rows[0].text
    screenshot(driver, "site-index.png")


def test_typing_in_the_filter_hides_rows_that_do_not_match(driver, world):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, world.site / "index.html")
    box = driver.find_element(By.ID, "filter")
    assert box.is_displayed()  # filter.js ran (script-src 'self' allows it from file://) and showed the box
    assert driver.find_element(By.ID, "shown").text == "2 of 2 shown"
    box.send_keys("tiny")
    assert [row.get_attribute("class") for row in visible_rows(driver)] == ["current"]
    assert "tiny-defense" in visible_rows(driver)[0].text
    assert driver.find_element(By.ID, "shown").text == "1 of 2 shown"
    box.clear()
    box.send_keys("<script>")  # matches the XSS card's title as text, and only that
    assert [row.text.split()[0] for row in visible_rows(driver)] == ["xss-probe"]
    box.clear()
    box.send_keys("no-such-card")
    assert visible_rows(driver) == []
    assert_no_alert(driver)
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe  # no CSP violation, no failed load


def test_a_card_page_shows_its_verdict_table(driver, world):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, world.page("v2"))
    assert driver.find_element(By.ID, "registry-status").text == "Current version of tiny-defense."
    claims = driver.find_element(By.ID, "claims")
    headline = [h.text for h in claims.find_elements(By.TAG_NAME, "h3")]
    assert headline == ["Claim C1: supported · reproduced", "Claim C2: unsupported · reproduced"]
    cells = driver.find_element(By.CSS_SELECTOR, "#cells table")
    header = [th.text for th in cells.find_elements(By.CSS_SELECTOR, "thead th")]
    assert header[:6] == ["cell", "reliability", "fresh", "mechanism", "transfer", "cost"]
    first = [td.text.split("\n")[0] for td in cells.find_elements(By.CSS_SELECTOR, "tbody tr:first-child td")]
    assert first[0] == "projection/top2" and first[1:6] == ["pass"] * 5
    assert driver.find_elements(By.TAG_NAME, "script") == []
    screenshot(driver, "site-card.png")
    driver.find_element(By.LINK_TEXT, "All cards").click()
    assert driver.current_url.endswith("/site/index.html")


def test_superseded_versions_link_to_the_current_one(driver, world):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, world.page("v1"))
    status = driver.find_element(By.ID, "registry-status")
    assert status.text == "Superseded by version 2."
    status.find_element(By.TAG_NAME, "a").click()
    assert driver.current_url.endswith(f"/cards/{world.digests['v2']}.html")


@pytest.mark.parametrize("page", ["index", "card page", "card as published"])
def test_a_card_title_with_a_script_runs_nothing_and_shows_the_text(driver, world, page):  # noqa: F811
    from selenium.webdriver.common.by import By

    path = {"index": world.site / "index.html", "card page": world.page("xss"),
            "card as published": world.site / "cards" / world.digests["xss"] / "card.html"}[page]
    open_file(driver, path)
    assert_no_alert(driver)
    if page == "index":
        cell = [row for row in visible_rows(driver) if row.text.startswith("xss-probe")][0]
        shown = cell.find_elements(By.TAG_NAME, "td")[2].text.split("\n")[0]  # card, verdict, title (then its badge)
        assert [s.get_attribute("src") for s in driver.find_elements(By.TAG_NAME, "script")] == [
            (world.site / "filter.js").resolve().as_uri()]
    else:
        shown = driver.find_element(By.TAG_NAME, "h1").text
        assert driver.find_elements(By.TAG_NAME, "script") == []
        assert XSS_TITLE in driver.title
    assert shown == XSS_TITLE  # the literal text, every character of it
    assert driver.find_elements(By.CSS_SELECTOR, "img[src='x'], img[onerror]") == []
    assert driver.execute_script("return document.querySelectorAll('[onerror],[onload],[onclick]').length") == 0
    assert_no_alert(driver)
    if page == "card page":
        screenshot(driver, "site-xss-card.png")
