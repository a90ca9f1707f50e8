"""The sidebar's "your own model" section: a model file (upload or server path), class names, preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import explainers as ex

OWN_MODEL = "own"
MODEL_TYPES = ["keras", "h5", "hdf5", "json", "zip"]
LABEL_TYPES = ["json", "txt"]
AUTO = "auto"
_OUTPUTS = "own_model_outputs"  # {model path: its output names}, learnt when it first loads
_OUTPUT_KEY = "own_model_output"


@dataclass(frozen=True)
class OwnModelRequest:
    path: str
    preprocessing: str  # a preset name or AUTO
    output: str | None
    labels: tuple[str, ...] | None
    labels_source: str


def _stored_upload() -> str | None:
    """The uploaded model's path on disk; the bytes are written once per upload, not per rerun.

    The picker keeps earlier files as new ones are added: each model among them (a file, or an
    architecture .json with its weights) gets a folder of its own, and is named by its file.
    Raises InputError for a file name no file can have.
    """
    uploads = st.file_uploader(
        "Model file", type=MODEL_TYPES, accept_multiple_files=True, key="own_model_files",
        help="A .keras file; a whole-model .h5; an architecture .json together with its .weights.h5; "
             "or a SavedModel folder as a .zip. Size limit: see server.maxUploadSize.",
    )
    if not uploads:
        return None
    by_name = {ex.uploads.safe_name(upload.name): upload for upload in uploads}
    models = ex.models.files.model_uploads(list(by_name))
    chosen = models[-1]  # the latest upload
    if len(models) > 1:
        title = st.selectbox("Uploaded model", [files[0] for files in models], index=len(models) - 1,
                             key="own_model_upload", help="The models among the files above; the latest upload is chosen first.")
        chosen = next(files for files in models if files[0] == title)
    key = tuple(sorted(by_name[name].file_id for name in chosen))
    stored: dict = st.session_state.setdefault("own_model_stored", {})
    if key not in stored or not Path(stored[key]).exists():  # written again should the cache have been emptied
        folder = ex.uploads.store_files([(name, by_name[name].getvalue()) for name in chosen])
        stored[key] = str(folder / chosen[0])  # read by its own name, which titles the model
    return stored[key]


def _server_path(label: str, key: str, placeholder: str, what: str) -> str | None:
    """A path typed by the visitor, resolved inside the data roots; InputError when it lies outside."""
    roots = ex.data_roots.configured_roots()
    if not roots:  # whoever runs the server named no folder a visitor may read
        return None
    text = st.text_input(label, key=key, placeholder=str(roots[0] / placeholder),
                         help=f"{what} inside {ex.data_roots.describe(roots)}; a relative path starts in {roots[0]}.")
    return text.strip() or None


def _labels() -> tuple[tuple[str, ...] | None, str]:
    upload = st.file_uploader(
        "Class names (optional)", type=LABEL_TYPES, key="own_model_labels",
        help="A JSON list, a JSON {index: name} dict, a text file with one name per line, "
             "or a text file holding a dict such as {0: 'cat', 1: 'dog'}.",
    )
    path = None if upload else _server_path("…or their path on the server", "own_model_labels_path", "labels.txt",
                                            "A labels file")
    try:
        if upload is not None:
            return tuple(ex.parse_labels(upload.getvalue(), upload.name)), upload.name
        if path is not None:
            real = ex.data_roots.resolve_inside(path, ex.data_roots.configured_roots())
            return tuple(ex.read_labels(real)), real.name
    except ex.InputError as error:
        st.error(f"{error} Classes are shown by number.")
    return None, ""


def request() -> OwnModelRequest | None:
    """Draw the section's widgets; None until the user has given a model.

    Raises InputError when the model's server path lies outside the data roots.
    """
    path = _stored_upload()
    typed = None if path else _server_path("…or its path on the server", "own_model_path", "classifier.keras",
                                           "A model file, SavedModel folder or ZIP")
    labels, labels_source = _labels()
    preprocessing = st.selectbox(
        "Preprocessing", [AUTO, *ex.PRESETS], key="own_model_preprocessing",
        format_func=lambda p: "Detect (none if the model rescales itself, else 0..1)" if p == AUTO
        else f"{p}: {ex.PRESETS[p].description}",
    )
    if typed is not None:  # resolved once every widget is drawn, so a refusal keeps them on the page
        path = str(ex.data_roots.resolve_model_path(typed, ex.data_roots.configured_roots()))
    if path is None:
        st.info("Upload a model file" + (" or give its path on the server" if ex.data_roots.configured_roots() else "") + ".")
        return None
    known = st.session_state.get(_OUTPUTS, {}).get(path, ())
    output = st.session_state.get(_OUTPUT_KEY)
    return OwnModelRequest(path, preprocessing, output if output in known else None, labels, labels_source)


def offer_outputs(model: ex.LoadedModel) -> None:
    """For a model with several outputs, a picker of the one to explain (its choice is read on the next run)."""
    if len(model.output_names) < 2:
        return
    st.session_state.setdefault(_OUTPUTS, {})[model.spec] = model.output_names
    st.selectbox("Output to explain", model.output_names, key=_OUTPUT_KEY,
                 help="The model has several outputs; maps and predictions follow the one chosen here.")
