"""Layer-by-layer Grad-CAM: images as rows, layers as columns, one band per class."""

import numpy as np
import streamlit as st

from explainers import REGISTRY, estimates
from explainers.attribution import LOW_PROBABILITY, format_probability, is_low_probability, low_probability_note
from explainers.reports import render
from ui import budget, cached, layer_positions, param_widgets, view_settings
from ui.selection import current
from ui.widgets import UNLIKELY_CAPTION, class_bands, overlay_controls, photo

GRID_METHODS = [name for name, method in REGISTRY.items() if method.cam_weights]  # one pass fills every layer
THUMB = 200  # display height of a cell in pixels; downloads use full resolution

selection = current()
model = selection.model
st.title("Layer-by-layer Grad-CAM")
st.caption(
    "Early layers respond to textures and edges, middle layers to parts, the last to whole objects. "
    "Each row is an image, each column a layer; each band explains one class."
)
if not selection.names:
    st.info("Select or upload images in the sidebar.")
    st.stop()

if model.cam_unavailable:
    st.info(f"{model.cam_unavailable} The comparison page still offers the gradient methods.")
    st.stop()

infos = {info.path: info for info in model.layers}

left, middle, right = st.columns([1, 1, 2])
method = left.selectbox("Method", GRID_METHODS, format_func=lambda m: REGISTRY[m].label, key="grid_method",
                        help="Layer-CAM keeps early layers sharper than Grad-CAM.")
bands = class_bands(middle, "grid_", model, selection.probabilities, several=True, label="Classes")

layer_mode = right.radio("Choose layers", ["By name", "By position from the end"], horizontal=True, key="grid_layer_mode")
if layer_mode == "By name":
    chosen_layers = st.session_state.get("grid_layers")
    if chosen_layers and not set(chosen_layers) & set(model.conv_layers):
        # Chosen for another model (switched in the sidebar): this one's defaults, not an empty grid.
        st.session_state["grid_layers"] = list(model.default_layers)
    layers = right.multiselect("Layers (in graph order)", model.conv_layers, format_func=model.layer_label, default=list(model.default_layers),
                               key="grid_layers")
    layers = [path for path in model.conv_layers if path in layers]  # shallow to deep, whatever the click order
else:
    spatial = model.conv_layers  # the layers "By name" lists: every layer with a spatial output
    text = right.text_input(f"{layer_positions.INPUT_NAME}, 1 = last spatial layer (of {len(spatial)})",
                            layer_positions.positions_of(spatial, list(model.default_layers)), key="grid_positions",
                            help=f"Whole numbers from 1 to {len(spatial)}, separated by commas.")
    positions, problems = layer_positions.parse_positions(text, len(spatial))
    for problem in problems:
        st.error(problem)
    layers = [spatial[-p] for p in sorted(positions, reverse=True)]  # shallow to deep
if not layers:
    st.info("Choose at least one layer.")
    st.stop()

display = st.columns([2, 1, 2])
opacity, colormap = overlay_controls(display[0], display[1], "grid_")
mode = display[2].radio("Show", render.DISPLAY_MODES, horizontal=True, key="grid_mode")

images = selection.images * len(bands)
targets = np.concatenate([classes for _, classes in bands])
cells = len(images) * len(layers)
grid_estimate = estimates.grid_seconds(model, images, layers, targets, method)
grid_asked = (model.fingerprint, tuple(cached.digest(image) for image in images), tuple(layers),
              tuple(int(t) for t in targets), method)
if not budget.approved("grid", grid_asked, grid_estimate, f"Computing these {cells} maps"):
    st.stop()
with st.spinner(f"Computing {cells} maps in one pass…"):
    grids = cached.layer_grid(model, images, layers, targets, method)




def unlikely(index: int, image: int) -> bool:
    """The class explained is one the model all but rules out for this image (below LOW_PROBABILITY)."""
    return is_low_probability(selection.probabilities[image][index])


def class_label(index: int, image: int) -> str:
    below = f", below {LOW_PROBABILITY:g}" if unlikely(index, image) else ""
    return f"{model.class_names[index]} ({format_probability(selection.probabilities[image][index])}{below})"


