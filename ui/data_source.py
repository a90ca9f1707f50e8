"""Where a dataset page's images come from, and which model explains them: the same choice on "Your dataset" and
"Which method to trust"."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

import streamlit as st

import explainers as ex

from . import cached
from .selection import Selection

DEMO, ZIP_UPLOAD, SERVER_FOLDER = "Digits demo (bundled)", "A ZIP upload", "A folder on the server"
Listed = TypeVar("Listed")


def choose_source(key: str, roots: list[Path], results_folder: str) -> str:
    """The radio of sources; a folder on the server (of images, or of results ``results_folder`` names) only when
    data roots are configured, since no other folder of the server may be named."""
    sources = [DEMO, ZIP_UPLOAD] + ([SERVER_FOLDER, results_folder] if roots else [])
    return st.radio("Images", sources, horizontal=True, key=key)


def explaining_model(source: str, selection: Selection, demo: str) -> ex.LoadedModel:
    """The bundled digits model for the demo (``demo`` says what it runs on), else the sidebar's; a caption says
    which."""
    if source == DEMO:
        model = cached.load_model(ex.DIGITS_MODEL)
        st.caption(f"The demo runs the bundled **{model.display_name}** {demo} (see the README). Your own images use "
                   "the sidebar's model.")
        return model
    st.caption(f"Model: **{selection.model.display_name}** (from the sidebar).")
    return selection.model


def listed_once(store: str, key: Hashable, list_images: Callable[[], Listed]) -> Listed:
    """``list_images()`` for ``key``, once per session until ``forget``: listing a large tree costs real time, and
    every display change reruns the page. Only the latest listing is kept (a large tree's is large)."""
    listings: dict = st.session_state.setdefault(store, {})
    if key not in listings:
        found = list_images()
        listings.clear()
        listings[key] = found
    return listings[key]


def forget(store: str, key: Hashable) -> None:
    """The next ``listed_once`` for ``key`` lists afresh (the visitor asked for a rescan)."""
    st.session_state.get(store, {}).pop(key, None)
