"""The frame a visitor sees while the engine starts: the page's title and the sidebar's outline.

Importing the engine means importing TensorFlow, some five seconds on a 2-core machine
after the server starts. This module imports no part of the engine, so the entrypoint
can draw the frame first and fill it once the engine is there. ``warm_up`` (started by
``serve.py`` with the server) imports the engine, loads the default model and predicts
the default images meanwhile, into the same caches the first visitor's run reads.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from .defaults import DEFAULT_IMAGES, DEFAULT_MODEL_NAME

ENGINE = "explainers"
# Importing TensorFlow holds Python's lock for up to half a second at a time (2 s in all), which
# stalls the server's event loop: a visitor who opens the app while the server starts would wait
# for it before seeing anything. The warm-up therefore starts once the first visitor's frame is
# drawn, or after this many seconds without one.
WARM_UP_DELAY = 3.0
_frame_drawn = threading.Event()
_log = logging.getLogger(__name__)


def configure_page() -> None:
    st.set_page_config(page_title="CNN Attribution Dashboard", page_icon=":material/visibility:", layout="wide")


def engine_ready() -> bool:
    """The engine is imported whole: its ``__all__`` comes last, so a half-done import elsewhere is not ready."""
    return getattr(sys.modules.get(ENGINE), "__all__", None) is not None


@contextmanager
def outline_until_ready(title: str) -> Iterator[None]:
    """Draw ``title`` and the sidebar's outline, import the engine, and clear them when the block ends.

    The block (the sidebar's real content) runs with the engine imported; the title stays
    until then, so the main area is never blank. Without a wait to cover, nothing is drawn.
    """
    if engine_ready():
        yield
        return
    main, side = st.empty(), st.sidebar.empty()
    with main.container():
        st.title(title)
        st.caption("Starting the attribution engine (TensorFlow); the first visit after the server starts "
                   "takes a few seconds.")
    with side.container():
        st.selectbox("Model", [DEFAULT_MODEL_NAME], disabled=True)
        st.multiselect("Images", list(DEFAULT_IMAGES), default=list(DEFAULT_IMAGES), disabled=True)
        st.caption("Predictions appear here once the model is loaded.")
        # An empty table where the predictions will be: the browser fetches the table's code meanwhile.
        st.dataframe({"class": [], "probability": []}, hide_index=True, width="stretch")
    _frame_drawn.set()
    with st.spinner("Starting the attribution engine…"):
        importlib.import_module(ENGINE)  # waits for warm_up's import when it is under way
    side.empty()
    try:
        yield
    finally:
        main.empty()


class _NoSessionWarning(logging.Filter):
    """Streamlit's caches warn when called outside a visitor's run, which the warm-up is by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (threading.current_thread().name == WARM_UP_THREAD and "ScriptRunContext" in record.getMessage())


WARM_UP_THREAD = "engine-warm-up"


def start_warm_up() -> None:
    """``warm_up`` in a background thread, so the server answers while it runs."""
    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(_NoSessionWarning())
    threading.Thread(target=warm_up, name=WARM_UP_THREAD, daemon=True).start()


def warm_up() -> None:
    """Import the engine, load the default model and predict the default images, into the shared caches."""
    _frame_drawn.wait(WARM_UP_DELAY)
    try:
        importlib.import_module(ENGINE)
        from ui import cached

        model = cached.load_model(sys.modules[ENGINE].DEFAULT_MODEL)
        cached.predict(model, [cached.sample_photo(name) for name in DEFAULT_IMAGES])
    except Exception:  # a warm-up is an optimisation: the first visitor's run does the same and reports
        _log.exception("warming up the engine failed")
