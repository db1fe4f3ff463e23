"""A real browser opens report.html from a run whose completions carry XSS payloads.

Headless Debian chromium driven by Playwright (``executable_path``): no console errors, no payload
runs, no network request, the payload text is visible as text, the filter works, and the
screenshot is not blank. Falls back to the chromium CLI (--dump-dom, --screenshot) when the
Playwright driver cannot start.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import render_fixture
from browser_pages import ARGS, CHROMIUM, blank, start_playwright, watched_page

from analyzer.report.render import write_html_report

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"chromium not found at {CHROMIUM}; install Debian's chromium package (.ci/run does)"
        )
    out = tmp_path_factory.mktemp("browser")
    return write_html_report(render_fixture.analysis(), out / "report.html")


def test_report_in_a_real_browser(report, tmp_path):
    pw, why = start_playwright()
    if pw is None:
        _cli_fallback(report, tmp_path, why)
        return
    from playwright.sync_api import expect

    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        watched = watched_page(browser)
        page = watched.page
        page.goto(report.as_uri())
        page.wait_for_selector("#completions-body tr")
        # Playwright's expect() polls without eval(): wait_for_function would be refused by the
        # page's CSP (no 'unsafe-eval'), which is the point of the CSP.
        count = page.locator("#row-count")

        watched.assert_harmless()

        # The payloads are in the table as text, not as elements.
        page.fill("#f-text", "__pwned")
        expect(count).not_to_have_attribute("data-count", "720")
        texts = page.locator("#completions-body td.text").all_inner_texts()
        assert any("<script>window.__pwned=1</script>" in t for t in texts)
        assert any('<img src=x onerror="window.__pwned=1">' in t for t in texts)
        assert (
            page.locator(
                "#completions-body script, #completions-body img, #completions-body svg, #completions-body a"
            ).count()
            == 0
        )
        assert page.locator("script").count() == 2  # ours + the JSON data block
        hits = int(page.get_attribute("#row-count", "data-count") or "0")
        assert 0 < hits < 720

        # Filters: split, step range, alert-linked, sample ids via an alert's button.
        page.fill("#f-text", "")
        page.select_option("#f-split", "eval")
        expect(count).to_have_attribute("data-count", "240")
        page.select_option("#f-split", "")
        page.fill("#f-step-min", "10")
        page.fill("#f-step-max", "19")
        expect(count).to_have_attribute("data-count", "120")
        page.click("#f-reset")
        expect(count).to_have_attribute("data-count", "720")
        page.select_option("#f-alert", "*")
        expect(count).to_have_attribute("data-count", "9")
        page.select_option("#f-alert", "")
        page.locator("details.evidence").first.locator("summary").click()
        page.locator("button.show-samples").first.click()
        expect(count).to_have_attribute("data-count", "5")
        assert page.locator("#completions-body tr").count() == 5

        # A U+2028 in model text did not break the JSON or the script.
        page.fill("#f-text", "line two")
        expect(count).to_have_attribute("data-count", re.compile(r"^[1-9]"))

        page.fill("#f-text", "")
        page.evaluate("window.scrollTo(0, 0)")
        shot = page.screenshot(full_page=False)
        (tmp_path / "report.png").write_bytes(shot)
        assert not blank(shot)
        watched.assert_harmless()
        browser.close()
    finally:
        pw.stop()


def _cli_fallback(report: Path, tmp_path: Path, why: Exception | None) -> None:
    """Chromium CLI: the DOM after scripts ran, and a screenshot."""
    if why is not None:
        print(f"Playwright unavailable ({why}); using the chromium CLI")
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            *ARGS,
            "--virtual-time-budget=3000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert 'id="completions-body"' in dom and "<tr" in dom.split('id="completions-body"', 1)[1]
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            *ARGS,
            "--window-size=1366,900",
            f"--screenshot={shot}",
            report.as_uri(),
        ],
        capture_output=True,
        timeout=60,
    )
    assert shot.exists() and not blank(shot.read_bytes())


def test_report_via_the_chromium_cli(report, tmp_path):
    """The fallback path, exercised even where Playwright works: it must not rot unnoticed."""
    _cli_fallback(report, tmp_path, None)


def test_layout_at_760_and_1400_px(report):
    """At 760 px nothing makes the page scroll sideways (every <details> opened: evidence tables,
    all metrics); at 1400 px a plot uses the page's width; the sample diffs come before the long
    completions table."""
    pw, why = start_playwright()
    if pw is None:
        pytest.skip(f"Playwright cannot start here ({why}); the layout needs a browser's measurements")
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        narrow = browser.new_page(viewport={"width": 760, "height": 900})
        narrow.goto(report.as_uri())
        narrow.wait_for_selector("#completions-body tr")
        narrow.evaluate("document.querySelectorAll('details').forEach(d => { d.open = true; })")
        sizes = narrow.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert sizes[0] <= sizes[1], f"page is {sizes[0]} px wide in a {sizes[1]} px window"

        wide = browser.new_page(viewport={"width": 1400, "height": 900})
        wide.goto(report.as_uri())
        main = wide.evaluate("document.querySelector('main').clientWidth")
        img = wide.locator("#plots figure img").first.bounding_box()
        assert img is not None and img["width"] >= 0.9 * main, (img, main)
        order = wide.evaluate("[...document.querySelectorAll('main > section')].map(s => s.id)")
        assert order.index("diffs") < order.index("completions"), order
        browser.close()
    finally:
        pw.stop()
