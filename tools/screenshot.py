"""Screenshot dashboard pages in headless Chromium: python tools/screenshot.py URL OUT.png [PAGE_PATH...]"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's package: Playwright's own browser download does not work offline
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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(root: Path, timeout: float = 120.0, args: Sequence[str] = (),
                     env: Mapping[str, str] | None = None):
    """``streamlit run serve.py`` (as ``make run`` starts it) on a free localhost port.

    Yields (url, process) once the server answers its health check.

    ``args`` are more ``streamlit run`` options (``--secrets.files``, ...); ``env`` adds to the environment.
    """
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "serve.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", *args],
            cwd=root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        raise RuntimeError(f"streamlit did not start: {log.read().decode(errors='replace')[-2000:]}") from None
                    time.sleep(0.5)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=30)


@contextlib.contextmanager
def chromium_context(viewport: Mapping[str, int] | None = None):
    """Headless Chromium with a throwaway profile, as every browser test and screenshot opens it."""
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_FLAGS, viewport=dict(viewport) if viewport else None)
        try:
            yield context
        finally:
            context.close()


def main(url: str, out: str) -> None:
    with chromium_context({"width": 1500, "height": 1100}) as browser:
        page = browser.new_page()
        page.goto(url)
        wait_until_idle(page)
        page.screenshot(path=out, full_page=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
