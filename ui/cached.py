"""The engine behind Streamlit caches: one model object per server, arrays keyed by content."""

from __future__ import annotations

import gc
import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import streamlit as st

import explainers as ex
from explainers.concepts.strategies import Strategies, strategies_of_results
from explainers.concepts.tcav import (
    ConceptFolder,
    ImageSet,
    PreparedTcav,
    TcavSettings,
    dataset_images,
    prepare_tcav,
    tcav_settings,
)
from explainers.reports import render
from explainers.trust.evaluate import TrustResult
from explainers.trust.summary import TrustSummary

Chart = TypeVar("Chart")  # an Altair chart of any kind


def digest(array: np.ndarray) -> str:
    """A short hash of an array's shape, type and values: a cache key for a map or a photo, in about a millisecond."""
    hasher = hashlib.blake2b(f"{array.shape}{array.dtype}".encode(), digest_size=16)
    hasher.update(np.ascontiguousarray(array).data)
    return hasher.hexdigest()


def evaluation_digest(evaluation: ex.datasets.Evaluation) -> str:
    """A hash of what a dataset evaluation holds (root, files, classes, top-k, p(true), least likely class, Grad-CAMs).

    Each session gathers its own Evaluation object; this names its content, so the views drawn from it
    are shared between sessions. About 50 ms for 100,000 images.
    """
    names = [evaluation.root, *evaluation.files, *evaluation.class_names, str(evaluation.cam_layer)]
    hasher = hashlib.blake2b("\n".join(names).encode(), digest_size=16)
    for array in (evaluation.true, evaluation.top_classes, evaluation.top_probabilities, evaluation.p_true,
                  evaluation.least_class, evaluation.least_probability, evaluation.cams):
        hasher.update(digest(array).encode())
    return hasher.hexdigest()


def _model_key(model: ex.LoadedModel) -> str:
    return model.fingerprint  # weights, architecture, chosen output, preprocessing, channels, input size


# How the caches below key their arguments: by content. Streamlit hashes an array by value but samples one past
# 500,000 values (a 512 px colour photo), so two photos differing outside its sample would share an entry; a model
# object would be pickled whole, or refused. A model is its fingerprint.
BY_CONTENT: dict[str | type[Any], Callable[[Any], Any]] = {np.ndarray: digest, ex.LoadedModel: _model_key}


@st.cache_resource(show_spinner="Loading the model (the first load of the embedded model converts it)…", max_entries=8)
def load_model(spec: str, output: str | None = None, version: str = "") -> ex.LoadedModel:
    """One model object per (spec, output) for the whole server, so sessions share compiled passes and caches.

    ``version`` only keys the cache: for a model file, a token that changes when the file is overwritten.
    """
    model = ex.load_model(spec, output=output)
    # Tracing the compiled passes costs seconds each; doing it while the user reads the
    # first page spares the pages that compute maps most of their first-visit wait.
    threading.Thread(target=_warm_up, args=(model,), daemon=True).start()
    return model


def _warm_up(model: ex.LoadedModel) -> None:
    try:
        model.runtime.warm_up(model.default_cam_layer)
    finally:
        settle_heap()


_HEAP = threading.Lock()


def settle_heap() -> None:
    """Set what is alive now (TensorFlow, Keras, the loaded models and their traced passes) aside from
    Python's cyclic garbage collector, which then walks only the objects made after.

    After every script run Streamlit collects garbage twice (``runner.postScriptGC``, and the
    ``keras.backend.clear_session()`` it calls whenever Keras is imported). Each is a full walk of
    a heap of half a million objects here, about 0.25 s of CPU: two thirds of a warm page view.
    Frozen objects are still freed by reference counting. Unfreezing first lets this collection
    reclaim what became unreachable since the last call (a model evicted from the cache), so
    what stays frozen is what is alive at the latest model load.
    """
    with _HEAP:
        gc.unfreeze()
        gc.collect()
        gc.freeze()


