"""The sidebar every page shares: model, images, device, and the top-5 predictions."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import streamlit as st

import explainers as ex

from . import auth, cached, own_model, share
from .defaults import DEFAULT_IMAGES
from .selection import Selection, publish
from .widgets import photo, top_k_table

UPLOAD_TYPES = [suffix.lstrip(".") for suffix in ex.images.IMAGE_SUFFIXES]  # the formats the decoder reads


def _load_own(request: own_model.OwnModelRequest) -> ex.LoadedModel:
    # A retrained model saved over the same path must not be served from the cache.
    model = cached.load_model(request.path, request.output, ex.models.files.file_version(request.path))
    preprocessing = None if request.preprocessing == own_model.AUTO else request.preprocessing
    try:
        return cached.model_variant(model, request.labels, request.labels_source, preprocessing)
    except ex.InputError as error:  # labels that do not fit: keep the model, number the classes
        st.error(f"{error} Classes are shown by number.")
        return cached.model_variant(model, None, "", preprocessing)


class Recipe(NamedTuple):
    """How to load the chosen model: a spec (embedded, zoo) or the visitor's own file and its settings."""

    source: str | own_model.OwnModelRequest


def _load(recipe: Recipe) -> ex.LoadedModel:
    if isinstance(recipe.source, own_model.OwnModelRequest):
        return _load_own(recipe.source)
    return cached.load_model(recipe.source)


def _pick_model() -> ex.LoadedModel:
    options: dict[str, str] = {**ex.available_models(), own_model.OWN_MODEL: "Your own model…"}
    spec = st.selectbox("Model", list(options), format_func=lambda key: options[key], key="model_spec")
    refused = None  # a server path outside the data roots: nothing is read
    request = None
    recipe: Recipe | None = Recipe(spec)
    if spec == own_model.OWN_MODEL:
        try:
            request = own_model.request()
        except ex.InputError as error:
            refused = str(error)
        recipe = Recipe(request) if request else None
    # A model that failed to load is not retried on every rerun: offline, each retry of a
    # zoo model would cost a failed download before the page could draw.
    failures: dict = st.session_state.setdefault("model_failures", {})
    if recipe in failures and st.button("Try loading it again", key="retry_model"):
        failures.pop(recipe)
    if recipe is not None and recipe not in failures:
        try:
            model = _load(recipe)
            st.session_state["last_good_model"] = recipe
            own_model.offer_outputs(model)
            if request is not None:
                _own_model_settled(request, model)
            return model
        except ex.InputError as error:
            failures[recipe] = str(error)
    try:
        model = _load(st.session_state.get("last_good_model", Recipe(ex.DEFAULT_MODEL)))
    except ex.InputError:  # the previous model is gone too (a zoo file deleted meanwhile)
        model = cached.load_model(ex.DEFAULT_MODEL)
    if recipe in failures or refused:
        st.error(f"{refused or failures[recipe]} {model.display_name} stays loaded.")
    return model


def _own_model_settled(request: own_model.OwnModelRequest, model: ex.LoadedModel) -> None:
    """Say which uploads the own model uses (a link cannot carry them), and load it again for an output chosen
    before its outputs were known (a link's): the page must not draw the first output's scores under its name."""
    if st.session_state.get("own_model_files"):
        share.used_upload("model")
    elif st.session_state.get("own_model_labels") is not None:
        share.used_upload("labels")
    chosen = st.session_state.get("own_model_output")
    if request.output is None and chosen in model.output_names[1:]:  # None loads the first output
        st.rerun()


def _uploaded_images() -> dict[str, np.ndarray]:
    uploads = st.file_uploader(
        "Add your own images", type=UPLOAD_TYPES, accept_multiple_files=True, key="uploads",
        help=f"{ex.images.FORMAT_NAMES}; any colour mode; EXIF rotation is honoured.",
    )
    decoded: dict[str, np.ndarray] = {}
    for upload in uploads or []:
        try:
            decoded[f"upload: {upload.name}"] = cached.decode_upload(upload.getvalue(), upload.name)
        except ex.InputError as error:
            st.error(str(error))
    return decoded


def _pick_images() -> tuple[list[str], list[np.ndarray]]:
    available = {name: cached.sample_photo(name) for name in ex.sample_images()}
    uploaded = _uploaded_images()
    available.update(uploaded)
    chosen_key = "image_names"
    if chosen_key not in st.session_state:
        st.session_state[chosen_key] = [n for n in DEFAULT_IMAGES if n in available]
    # New uploads join the selection once, when they first appear; the user may then remove them.
    seen: set[str] = st.session_state.setdefault("seen_uploads", set())
    fresh = [name for name in uploaded if name not in seen]
    seen.update(fresh)
    st.session_state[chosen_key] = [n for n in st.session_state[chosen_key] if n in available] + fresh
    names = st.multiselect("Images", list(available), key=chosen_key, help="Samples ship with the app; uploads are added below.")
    if any(name in uploaded for name in names):
        share.used_upload("images")
    return names, [available[n] for n in names]


def _top5(selection: Selection) -> None:
    if not selection.names:
        st.info("Select or upload at least one image.")
        return
    name = st.selectbox("Top-5 predictions for", selection.names, key="top5_image")
    index = selection.names.index(name)
    st.image(photo(selection.images[index]), width="stretch")
    top_k_table(selection.model, selection.probabilities[index])


def render() -> Selection:
    """Draw the sidebar and publish the selection for the page."""
    link_notes = share.restore()  # a shared link's selections, before any widget is drawn
    with st.sidebar:
        auth.signed_in_line()  # who is signed in, and sign-out (only with [auth] in the secrets)
        model = _pick_model()
        names, images = _pick_images()
        for note in link_notes:  # a link value that could not be used, said once, beside what replaced it
            st.warning(note)
        probabilities = cached.predict(model, images) if images else np.zeros((0, len(model.class_names)), np.float32)
        selection = Selection(model, names, images, probabilities)
        _top5(selection)
        st.caption(f"Device: {cached.device_line()}")
    publish(selection)
    return selection
