"""Every page laid out in a real browser: headless Chromium (tests/test_browser.py's driver).

For the card page as `acards render` writes it, the registry site's card page, its index and its
log, at a desktop and a narrow window width: the page never scrolls sideways
(document.scrollWidth <= clientWidth), and no text of an SVG plot reaches outside its plot's box
(each <text>'s getBoundingClientRect inside its <svg>'s). Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re

import pytest
from test_browser import ARTIFACTS, _missing, driver, open_file  # noqa: F401 — the driver fixture
from test_render import _edited, example  # noqa: F401 — the example's verified report
from test_site import invoke, world  # noqa: F401 — the session's registry and site

from acards.present.render import render_card

pytestmark = pytest.mark.skipif(bool(_missing()), reason="headless browser tests need /usr/bin/chromium and /usr/bin/chromedriver")

WIDTHS = (1280, 760)
LAYOUT = """
const doc = document.documentElement;
const cut = [];
for (const svg of document.querySelectorAll('svg')) {
  const box = svg.getBoundingClientRect();
  for (const text of svg.querySelectorAll('text')) {
    const r = text.getBoundingClientRect();
    if (r.width === 0) continue;
    if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
      cut.push([text.textContent, Math.round(r.left), Math.round(r.right), Math.round(box.left), Math.round(box.right)]);
  }
}
return {scroll: doc.scrollWidth, client: doc.clientWidth, height: doc.scrollHeight, svgs: document.querySelectorAll('svg.forest, svg.paired').length, cut: cut};
"""

LONG_CELL = "safelora-projection/top10-rank16_lr2e-4.seed-sweep"


@pytest.fixture(scope="module")
def card_page(example, tmp_path_factory):  # noqa: F811
    """The example's card page with a long cell name, as `acards render` writes it."""
    card, report = example
    card = {**card, "cells": [dict(card["cells"][0], id=LONG_CELL), *card["cells"][1:]]}
    card["claims"] = [dict(c, cells=[LONG_CELL if x == report.cells[0].id else x for x in c["cells"]]) for c in card["claims"]]

    def rename(data):
        old = data["cells"][0]["id"]
        data["cells"][0]["id"] = LONG_CELL
        for claim in data["claims"]:
            if "outcomes" in claim and old in claim["outcomes"]:
                claim["outcomes"][LONG_CELL] = claim["outcomes"].pop(old)

    path = tmp_path_factory.mktemp("page") / "card.html"
    path.write_text(render_card(card, _edited(report, rename), "html", [{"keyid": "a" * 64, "name": "A. Author"}]), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def revoked(world, tmp_path_factory):  # noqa: F811
    """A copy of the session's registry with version 2 revoked, and its site built."""
    directory = world.copy_registry(tmp_path_factory.mktemp("revoked") / "registry")
    result = invoke("registry", "revoke", directory, world.digests["v2"], "--reason", "Evidence withdrawn", "--key", world.registry_key)
    assert result.exit_code == 0, result.output
    assert invoke("registry", "build", directory).exit_code == 0
    return directory / "site"


def _pages(world, card_page, revoked):  # noqa: F811
    return {"card": card_page, "site-card": world.page("v2"), "site-index": world.site / "index.html",
            "site-log": world.site / "log.html", "site-revoked-card": revoked / "cards" / f"{world.digests['v2']}.html",
            "site-revoked-index": revoked / "index.html"}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("page", ["card", "site-card", "site-index", "site-log", "site-revoked-card"])
def test_pages_do_not_overflow_and_plots_do_not_cut_labels(driver, world, card_page, revoked, page, width):  # noqa: F811
    driver.set_window_size(width, 1200)
    open_file(driver, _pages(world, card_page, revoked)[page])
    found = driver.execute_script(LAYOUT)
    assert found["scroll"] <= found["client"], f"{page} scrolls sideways at {width}px: {found}"
    assert found["cut"] == [], f"{page}: SVG text outside its plot at {width}px: {found['cut'][:5]}"
    if page in ("card", "site-card", "site-revoked-card"):
        assert found["svgs"] == 2  # the forest plot and the paired plot
        for part in ("verdict", "forest", "behaviour"):
            shot(driver, f"#{part}", f"layout-{page}-{width}-{part}.png")
    if page.startswith("site-") and page != "site-log":
        shot(driver, "#registry-header" if "card" in page else "#cards", f"layout-{page}-{width}-top.png")
    ARTIFACTS.mkdir(exist_ok=True)
    driver.set_window_size(width, min(found["height"] + 140, 12000))  # the whole page in one shot
    path = ARTIFACTS / f"layout-{page}-{width}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 1000
    driver.set_window_size(1280, 1600)


def shot(browser, selector: str, name: str) -> None:
    """A screenshot of one element (the parts a reader looks at first), to review by eye."""
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.find_element(By.CSS_SELECTOR, selector).screenshot(str(ARTIFACTS / name))


def _color(browser, selector: str) -> str:
    return browser.execute_script(f"return getComputedStyle(document.querySelector({selector!r})).color")


def test_the_site_card_page_opens_with_the_verdict(driver, world):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, world.page("v2"))
    assert driver.find_element(By.ID, "registry-verdict").text.startswith("Verdict: supported (headline claim C1;")
    word = driver.find_element(By.CSS_SELECTOR, "#verdict .verdict-word")
    assert word.text.lower() == "supported" and _color(driver, "#verdict .verdict-word") == "rgb(26, 127, 55)"


def test_a_revoked_card_shows_no_green_verdict(driver, world, revoked):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, revoked / "cards" / f"{world.digests['v2']}.html")
    assert driver.find_element(By.ID, "registry-status").text.startswith("Revoked")
    assert "revoked" in driver.find_element(By.ID, "registry-verdict").text
    banner = driver.execute_script("return getComputedStyle(document.querySelector('#verdict'), '::before').content")
    assert "no longer stands" in banner
    greens = driver.execute_script(
        "return [...document.querySelectorAll('#registry-header *, #verdict, #verdict *')]"
        ".filter(e => getComputedStyle(e).color === 'rgb(26, 127, 55)').map(e => e.textContent.trim())")
    assert greens == [], greens  # the header and the stored page's verdict: nothing reads as a standing pass
    assert "line-through" in driver.execute_script(
        "return getComputedStyle(document.querySelector('#verdict .verdict-word')).textDecorationLine")
    open_file(driver, revoked / "index.html")
    row = driver.find_element(By.CSS_SELECTOR, "#cards tbody tr.revoked")
    verdict = row.find_element(By.CSS_SELECTOR, "td.verdict")
    assert re.match(r"revoked\s+supported", verdict.text)
    assert verdict.find_element(By.CSS_SELECTOR, ".badge").value_of_css_property("color") == "rgba(207, 34, 46, 1)"


def test_the_index_shows_verdicts_and_authors(driver, world):  # noqa: F811
    from selenium.webdriver.common.by import By

    open_file(driver, world.site / "index.html")
    header = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#cards thead th")]
    assert header[:4] == ["card", "verdict", "title", "authors"]
    first = driver.find_element(By.CSS_SELECTOR, "#cards tbody tr")
    cells = first.find_elements(By.TAG_NAME, "td")
    assert cells[1].text == "supported" and cells[3].text == "acards maintainers"
    assert cells[1].find_element(By.CSS_SELECTOR, ".badge").value_of_css_property("color") == "rgba(26, 127, 55, 1)"
