"""The real dashboard in headless Chromium: every page renders, reacts to a control, and shows no exception.

Starts ``streamlit run dashboard.py`` on a free port and drives Debian's Chromium
through Playwright. Screenshots go to ``artifacts/screenshots/``. In CI
(``CI=true``) a missing browser fails; locally the tests skip and say why.
"""


import pytest

from conftest import PROJECT_ROOT, require_chromium
from tools.screenshot import wait_until_idle

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"

require_chromium()


VIEWPORT = {"width": 1500, "height": 1200}


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
    # First in this module, so it is the server's very first script run.
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
    page.goto(f"{server}/learned?learned_optimisation__steps=20")  # a short run, set through the link
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


@pytest.mark.parametrize("path", ["passwd", "etc/passwd", "compare/extra/levels"])
def test_an_unknown_address_of_any_depth_opens_the_app_at_home(server, browser, path):
    # One segment always did; two or more gave a blank page (the page's scripts resolved under the unknown folder).
    page = browser.new_page()
    page.goto(f"{server}/{path}?image_names=coffee")
    wait_until_idle(page)
    assert page.url.startswith(f"{server}/?") and "image_names=coffee" in page.url
    assert page.locator("[data-testid='stMain'] h1").first.inner_text() == "Model and predictions"
    assert "coffee" in page.locator("[data-testid='stSidebar']").inner_text()
    page.close()


def test_a_two_class_matrix_keeps_square_cells_and_a_picked_row_shows_its_image(server, browser, tmp_path):
    import zipfile

    from explainers import sample_images

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as photos:
        photos.write(sample_images()["cat_chelsea"], "photos/Egyptian Mau/cat.png")
        photos.write(sample_images()["coffee"], "photos/espresso/coffee.png")
    page = browser.new_page()
    page.goto(f"{server}/dataset?ds_source=A+ZIP+upload")
    wait_until_idle(page)
    page.locator("[data-testid='stMain'] input[type='file']").set_input_files(str(archive))
    page.wait_for_selector("[data-testid='stVegaLiteChart']", timeout=180_000)
    wait_until_idle(page)
    chart = page.locator("[data-testid='stVegaLiteChart']").first.bounding_box()
    main = page.locator("[data-testid='stMain'] [data-testid='stVerticalBlock']").first.bounding_box()
    # Two 80-pixel cells with their axes and legend, not a chart stretched over the page's width.
    assert chart["width"] < 400 < main["width"], (chart, main)
    page.get_by_role("tab", name="Per image").click()
    table = next(t for t in page.locator("[data-testid='stMain'] [data-testid='stDataFrame']").all() if t.is_visible())
    table.scroll_into_view_if_needed()
    table = table.bounding_box()
    images_before = page.locator("[data-testid='stMain'] img").count()
    page.mouse.click(table["x"] + 18, table["y"] + 35 + 35 + 17)  # the second row's selection box (espresso)
    page.wait_for_function(f"document.querySelectorAll('[data-testid=\"stMain\"] img').length > {images_before}",
                           timeout=60_000)
    wait_until_idle(page)
    assert page.get_by_text("espresso/coffee.png", exact=True).last.is_visible()
    _check(page, "dataset_row_picked")
    page.close()


def _nav(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    page.wait_for_function(f"() => document.querySelector('[data-testid=\"stMain\"] h1')?.innerText === {title!r}",
                           timeout=180_000, polling=200)
    _settle(page)


def _shown(page, label: str) -> str:
    box = page.locator("[data-testid='stMain'] [data-testid='stSelectbox']").filter(has_text=label).first
    return box.inner_text() + " ".join(i.input_value() for i in box.locator("input").all())


def test_a_page_keeps_its_settings_through_a_visit_to_another_page(server, browser):
    page = browser.new_page()
    page.goto(f"{server}/layer_grid?image_names=coffee")
    _settle(page)
    # Each choice is in the link once the server's run with it has started (and kept it): a busy server may start
    # that run after Streamlit's status shows idle. The next click may still stop that run before its end; what
    # was chosen stays chosen all the same.
    _choose(page, "Method", "Layer-CAM")
    page.wait_for_url("**grid_method=layercam**", timeout=120_000)
    _settle(page)
    _choose(page, "Colormap", "inferno")
    page.wait_for_url("**grid_colormap=inferno**", timeout=120_000)
    _settle(page)
    _nav(page, "Model and predictions")  # Streamlit drops the grid's widget values here
    _nav(page, "Layer-by-layer Grad-CAM")
    assert "Layer-CAM" in _shown(page, "Method") and "inferno" in _shown(page, "Colormap")
    assert "grid_method=layercam" in page.url and "grid_colormap=inferno" in page.url
    _check(page, "layer_grid_after_a_visit")
    page.close()
