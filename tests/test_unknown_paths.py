"""An unknown address of any depth goes home; everything Streamlit really serves passes unchanged.

``/passwd`` already did (the app page loads, and its navigation goes home); ``/etc/passwd`` showed a
blank page, because the app page's scripts, linked relative to it, resolved under ``/etc/``. The
browser's view of it is in ``test_browser.py``; here, the middleware on Streamlit's own static routes.
"""

import re
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.testclient import TestClient
from streamlit import file_util
from streamlit.web.server.starlette.starlette_static_routes import create_streamlit_static_assets_routes

from ui.unknown_paths import HomeForUnknownPaths

INDEX = (Path(file_util.get_static_dir()) / "index.html").read_bytes()


@pytest.fixture(params=["identity", "gzip"])
def client(request) -> TestClient:
    # Streamlit's own handler for unknown paths (index.html), compressed as Streamlit does for browsers.
    streamlit = GZipMiddleware(Starlette(routes=create_streamlit_static_assets_routes(None)))
    client = TestClient(HomeForUnknownPaths(streamlit), follow_redirects=False)
    client.headers["Accept-Encoding"] = request.param
    return client


@pytest.mark.parametrize("path", ["/etc/passwd", "/a/b/c", "/compare/extra", "/static/js/missing.js"])
def test_an_unknown_path_of_two_or_more_segments_goes_home_with_its_query(client, path):
    for method in ("GET", "HEAD"):
        response = client.request(method, f"{path}?image_names=coffee")
        assert response.status_code == 302 and response.headers["location"] == "/?image_names=coffee", method
        assert response.content == b""


@pytest.mark.parametrize("path", ["/", "/passwd", "/compare"])
def test_a_page_address_gets_the_app_page_for_the_apps_navigation(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.content == INDEX  # the client undid any compression


def test_streamlits_own_files_and_refusals_pass_unchanged(client):
    script = re.search(rb'src="\./(static/js/[^"]+\.js)"', INDEX).group(1).decode()
    response = client.get(f"/{script}")
    assert response.status_code == 200 and "javascript" in response.headers["content-type"]
    assert client.get("/etc/_stcore/health").status_code == 404  # Streamlit's own answer for a reserved path


def test_under_a_base_url_home_is_the_base():
    streamlit = Starlette(routes=create_streamlit_static_assets_routes("app"))
    client = TestClient(HomeForUnknownPaths(streamlit, base_url="app"), follow_redirects=False)
    response = client.get("/app/etc/passwd")
    assert response.status_code == 302 and response.headers["location"] == "/app/"
    assert client.get("/app/passwd").status_code == 200
