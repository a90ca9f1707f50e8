"""Concurrent users: N browser sessions open the comparison page at once on one dashboard server.

    python tools/bench_sessions.py [--sessions 8] [--page compare]

Starts ``streamlit run dashboard.py`` on a free port (the caches cold, as after
a deploy), opens N separate browser contexts in Debian's Chromium at the same
moment, then does it again on the now warm server. Reports for each session the
seconds until the page is idle with every image loaded, whether it shows a
Streamlit exception, and the server's peak resident memory (VmHWM from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.screenshot import CHROMIUM, CHROMIUM_FLAGS, dashboard_server  # noqa: E402

IDLE_WITH_IMAGES = """() => {
    if (!document.querySelector('[data-testid="stMain"] h1')) return false;
    if (document.querySelector('[data-testid="stStatusWidget"]')) { window.__idle = null; return false; }
    const imgs = [...document.querySelectorAll('[data-testid="stMain"] img')];
    if (!imgs.length || !imgs.every(i => i.complete && i.naturalWidth > 0)) { window.__idle = null; return false; }
    window.__idle = window.__idle || Date.now();
    return Date.now() - window.__idle > 1500;
}"""


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


async def _session(browser, url: str, index: int) -> dict:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    start = time.perf_counter()
    outcome = {"session": index + 1, "seconds": float("nan"), "error": ""}
    try:
        await page.goto(url)
        await page.wait_for_function(IDLE_WITH_IMAGES, timeout=600_000, polling=250)
        outcome["seconds"] = time.perf_counter() - start - 1.5  # minus the idle margin
        if await page.locator("[data-testid='stException']").count():
            outcome["error"] = (await page.locator("[data-testid='stException']").first.inner_text())[:120]
    except Exception as error:  # a timeout or a crashed page is a result to report, not to hide
        outcome["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    await context.close()
    return outcome


async def _run(url: str, sessions: int) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True):
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            results = await asyncio.gather(*(_session(browser, url, i) for i in range(sessions)))
            await browser.close()
    return list(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--page", default="compare")
    args = parser.parse_args()
    with dashboard_server(ROOT) as (url, process):
        idle_rss = _memory_kib(process.pid, "VmRSS")
        # The second round meets a warm server: what the next visitors of a running host see.
        rounds = [asyncio.run(_run(f"{url}/{args.page}", args.sessions)) for _ in range(2)]
        peak = _memory_kib(process.pid, "VmHWM")
    print(f"{args.sessions} sessions opened /{args.page} at once, on a fresh server then again on the warm one\n")
    print(f"{'session':>7s} {'cold s':>8s} {'warm s':>8s}  errors")
    for cold, warm in zip(*rounds):
        errors = "; ".join(e for e in (cold["error"], warm["error"]) if e) or "-"
        print(f"{cold['session']:7d} {cold['seconds']:8.1f} {warm['seconds']:8.1f}  {errors}")
    for name, results in zip(("cold", "warm"), rounds):
        times = [r["seconds"] for r in results if not r["error"]]
        errors = sum(1 for r in results if r["error"])
        if times:
            print(f"{name}: median {statistics.median(times):.1f} s, slowest {max(times):.1f} s; errors: {errors}")
    print(f"server memory: {idle_rss / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