@st.cache_resource(show_spinner=False, max_entries=32, hash_funcs=BY_CONTENT)
def _variant(model: ex.LoadedModel, spec: str, labels: tuple[str, ...] | None, labels_source: str,
             preprocessing: str | None) -> ex.LoadedModel:
    return model.variant(list(labels) if labels else None, labels_source, preprocessing)


def model_variant(model: ex.LoadedModel, labels: tuple[str, ...] | None, labels_source: str,
                  preprocessing: str | None) -> ex.LoadedModel:
    """``model`` with the user's class names and preprocessing; stable across reruns, compiled passes shared.

    Keyed by spec and weights, so a model retrained over the same path gets a variant of its own.
    """
    if labels is None and preprocessing is None:
        return model
    return _variant(model, model.spec, labels, labels_source, preprocessing)


@st.cache_data(show_spinner=False, max_entries=256)
def decode_upload(data: bytes, name: str) -> np.ndarray:
    return ex.decode_image(data, name)


@st.cache_resource(show_spinner=False, max_entries=64)
def decode_sample(path: str) -> np.ndarray:
    """A bundled photo, decoded once per server: one read-only array shared by every run and session.

    The sidebar offers every sample on every run; a copy of each per run (what ``st.cache_data``
    hands out) cost more than the page's own drawing.
    """
    image = ex.decode_image(path)
    image.flags.writeable = False
    return image


def sample_photo(name: str) -> np.ndarray:
    """A bundled sample by name, decoded once per server."""
    return decode_sample(str(ex.sample_images()[name]))


@st.cache_resource(show_spinner=False)
def device_line() -> str:
    return ex.describe_device()


# The engine keeps maps itself (by weights, pixels, method, parameters, layer and class); what is cached here is what
# it does not keep, or what Streamlit would otherwise copy and rebuild on every rerun.
@st.cache_data(show_spinner=False, max_entries=256, hash_funcs=BY_CONTENT)
def predict(model: ex.LoadedModel, images: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, classes)`` probabilities, cached on the weights and the pixels, not on names."""
    return model.predict(images)


@st.cache_data(show_spinner=False, max_entries=32, hash_funcs=BY_CONTENT)
def layer_grid(model: ex.LoadedModel, images: Sequence[np.ndarray], layers: Sequence[str],
               targets: Sequence[int], method: str) -> list[np.ndarray]:
    """Per image, ``(L, H, W)`` uint8 maps: one engine call, kept across display-only reruns."""
    grids = ex.layer_grid(model, images, list(layers), [int(t) for t in targets], method)
    # 8 bits are all a display needs, and a quarter of the bytes Streamlit copies per rerun.
    return [np.rint(grid * 255).astype(np.uint8) for grid in grids]


@st.cache_data(show_spinner=False, max_entries=32, hash_funcs=BY_CONTENT)
def feature_maps(model: ex.LoadedModel, image: np.ndarray, layer: str, count: int) -> ex.FeatureMaps:
    return ex.feature_maps(model, image, layer, count)


def sanity_request(methods: dict[str, tuple[str | None, dict]]) -> tuple:
    """``{method: (layer, parameters)}`` as a hashable key, in the order given."""
    return tuple((name, layer, tuple(sorted(params.items()))) for name, (layer, params) in methods.items())


@st.cache_data(show_spinner=False, max_entries=16, hash_funcs=BY_CONTENT)
def sanity_checks(model: ex.LoadedModel, images: Sequence[np.ndarray], methods: dict[str, tuple[str | None, dict]],
                  targets: Sequence[int]) -> dict[str, ex.scores.SanityCheck]:
    """Costly (one map per stage, method and image on a randomised copy), so kept across reruns and sessions."""
    return ex.scores.sanity.sanity_checks(model, images, methods, [int(t) for t in targets])


@st.cache_data(show_spinner=False, max_entries=32, hash_funcs=BY_CONTENT)
def agreement(maps: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Rank correlations between methods' ``{name: raw maps}``, kept across display-only reruns and sessions."""
    return ex.scores.agreement(maps)


