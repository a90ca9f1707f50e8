"""A fresh server shows the app's frame before the engine is there, then fills it.

On a server that has just started, TensorFlow is still being imported (serve.py starts
that with the server). The first visitor must see the page's title, the navigation and
the sidebar's outline at once, and the predictions once the model is loaded; never a
blank page. The browser records when each first appears, so the order is checked, not
a duration.
"""


import pytest

from conftest import PROJECT_ROOT, require_chromium
from tools.screenshot import chromium_context, dashboard_server
from ui import defaults

require_chromium()

# Records, in the page, when each part first appears (ms since navigation started).
RECORDER = """
window.__seen = {};
const parts = {title: '[data-testid="stMain"] h1', navigation: '[data-testid="stSidebarNav"]'};
new MutationObserver(() => {
  const now = performance.now();
  for (const [name, selector] of Object.entries(parts))
    if (!(name in window.__seen) && document.querySelector(selector)) window.__seen[name] = now;
  const text = document.body.innerText;
  if (!('starting' in window.__seen) && text.includes('Starting the attribution engine')) window.__seen.starting = now;
  // The top-5 table, once the outline (which holds an empty one) has given way to it.
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  if (!('predictions' in window.__seen) && sidebar && sidebar.querySelector('[data-testid="stDataFrame"]')
      && !sidebar.innerText.includes('Predictions appear here')) window.__seen.predictions = now;
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.mark.parametrize("path", ["", "compare"])  # the default page, and a deep link (Streamlit's legacy route first)
def test_the_first_visitor_sees_the_frame_before_the_predictions(path):
    with chromium_context() as browser:
        page = browser.new_page()
        page.add_init_script(RECORDER)
        with dashboard_server(PROJECT_ROOT) as (url, _):
            page.goto(f"{url}/{path}")
            page.wait_for_function("() => 'predictions' in window.__seen", timeout=180_000, polling=100)
            seen = page.evaluate("window.__seen")
            sidebar = page.locator("[data-testid='stSidebar']").inner_text()
    assert "starting" in seen, "the engine was ready before the browser connected: nothing to check"
    assert seen["title"] <= seen["predictions"] and seen["navigation"] <= seen["predictions"], seen
    assert seen["title"] <= seen["starting"] + 1000, seen  # drawn together, before the engine is imported
    assert "Predictions appear here" not in sidebar and "Device:" in sidebar  # the outline gave way to the sidebar


def test_the_outline_names_the_default_model_as_the_picker_does(embedded_model):
    import explainers as ex

    assert ex.available_models()[ex.DEFAULT_MODEL] == defaults.DEFAULT_MODEL_NAME
    assert set(defaults.DEFAULT_IMAGES) <= set(ex.sample_images())


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
