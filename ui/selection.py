"""What the sidebar selected (model and images), handed to whichever page runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

import explainers as ex

from . import auth

_KEY = "selection"


@dataclass
class Selection:
    model: ex.LoadedModel
    names: list[str]  # display names, one per image
    images: list[np.ndarray]  # (H, W, 3) uint8 RGB, original resolution
    probabilities: np.ndarray  # (N, classes)


def publish(selection: Selection) -> None:
    st.session_state[_KEY] = selection


def current() -> Selection:
    """The selection the sidebar made in this run; call it once per page run.

    On a server's first run Streamlit's legacy discovery of the ``pages/`` folder
    can run a page script on its own, without the entrypoint (a shared link to a
    page does this). The selection is therefore taken, not read, so a page never
    sees a stale one, and a page that finds none draws the sidebar itself, after
    the same sign-in gate as the entrypoint's.
    """
    selection = st.session_state.pop(_KEY, None)
    if selection is None:
        from streamlit.runtime.pages_manager import PagesManager

        if PagesManager.uses_pages_directory:
            # What st.navigation would have set had the entrypoint run: start over through it,
            # so the first visitor of a deep link sees the app's own navigation.
            PagesManager.uses_pages_directory = False
            st.rerun()
        from .frame import configure_page
        from .sidebar import render  # the sidebar imports this module

        configure_page()
        auth.gate()  # the entrypoint's gate did not run: a visitor who may not see the app gets only sign-in
        selection = render()
        st.session_state.pop(_KEY, None)
    return selection
