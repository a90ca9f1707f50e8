"""Sign-in end to end: real Chromium, the real dashboard and a real OpenID Connect provider, all on 127.0.0.1.

The provider is oidc-provider-mock, run in a thread; its authorization form lists
the test's users, and the test clicks the one it signs in as. The dashboard reads
an ``[auth]`` section from a secrets file in a temp dir (``--secrets.files``), so
the repository's ``.streamlit/`` is left alone. Screenshots go to
``artifacts/screenshots/signin_*.png``. In CI (``CI=true``) a missing browser
fails; locally the tests skip and say why.
"""

import re
import secrets
import tempfile
import threading
import warnings
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, require_chromium
from tools.screenshot import chromium_context, dashboard_server, wait_until_idle
from ui.auth import ALLOWLIST_ENV

SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"
# In this process only the mock provider runs (the dashboard is a subprocess): its Authlib deprecations are not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

require_chromium()

ALLOWED = {"sub": "ana", "email": "ana@example.com", "email_verified": True, "name": "Ana Example"}
OUTSIDER = {"sub": "mallory", "email": "mallory@evil-example.com", "email_verified": True, "name": "Mallory"}
# What only the dashboard itself shows: a model's name, the sidebar's pickers and predictions, sample names.
MODEL_TRACES = ("EfficientNet", "Top-5", "cat_chelsea", "coffee", "rocket", "Device:", "Egyptian Mau", "Images")


@pytest.fixture(scope="module")
def provider():
    """oidc-provider-mock on a free 127.0.0.1 port; yields its base URL."""

    with warnings.catch_warnings():  # the mock imports Authlib's deprecated modules
        warnings.simplefilter("ignore", DeprecationWarning)
        import werkzeug.serving
        from oidc_provider_mock import User, app

    users = [User(sub=u["sub"], claims={k: v for k, v in u.items() if k != "sub"}) for u in (ALLOWED, OUTSIDER)]
    server = werkzeug.serving.make_server("127.0.0.1", 0, app(user_claims=users), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()


@pytest.fixture(scope="module")
def server(provider):
    with tempfile.TemporaryDirectory() as folder:
        secrets_file = Path(folder) / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'  # Streamlit fills in its own port
            f'cookie_secret = "{secrets.token_hex(32)}"\n'
            'client_id = "attribution-dashboard"\n'
            f'client_secret = "{secrets.token_hex(16)}"\n'
            f'server_metadata_url = "{provider}/.well-known/openid-configuration"\n'
        )
        with dashboard_server(PROJECT_ROOT, args=["--secrets.files", str(secrets_file)],
                              env={ALLOWLIST_ENV: "@example.com, bob@example.org"}) as (url, _):
            yield url


@pytest.fixture(scope="module")
def browser():
    with chromium_context({"width": 1400, "height": 900}) as context:
        # The provider's pages link a stylesheet on a CDN: nothing leaves this machine.
        context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/]).*"), lambda route: route.abort())
        yield context


def _idle(page, selector: str) -> None:
    """Until ``selector`` shows and Streamlit's running indicator has been gone for a second."""
    page.wait_for_selector(selector, timeout=180_000)
    page.wait_for_function(
        """() => {
            if (document.querySelector('[data-testid="stStatusWidget"]')) { window.__idleSince = null; return false; }
            window.__idleSince = window.__idleSince || Date.now();
            return Date.now() - window.__idleSince > 1000;
        }""",
        timeout=180_000, polling=200)


def _shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"signin_{name}.png"), full_page=True)


def _assert_nothing_of_the_dashboard(page) -> None:
    text = page.locator("body").inner_text()
    shown = [trace for trace in MODEL_TRACES if trace in text]
    assert not shown, f"{shown} on a page for someone not admitted:\n{text}"
    assert page.locator("[data-testid='stImage'], [data-testid='stAppViewContainer'] img").count() == 0
    assert page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").count() == 0
    assert page.locator("[data-testid='stException']").count() == 0


def _sign_in_screen(page, known_page: bool = True) -> None:
    _idle(page, "[data-testid='stMain'] h1")
    assert page.get_by_role("button", name="Sign in", exact=True).is_visible()
    _assert_nothing_of_the_dashboard(page)
    # The dashboard's own pages land there silently; any other address, as without sign-in, with Streamlit's notice.
    assert (page.get_by_text("Page not found").count() == 0) == known_page


def _sign_in_as(page, server: str, user: dict) -> None:
    page.goto(server)
    _sign_in_screen(page)
    page.get_by_role("button", name="Sign in", exact=True).click()
    choice = page.get_by_role("button", name=user["sub"], exact=True)  # the provider's form: a predefined user
    choice.wait_for(timeout=60_000)
    _shot(page, "provider_form")
    choice.click()
    page.wait_for_url(re.compile(re.escape(server) + r"/?(\?.*)?$"), timeout=60_000)