def cell(image: np.ndarray, map_: np.ndarray, height: int | None, marked: bool = False) -> np.ndarray:
    """``marked``: framed in orange, as the map of a class below LOW_PROBABILITY."""
    if height is not None:
        image, map_ = render.thumbnail(image, height), render.thumbnail(map_, height)
    picture = render.overlay(image, map_.astype(np.float32) / 255, opacity, colormap, mode)
    return render.framed(picture) if marked else picture


def cell_picture(image: int, map_: np.ndarray, marked: bool) -> bytes:
    """A grid cell as JPEG bytes, recoloured and encoded once per map and display setting."""
    key = ("grid_cell", digests[image], cached.digest(map_), THUMB, opacity, colormap, mode, marked)
    return cached.picture(key, lambda: cell(selection.images[image], map_, THUMB, marked))


digests = [cached.digest(image) for image in selection.images]
column_labels = ["image"] + [infos[layer].heading for layer in layers]
weights = [1.0] + [1.0] * len(layers)
for b, (title, classes) in enumerate(bands):
    st.subheader(title)
    notes = [low_probability_note(name, model.class_names[classes[i]], selection.probabilities[i][classes[i]])
             for i, name in enumerate(selection.names) if unlikely(classes[i], i)]
    if notes:
        st.warning(" ".join(notes) + " Such maps are framed in orange.", icon="⚠️")
    for column, label in zip(st.columns(weights), column_labels):
        column.markdown(f"**{label}**")
    for i, name in enumerate(selection.names):
        grid = grids[b * len(selection.names) + i]
        columns = st.columns(weights)
        columns[0].image(photo(selection.images[i], THUMB, digests[i]), caption=f"{name}: {class_label(classes[i], i)}")
        marked = unlikely(classes[i], i)
        for column, map_ in zip(columns[1:], grid):
            column.image(cell_picture(i, map_, marked), caption=UNLIKELY_CAPTION if marked else None)


def grid_png() -> bytes:
    rows, labels = [], []
    for b, (_, classes) in enumerate(bands):
        for i, name in enumerate(selection.names):
            grid = grids[b * len(selection.names) + i]
            rows.append([selection.images[i]] + [cell(selection.images[i], m, None, unlikely(classes[i], i)) for m in grid])
            labels.append(f"{name}: {class_label(classes[i], i)}")
    return render.png_bytes(render.compose_grid(rows, labels, column_labels))


def cells_zip() -> bytes:
    files = {}
    for b, (_, classes) in enumerate(bands):
        for i, name in enumerate(selection.names):
            for layer, map_ in zip(layers, grids[b * len(selection.names) + i]):
                stem = render.safe_stem(f"{name}_{model.class_names[classes[i]]}_{layer}")
                files[stem] = cell(selection.images[i], map_, None, unlikely(classes[i], i))
    return render.zip_of_pngs(files)


downloads = st.columns(4)
downloads[0].download_button("Grid as PNG", grid_png, "layer_grid.png", "image/png", on_click="ignore",
                             key="grid_png")
downloads[1].download_button("Every cell (ZIP)", cells_zip, "layer_grid_cells.zip", "application/zip",
                             on_click="ignore", key="grid_zip")

with st.expander("Feature maps: what a layer's most active channels respond to"):
    columns = st.columns(3)
    feature_layer = columns[0].selectbox("Layer", layers, key="grid_features_layer")
    image_name = columns[1].selectbox("Image", selection.names, key="grid_features_image")
    count = param_widgets.widget(columns[2], view_settings.FEATURE_CHANNELS, "grid_features_count")
    image = selection.images[selection.names.index(image_name)]
    features = cached.feature_maps(model, image, feature_layer, count)
    st.caption(f"{feature_layer} has {infos[feature_layer].channels} channels at {infos[feature_layer].resolution}; "
               f"the {count} with the highest mean activation, each scaled on its own.")
    per_row = 8
    for start in range(0, count, per_row):
        row = st.columns(per_row)
        for column, channel, mean, map_ in zip(row, features.channels[start:], features.mean_activation[start:],
                                               features.maps[start:start + per_row]):
            picture = cached.picture(("feature_map", cached.digest(map_), colormap),
                                     lambda map_=map_: render.colorize(map_, colormap))
            column.image(picture, caption=f"channel {channel} · {mean:.2f}", width="stretch")