@st.cache_data(show_spinner=False, max_entries=256)
def dataset_image(location: str, size: tuple[int, int], roots: tuple[Path, ...] | None = None) -> np.ndarray | None:
    """A dataset file decoded and resized to the model's input, for the confusion-cell gallery; None when it
    cannot be read here (or, with ``roots``, lies outside them)."""
    image = ex.datasets.evaluation.read_image(location, roots)
    return None if image is None else ex.images.resize_batch([image], size)[0]


@st.cache_data(show_spinner=False, max_entries=1024, max_size="64MB")
def _picture(key: tuple, _draw: Callable[[], np.ndarray]) -> bytes:
    return render.jpeg_bytes(_draw())


def picture(key: tuple, draw: Callable[[], np.ndarray]) -> bytes:
    """JPEG bytes of the RGB image ``draw()`` returns, made once per ``key`` for the whole server.

    They are the bytes ``st.image`` makes of the array itself, so the picture looks the same; a
    rerun, or another session, showing it again sends the stored bytes instead of recolouring
    and encoding. ``key`` must name everything the picture depends on: what it shows (its kind,
    and content digests of the photo and map, never the arrays) and every display setting.
    """
    return _picture(key, draw)


@st.cache_data(show_spinner=False, max_entries=32)
def class_attention(token: str, classes: Sequence[int], roots: tuple[Path, ...] | None,
                    _evaluation: ex.datasets.Evaluation) -> list:
    """``classes``' mean images and mean Grad-CAMs (``analysis.class_attention``), once per evaluation content ``token``
    (``evaluation_digest``, which the view computes once per run for all its views); images are read only inside
    ``roots`` when given (a results folder names its own paths)."""
    return ex.datasets.analysis.class_attention(
        _evaluation, [int(c) for c in classes], lambda location: ex.datasets.evaluation.read_image(location, roots))


@st.cache_data(show_spinner=False, max_entries=16)
def strategies(token: str, by: str, settings: tuple[tuple[str, Any], ...],
               _evaluation: ex.datasets.Evaluation) -> Strategies:
    """Each class's strategies in an evaluation's stored Grad-CAMs (``strategies_of_results``), once per evaluation
    content ``token`` (``evaluation_digest``), grouping and clustering settings, for the whole server."""
    return strategies_of_results(_evaluation, by=by, **dict(settings))


def folders_stamp(folders: Sequence[Path]) -> tuple:
    """Names, sizes and modification times of the files in ``folders`` (not below): a changed concept or random
    folder is read afresh."""
    stamp: list[tuple] = []
    for folder in folders:
        try:
            stamp += [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file()]
        except OSError:
            stamp.append((str(folder), "unreadable"))
    return tuple(stamp)


@st.cache_resource(show_spinner=False, max_entries=2, hash_funcs=BY_CONTENT)
def tcav_plan(model: ex.LoadedModel, data: str, concepts: tuple[ConceptFolder, ...], random: ConceptFolder | None,
              classes: tuple[str, ...], layer: str, settings: TcavSettings, mapping: str,
              roots: tuple[Path, ...] | None, concept_roots: tuple[Path, ...] | None, stamp: tuple) -> PreparedTcav:
    """A TCAV request's images read and checked (``prepare_tcav``), once per model, folders' content (``stamp``),
    classes, layer and settings: reading hundreds of images on every rerun would make the tab slow to touch."""
    return prepare_tcav(model, data, concepts, random, classes, layer, settings, mapping, roots, concept_roots)


