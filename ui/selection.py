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

    It is taken, not read, so a page never sees a stale one. A page that finds none (run
    without the entrypoint, see ``frame.through_the_entrypoint``) draws the sidebar itself,
    after the same sign-in gate as the entrypoint's.
    """
    selection = st.session_state.pop(_KEY, None)
    if selection is None:
        from .frame import configure_page, through_the_entrypoint
        from .sidebar import render  # the sidebar imports this module

        through_the_entrypoint()
        configure_page()
        auth.gate()  # the entrypoint's gate did not run: a visitor who may not see the app gets only sign-in
        selection = render()
        st.session_state.pop(_KEY, None)
    return selection
