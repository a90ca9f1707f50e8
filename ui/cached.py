"""The engine behind Streamlit caches: one model object per server, arrays keyed by content."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import streamlit as st

import explainers as ex


@st.cache_resource(show_spinner="Loading the model (the first load of the embedded model converts it)…")
def load_model(spec: str) -> ex.LoadedModel:
    return ex.load_model(spec)


@st.cache_data(show_spinner=False, max_entries=256)
def decode_upload(data: bytes, name: str) -> np.ndarray:
    return ex.decode_image(data, name)


@st.cache_data(show_spinner=False)
def decode_sample(path: str) -> np.ndarray:
    return ex.decode_image(path)


@st.cache_resource(show_spinner=False)
def device_line() -> str:
    return ex.describe_device()


@st.cache_data(show_spinner=False, max_entries=256)
def _predict(_model: ex.LoadedModel, fingerprint: str, digest: str, _images: Sequence[np.ndarray]) -> np.ndarray:
    return _model.predict(_images)


def predict(model: ex.LoadedModel, images: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, classes)`` probabilities, cached on the weights and the pixels, not on names."""
    return _predict(model, model.fingerprint, ex.content_digest(images), images)


def explain(model: ex.LoadedModel, images: Sequence[np.ndarray], method: str, **kwargs) -> list[np.ndarray]:
    """Maps in [0, 1] at each image's resolution, as a list.

    The engine caches raw maps by weights, pixels, method, parameters, layer and
    class, so a rerun (or a display change) costs only the final resize.
    """
    maps = ex.explain(model, images, method, **kwargs)
    return list(maps)