def _sign_out(page, server: str, where: str) -> None:
    page.locator(f"[data-testid='{where}']").get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="End session").click()  # the provider's logout confirmation
    page.wait_for_url(re.compile(re.escape(server) + r"/?(\?.*)?$"), timeout=60_000)
    _sign_in_screen(page)


def test_signed_out_visitor_gets_only_the_sign_in_screen_even_on_a_deep_link(server, browser):
    # First in this module, so it is the server's very first script run.
    page = browser.new_page()
    page.goto(f"{server}/compare?image_names=rocket&cmp_methods=gradcam")
    _sign_in_screen(page)
    _shot(page, "signed_out_deep_link")
    for path in ("layer_grid?grid_method=layercam", "dataset", "no_such_page", ""):
        page.goto(f"{server}/{path}")
        _sign_in_screen(page, known_page=path != "no_such_page")
        if path == "no_such_page":
            _shot(page, "signed_out_unknown_page")
    _shot(page, "signed_out")
    page.close()


def test_allowed_user_signs_in_sees_the_dashboard_and_signs_out(server, browser):
    page = browser.new_page()
    _sign_in_as(page, server, ALLOWED)
    wait_until_idle(page)
    page.wait_for_function(
        """() => { const imgs = [...document.querySelectorAll('[data-testid="stSidebar"] img')];
                   return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0); }""",
        timeout=180_000, polling=250)
    sidebar = page.locator("[data-testid='stSidebar']").inner_text()
    assert "Signed in as Ana Example (ana@example.com)" in sidebar
    assert "Top-5 predictions for" in sidebar
    # The table is drawn on a canvas; its cells are also in the grid's accessible markup.
    assert "Egyptian Mau" in page.locator("[data-testid='stSidebar'] [data-testid='stDataFrame']").inner_html()
    main = page.locator("[data-testid='stMain']").inner_text()
    assert "Model and predictions" in main and "EfficientNet-Lite0" in main and "Top-5 predictions" in main
    assert page.locator("[data-testid='stException']").count() == 0
    _shot(page, "allowed")
    _sign_out(page, server, "stSidebar")
    _shot(page, "signed_out_again")
    page.close()


def test_user_outside_the_allowlist_gets_one_sentence_and_sign_out(server, browser):
    page = browser.new_page()
    _sign_in_as(page, server, OUTSIDER)
    _idle(page, "[data-testid='stMain'] [data-testid='stAlert']")
    main = page.locator("[data-testid='stMain']")
    assert main.get_by_role("button", name="Sign out").is_visible()
    assert " ".join(main.inner_text().split()) == (
        "mallory@evil-example.com is not on this dashboard's allowlist; ask its operator for access. Sign out")
    _assert_nothing_of_the_dashboard(page)
    _shot(page, "refused")
    page.goto(f"{server}/compare?image_names=rocket")  # a deep link changes nothing
    _idle(page, "[data-testid='stMain'] [data-testid='stAlert']")
    assert "is not on this dashboard's allowlist" in main.inner_text()
    _assert_nothing_of_the_dashboard(page)
    _sign_out(page, server, "stMain")
    page.close()


def test_a_shared_link_opened_signed_out_is_where_sign_in_returns(server, browser):
    page = browser.new_page()
    page.goto(f"{server}/layer_grid?image_names=rocket&grid_method=layercam&grid_top_n=1")
    _sign_in_screen(page)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_role("button", name=ALLOWED["sub"], exact=True).click()
    page.wait_for_url(re.compile(re.escape(server) + r"/layer_grid\?.*grid_method=layercam"), timeout=120_000)
    _idle(page, "[data-testid='stMain'] h1")
    page.wait_for_function(  # the grid's cells: the page ran with the link's settings
        "() => document.querySelectorAll('[data-testid=\"stMain\"] [data-testid=\"stImage\"] img').length >= 2",
        timeout=180_000, polling=250)
    _shot(page, "returned_to_link")
    main = page.locator("[data-testid='stMain']")
    assert "Layer-by-layer Grad-CAM" in main.inner_text() and "Top-2 class" not in main.inner_text()
    method = main.locator("[data-testid='stSelectbox']").filter(has_text="Method")
    assert "Layer-CAM" in method.inner_html()
    assert "rocket" in page.locator("[data-testid='stSidebar']").inner_text()
    assert "image_names=rocket" in page.url
    page.goto(server)  # the root again: the link was served once and is not imposed again
    _idle(page, "[data-testid='stMain'] h1")
    assert re.fullmatch(re.escape(server) + r"/?(\?.*)?", page.url) and "/layer_grid" not in page.url
    assert "Model and predictions" in page.locator("[data-testid='stMain'] h1").inner_text()
    _sign_out(page, server, "stSidebar")
    page.close()
