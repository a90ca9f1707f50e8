"""Small drawing helpers more than one page uses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import explainers as ex
from explainers.reports import render

from . import cached

# Under a map of a class the model gives less than LOW_PROBABILITY, on every page that shows one.
UNLIKELY_CAPTION = f"⚠ class below p = {ex.attribution.LOW_PROBABILITY:g}"


def top_k_table(model: ex.LoadedModel, probabilities: np.ndarray, k: int = 5) -> None:
    """One image's ``k`` most probable classes as a table with probability bars."""
    top = model.top_k(probabilities[None], k)[0]
    st.dataframe(
        pd.DataFrame({"class": [name for _, name, _ in top], "probability": [p for _, _, p in top]}),
        hide_index=True,
        width="stretch",
        column_config={"probability": st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0)},
    )


def photo(image: np.ndarray, height: int | None = None, digest: str | None = None) -> bytes:
    """A ``(H, W, 3)`` uint8 photo, scaled to ``height`` pixels tall (None: as it is), as JPEG bytes for ``st.image``.

    Encoded once per server (``cached.picture``); ``digest`` is the photo's ``cached.digest`` when the caller has it.
    """
    key = ("photo", digest or cached.digest(image), height)
    return cached.picture(key, lambda: image if height is None else render.thumbnail(image, height))
