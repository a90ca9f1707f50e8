"""What the model learned: inputs that maximise a class's logit or a layer's channels (activation maximisation)."""

import dataclasses
import time

import numpy as np
import streamlit as st

from explainers import learned
from explainers.learned import class_index
from explainers.methods.maps import upsample
from explainers.parameterisations import PARAMETERISATIONS, PIXEL
from explainers.reports import render
from ui import budget, cached, param_widgets, view_settings
from ui.selection import current
from ui.widgets import photo

THUMB = 180
RESULT = "learned_result"  # the last visualisation run in this session: what it was asked and its pictures
SIDE_BY_SIDE = "learned_beside_pixels"  # the toggle: each picture beside its pixel-space counterpart

selection = current()
model = selection.model

st.title("What the model learned")
st.caption("Each picture is an input optimised, from a grey start, to raise one class's logit or one channel's "
           "activation (summed over positions) as far as it goes (tf-keras-vis's ActivationMaximization). What the "
           "optimiser changes is the parameterisation: by default the picture's spectrum, scaled by 1/f, in "
           "decorrelated colours, seen through random shifts, scales and rotations (Olah et al. 2017), so the "
           "picture holds shapes a person can read; MaCo changes only the spectrum's phase (Fel et al. 2023); pixel "
           "space changes the pixels, which the model reads and a person mostly does not. It shows what the model "
           "looks for, not a photo of the class. Erhan et al. 2009; Simonyan et al. 2013, arXiv:1312.6034.")

own = learned.params_for(model)  # the model's own defaults (the jitter scales with its picture)
by_name = {param.name: param for param in own.params}


def setting_widget(container, name: str):
    return param_widgets.widget(container, by_name[name], param_widgets.key(own.name, name, view_settings.LEARNED_PREFIX))


left, right = st.columns([3, 1])
chosen = setting_widget(left, "parameterisation")
left.caption(f"{PARAMETERISATIONS[chosen].label}: {PARAMETERISATIONS[chosen].description}.")
beside_pixels = chosen != PIXEL and right.toggle(
    "Beside pixel space", False, key=SIDE_BY_SIDE,
    help="Also optimise each target in pixel space (the same steps and seed) and show the two side by side: the "
         "run takes twice as long.")
with st.expander("Optimisation settings"):
    # Only the settings that shape the chosen parameterisation: the pixel-only ones change nothing elsewhere.
    shown_params = [param for param in own.params if param.name != "parameterisation" and (
        chosen == PIXEL or param.name not in learned.PIXEL_ONLY)]
    row = st.columns(len(shown_params))
    values = {param.name: setting_widget(column, param.name) for column, param in zip(row, shown_params)}
    settings = learned.settings_for(model, parameterisation=chosen, **values)

classes_tab, channels_tab = st.tabs(["Classes", "Channels"])
with classes_tab:
    tops = [model.class_names[int(p.argmax())] for p in selection.probabilities]
    names = st.multiselect("Classes", model.class_names, default=list(dict.fromkeys(tops))[:4] or model.class_names[:1],
                           key="learned_classes", help="By default, the top class of each image in the sidebar.")
    request = ("classes", model.fingerprint, tuple(class_index(model, n) for n in names), settings, beside_pixels)
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
        channel_request = ("channels", model.fingerprint, layer, tuple(channels), settings, beside_pixels)

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
    runs_asked = 2 if beside_pixels else 1  # beside pixel space: a second run of as many pictures
    estimate, busy = (runs_asked * t for t in learned.estimate_range(model, targets, settings))  # own or shared cores
    kind = {"the classes": ("class", "classes"), "the channels": ("channel", "channels")}[tab][targets != 1]
    button = st.empty()  # emptied once the run is done: the pictures answer it
    if budget.allowed(estimate, f"Visualising {targets} {kind}") and button.button(
            f"Visualise {targets} {kind} ({learned.describe_range(estimate, busy)})", key="learned_run"):
        bar, start = st.progress(0.0, "Starting…"), time.perf_counter()

        def report(done: int, total: int) -> None:
            left_s = (time.perf_counter() - start) / done * (total - done)
            bar.progress(done / total, f"Step {done} of {total}, about {left_s:.0f} s left")

        params = dataclasses.asdict(settings)
        # Each run's settings: the chosen parameterisation's, then (beside pixel space) the same with pixels.
        asked_params = [params] + ([{**params, "parameterisation": PIXEL}] if beside_pixels else [])
        if tab == "the classes":
            runs = [learned.class_run(model, list(asked[2]), report, **each) for each in asked_params]
            names = [model.class_names[c] for c in asked[2]]
        else:
            runs = [learned.channel_run(model, layer, channels, report, **each) for each in asked_params]
            names = [f"{layer} channel {c}" for c in channels]
        # Each target's ``variants`` pictures follow one another.
        labels = [name if settings.variants == 1 else f"{name} ({v + 1} of {settings.variants})"
                  for name in names for v in range(settings.variants)]
        bar.empty()
        button.empty()
        # Encoded once here, not on every rerun that shows the result.
        last = st.session_state[RESULT] = {
            "asked": asked, "runs": [(run.label, run.pictures, run.unmoved) for run in runs], "labels": labels,
            "animation": learned.animation_gif(runs[0].frames), "seconds": time.perf_counter() - start,
        }
    else:
        st.stop()

