"""Method comparison: the same images and class through several methods, with scores that say which to trust."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainers import REGISTRY, scores, unavailable_methods
from explainers.reports import comparison, render
from ui import cached, method_params
from ui.selection import current
from ui.widgets import photo

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
class_mode = top[1].radio("Class", ["Each image's top class", "Each image's least likely class", "One class by name"],
                          key="cmp_class_mode")
if class_mode == "One class by name":
    chosen = top[1].selectbox("Class", range(len(model.class_names)), key="cmp_class",
                              index=int(selection.probabilities[0].argmax()), format_func=lambda c: model.class_names[c])
    targets = [chosen] * len(selection.names)
elif class_mode == "Each image's least likely class":
    targets = [int(p.argmin()) for p in selection.probabilities]
else:
    targets = [int(p.argmax()) for p in selection.probabilities]
if not methods:
    st.info("Choose at least one method.")
    st.stop()

settings: dict[str, dict] = {}
with st.expander("Method parameters"):
    columns = st.columns(3)
    for index, name in enumerate(methods):
        column = columns[index % 3]
        column.markdown(f"**{REGISTRY[name].label}**")
        params = method_params.draw(column, REGISTRY[name])
        layer = None
        if name in LAYER_METHODS:
            layer = column.selectbox("Layer", model.conv_layers, index=model.conv_layers.index(model.default_cam_layer),
                                     key=f"cmp_layer_{name}")
        if not params and layer is None:
            column.caption("No parameters.")
        settings[name] = {"layer": layer, "params": params}

display = st.columns([2, 1, 1])
opacity = display[0].slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="cmp_opacity")
colormap = display[1].selectbox("Colormap", render.COLORMAPS, key="cmp_colormap")
clip = display[2].select_slider("Clip at percentile", [90.0, 95.0, 99.0, 99.5, 100.0], 99.0, key="cmp_clip",
                                help="Gradient maps are spiky; clipping the top pixels makes their structure visible.")

results: dict[str, object] = {}
progress = st.progress(0.0, "Computing maps…")
for index, name in enumerate(methods):
    progress.progress(index / len(methods), f"Computing {REGISTRY[name].label}…")
    results[name] = cached.attribute(model, selection.images, name, targets=targets, layer=settings[name]["layer"],
                                     **settings[name]["params"])
progress.empty()


def cell(image_index: int, name: str, height: int) -> bytes:
    """One method's map over one image as JPEG bytes, recoloured and encoded once per map and display setting."""
    raw = results[name].raw[image_index]
    key = ("compare_cell", digests[image_index], cached.digest(raw), height, clip, opacity, colormap)
    return cached.picture(key, lambda: comparison.comparison_cell(selection.images[image_index], raw, height, clip,
                                                                  opacity, colormap))


digests = [cached.digest(image) for image in selection.images]


header = st.columns([1] + [1] * len(methods))
header[0].markdown("**image**")
for column, name in zip(header[1:], methods):
    result = results[name]
    timing = "cached" if result.cached == len(selection.names) else f"{result.seconds:.2f} s"
    column.markdown(f"**{REGISTRY[name].label}**  \n{timing}", help=REGISTRY[name].reference)
for i, image_name in enumerate(selection.names):
    row = st.columns([1] + [1] * len(methods))
    row[0].image(photo(selection.images[i], THUMB, digests[i]),
                 caption=f"{image_name}: {model.class_names[targets[i]]} ({selection.probabilities[i][targets[i]]:.2f})")
    for column, name in zip(row[1:], methods):
        column.image(cell(i, name, THUMB))

st.subheader("Which map to trust")
steps = st.select_slider("Deletion / insertion steps", [8, 16, 32, 64], 16, key="cmp_steps")
curves = {}
with st.spinner("Scoring deletion and insertion…"):
    for name in methods:
        curves[name] = scores.deletion_insertion(model, selection.images, results[name], steps=steps)
names, agreement = cached.agreement(results)

