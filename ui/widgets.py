"""Small drawing helpers more than one page uses."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import streamlit as st

import explainers as ex
from explainers.methods.registry import Param
from explainers.reports import render

from . import cached, param_widgets

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


# The classes a page explains, the same three ways on every page that picks them.
TOP, LEAST, ONE = "Top predicted", "Least likely", "One class by name"


class Band(NamedTuple):
    """One class per image, and how a page names the set: a band of the grid, the comparison's targets."""

    label: str
    classes: np.ndarray  # (N,) int


TOP_CLASSES = Param("top_n", 2, "how many of each image's most probable classes, one band each", 1, 5, 1,
                    label="How many")


def class_bands(container, prefix: str, model: ex.LoadedModel, probabilities: np.ndarray, several: bool = False,
                label: str = "Class") -> list[Band]:
    """The radio of the three ways (and, with ``several``, how many top classes: TOP_CLASSES); one Band per class
    rank asked. Widget keys: ``<prefix>class_mode``, ``<prefix>top_n``, ``<prefix>class``."""
    mode = container.radio(label, [TOP, LEAST, ONE], key=f"{prefix}class_mode",
                           help="Least likely: each image's least probable class, a map of what speaks against it.")
    if mode == TOP:
        count = int(param_widgets.widget(container, TOP_CLASSES, f"{prefix}top_n")) if several else 1
        ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :count]
        return [Band(f"Top-{rank + 1} class", ranked[:, rank]) for rank in range(count)]
    if mode == LEAST:
        return [Band("Least likely class", probabilities.argmin(axis=1))]
    chosen = container.selectbox("Class", range(len(model.class_names)), index=int(probabilities[0].argmax()),
                                 format_func=lambda c: model.class_names[c], key=f"{prefix}class")
    return [Band(f"Class: {model.class_names[chosen]}", np.full(len(probabilities), chosen))]


class Overlay(NamedTuple):
    opacity: float
    colormap: str


OPACITY = Param("opacity", 0.5, "how much of the map covers the photo", 0.0, 1.0, 0.05, label="Overlay opacity")
COLORMAP = Param("colormap", render.COLORMAPS[0], "the colours of the map, low to high", choices=render.COLORMAPS)
OVERLAY = (OPACITY, COLORMAP)


def overlay_controls(opacity_place, colormap_place, prefix: str) -> Overlay:
    """How maps are laid over photos; keys ``<prefix>opacity`` and ``<prefix>colormap``. Display only: changing
    them recolours, never recomputes."""
    return Overlay(param_widgets.widget(opacity_place, OPACITY, f"{prefix}opacity"),
                   colormap_place.selectbox(param_widgets.label(COLORMAP), COLORMAP.choices,
                                            key=f"{prefix}colormap", help=COLORMAP.help))
