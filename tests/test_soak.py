"""Bounded memory: 120 warm views of a real server, over varying pages, image selections and uploads.

Each view is a new browser session, as each visitor of a hosted copy is. The
first 20 views meet every variant once (so every cache holds what the soak will
ask for); the server's resident memory after all 120 must stay within 10% of
its value after those 20: views that are served from caches must not pile up
memory.
"""

import asyncio
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import PROJECT_ROOT, require_chromium
from tools.screenshot import CHROMIUM, CHROMIUM_FLAGS, dashboard_server

VIEWS, WARM_AFTER, TOLERANCE = 120, 20, 0.10  # 120: the suite must leave room in its 20 minutes
PAGES = ["", "layer_grid", "compare", "dataset", "trust"]
SELECTIONS = ["cat_chelsea,coffee", "rocket", "astronaut,flower"]
UPLOADS = 3  # distinct generated photos, each uploaded in some views

require_chromium()


def _resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _upload_files(folder: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    paths = []
    for index in range(UPLOADS):
        pixels = (rng.random((160, 200, 3)) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        paths.append(folder / f"upload_{index}.png")
        paths[-1].write_bytes(buffer.getvalue())
    return paths


def _variant(view: int) -> tuple[str, str, int | None]:
    """(page, image selection, upload index or None); the first 15 views meet every page x selection and upload."""
    page, selection = PAGES[view % len(PAGES)], SELECTIONS[(view // len(PAGES)) % len(SELECTIONS)]
    turn = (view // len(PAGES)) % (UPLOADS + 1)  # on the overview page: uploads 0, 1, 2, then a view without
    return page, selection, turn if page == "" and turn < UPLOADS else None


IDLE = """() => {
    if (!document.querySelector('[data-testid="stMain"] h1')) return false;
    if (document.querySelector('[data-testid="stStatusWidget"]')) { window.__idle = null; return false; }
    window.__idle = window.__idle || Date.now();
    return Date.now() - window.__idle > 300;
}"""
PAIRS = 2  # views open two at a time: a visitor's browser and the server overlap, as with real traffic


async def _view(browser, url: str, view: int, uploads: list[Path]) -> None:
    page_path, selection, upload = _variant(view)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto(f"{url}/{page_path}?image_names={selection}")
    await page.wait_for_function(IDLE, timeout=300_000, polling=100)
    if upload is not None:
        await page.locator("[data-testid='stSidebar'] input[type='file']").first.set_input_files(str(uploads[upload]))
        await page.wait_for_function(
            "name => document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes(name)",
            arg=uploads[upload].name, timeout=120_000)
        await page.evaluate("() => { window.__idle = null; }")
        await page.wait_for_function(IDLE, timeout=300_000, polling=100)
    exceptions = await page.locator("[data-testid='stException']").count()
    await context.close()
    assert exceptions == 0, f"view {view} ({page_path}) shows an exception"


async def _soak(url: str, pid: int, uploads: list[Path]) -> dict[int, float]:
    from playwright.async_api import async_playwright

    resident, start = {}, time.monotonic()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        for first in range(0, VIEWS, PAIRS):
            await asyncio.gather(*(_view(browser, url, view, uploads) for view in range(first, first + PAIRS)))
            done = first + PAIRS
            if done in (WARM_AFTER, VIEWS) or done % 50 == 0:
                resident[done] = _resident_mib(pid)
                print(f"after {done} views: {resident[done]:.0f} MiB, {time.monotonic() - start:.0f} s", flush=True)
        await browser.close()
    return resident


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_warm_views_do_not_grow_the_servers_memory():
    with tempfile.TemporaryDirectory() as scratch, dashboard_server(PROJECT_ROOT) as (url, process):
        resident = asyncio.run(_soak(url, process.pid, _upload_files(Path(scratch))))
    growth = resident[VIEWS] / resident[WARM_AFTER] - 1
    print(f"server memory: {resident[WARM_AFTER]:.0f} MiB after {WARM_AFTER} views, "
          f"{resident[VIEWS]:.0f} MiB after {VIEWS} ({growth:+.1%})")
    assert growth <= TOLERANCE, f"memory grew {growth:.1%} over {VIEWS - WARM_AFTER} warm views: {resident}"
