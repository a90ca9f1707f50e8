"""Streamlit's own frontend files (its hashed JavaScript, CSS and fonts) answered from memory.

Every new browser fetches some 150 of these files, 5.5 MB, before it shows a page. Streamlit
serves each through its whole middleware stack and several worker-thread hops for stat, open,
read and close: about 0.25 CPU-seconds per new visitor, more than drawing a warm page. This
middleware answers them from a table built once, gzipped once, so a new visitor costs a
fraction of that and downloads a quarter of the bytes.

Only files that ship in Streamlit's ``static/static/`` folder are answered, looked up by their
exact URL path: any other request (the app's HTML, its routes, a range request, a path that is
not in the table) goes on to Streamlit unchanged. Their names carry a content hash, so they are
sent as immutable, as Streamlit does.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send
from streamlit import config, file_util

# What Streamlit sends for its hashed bundles.
CACHE_CONTROL = b"public, immutable, max-age=31536000"
# Text compresses about 4:1; fonts and images are compressed already.
COMPRESSIBLE = (".js", ".css", ".svg", ".json", ".map", ".txt", ".html")


@dataclass(frozen=True)
class _Asset:
    body: bytes
    gzipped: bytes | None
    content_type: bytes
    etag: bytes


def _load(path: Path) -> _Asset:
    body = path.read_bytes()
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # mtime=0: the same bytes on every server, so caches in front of several replicas agree.
    gzipped = gzip.compress(body, compresslevel=9, mtime=0) if path.suffix in COMPRESSIBLE else None
    return _Asset(body, gzipped, content_type.encode(), b'"%s"' % hashlib.sha256(body).hexdigest()[:32].encode())


def asset_table(static_dir: Path, base_url: str = "") -> dict[str, Path]:
    """URL path -> file, for every file under ``static_dir/static``, as Streamlit serves them."""
    prefix = "/" + base_url.strip("/") if base_url.strip("/") else ""
    return {f"{prefix}/{path.relative_to(static_dir).as_posix()}": path
            for path in sorted((static_dir / "static").rglob("*")) if path.is_file()}


class FrontendAssets:
    """ASGI middleware: GET and HEAD of Streamlit's hashed frontend files from memory."""

    def __init__(self, app: ASGIApp, static_dir: Path | None = None, base_url: str | None = None) -> None:
        self.app = app
        self.files = asset_table(Path(static_dir or file_util.get_static_dir()),
                                 config.get_option("server.baseUrlPath") if base_url is None else base_url)
        self.loaded: dict[str, _Asset] = {}  # bounded by the table: Streamlit's own files, some 30 MB

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or path not in self.files:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if b"range" in headers:  # rare for these files; Streamlit answers it properly
            await self.app(scope, receive, send)
            return
        asset = self.loaded.get(path)
        if asset is None:  # first request for this file since start: read and compress off the event loop
            asset = self.loaded.setdefault(path, await anyio.to_thread.run_sync(_load, self.files[path]))
        await send_asset(asset, scope["method"] == "HEAD", headers, send)


async def send_asset(asset: _Asset, head_only: bool, request_headers: dict[bytes, bytes], send: Send) -> None:
    common = [(b"cache-control", CACHE_CONTROL), (b"etag", asset.etag), (b"vary", b"accept-encoding")]
    if asset.etag in request_headers.get(b"if-none-match", b""):
        await send({"type": "http.response.start", "status": 304, "headers": common})
        await send({"type": "http.response.body", "body": b""})
        return
    wants_gzip = b"gzip" in request_headers.get(b"accept-encoding", b"")
    gzipped = asset.gzipped is not None and wants_gzip
    body = asset.gzipped if asset.gzipped is not None and wants_gzip else asset.body
    response_headers = [(b"content-type", asset.content_type), (b"content-length", b"%d" % len(body)), *common]
    if gzipped:
        response_headers.append((b"content-encoding", b"gzip"))
    await send({"type": "http.response.start", "status": 200, "headers": response_headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})
