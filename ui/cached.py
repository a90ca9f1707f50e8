"""The engine behind Streamlit caches: one model object per server, arrays keyed by content."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import streamlit as st

import explainers as ex


@st.cache_resource(show_spinner="Loading the model (the first load of the embedded model converts it)…", max_entries=8)
def load_model(spec: str, output: str | None = None, version: str = "") -> ex.LoadedModel:
    """One model object per (spec, output) for the whole server, so sessions share compiled passes and caches.

    ``version`` only keys the cache: for a model file, a token that changes when the file is overwritten.
    """
    model = ex.load_model(spec, output=output)
    # Tracing the compiled passes costs seconds each; doing it while the user reads the
    # first page spares the pages that compute maps most of their first-visit wait.
    threading.Thread(target=model.runtime.warm_up, args=(model.default_cam_layer,), daemon=True).start()
    return model


@st.cache_resource(show_spinner=False, max_entries=32)
def _variant(_model: ex.LoadedModel, spec: str, fingerprint: str, labels: tuple[str, ...] | None, labels_source: str,
             preprocessing: str | None) -> ex.LoadedModel:
    return _model.variant(list(labels) if labels else None, labels_source, preprocessing)


def model_variant(model: ex.LoadedModel, labels: tuple[str, ...] | None, labels_source: str,
                  preprocessing: str | None) -> ex.LoadedModel:
    """``model`` with the user's class names and preprocessing; stable across reruns, compiled passes shared.

    Keyed by spec and weights, so a model retrained over the same path gets a variant of its own.
    """
    if labels is None and preprocessing is None:
        return model
    return _variant(model, model.spec, model.fingerprint, labels, labels_source, preprocessing)


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


@st.cache_data(show_spinner=False, max_entries=32)
def _layer_grid(
    _model: ex.LoadedModel, fingerprint: str, digests: tuple[str, ...], _images: Sequence[np.ndarray],
    layers: tuple[str, ...], targets: tuple[int, ...], method: str,
) -> list[np.ndarray]:
    grids = ex.layer_grid(_model, _images, list(layers), list(targets), method)
    # 8 bits are all a display needs, and a quarter of the bytes Streamlit copies per rerun.
    return [np.rint(grid * 255).astype(np.uint8) for grid in grids]


def layer_grid(model: ex.LoadedModel, images: Sequence[np.ndarray], layers: Sequence[str],
               targets: Sequence[int], method: str) -> list[np.ndarray]:
    """Per image, ``(L, H, W)`` uint8 maps: one engine call, kept across display-only reruns."""
    digests = tuple(ex.content_digest([image]) for image in images)
    return _layer_grid(model, model.fingerprint, digests, images, tuple(layers), tuple(int(t) for t in targets), method)


@st.cache_data(show_spinner=False, max_entries=32)
def _feature_maps(_model: ex.LoadedModel, fingerprint: str, digest: str, _image: np.ndarray, layer: str,
                  count: int) -> ex.FeatureMaps:
    return ex.feature_maps(_model, _image, layer, count)


def feature_maps(model: ex.LoadedModel, image: np.ndarray, layer: str, count: int) -> ex.FeatureMaps:
    return _feature_maps(model, model.fingerprint, ex.content_digest([image]), image, layer, count)


def attribute(model: ex.LoadedModel, images: Sequence[np.ndarray], method: str, **kwargs) -> ex.Attribution:
    """Raw maps; the engine's content-keyed cache makes a rerun free."""
    return ex.attribute(model, images, method, **kwargs)


@st.cache_data(show_spinner=False, max_entries=16)
def _sanity(_model: ex.LoadedModel, fingerprint: str, digests: tuple[str, ...], _images: Sequence[np.ndarray],
            method: str, targets: tuple[int, ...], layer: str | None, params: tuple) -> ex.scores.SanityCheck:
    return ex.scores.sanity_check(_model, _images, method, list(targets), layer, **dict(params))


def sanity_check(model: ex.LoadedModel, images: Sequence[np.ndarray], method: str, targets: Sequence[int],
                 layer: str | None, params: dict) -> ex.scores.SanityCheck:
    """Costly (a copy of the model and one map per stage), so kept across reruns and sessions."""
    digests = tuple(ex.content_digest([image]) for image in images)
    return _sanity(model, model.fingerprint, digests, images, method, tuple(int(t) for t in targets), layer,
                   tuple(sorted(params.items())))


@st.cache_data(show_spinner=False, max_entries=32)
def _agreement(names: tuple[str, ...], raws: tuple[np.ndarray, ...]) -> np.ndarray:
    attributions = {n: ex.Attribution(n, None, {}, raw, np.zeros(len(raw), np.int32), 0.0, 0) for n, raw in zip(names, raws)}
    return ex.scores.agreement(attributions)[1]


def agreement(results: dict[str, ex.Attribution]) -> tuple[list[str], np.ndarray]:
    """Rank correlations between methods, kept across display-only reruns (Streamlit hashes the maps)."""
    names = tuple(results)
    return list(names), _agreement(names, tuple(results[n].raw for n in names))


@st.cache_data(show_spinner=False, max_entries=256)
def dataset_image(path: str, size: tuple[int, int]) -> np.ndarray:
    """A dataset file decoded and resized to the model's input, for the confusion-cell gallery."""
    return ex.images.resize_batch([ex.decode_image(path)], size)[0]
