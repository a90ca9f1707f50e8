"""Screenshot dashboard pages in headless Chromium: python tools/screenshot.py URL OUT.png [PAGE_PATH...]"""

from __future__ import annotations

import sys
import tempfile

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def wait_until_idle(page, timeout_ms: int = 180_000) -> None:
    """Wait for a page title, then until Streamlit's running indicator has been gone for a second."""
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=timeout_ms)
    page.wait_for_function(
        """() => {
            const busy = document.querySelector('[data-testid="stStatusWidget"]');
            if (busy) { window.__idleSince = null; return false; }
            window.__idleSince = window.__idleSince || Date.now();
            return Date.now() - window.__idleSince > 1000;
        }""",
        timeout=timeout_ms,
        polling=200,
    )


def main(url: str, out: str) -> None:
    with sync_playwright() as p, tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS, viewport={"width": 1500, "height": 1100}
        )
        page = browser.new_page()
        page.goto(url)
        wait_until_idle(page)
        page.screenshot(path=out, full_page=True)
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
