"""The sidebar every page shares: model, images, device, and the top-5 predictions."""

from __future__ import annotations

import numpy as np
import streamlit as st

import explainers as ex

from . import cached
from .selection import Selection, publish
from .widgets import top_k_table

DEFAULT_IMAGES = ("cat_chelsea", "coffee")
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"]


def _pick_model() -> ex.LoadedModel:
    options = ex.available_models()
    spec = st.selectbox("Model", list(options), format_func=options.get, key="model_spec")
    # A zoo model that failed to load is not retried on every rerun: offline, each
    # retry would cost a failed download before the page could draw.
    failures: dict[str, str] = st.session_state.setdefault("model_failures", {})
    if spec in failures and st.button("Try loading it again", key="retry_model"):
        failures.pop(spec)
    if spec not in failures:
        try:
            return cached.load_model(spec)
        except ex.InputError as error:
            failures[spec] = str(error)
    st.error(f"{failures[spec]} Showing the embedded EfficientNet-Lite0 instead.")
    return cached.load_model(ex.DEFAULT_MODEL)


def _uploaded_images() -> dict[str, np.ndarray]:
    uploads = st.file_uploader(
        "Add your own images", type=UPLOAD_TYPES, accept_multiple_files=True, key="uploads",
        help="JPEG, PNG, WebP, BMP, GIF or TIFF; any colour mode; EXIF rotation is honoured.",
    )
    decoded: dict[str, np.ndarray] = {}
    for upload in uploads or []:
        try:
            decoded[f"upload: {upload.name}"] = cached.decode_upload(upload.getvalue(), upload.name)
        except ex.InputError as error:
            st.error(str(error))
    return decoded


def _pick_images() -> tuple[list[str], list[np.ndarray]]:
    available = {name: cached.decode_sample(str(path)) for name, path in ex.sample_images().items()}
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
    return names, [available[n] for n in names]


def _top5(selection: Selection) -> None:
    if not selection.names:
        st.info("Select or upload at least one image.")
        return
    name = st.selectbox("Top-5 predictions for", selection.names, key="top5_image")
    index = selection.names.index(name)
    st.image(selection.images[index], width="stretch")
    top_k_table(selection.model, selection.probabilities[index])


def configure_page() -> None:
    st.set_page_config(page_title="CNN Attribution Dashboard", page_icon=":material/visibility:", layout="wide")


def render() -> Selection:
    """Draw the sidebar and publish the selection for the page."""
    with st.sidebar:
        model = _pick_model()
        names, images = _pick_images()
        probabilities = cached.predict(model, images) if images else np.zeros((0, len(model.class_names)), np.float32)
        selection = Selection(model, names, images, probabilities)
        _top5(selection)
        st.caption(f"Device: {cached.device_line()}")
    publish(selection)
    return selection
