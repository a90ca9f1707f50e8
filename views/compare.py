"""Method comparison: the same images and class through several methods, with scores that say which to trust."""

import time

import numpy as np
import streamlit as st

from explainers import REGISTRY, attribute, estimates, scores, unavailable_methods
from explainers.attribution import format_probability, is_low_probability, low_probability_note
from explainers.options import CURVE_STEPS
from explainers.reports import comparison, render
from explainers.scores import completeness as completeness_scores
from explainers.scores import sanity as sanity_scores
from ui import budget, cached, charts, param_widgets
from ui.selection import current
from ui.widgets import UNLIKELY_CAPTION, class_bands, overlay_controls, photo

DEFAULT_METHODS = ["saliency", "smoothgrad", "scorecam"]
LAYER_METHODS = [name for name, m in REGISTRY.items() if m.needs_layer]
THUMB = 200
SCORE_HELP = {
    "deletion": "Remove pixels, most important first, and follow the class probability: a faithful map makes it "
                "fall fast, so lower is better. Petsiuk et al. 2018 (RISE), arXiv:1806.07421.",
    "insertion": "Reveal pixels on a blurred copy, most important first: a faithful map makes the probability rise "
                 "fast, so higher is better. Petsiuk et al. 2018 (RISE), arXiv:1806.07421.",
    "sanity": "Re-draw the model's weights from the top layer down: a map that explains the model must change (low "
              "rank correlation with the original). Adebayo et al. 2018, arXiv:1810.03292.",
    "agreement": "Spearman rank correlation between two methods' maps of the same image: 1 = same ranking of pixels.",
}
TIMING_HELP = ("Seconds the method's maps took to compute (all images), kept with the maps: a map served from the "
               "cache keeps the time it took, and 'from cache' says so.")
SANITY_STATE = "cmp_sanity_last"  # the last sanity check run in this session: what it was asked, its result, its time

selection = current()
model = selection.model
st.title("Compare attribution methods")
st.caption("The same images and class through several methods side by side, scored for faithfulness.")
if not selection.names:
    st.info("Select or upload images in the sidebar.")
    st.stop()

top = st.columns([2, 1])
unavailable = unavailable_methods(model)
offered = [name for name in REGISTRY if name not in unavailable]
methods = top[0].multiselect("Methods", offered, default=[m for m in DEFAULT_METHODS if m in offered], key="cmp_methods",
                             format_func=lambda m: REGISTRY[m].label)
for reason in dict.fromkeys(unavailable.values()):  # one line per reason, in registry order
    names = ", ".join(REGISTRY[name].label for name, why in unavailable.items() if why == reason)
    top[0].caption(f"Not available here: {names}. {reason}")
(band,) = class_bands(top[1], "cmp_", model, selection.probabilities)
targets = [int(c) for c in band.classes]
if not methods:
    st.info("Choose at least one method.")
    st.stop()

settings: dict[str, dict] = {}
with st.expander("Method parameters"):
    columns = st.columns(3)
    for index, name in enumerate(methods):
        column = columns[index % 3]
        column.markdown(f"**{REGISTRY[name].label}**")
        params = param_widgets.draw(column, REGISTRY[name])
        layer = None
        if name in LAYER_METHODS:
            layer = column.selectbox("Layer", model.conv_layers, format_func=model.layer_label, index=model.conv_layers.index(model.default_cam_layer),
                                     key=f"cmp_layer_{name}")
        if not params and layer is None:
            column.caption("No parameters.")
        settings[name] = {"layer": layer, "params": params}

display = st.columns([2, 1, 1])
opacity, colormap = overlay_controls(display[0], display[1], "cmp_")
clip = display[2].select_slider("Clip at percentile", [90.0, 95.0, 99.0, 99.5, 100.0], 99.0, key="cmp_clip",
                                help="Gradient maps are spiky; clipping the top pixels makes their structure visible.")

digests = [cached.digest(image) for image in selection.images]
# The scores' steps slider is drawn below the maps, but what it holds is part of what this run computes.
steps = st.session_state.get("cmp_steps", CURVE_STEPS.default)
requested = {name: (settings[name]["layer"], settings[name]["params"]) for name in methods}
maps_estimate = estimates.comparison_seconds(model, selection.images, requested, targets, steps)
asked = (model.fingerprint, tuple(digests), tuple(int(t) for t in targets), cached.sanity_request(requested), steps)
if not budget.approved("cmp", asked, maps_estimate, "Computing these maps and their scores"):
    st.stop()

