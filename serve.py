"""The dashboard as an ASGI app, as `make run` and the hosting command start it: streamlit run serve.py

The same app as ``streamlit run dashboard.py``, with what a server start allows:
Streamlit's frontend files are answered from memory (``ui/frontend_assets.py``), which is
most of what a new visitor costs the server; the engine starts with the server
(``ui/frame.py``), so the first visitor waits for neither; and an unknown address of any
depth goes home rather than to a blank page (``ui/unknown_paths.py``). Any ASGI server can run it
too: ``uvicorn serve:app``.
"""

import contextlib
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from ui import frame
from ui.frontend_assets import FrontendAssets
from ui.unknown_paths import HomeForUnknownPaths


@contextlib.asynccontextmanager
async def _engine_started_with_the_server(_app: st.App):
    frame.start_warm_up()
    yield


app = st.App(Path(__file__).with_name("dashboard.py"),
             middleware=[Middleware(FrontendAssets), Middleware(HomeForUnknownPaths)],
             lifespan=_engine_started_with_the_server)
