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


@pytest.fixture(scope="module")
def browser(request):
    """A headless Chromium context of the module's own, at the module's ``VIEWPORT`` (width and height in px)."""
    from tools.screenshot import chromium_context

    with chromium_context(request.module.VIEWPORT) as context:
        yield context


@pytest.fixture(scope="session")
def embedded_model() -> ex.LoadedModel:
    return ex.load_model(ex.DEFAULT_MODEL)


@pytest.fixture(scope="session")
def sample(request):
    """Decoded sample photos by name."""
    paths = ex.sample_images()
    return lambda name: ex.decode_image(paths[name])


