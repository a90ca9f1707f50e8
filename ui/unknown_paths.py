"""Any unknown address goes home, however many segments it has.

Streamlit answers every unknown path with its app page (index.html), whose scripts are linked
relative to the page (``./static/js/…``). For ``/passwd`` they resolve to ``/static/js/…``, the
app starts, and its navigation sends the visitor home. For ``/etc/passwd`` they resolve to
``/etc/static/js/…``, which Streamlit also answers with index.html, so no script ever runs and
the visitor sees a blank page. This middleware sends such an address home instead; every other
answer (pages, Streamlit's routes, its files) passes through unchanged.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from streamlit import config, file_util

# Streamlit's index.html is some 8 KB; an HTML answer larger than this is something else, and is not held longer.
_MAX_HELD = 1 << 20


class HomeForUnknownPaths:
    """ASGI middleware: a path of two or more segments that Streamlit answers with its app page is redirected home."""

    def __init__(self, app: ASGIApp, static_dir: Path | None = None, base_url: str | None = None) -> None:
        self.app = app
        self.index = (Path(static_dir or file_util.get_static_dir()) / "index.html").read_bytes()
        base = (config.get_option("server.baseUrlPath") if base_url is None else base_url).strip("/")
        self.prefix = f"/{base}" if base else ""
        self.home = f"{self.prefix}/"

    def _nested(self, path: str) -> bool:
        """Whether ``path`` has two or more segments below the base URL: no page of the app does."""
        if self.prefix and not path.startswith(f"{self.prefix}/"):
            return False
        return len([part for part in path[len(self.prefix):].split("/") if part]) >= 2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not self._nested(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []  # an HTML answer, held until it is known whether it is the app page
        body = bytearray()

        async def hold_html(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if message["status"] == 200 and headers.get(b"content-type", b"").startswith(b"text/html"):
                    held.append(message)
                    return
            elif held:
                body.extend(message.get("body", b""))
                if message.get("more_body", False) and len(body) <= _MAX_HELD:
                    return
                if self._is_the_app_page(scope["method"], dict(held[0].get("headers", [])), bytes(body)):
                    await self._send_home(scope, send)
                else:  # another HTML answer: sent as it came
                    await send(held.pop())
                    await send({**message, "body": bytes(body)})
                    body.clear()
                return
            await send(message)

        await self.app(scope, receive, hold_html)

    def _is_the_app_page(self, method: str, headers: dict[bytes, bytes], body: bytes) -> bool:
        if method == "HEAD":  # no body to compare: the app page's length says it
            return headers.get(b"content-length") == str(len(self.index)).encode() and b"content-encoding" not in headers
        if headers.get(b"content-encoding") == b"gzip":  # Streamlit compresses it for browsers that accept it
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return False
        return body == self.index

    async def _send_home(self, scope: Scope, send: Send) -> None:
        query = scope.get("query_string", b"")
        location = self.home.encode() + (b"?" + query if query else b"")
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", location), (b"cache-control", b"no-cache"), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
