"""What the sidebar selected (model and images), handed to whichever page runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

import explainers as ex

_KEY = "selection"
RUN_ALONE = "This view runs inside the dashboard: start it with streamlit run dashboard.py."


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

    It is taken, not read, so a page never sees a stale one. A view script run on its own
    (``streamlit run views/x.py``) has none: it passed no sign-in gate, so it shows one
    sentence and nothing else.
    """
    selection = st.session_state.pop(_KEY, None)
    if selection is None:
        st.error(RUN_ALONE)
        st.stop()
    return selection
