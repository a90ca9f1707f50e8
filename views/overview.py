"""Model and predictions: what the model is, which layers it offers, and what it sees in each image."""

import functools

import pandas as pd
import streamlit as st

from explainers import PRESETS, estimates, explain
from explainers.reports import render
from ui import budget, cached
from ui.selection import current
from ui.widgets import photo, top_k_table


def _parameters(count: int) -> str:
    return f"{count / 1e6:.1f} M" if count >= 100_000 else f"{count:,}"


selection = current()
model = selection.model

st.title("Model and predictions")
st.markdown(
    f"**{model.display_name}** · input {model.input_size[0]}x{model.input_size[1]} · "
    f"{len(model.class_names):,} classes · {_parameters(model.model.count_params())} parameters · "
    f"preprocessing {PRESETS[model.preprocessing].description}"
)
details = [f"format {model.format}", f"output {model.output_kind}"]
if model.channels == 1:
    details.append("grayscale input")
if model.labels_source:
    details.append(f"class names from {model.labels_source}")
st.caption(" · ".join(details) + f" · weights fingerprint {model.network_fingerprint[:12]} (results are cached per model "
           "and image content)")

digests = [cached.digest(image) for image in selection.images]  # picture keys: the pixels, not the arrays
if not selection.names:
    st.info("Select or upload images in the sidebar to see the model's predictions.")
else:
    st.subheader("Top-5 predictions")
    per_row = 3
    for start in range(0, len(selection.names), per_row):
        cells = st.columns(per_row)
        for cell, index in zip(cells, range(start, min(start + per_row, len(selection.names)))):
            with cell:
                st.image(photo(selection.images[index], digest=digests[index]), caption=selection.names[index],
                         width="stretch")
                top_k_table(model, selection.probabilities[index])

st.subheader("Inspect a layer")
if model.cam_unavailable:
    st.info(model.cam_unavailable)
else:
    infos = {info.path: info for info in model.layers}
    layer = st.selectbox(
        "Layer",
        model.conv_layers,
        index=model.conv_layers.index(model.default_cam_layer),
        format_func=model.layer_label,
        key="overview_layer",
        help="Every layer with a spatial output, in graph order; layers inside a nested base network included; and "
             "a Vision Transformer's blocks, their patch tokens laid on the patch grid.",
    )
    info = infos[layer]
    st.caption(f"{info.kind} · {info.resolution} · {info.channels} channels · Grad-CAM for each image's top class")
    if selection.names and budget.approved(
            "overview", (model.fingerprint, layer, tuple(digests)),
            estimates.estimate_seconds(model, selection.images, "gradcam", layer=layer),
            f"Grad-CAM of these {len(selection.names)} images"):

        @functools.cache
        def maps() -> list:  # one engine call for every image, made only when a picture is not cached yet
            return list(explain(model, selection.images, "gradcam", layer=layer))

        cells = st.columns(4)
        for index, image in enumerate(selection.images):
            top_class = model.class_names[int(selection.probabilities[index].argmax())]
            # The map is fixed by the weights, preprocessing, layer and pixels (the class is the top one).
            key = ("overview_gradcam", model.fingerprint, model.preprocessing, layer, digests[index])
            overlay = cached.picture(key, lambda index=index, image=image: render.overlay(image, maps()[index]))
            cells[index % len(cells)].image(overlay, caption=f"{selection.names[index]}: {top_class}")

    with st.expander(f"Layers a CAM method can use ({len(model.layers)}, in graph order)"):
        st.caption(f"Defaults for a layer grid: {', '.join(model.default_layers)}.")
        st.dataframe(
            pd.DataFrame(
                [
                    {"layer": info.path, "type": info.kind, "resolution": info.resolution, "channels": info.channels}
                    for info in model.layers
                ]
            ),
            hide_index=True,
            width="stretch",
        )