per_image_scores = comparison.scores_table(results, curves, selection.names, model.class_names)
summary = comparison.method_summary(per_image_scores)
tabs = st.tabs(["Deletion and insertion", "Sanity check", "Agreement", "Runtime"])
with tabs[0]:
    st.dataframe(summary[["method", "deletion AUC", "insertion AUC"]], hide_index=True, column_config={
        "deletion AUC": st.column_config.NumberColumn(format="%.3f", help=SCORE_HELP["deletion"]),
        "insertion AUC": st.column_config.NumberColumn(format="%.3f", help=SCORE_HELP["insertion"]),
    })
    labels = tuple(REGISTRY[n].label for n in methods)
    means = {(n, curve): getattr(curves[n], curve).mean(axis=0) for n in methods for curve in ("deletion", "insertion")}

    def curves_chart() -> alt.Chart:
        long = pd.concat([
            pd.DataFrame({"method": REGISTRY[n].label, "curve": curve, "fraction of pixels": curves[n].fractions,
                          "class probability": means[n, curve]})
            for n in methods for curve in ("deletion", "insertion")
        ])
        return alt.Chart(long).mark_line(point=True).encode(
            x="fraction of pixels:Q", y="class probability:Q", color="method:N",
            strokeDash="curve:N", tooltip=["method", "curve", "fraction of pixels", "class probability"],
        )

    plotted = np.stack([np.stack([curves[n].fractions, means[n, "deletion"], means[n, "insertion"]]) for n in methods])
    st.altair_chart(cached.chart(("cmp_curves", labels, cached.digest(plotted)), curves_chart), width="stretch")
    st.caption(f"Mean over the {len(selection.names)} images. {SCORE_HELP['deletion']} {SCORE_HELP['insertion']}")
with tabs[1]:
    st.caption(SCORE_HELP["sanity"])
    if st.toggle("Run the sanity check (a copy of the model, one map per stage and method)", key="cmp_sanity"):
        rows, flagged = [], []
        for name in methods:
            with st.spinner(f"Randomising the model for {REGISTRY[name].label}…"):
                check = cached.sanity_check(model, selection.images, name, targets, settings[name]["layer"],
                                            settings[name]["params"])
            if check.flagged:
                flagged.append(REGISTRY[name].label)
            rows += [{"method": REGISTRY[name].label, "layers randomised": count, "down to": layer,
                      "rank correlation": corr.mean()}
                     for count, layer, corr in zip(check.layers_randomized, check.deepest_layer, check.correlations)]
        sanity = pd.DataFrame(rows)
        st.altair_chart(alt.Chart(sanity).mark_line(point=True).encode(
            x=alt.X("layers randomised:Q", title="weighted layers re-drawn, from the top"),
            y=alt.Y("rank correlation:Q", scale=alt.Scale(domain=[-0.2, 1])), color="method:N",
            tooltip=["method", "layers randomised", "down to", "rank correlation"],
        ), width="stretch")
        if flagged:
            st.warning(f"Barely changes when the weights are destroyed, so it explains the image more than the model: "
                       f"{', '.join(flagged)}.")
        else:
            st.success("Every method's map changes when the model's weights are destroyed.")
with tabs[2]:
    st.caption(SCORE_HELP["agreement"])

    def agreement_chart() -> alt.LayerChart:
        cells = pd.DataFrame([{"a": REGISTRY[a].label, "b": REGISTRY[b].label, "spearman": agreement[i, j]}
                              for i, a in enumerate(names) for j, b in enumerate(names)])
        base = alt.Chart(cells).encode(x=alt.X("a:N", title=None, axis=alt.Axis(labelAngle=0)),
                                       y=alt.Y("b:N", title=None))
        return (base.mark_rect().encode(color=alt.Color("spearman:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue")))
                + base.mark_text().encode(text=alt.Text("spearman:Q", format=".2f")))

    st.altair_chart(cached.chart(("cmp_agreement", tuple(names), cached.digest(agreement)), agreement_chart),
                    width="stretch", height=60 * len(names) + 40)
with tabs[3]:
    st.dataframe(pd.DataFrame({
        "method": [REGISTRY[n].label for n in methods],
        "seconds (this run)": [results[n].seconds for n in methods],
        "maps from cache": [f"{results[n].cached}/{len(selection.names)}" for n in methods],
    }), hide_index=True)


row_labels = [f"{n}: {model.class_names[targets[i]]}" for i, n in enumerate(selection.names)]


def grid_png() -> bytes:
    return render.png_bytes(comparison.comparison_grid(selection.images, row_labels, results, clip, opacity, colormap))


downloads = st.columns(4)
downloads[0].download_button("Comparison grid (PNG)", grid_png, "comparison.png", "image/png", on_click="ignore",
                             key="cmp_png")
downloads[1].download_button("Scores per image (CSV)", lambda: per_image_scores.to_csv(index=False).encode(),
                             "scores.csv", "text/csv", on_click="ignore", key="cmp_csv")


def report() -> str:
    return comparison.report_html(model.display_name, selection.images, row_labels, results, curves, per_image_scores,
                                  agreement, clip, opacity, colormap)


downloads[2].download_button("Export report (HTML)", report, "comparison_report.html", "text/html", on_click="ignore",
                             key="cmp_report", help="One file with every picture inside; opens offline.")
