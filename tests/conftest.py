"""Shared fixtures. Tests never touch the user's caches: both cache folders point into a temp dir."""

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_TMP = Path(tempfile.mkdtemp(prefix="attribution-tests-"))
# Set before explainers (and Keras) are imported by any test module.
os.environ["ATTRIBUTION_DASHBOARD_CACHE"] = str(_SESSION_TMP / "cache")
os.environ["KERAS_HOME"] = str(_SESSION_TMP / "keras-home")

import explainers as ex  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def require_chromium() -> None:
    """At the top of a browser test module: fail in CI when Debian's Chromium is missing, skip (saying why) elsewhere."""
    from tools.screenshot import CHROMIUM

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing; the browser tests are required in CI (make test installs it).",
                        pytrace=False)
        pytest.skip(f"{CHROMIUM} is missing and `make test` could not install it (needs apt-get with root or sudo).",
                    allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    """A dashboard server of the module's own on 127.0.0.1 (``make run``'s settings): its address."""
    from tools.screenshot import dashboard_server

    with dashboard_server(PROJECT_ROOT) as (url, _):
        yield url


@pytest.fixture(scope="session")
def embedded_model() -> ex.LoadedModel:
    return ex.load_model(ex.DEFAULT_MODEL)


@pytest.fixture(scope="session")
def sample(request):
    """Decoded sample photos by name."""
    paths = ex.sample_images()
    return lambda name: ex.decode_image(paths[name])


@pytest.fixture(autouse=True)
def streamlit_as_a_running_server(monkeypatch):
    """Make AppTest treat ``pages/`` as a running server does after its first script run.

    A server decides once whether the legacy ``pages/`` discovery applies and
    turns it off for good at the first ``st.navigation`` call; AppTest decides
    anew before every run, so without this each rerun would execute the page
    script without the entrypoint. ``test_app.py`` covers that first-run path
    on its own.
    """
    from streamlit.runtime.pages_manager import PagesManager

    original_init = PagesManager.__init__

    def init_after_first_run(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init_after_first_run)
