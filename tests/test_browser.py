"""The real dashboard in headless Chromium: every page renders, reacts to a control, and shows no exception.

Starts ``streamlit run dashboard.py`` on a free port and drives Debian's Chromium
through Playwright. Screenshots go to ``artifacts/screenshots/``. In CI
(``CI=true``) a missing browser fails; locally the tests skip and say why.
"""

import tempfile

import pytest

from conftest import PROJECT_ROOT, require_chromium
from tools.screenshot import CHROMIUM, CHROMIUM_FLAGS, dashboard_server, wait_until_idle

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"

require_chromium()


@pytest.fixture(scope="module")
def server():
    with dashboard_server(PROJECT_ROOT) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright, tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_FLAGS, viewport={"width": 1500, "height": 1200})
        yield context
        context.close()


def _settle(page) -> None:
    """Until Streamlit is idle and every image in the main area has loaded."""
    wait_until_idle(page)
    page.wait_for_function(
        """() => { const imgs = [...document.querySelectorAll('[data-testid="stMain"] img')];
                   return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        timeout=180_000, polling=250)


def _choose(page, label: str, option: str) -> None:
    box = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").filter(has_text=label).first
    box.click()
    page.keyboard.type(option)  # long option lists are virtualised: filter first
    page.get_by_role("option", name=option, exact=True).click()


def _check(page, name: str) -> None:
    _settle(page)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    exceptions = page.locator("[data-testid='stException']")
    assert exceptions.count() == 0, exceptions.first.inner_text()


def test_a_shared_link_reopens_the_view_on_a_fresh_server(server, browser):
    # First in this module, so it is the server's very first script run: the one where
    # Streamlit would run the page alone under its legacy pages/ navigation.
    page = browser.new_page()
    page.goto(f"{server}/layer_grid?image_names=rocket&grid_method=layercam&grid_colormap=magma")
    _settle(page)
    main = page.locator("[data-testid='stMain']")
    method = main.locator("[data-testid='stSelectbox']").filter(has_text="Method").first
    assert "Layer-CAM" in (method.inner_text() + " ".join(i.input_value() for i in method.locator("input").all()))
    assert "rocket" in page.locator("[data-testid='stSidebar']").inner_text()
    assert "grid_method=layercam" in page.url
    navigation = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Layer-by-layer Grad-CAM" in navigation and "layer grid" not in navigation
    _check(page, "shared_link")
    page.close()


PAGES = [
    ("", "overview", lambda page: _choose(page, "Layer", "block_9_expand")),
    ("layer_grid", "layer_grid", lambda page: _choose(page, "Colormap", "inferno")),
    ("compare", "compare", lambda page: _choose(page, "Colormap", "viridis")),
    ("dataset", "dataset", lambda page: page.get_by_text("Row-normalised").click()),
]


def test_learned_page_visualises_on_its_button_with_progress(server, browser):
    page = browser.new_page()
    page.goto(f"{server}/learned?learned_steps=20")  # a short run, set through the link
    wait_until_idle(page)  # no picture yet: nothing is optimised before it is asked
    assert page.locator("[data-testid='stMain'] img").count() == 0
    page.get_by_role("button", name="Visualise").click()
    page.wait_for_selector("text=visualisations as the class they were made for", timeout=300_000)
    page.get_by_text("(animation)").click()
    _check(page, "learned")
    assert page.locator("[data-testid='stMain'] img").count() >= 3  # two pictures and the animation
    page.close()


@pytest.mark.parametrize("path, name, change", PAGES, ids=[p[1] for p in PAGES])
def test_page_renders_and_reacts_to_a_control(server, browser, path, name, change):
    page = browser.new_page()
    page.goto(f"{server}/{path}")
    _settle(page)
    change(page)
    page.wait_for_timeout(500)
    _check(page, name)
    page.close()
