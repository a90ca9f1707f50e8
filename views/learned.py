"""What the model learned: inputs that maximise a class's logit or a layer's channels (activation maximisation)."""

import dataclasses
import time

import numpy as np
import streamlit as st

from explainers import learned
from explainers.learned import class_index
from explainers.methods.maps import upsample
from explainers.reports import render
from ui import budget, cached, param_widgets, view_settings
from ui.selection import current
from ui.widgets import photo

THUMB = 180
RESULT = "learned_result"  # the last visualisation run in this session: what it was asked and its pictures

selection = current()
model = selection.model

st.title("What the model learned")
st.caption("Each picture is an input optimised, from a grey start, to raise one class's logit or one channel's "
           "activation (summed over positions) as far as it goes (tf-keras-vis's ActivationMaximization, with total-variation and norm "
           "regularisers, jitter and rotation). It shows what the model looks for, not a photo of the class. "
           "Erhan et al. 2009; Simonyan et al. 2013, arXiv:1312.6034.")

with st.expander("Optimisation settings"):
    own = learned.params_for(model)  # the model's own defaults (the jitter scales with its picture)
    row = st.columns(len(own.params))
    settings = learned.settings_for(model, **{
        param.name: param_widgets.widget(column, param, param_widgets.key(own.name, param.name, view_settings.LEARNED_PREFIX))
        for column, param in zip(row, own.params)})

classes_tab, channels_tab = st.tabs(["Classes", "Channels"])
with classes_tab:
    tops = [model.class_names[int(p.argmax())] for p in selection.probabilities]
    names = st.multiselect("Classes", model.class_names, default=list(dict.fromkeys(tops))[:4] or model.class_names[:1],
                           key="learned_classes", help="By default, the top class of each image in the sidebar.")
    request = ("classes", model.fingerprint, tuple(class_index(model, n) for n in names), settings)
