"""Streamlit's frontend files answered from memory: the same bytes Streamlit would send, and nothing else."""

import gzip
import re
import urllib.request
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from streamlit import file_util

from conftest import PROJECT_ROOT
from tools.screenshot import dashboard_server
from ui.frontend_assets import FrontendAssets, asset_table

SCRIPT = b"console.log('a bundle');\n" * 400


def _fallback(request):
    return PlainTextResponse(f"streamlit:{request.method}:{request.url.path}")


@pytest.fixture
def static_dir(tmp_path) -> Path:
    (tmp_path / "static" / "js").mkdir(parents=True)
    (tmp_path / "static" / "js" / "index.abc123.js").write_bytes(SCRIPT)
    (tmp_path / "static" / "media" ).mkdir()
    (tmp_path / "static" / "media" / "font.woff2").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "index.html").write_text("<html></html>")
    (tmp_path.parent / "secret.txt").write_text("not for visitors")
    return tmp_path


def _client(static_dir: Path, base_url: str = "") -> TestClient:
    app = Starlette(routes=[Route("/{rest:path}", _fallback, methods=["GET", "HEAD", "POST"])])
    return TestClient(FrontendAssets(app, static_dir=static_dir, base_url=base_url))


def test_a_bundle_is_sent_gzipped_with_the_file_bytes_and_immutable(static_dir):
    client = _client(static_dir)
    response = client.get("/static/js/index.abc123.js", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < len(SCRIPT) / 10
    assert response.content == SCRIPT  # the client decompressed it
    assert response.headers["cache-control"] == "public, immutable, max-age=31536000"
    assert response.headers["content-type"] in ("text/javascript", "application/javascript")


def test_without_gzip_the_plain_bytes_and_fonts_are_never_recompressed(static_dir):
    client = _client(static_dir)
    plain = client.get("/static/js/index.abc123.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == SCRIPT
    font = client.get("/static/media/font.woff2", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in font.headers
    assert font.content == (static_dir / "static" / "media" / "font.woff2").read_bytes()


def test_head_and_a_revalidation(static_dir):
    client = _client(static_dir)
    head = client.head("/static/js/index.abc123.js", headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(SCRIPT)
    again = client.get("/static/js/index.abc123.js", headers={"If-None-Match": head.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("path", [
    "/index.html", "/", "/compare", "/static/js/missing.js", "/static/js/../../secret.txt",
    "/static/../../secret.txt", "/static/js", "/static/js/index.abc123.js/",
])
def test_anything_else_goes_on_to_streamlit(static_dir, path):
    response = _client(static_dir).get(path, follow_redirects=False)
    assert response.text.startswith("streamlit:GET:"), path
    assert "not for visitors" not in response.text


def test_other_methods_and_range_requests_go_on_to_streamlit(static_dir):
    client = _client(static_dir)
    assert client.post("/static/js/index.abc123.js").text == "streamlit:POST:/static/js/index.abc123.js"
    ranged = client.get("/static/js/index.abc123.js", headers={"Range": "bytes=0-9"})
    assert ranged.text == "streamlit:GET:/static/js/index.abc123.js"


def test_a_base_url_prefixes_every_path(static_dir):
    client = _client(static_dir, base_url="/team/dashboard/")
    assert client.get("/team/dashboard/static/js/index.abc123.js").content == SCRIPT
    assert client.get("/static/js/index.abc123.js").text.startswith("streamlit:")


def test_the_table_holds_streamlits_own_bundles_only():
    static_dir = Path(file_util.get_static_dir())
    table = asset_table(static_dir)
    assert len(table) > 100
    assert all(path.startswith("/static/") for path in table)
    assert all(file.resolve().is_relative_to(static_dir.resolve()) for file in table.values())
    assert "/index.html" not in table and "/static/index.html" not in table


def test_the_running_server_sends_the_entry_bundle_from_memory_and_pages_from_streamlit():
    with dashboard_server(PROJECT_ROOT) as (url, _):
        with urllib.request.urlopen(f"{url}/compare") as page:
            html = page.read().decode()
        assert page.headers["cache-control"] == "no-cache"  # Streamlit's page, as before
        bundle = re.search(r'src="\.?/?(static/js/index\.[^"]+\.js)"', html).group(1)
        request = urllib.request.Request(f"{url}/{bundle}", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request) as response:
            body = response.read()
            assert response.headers["content-encoding"] == "gzip"
            assert response.headers["cache-control"] == "public, immutable, max-age=31536000"
        assert gzip.decompress(body) == (Path(file_util.get_static_dir()) / bundle).read_bytes()