@st.cache_resource(show_spinner=False, max_entries=2, hash_funcs=BY_CONTENT)
def class_images(model: ex.LoadedModel, data: str, class_name: str, count: int, seed: int, mapping: str,
                 roots: tuple[Path, ...] | None) -> ImageSet:
    """Up to ``count`` images of one class of ``data``, drawn with ``seed`` and read as the concept test reads them,
    once per model, class and draw. InputError in one sentence when the class has no readable image."""
    found = dataset_images(model, data, [class_name], tcav_settings(class_images=count, seed=seed), False, mapping,
                           roots)
    if not found.classes:
        raise ex.InputError(f"No image of the class '{ex.errors.echo(class_name)}' could be read.")
    return found.classes[0].images


def _results_stamp(folder: Path) -> tuple:
    """Names, sizes and modification times of a results folder's files: a new run there opens afresh."""
    try:
        files = [folder / ex.datasets.storage.INFO_FILE, *ex.datasets.storage.row_files(folder)]
        return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())
    except OSError:
        return ()


@st.cache_resource(show_spinner=False, max_entries=2)
def _open_results(folder: str, stamp: tuple, roots: tuple[Path, ...]) -> ex.datasets.Evaluation:
    return ex.datasets.open_results(folder, roots)


def open_results(folder: Path, roots: Sequence[Path]) -> ex.datasets.Evaluation:
    """A results folder's Evaluation, read once per content for the whole server (views only read it); every file
    it reads lies inside ``roots``. InputError naming the folder and the problem otherwise."""
    return _open_results(str(folder), _results_stamp(folder), tuple(roots))


@st.cache_resource(show_spinner=False, max_entries=64)
def _chart(key: tuple, _build: Callable[[], Chart]) -> Chart:
    return _build()


def chart(key: tuple, build: Callable[[], Chart]) -> Chart:
    """The Altair chart ``build()`` returns, built once per ``key`` for the whole server.

    Building one costs 10 to 30 ms, as Altair checks each encoding against the Vega-Lite schema;
    Streamlit only reads the chart (``to_dict``, under its own lock), so sessions share it. ``key``
    must name the chart and digests of everything it plots.
    """
    return _chart(key, build)


def _trust_stamp(folder: Path) -> tuple:
    """Names, sizes and modification times of a trust folder's files: a new run written there opens afresh."""
    from explainers.trust import storage

    try:
        files = [folder / storage.TRUST_FILE, folder / storage.IMAGES_FILE,
                 *sorted((folder / storage.ROWS_FOLDER).glob("part-*.parquet"))]
        return tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())
    except OSError:
        return ()


class OpenedTrust(NamedTuple):
    result: TrustResult
    summary: TrustSummary
    described: dict  # trust.json's content
    token: str  # names the folder's content (its files' stamp), for views drawn from it


@st.cache_resource(show_spinner=False, max_entries=2)
def _open_trust(folder: str, stamp: tuple, shown_as: str) -> OpenedTrust:
    from explainers.trust import storage

    token = hashlib.blake2b(repr(stamp).encode(), digest_size=16).hexdigest()
    return OpenedTrust(*storage.open_trust(Path(folder), shown_as), token)


def open_trust(folder: Path, shown_as: str) -> OpenedTrust:
    """A trust output folder as ``storage.open_trust`` reads it, read once per content for the whole server: views
    only read it, and opening it runs no model pass. ``shown_as`` is how errors name the folder (what the visitor
    typed)."""
    return _open_trust(str(folder), _trust_stamp(folder), shown_as)


def trust_token(rows: pd.DataFrame, request: object) -> str:
    """A hash of an evaluation's scores and what was asked: it names their content, so views drawn from them
    (charts) are shared between reruns and sessions."""
    hasher = hashlib.blake2b(repr(request).encode(), digest_size=16)
    for column in rows.columns:
        values = rows[column].to_numpy()
        text = "\n".join(map(str, values)).encode() if values.dtype == object else digest(values).encode()
        hasher.update(text)
    return hasher.hexdigest()