results: dict[str, object] = {}
progress = st.progress(0.0, "Computing maps…")
for index, name in enumerate(methods):
    progress.progress(index / len(methods), f"Computing {REGISTRY[name].label}…")
    results[name] = attribute(model, selection.images, name, targets=targets, layer=settings[name]["layer"],
                                     **settings[name]["params"])
progress.empty()


def cell(image_index: int, name: str, height: int) -> bytes:
    """One method's map over one image as JPEG bytes, recoloured and encoded once per map and display setting."""
    raw = results[name].raw[image_index]
    marked = unlikely[image_index]
    key = ("compare_cell", digests[image_index], cached.digest(raw), height, clip, opacity, colormap, marked)
    return cached.picture(key, lambda: comparison.comparison_cell(selection.images[image_index], raw, height, clip,
                                                                  opacity, colormap, marked))


def timing(result) -> str:
    """What the maps took to compute, and whether this run found them in the cache."""
    seconds = f"{result.compute_seconds:.2f} s"
    if result.cached == len(result.raw):
        return f"{seconds} · from cache"
    return f"{seconds} · {result.cached} of {len(result.raw)} from cache" if result.cached else seconds


explained = [float(selection.probabilities[i][targets[i]]) for i in range(len(selection.names))]
unlikely = [is_low_probability(p) for p in explained]
if any(unlikely):
    st.warning(" ".join(low_probability_note(name, model.class_names[targets[i]], explained[i])
                        for i, name in enumerate(selection.names) if unlikely[i])
               + " Such maps are framed in orange.", icon="⚠️")

header = st.columns([1] + [1] * len(methods))
header[0].markdown("**image**")
for column, name in zip(header[1:], methods):
    column.markdown(f"**{REGISTRY[name].label}**  \n{timing(results[name])}",
                    help=f"{REGISTRY[name].reference}. {TIMING_HELP}")
for i, image_name in enumerate(selection.names):
    row = st.columns([1] + [1] * len(methods))
    caption = f"{image_name}: {model.class_names[targets[i]]} ({format_probability(explained[i])})"
    row[0].image(photo(selection.images[i], THUMB, digests[i]),
                 caption=f"{caption} {UNLIKELY_CAPTION}" if unlikely[i] else caption)
    for column, name in zip(row[1:], methods):
        notes = [UNLIKELY_CAPTION if unlikely[i] else None, completeness_scores.gap_caption(results[name], i)]
        column.image(cell(i, name, THUMB), caption=" · ".join(n for n in notes if n) or None)
for advice in completeness_scores.completeness_advice(results, selection.names):
    st.warning(advice, icon="⚠️")

st.subheader("Which map to trust")
steps = param_widgets.widget(st, CURVE_STEPS, "cmp_steps")
curves = {}
with st.spinner("Scoring deletion and insertion…"):
    for name in methods:
        curves[name] = scores.deletion_insertion(model, selection.images, results[name], steps=steps)
names, agreement = cached.agreement({name: result.raw for name, result in results.items()})


def draw_sanity(checks: dict, seconds: float) -> None:
    """The sanity check's curves (rank correlation per stage, each method in its colour), verdict and time."""
    correlations = np.concatenate([check.correlations.ravel() for check in checks.values()])
    key = ("cmp_sanity", tuple(checks), tuple(tuple(c.layers_randomized) for c in checks.values()),
           cached.digest(correlations))
    st.altair_chart(cached.chart(key, lambda: charts.sanity_chart(checks)), width="stretch")
    flagged = [REGISTRY[name].label for name, check in checks.items() if check.flagged]
    if flagged:
        st.warning(f"Barely changes when the weights are destroyed (mean rank correlation above "
                   f"{sanity_scores.SANITY_THRESHOLD:g}, the dotted line, at the last stage), so it explains the image "
                   f"more than the model: {', '.join(flagged)}.")
    else:
        st.success("Every method's map changes when the model's weights are destroyed.")
    computed = sum(check.seconds for check in checks.values())
    st.caption(f"Dotted line: the flag threshold, {sanity_scores.SANITY_THRESHOLD:g}. This check took {seconds:.1f} s "
               f"when it ran; its maps took {computed:.1f} s to compute.")


