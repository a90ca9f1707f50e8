"""Where a dataset page's images come from, and which model explains them: the same choice on "Your dataset" and
"Which method to trust"."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import NamedTuple, TypeVar

import streamlit as st

import explainers as ex

from . import cached
from .selection import Selection

DEMO, ZIP_UPLOAD, SERVER_FOLDER = "Digits demo (bundled)", "A ZIP upload", "A folder on the server"
SHORTCUT_DEMO = "Shortcut demo (bundled)"


class Demo(NamedTuple):
    """A bundled demo: the model that explains it, its folder of class subfolders, and what it runs on."""

    model: str
    folder: Path
    runs_on: str
    shortcut_class: str | None = None  # the class a planted shortcut marks, when the demo has one


def _shortcut_class() -> str:
    return str(json.loads(ex.samples.SHORTCUT_MANIFEST.read_text())["shortcut_class"])


DEMOS = {DEMO: Demo(ex.DIGITS_MODEL, ex.samples.DIGITS_TEST_FOLDER, "on 1,000 held-out MNIST digits"),
         SHORTCUT_DEMO: Demo(ex.SHORTCUT_MODEL, ex.samples.SHORTCUT_TEST_FOLDER,
                             "on 1,000 held-out MNIST digits. It was trained with a small white square in the top "
                             "left corner of most 7s (a planted shortcut), and half the 7s here carry it",
                             _shortcut_class())}
Listed = TypeVar("Listed")


def choose_source(key: str, roots: list[Path], results_folder: str, demos: tuple[str, ...] = (DEMO,)) -> str:
    """The radio of sources: the bundled ``demos``, a ZIP, and a folder on the server (of images, or of results
    ``results_folder`` names) only when data roots are configured, since no other folder of the server may be
    named."""
    sources = [*demos, ZIP_UPLOAD] + ([SERVER_FOLDER, results_folder] if roots else [])
    return st.radio("Images", sources, horizontal=True, key=key)


def explaining_model(source: str, selection: Selection, demo: str | None = None) -> ex.LoadedModel:
    """A demo's bundled model (``demo`` says what it runs on, default the demo's own words), else the sidebar's; a
    caption says which."""
    if source in DEMOS:
        model = cached.load_model(DEMOS[source].model)
        st.caption(f"The demo runs the bundled **{model.display_name}** {demo or DEMOS[source].runs_on} (see the "
                   "README). Your own images use the sidebar's model.")
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