with channels_tab:
    no_channels = learned.channels_unavailable(model)
    if no_channels:
        st.info(no_channels)
        layer, features, channels, channel_request = None, None, [], None
    else:
        left, right = st.columns([2, 1])
        layer = left.selectbox("Layer", model.conv_layers, index=len(model.conv_layers) // 2, key="learned_layer")
        count = param_widgets.widget(right, view_settings.LEARNED_CHANNELS, "learned_channel_count")
        if selection.images:
            features = cached.feature_maps(model, selection.images[0], layer, count)
            channels = [int(c) for c in features.channels]
            st.caption(f"The {count} channels of {layer} most active on {selection.names[0]}, most active first; "
                       "beside each visualisation, that channel's activation on the image.")
        else:
            features, channels = None, list(range(count))
        channel_request = ("channels", model.fingerprint, layer, tuple(channels), settings)

tab = st.radio("Visualise", ["the classes", "the channels"], horizontal=True, key="learned_target")
asked = request if tab == "the classes" else channel_request
targets = len(asked[2]) if tab == "the classes" else len(channels)
if tab == "the channels" and no_channels:
    st.info(no_channels)
    st.stop()
if not targets:
    st.info("Choose at least one class.")
    st.stop()

last = st.session_state.get(RESULT)
if last is None or last["asked"] != asked:
    estimate, busy = learned.estimate_range(model, targets, settings)  # cores of its own, or shared
    kind = {"the classes": ("class", "classes"), "the channels": ("channel", "channels")}[tab][targets != 1]
    button = st.empty()  # emptied once the run is done: the pictures answer it
    if budget.allowed(estimate, f"Visualising {targets} {kind}") and button.button(
            f"Visualise {targets} {kind} ({learned.describe_range(estimate, busy)})", key="learned_run"):
        bar, start = st.progress(0.0, "Starting…"), time.perf_counter()

        def report(done: int, total: int) -> None:
            left_s = (time.perf_counter() - start) / done * (total - done)
            bar.progress(done / total, f"Step {done} of {total}, about {left_s:.0f} s left")

        params = dataclasses.asdict(settings)
        if tab == "the classes":
            run = learned.class_run(model, list(asked[2]), report, **params)
            labels = [model.class_names[c] for c in asked[2]]
        else:
            run = learned.channel_run(model, layer, channels, report, **params)
            labels = [f"{layer} channel {c}" for c in channels]
        pictures, frames = run.pictures, run.frames
        bar.empty()
        button.empty()
        # Encoded once here, not on every rerun that shows the result.
        last = st.session_state[RESULT] = {
            "asked": asked, "pictures": pictures, "labels": labels, "animation": learned.animation_gif(frames),
            "unmoved": run.unmoved,
            "seconds": time.perf_counter() - start,
        }
    else:
        st.stop()

pictures, labels = last["pictures"], last["labels"]
stretch = st.toggle("Stretch contrast for display", True, key="learned_stretch",
                    help="Spreads each picture's 1st to 99th percentile over the full range. The model was shown, "
                         "and its top-3 describe, the pictures as optimised; the downloads are as shown.")
if ("shown", stretch) not in last:  # stretched once per run and setting, not on every rerun
    last[("shown", stretch)] = [render.stretch_contrast(p) if stretch else p for p in pictures]
shown = last[("shown", stretch)]


def activation_picture(i: int) -> bytes:
    """Channel ``channels[i]``'s activation over the first image, drawn and encoded once per server."""
    image = selection.images[0]
    key = ("learned_activation", cached.digest(image), model.fingerprint, layer, channels[i], THUMB)
    return cached.picture(key, lambda: render.thumbnail(
        render.overlay(image, upsample(features.maps[i : i + 1], image.shape[:2])[0]), THUMB))


probabilities = cached.predict(model, list(pictures))
columns = st.columns(4)
unmoved = np.asarray(last.get("unmoved", [False] * len(pictures)))  # a result kept from before the check: none
for i, (picture, label) in enumerate(zip(shown, labels)):
    top = np.argsort(-probabilities[i])[:3]
    seen = " · ".join(f"{model.class_names[c]} {probabilities[i][c]:.2f}" for c in top)
    column = columns[i % len(columns)]
    # A picture the optimisation did not move is no result: its top classes would read as a confident answer.
    caption = (learned.UNMOVED_NOTE.format(target="class" if asked[0] == "classes" else "channel") if unmoved[i]
               else f"The model sees: {seen}")
    column.image(photo(picture, THUMB), caption=f"{label}. {caption}")
    if asked[0] == "channels" and features is not None and i < len(features.maps):
        column.image(activation_picture(i), caption=f"channel {channels[i]} on {selection.names[0]}")
if unmoved.any():
    st.warning(f"The optimisation did not move {int(unmoved.sum())} of the {len(pictures)} pictures (their target's "
               "score did not rise, or the picture came out flat): they show nothing, whatever the model's top "
               "classes for them. A dead channel or a class the picture cannot change never moves; a weak one "
               "may, with lighter regularisers or more steps.")
if asked[0] == "classes":
    hits = sum(int(probabilities[i].argmax()) == c and not unmoved[i] for i, c in enumerate(asked[2]))
    st.caption(f"The model classifies {hits} of {len(pictures)} visualisations as the class they were made for. "
               f"Computed in {last['seconds']:.0f} s.")
with st.expander(f"How {labels[0]} took shape (animation)"):
    st.image(last["animation"], width=320,
             caption=f"{labels[0]}: every {max(1, asked[-1].steps // learned.FRAMES)} of {asked[-1].steps} steps, "
                     "from the grey start to the picture above.")
downloads = st.columns(2)
downloads[1].download_button("Animation (GIF)", last["animation"], "optimisation.gif", "image/gif", key="learned_gif")
if ("png", stretch) not in last:
    last[("png", stretch)] = render.png_bytes(render.compose_grid([shown], [""], labels))
grid = last[("png", stretch)]
downloads[0].download_button("Visualisations (PNG)", grid, "visualizations.png", "image/png", key="learned_png")
