"""The site's badges (acards/site/badges.py, docs/badges-and-latex.md): the same SVG `acards badge`
writes, on the index (without the card's name, which the row holds) and on each card page; a revoked
version's badge says only "revoked". Uses the registry tests/test_site.py builds, and headless
Chromium (as tests/test_browser.py) to check that every badge shows and that its text fits."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner
from test_browser import _missing, driver, open_file, screenshot  # noqa: F401 — the browser fixture
from test_site import world  # noqa: F401 — the session fixture

from acards.cli import main

SVG = re.compile(r'<svg xmlns="http://www.w3.org/2000/svg" width="[0-9.]+" height="20" [^>]*aria-label="acceptance card .*?</svg>', re.S)


def badges(html: str) -> list[ET.Element]:
    return [ET.fromstring(found) for found in SVG.findall(html)]


def texts(svg: ET.Element) -> list[str]:
    return [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")][1::2]


def ok(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], env={"ACARDS_KEY_PASSPHRASE": None})
    assert result.exit_code == 0, result.output
    return result.output


def test_index_and_card_pages_show_the_badge_acards_badge_writes(world):  # noqa: F811
    index = (world.site / "index.html").read_text(encoding="utf-8")
    rows = badges(index)
    assert len(rows) == len(re.findall(r"<tr class=", index)) == 2  # one per card id: tiny-defense (v2) and xss-probe
    assert all(texts(svg)[0].startswith("full card ") for svg in rows)  # the row names the card already
    page = world.page("v1").read_text(encoding="utf-8")
    [card_badge] = badges(page)
    assert texts(card_badge)[0] == "acceptance card tiny-defense v1" and "superseded" in texts(card_badge)
    written = ok("badge", world.digests["v1"], "--registry", world.registry)
    assert SVG.search(page)[0] + "\n" == written


def test_a_revoked_version_badges_as_revoked(world, tmp_path):  # noqa: F811
    directory = world.copy_registry(tmp_path / "registry")
    ok("registry", "revoke", directory, world.digests["v2"], "--reason", "withdrawn", "--key", world.registry_key)
    ok("registry", "build", directory)
    page = (directory / "site" / "cards" / f"{world.digests['v2']}.html").read_text(encoding="utf-8")
    assert texts(badges(page)[0]) == ["acceptance card tiny-defense v2", "revoked"]


@pytest.mark.skipif(bool(_missing()), reason="needs headless Chromium and chromedriver (see tests/test_browser.py)")
def test_badges_show_in_chromium_with_their_text_inside_their_segments(driver, world):  # noqa: F811
    for path in (world.site / "index.html", world.page("v1"), world.page("xss")):
        open_file(driver, path)
        fits = driver.execute_script("""
            const out = [];
            for (const svg of document.querySelectorAll('svg[role=img][aria-label^="acceptance card"]')) {
              const box = svg.getBoundingClientRect();
              const rects = [...svg.querySelectorAll('rect')];
              const texts = [...svg.querySelectorAll('text')].filter((t, i) => i % 2 === 1);
              out.push({width: box.width, height: box.height, segments: texts.map((t, i) => {
                const r = rects[i].getBBox(), b = t.getBBox();
                return [b.x >= r.x - 0.5 && b.x + b.width <= r.x + r.width + 0.5, t.textContent];
              })});
            }
            return out;""")
        assert fits, path
        screenshot(driver, f"badges-{path.stem[:12]}.png")
        for badge in fits:
            assert badge["width"] > 100 and badge["height"] == 20
            assert all(inside for inside, _ in badge["segments"]), badge


@pytest.mark.skipif(bool(_missing()), reason="needs headless Chromium and chromedriver (see tests/test_browser.py)")
def test_a_badge_with_a_hostile_card_id_runs_nothing_in_chromium(driver, tmp_path):  # noqa: F811
    from dataclasses import replace

    from test_badge_latex import FACTS, HOSTILE
    from test_browser import assert_no_alert

    from acards.present.badge import badge_svg

    path = tmp_path / "hostile.svg"
    path.write_text(badge_svg(replace(FACTS, card_id=HOSTILE + '<img src=x onerror="alert(2)">')), encoding="utf-8")
    open_file(driver, path)
    assert_no_alert(driver)
    assert driver.execute_script("return document.querySelectorAll('script, img, [onerror], foreignObject').length") == 0
    shown = driver.execute_script("return document.querySelector('text:nth-of-type(2)').textContent")
    assert shown.startswith("acceptance card <script>alert(1)</script>")  # the literal text, shown