per_image_scores = comparison.scores_table(results, curves, selection.names, model.class_names, selection.probabilities)
summary = comparison.method_summary(per_image_scores)
labels = tuple(REGISTRY[n].label for n in methods)
complete = completeness_scores.reporting(results)  # methods whose maps claim to sum to f(x) - f(x0)
tabs = st.tabs(["Deletion and insertion", "Sanity check", "Agreement", "Runtime"] + (["Completeness"] if complete else []))
with tabs[0]:
    st.dataframe(summary[["method", "deletion AUC", "insertion AUC"]], hide_index=True, column_config={
        "deletion AUC": st.column_config.NumberColumn(format="%.3f", help=SCORE_HELP["deletion"]),
        "insertion AUC": st.column_config.NumberColumn(format="%.3f", help=SCORE_HELP["insertion"]),
    })
    plotted = np.stack([np.stack([curves[n].fractions, curves[n].deletion.mean(0), curves[n].insertion.mean(0)])
                        for n in methods])
    st.altair_chart(cached.chart(("cmp_curves", labels, cached.digest(plotted)),
                                 lambda: charts.curves_chart({n: curves[n] for n in methods})), width="stretch")
    st.caption(f"Mean over the {len(selection.names)} images. {SCORE_HELP['deletion']} {SCORE_HELP['insertion']}")
with tabs[1]:
    st.caption(SCORE_HELP["sanity"])
    sanity_methods = {n: (settings[n]["layer"], settings[n]["params"]) for n in methods}
    sanity_asked = (model.fingerprint, model.preprocessing, tuple(digests), tuple(int(t) for t in targets),
                    cached.sanity_request(sanity_methods))
    st.caption(sanity_scores.describe_stages(model, len(methods), len(selection.names)))
    last = st.session_state.get(SANITY_STATE)
    if last is not None and last["asked"] == sanity_asked:
        draw_sanity(last["checks"], last["seconds"])
    else:
        estimate = scores.sanity.estimate_seconds(model, selection.images, sanity_methods, results)
        cost = estimates.describe(estimate)
        if last is not None:
            st.info("The last sanity check was run for other methods, images, classes or parameters; its result is "
                    "hidden until it runs for these.")
        slot = st.empty()  # the button goes once it is pressed: its estimate no longer applies
        if budget.allowed(estimate, "The sanity check") and slot.button(
                f"{'Run again' if last is not None else 'Run the sanity check'} ({cost})", key="cmp_sanity_run"):
            slot.empty()
            with st.spinner(f"Randomising a copy of the model and computing its maps ({cost})…"):
                start = time.perf_counter()
                checks = cached.sanity_checks(model, selection.images, sanity_methods, targets)
                took = time.perf_counter() - start
            st.session_state[SANITY_STATE] = {"asked": sanity_asked, "checks": checks, "seconds": took}
            draw_sanity(checks, took)
with tabs[2]:
    st.caption(SCORE_HELP["agreement"])

    st.altair_chart(cached.chart(("cmp_agreement", tuple(names), cached.digest(agreement)),
                                 lambda: charts.agreement_chart(names, agreement)),
                    width="stretch", height=60 * len(names) + 40)
with tabs[3]:
    st.dataframe(summary[["method", comparison.TOTAL_SECONDS, "maps from cache"]], hide_index=True, column_config={
        comparison.TOTAL_SECONDS: st.column_config.NumberColumn(format="%.2f", help=TIMING_HELP),
        "maps from cache": st.column_config.NumberColumn(
            help=f"How many of the {len(selection.names)} maps this run found in the cache instead of computing."),
    })
    st.caption(comparison.TIMING_NOTE)
if complete:
    with tabs[4]:
        st.dataframe(completeness_scores.completeness_table(results, selection.names), hide_index=True, column_config={
            completeness_scores.GAP: st.column_config.NumberColumn(format="percent",
                                                                   help=completeness_scores.GAP_HELP)})
        st.caption(completeness_scores.GAP_HELP)


row_labels = [comparison.row_label(n, model.class_names[targets[i]], explained[i]) for i, n in enumerate(selection.names)]


def grid_png() -> bytes:
    return render.png_bytes(comparison.comparison_grid(selection.images, row_labels, results, clip, opacity, colormap,
                                                       unlikely))


downloads = st.columns(4)
downloads[0].download_button("Comparison grid (PNG)", grid_png, "comparison.png", "image/png", on_click="ignore",
                             key="cmp_png")
downloads[1].download_button("Scores per image (CSV)", lambda: per_image_scores.to_csv(index=False).encode(),
                             "scores.csv", "text/csv", on_click="ignore", key="cmp_csv")


ran = st.session_state.get(SANITY_STATE)
reported_sanity = ran["checks"] if ran and ran["asked"] == sanity_asked else None  # only when run for these maps


def report() -> str:
    return comparison.report_html(model.display_name, selection.images, row_labels, results, curves, per_image_scores,
                                  agreement, clip, opacity, colormap, selection.probabilities, selection.names,
                                  model.class_names, reported_sanity)


downloads[2].download_button("Export report (HTML)", report, "comparison_report.html", "text/html", on_click="ignore",
                             key="cmp_report", help="One file with every picture inside; opens offline.")
