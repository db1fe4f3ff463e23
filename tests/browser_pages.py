"""What the real-browser tests share (test_browser.py, test_compare_report.py): where Chromium is
and its flags, Playwright's start, a page that records what a hostile page could do (console
errors, dialogs, requests), and the check that a screenshot is not blank."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

CHROMIUM = os.environ.get("LOGSCAN_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def blank(png: bytes) -> bool:
    """A screenshot of one colour (nothing drawn)."""
    import matplotlib.image as mpimg

    img = mpimg.imread(io.BytesIO(png), format="png")
    return float(img[..., :3].var()) < 1e-4


def start_playwright() -> tuple[Any, Exception | None]:
    """(Playwright, None), or (None, why) where its driver (node) cannot run: the tests then use
    the chromium CLI."""
    try:
        from playwright.sync_api import sync_playwright

        return sync_playwright().start(), None
    except Exception as exc:
        return None, exc


@dataclass
class WatchedPage:
    """A page with what it did: console errors and warnings, dialogs (dismissed), requests."""

    page: Any
    console: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_harmless(self) -> None:
        """No payload ran, nothing was said on the console or in a dialog, nothing was fetched."""
        assert self.page.evaluate("typeof window.__pwned") == "undefined"
        assert self.console == [] and self.dialogs == []
        assert all(u.startswith(("data:", "file:")) for u in self.requests), self.requests


def watched_page(browser: Any, width: int = 1366, height: int = 900) -> WatchedPage:
    w = WatchedPage(browser.new_page(viewport={"width": width, "height": height}))
    w.page.on(
        "console",
        lambda m: w.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    w.page.on("pageerror", lambda e: w.console.append(f"pageerror: {e}"))
    w.page.on("dialog", lambda d: (w.dialogs.append(d.message), d.dismiss()))
    w.page.on("request", lambda r: w.requests.append(r.url))
    return w