labels, runs = last["labels"], last["runs"]
stretch = st.toggle("Stretch contrast for display", True, key="learned_stretch",
                    help="Spreads each picture's 1st to 99th percentile over the full range. The model was shown, "
                         "and its top-3 describe, the pictures as optimised; the downloads are as shown.")
if ("shown", stretch) not in last:  # stretched once per run and setting, not on every rerun
    last[("shown", stretch)] = [[render.stretch_contrast(p) if stretch else p for p in pictures]
                                for _, pictures, _ in runs]
shown = last[("shown", stretch)]
settings_asked = asked[-2]
each_target = np.repeat(asked[2], settings_asked.variants) if asked[0] == "classes" else None


def activation_picture(i: int) -> bytes:
    """Channel ``channels[i]``'s activation over the first image, drawn and encoded once per server."""
    image = selection.images[0]
    key = ("learned_activation", cached.digest(image), model.fingerprint, layer, channels[i], THUMB)
    return cached.picture(key, lambda: render.thumbnail(
        render.overlay(image, upsample(features.maps[i : i + 1], image.shape[:2])[0]), THUMB))


target_word = "class" if asked[0] == "classes" else "channel"
seen = []  # per run: (top-3 text or the unmoved note, the top class) per picture
for _, pictures, unmoved in runs:
    probabilities = cached.predict(model, list(pictures))
    tops = []
    for i, row in enumerate(probabilities):
        top = np.argsort(-row)[:3]
        # A picture the optimisation did not move is no result: its top classes would read as a confident answer.
        text = (learned.UNMOVED_NOTE.format(target=target_word) if unmoved[i]
                else "The model sees: " + " · ".join(f"{model.class_names[c]} {row[c]:.2f}" for c in top))
        tops.append((text, int(top[0])))
    seen.append(tops)

beside = len(runs) > 1
with_activation = asked[0] == "channels" and features is not None
variants = settings_asked.variants
# Beside pixel space, each target's pictures (and a channel's activation) stand together: two targets a row of 4.
group = len(runs) + with_activation if beside else 1
per_row = 4 if group <= 2 else group
columns = st.columns(per_row)
for i, label in enumerate(labels):
    slot = (i % (per_row // group)) * group
    if beside and i and slot == 0:
        columns = st.columns(per_row)
    for r, (run_label, _, _) in enumerate(runs):
        column = columns[slot + r]
        column.image(photo(shown[r][i], THUMB), caption=f"{label}, {run_label}. {seen[r][i][0]}")
    target = i // variants
    if with_activation and i % variants == 0 and target < len(features.maps):
        column = columns[slot + len(runs)] if beside else column
        column.image(activation_picture(target), caption=f"channel {channels[target]} on {selection.names[0]}")
for run_label, pictures, unmoved in runs:
    unmoved = np.asarray(unmoved)
    if unmoved.any():
        st.warning(f"The optimisation did not move {int(unmoved.sum())} of the {len(pictures)} pictures "
                   f"({run_label}: their target's score did not rise, or the picture came out flat): they show "
                   "nothing, whatever the model's top classes for them. A dead channel or a class the picture cannot "
                   "change never moves; a weak one may, with lighter regularisers or more steps.")
if asked[0] == "classes":
    counts = [sum(top == c and not unmoved[i] for i, ((_, top), c) in enumerate(zip(tops, each_target)))
              for tops, (_, _, unmoved) in zip(seen, runs)]
    told = [f"{count} of {len(labels)}" for count in counts]
    others = "".join(f"; {count} in {run_label}" for count, (run_label, _, _) in zip(told[1:], runs[1:]))
    st.caption(f"The model classifies {told[0]} visualisations as the class they were made for ({runs[0][0]}"
               f"{others}). Computed in {last['seconds']:.0f} s.")
with st.expander(f"How {labels[0]} took shape (animation)"):
    st.image(last["animation"], width=320,
             caption=f"{labels[0]}, {runs[0][0]}: every {max(1, settings_asked.steps // learned.FRAMES)} of "
                     f"{settings_asked.steps} steps, from the grey start to the picture above.")
downloads = st.columns(2)
downloads[1].download_button("Animation (GIF)", last["animation"], "optimisation.gif", "image/gif", key="learned_gif")
if ("png", stretch) not in last:
    last[("png", stretch)] = render.png_bytes(render.compose_grid(shown, [label for label, _, _ in runs], labels))
grid = last[("png", stretch)]
downloads[0].download_button("Visualisations (PNG)", grid, "visualizations.png", "image/png", key="learned_png")
