"""Your dataset: run a labelled image folder through a model, see where it errs and what it looks at per class."""

import hashlib
from typing import NamedTuple

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import explainers as ex
from explainers import estimates
from explainers.datasets import analysis
from explainers.datasets.evaluation import Evaluation, Progress, read_image
from explainers.datasets.mapping import BY_NAME, BY_POSITION, BY_WORDNET_ID
from explainers.errors import counted, echo
from explainers.options import AUTO, DATASET
from explainers.reports import dataset as dataset_report
from explainers.reports import render
from ui import budget, cached, concepts_tab, data_source, param_widgets, strategies_tab
from ui.data_source import DEMO, DEMOS, SERVER_FOLDER, SHORTCUT_DEMO
from ui.selection import current
from ui.stops import stop, stopped_on_input_error
from ui.widgets import overlay_controls, photo
from ui.zip_upload import unpacked_zip

RESULTS_FOLDER = "A results folder on the server"
MAPPING, BATCH = DATASET.params
MAPPINGS = {AUTO: "Automatic", BY_POSITION: "Sorted folders = outputs 0, 1, 2…", BY_NAME: "Folder name = class name",
            BY_WORDNET_ID: "Folder name = WordNet id (n01440764…)"}
GALLERY_LIMIT = 24
MATRIX_CELL = (16, 80)  # px: the smallest and largest side of a confusion matrix cell
MATRIX_WIDTH = 720  # px: the matrix's width, as cell sizes within MATRIX_CELL allow
ATTENTION_CLASSES = 12  # past 24 classes with images, the attention tab starts on this many with the most mistakes
_RESULTS, _STOPPED, _SCANS = "dataset_results", "dataset_stopped", "ds_scans"
TABS = ["Confusion matrix", "Per class", "Per image", "Attention per class", "Strategies", "Concepts"]
TAB_KEY = "ds_tab"

selection = current()
st.title("Your dataset")
st.caption("A folder with one subfolder per class, through the model: where it errs, and what it looks at per class.")

roots = ex.data_roots.configured_roots()
source = data_source.choose_source("ds_source", roots, RESULTS_FOLDER, (DEMO, SHORTCUT_DEMO))


def _some_names(names: list[str], count: int = 10) -> str:
    """The first ``count`` of the user's folder names, each shortened, for a message."""
    return ", ".join(echo(name, 40) for name in names[:count]) + ("…" if len(names) > count else "")


def _results_folder() -> Evaluation:
    """The evaluation a results folder inside the data roots holds; the page stops with one sentence otherwise."""
    path = st.text_input("Results folder", key="ds_results_path", placeholder=str(roots[0] / "results"),
                         help="A folder `python -m explainers evaluate --out` wrote (results.json and rows/*.parquet), "
                              f"inside {ex.data_roots.describe(roots)}; a relative path starts in {roots[0]}.").strip()
    if not path:
        stop("Give a results folder above: it opens with no model pass.", "info")
    with stopped_on_input_error(), st.spinner("Reading the results…"):
        opened = cached.open_results(ex.data_roots.resolve_inside(path, roots), roots)
    st.caption(f"Results of **{opened.model_name or 'an unnamed model'}** ({opened.runner}) on {echo(opened.root_name)}, "
               f"read from the folder with no model pass. They carry their own {len(opened.class_names):,} class "
               "names, so they show the same whichever model the sidebar holds.")
    return opened


def _folder() -> str | None:
    if source in DEMOS:
        return str(DEMOS[source].folder)
    if source == SERVER_FOLDER:
        path = st.text_input("Folder path", key="ds_path", placeholder=str(roots[0] / "validation"),
                             help=f"A folder inside {ex.data_roots.describe(roots)}; a relative path starts in "
                                  f"{roots[0]}.").strip()
        return str(ex.data_roots.resolve_inside(path, roots)) if path else None
    return unpacked_zip("dataset", "ds", f"Inside: <class name>/<image> (one top folder is fine), images as "
                                         f"{ex.images.FORMAT_NAMES}. Limit: server.maxUploadSize.")


def _scan(folder: str) -> ex.datasets.DatasetScan:
    """The folder's listing, with its progress shown while it runs."""
    progress = st.empty()
    with stopped_on_input_error():
        found = ex.datasets.scan_folder(folder, roots=roots if source == SERVER_FOLDER else None,
                                        on_progress=lambda seen: progress.caption(f"Listing the folder: {seen:,} entries…"))
    progress.empty()
    return found


class Asked(NamedTuple):
    """What an evaluation of a listed folder is asked to compute, and the key its results are kept under."""

    model: ex.LoadedModel
    scan: ex.datasets.DatasetScan
    mapping: ex.datasets.ClassMapping
    cam_layer: str | None
    batch_size: int
    key: tuple


def _asked(model: ex.LoadedModel, scan: ex.datasets.DatasetScan) -> Asked:
    """The evaluation's settings (class matching, Grad-CAM layer, batch), and warnings on how the folders matched."""
    modes = [m for m in MAPPING.choices if m != BY_WORDNET_ID or len(model.class_names) == 1000]
    settings_row = st.columns([2, 2, 1])
    mode = settings_row[0].selectbox("Match class folders to the model's outputs", modes, format_func=MAPPINGS.get,
                                     key="ds_mapping")
    mapping = ex.datasets.map_classes(scan.folders, model, mode)
    use_cam = model.cam_unavailable is None
    cam_layer = None
    if use_cam:
        cam_layer = settings_row[1].selectbox("Grad-CAM layer", model.conv_layers, key="ds_cam_layer",
                                              format_func=model.layer_label,
                                              index=model.conv_layers.index(model.default_cam_layer))
    batch_size = param_widgets.widget(settings_row[2], BATCH, "ds_batch")
    st.caption(f"{len(scan.folders)} class folders matched {mapping.mode}; Grad-CAM of each image's predicted class "
               + (f"at {cam_layer}." if use_cam else f"is unavailable: {model.cam_unavailable}"))
    if mapping.mode == BY_POSITION and len(scan.folders) != len(model.class_names):
        st.warning(f"{model.display_name} has {len(model.class_names):,} outputs and the folder {len(scan.folders)} classes; "
                   "they are matched by position (the first sorted folder is output 0). If that is not what the model "
                   "was trained on, name the folders after its classes or pick another model.")
    for problem in ([f"{len(mapping.unknown)} class folder(s) the model has no class for, left out: "
                     f"{_some_names(mapping.unknown)}."] if mapping.unknown else []) + (
                    [f"Empty class folder(s): {_some_names(scan.empty_folders)}."] if scan.empty_folders else []):
        st.warning(problem)
    key = (model.fingerprint, model.preprocessing, tuple(model.class_names), str(scan.root), mapping.mode, cam_layer,
           len(scan.files))
    return Asked(model=model, scan=scan, mapping=mapping, cam_layer=cam_layer, batch_size=batch_size, key=key)


def _run(asked: Asked, cached_only: bool) -> Evaluation:
    """The evaluation, with a progress bar while it runs; ``cached_only`` gathers what earlier runs scored."""
    bar = st.progress(0.0, "Starting…")
    steps = ex.datasets.evaluate_iter(asked.model, asked.scan, asked.mapping, asked.cam_layer, asked.batch_size,
                                      cached_only=cached_only)
    for step in steps:
        if isinstance(step, Progress):
            eta = f", about {step.eta_seconds:.0f} s left" if np.isfinite(step.eta_seconds) else ""
            bar.progress(step.done / max(step.total, 1),
                         f"{step.done:,} of {step.total:,} images · {step.images_per_second:,.0f} images/s{eta}")
        else:
            bar.empty()
            return step
    raise AssertionError("evaluate_iter ends with an Evaluation")


def _scored_before(asked: Asked) -> Evaluation:
    """What earlier runs (of any session) scored of this folder: gathered from the cache, nothing drawn."""
    steps = ex.datasets.evaluate_iter(asked.model, asked.scan, asked.mapping, asked.cam_layer, asked.batch_size,
                                      cached_only=True)
    return next(step for step in steps if isinstance(step, Evaluation))


def _evaluation(asked: Asked) -> Evaluation:
    """The evaluation this session keeps for ``asked``; else what earlier runs scored, completed after the estimate
    and its button, or what a stopped run scored (with Resume)."""
    results: dict = st.session_state.setdefault(_RESULTS, {})
    if asked.key in results:
        return results[asked.key]
    if st.session_state.get(_STOPPED) == asked.key:
        evaluation = _run(asked, cached_only=True)
        st.warning(f"Stopped after {len(evaluation.files):,} of {evaluation.total:,} images; results below cover those.")
        if st.button("Resume", key="ds_resume"):
            st.session_state.pop(_STOPPED)
            st.rerun()
        return evaluation
    evaluation = _scored_before(asked)
    if evaluation.complete:  # no run to stop, so no Stop button and no rerun to drop it
        results.clear()  # one dataset's results per session: they can be large
        results[asked.key] = evaluation
        return evaluation
    remaining = evaluation.total - len(evaluation.files) - len(evaluation.skipped_images)
    if not budget.approved("ds", asked.key, estimates.evaluation_seconds(asked.model, remaining, asked.cam_layer),
                           f"Evaluating the {remaining:,} images not scored yet"):
        st.stop()
    st.button("Stop this run", key="ds_stop", on_click=lambda: st.session_state.__setitem__(_STOPPED, asked.key),
              help="Finished images stay cached; Resume continues from there.")
    results.clear()
    results[asked.key] = _run(asked, cached_only=False)
    st.rerun()  # drop the Stop button


def _evaluated_folder() -> tuple[Evaluation, Asked, str]:
    """The folder of class subfolders the source names, run through the model (or gathered from the cache), what was
    asked of it, and the folder."""
    with stopped_on_input_error():
        folder = _folder()
    if folder is None:
        stop("Give the folder of class subfolders above.", "info")
    model = data_source.explaining_model(source, selection)
    scan = data_source.listed_once(_SCANS, folder, lambda: _scan(folder))
    asked = _asked(model, scan)
    evaluation = _evaluation(asked)
    if source == SERVER_FOLDER and st.button(
            "Rescan the folder", key="ds_rescan",
            help="Files added, removed or changed since the run are read; unchanged ones come from the cache."):
        st.session_state.get(_RESULTS, {}).pop(asked.key, None)
        data_source.forget(_SCANS, folder)
        st.rerun()
    return evaluation, asked, folder


folder: str | None = None
asked: Asked | None = None
if source == RESULTS_FOLDER:
    evaluation, model = _results_folder(), None
    # Paths come from the folder's rows: read only inside the data roots, as the server-folder source does.
    image_roots = tuple(roots)
else:
    evaluation, asked, folder = _evaluated_folder()
    model = asked.model
    image_roots = None  # files this page listed itself
model_name = model.display_name if model else evaluation.model_name
show_size = evaluation.input_size or (224, 224)

if len(evaluation.files) == 0:
    st.error("No image could be evaluated; see the skipped files below.")

summary = analysis.summary(evaluation)
metrics = st.columns(5)
metrics[0].metric("Accuracy", f"{summary['accuracy']:.1%}" if summary["images"] else "n/a")
metrics[1].metric("Macro F1", f"{summary['macro_f1']:.3f}" if summary["images"] else "n/a")
metrics[2].metric("Images", f"{summary['images']:,}")
metrics[3].metric("Classes", f"{len(set(evaluation.true.tolist()))}")
# One count for every file left out, whether the scan found it unusable or the evaluation could not decode it.
skipped_kinds = " · ".join(f"{kind}: {count:,}" for kind, count in analysis.skipped_breakdown(evaluation).items())
metrics[4].metric("Skipped files", f"{summary['skipped_files']:,}",
                  help="Files in the folder that were not evaluated" + (f"; {skipped_kinds}." if skipped_kinds else "."))

if evaluation.skipped:
    with st.expander(f"Skipped files ({len(evaluation.skipped):,}): {skipped_kinds}"):
        st.dataframe(pd.DataFrame(evaluation.skipped, columns=["file", "reason"]), hide_index=True, width="stretch")
if not evaluation.files:
    st.stop()


def _gallery_picture(image: np.ndarray | None, cam: np.ndarray | None) -> bytes | None:
    """One image of a confusion cell with its Grad-CAM over it, as JPEG bytes made once per image and map; the map
    alone when the image cannot be read here; None when there is neither."""
    if image is None:
        if cam is None:
            return None
        return cached.picture(("ds_gallery_map", cached.digest(cam), show_size), lambda: render.colorize(
            ex.methods.maps.rescale(ex.methods.maps.upsample(cam[None], show_size))[0]))
    if cam is None:
        return photo(image)

    def draw() -> np.ndarray:
        return render.overlay(image, ex.methods.maps.rescale(ex.methods.maps.upsample(cam[None], image.shape[:2]))[0])

    return cached.picture(("ds_gallery", cached.digest(image), cached.digest(cam)), draw)


def _image_with_map(place, index: int) -> bool:
    """One evaluated image in ``place``: its Grad-CAM over it, its file, its three most probable classes.

    Returns whether the image itself could be read here (else its map is shown alone).
    """
    image = cached.dataset_image(evaluation.location(index), show_size, image_roots)
    picture = _gallery_picture(image, evaluation.cams[index] if evaluation.cams.size else None)
    if picture is not None:
        place.image(picture, width="stretch", caption=evaluation.files[index])
    else:
        place.markdown(f"`{evaluation.files[index]}`")
    place.caption(analysis.top_classes_text(evaluation.top_classes[index], evaluation.top_probabilities[index],
                                          evaluation.class_names))
    return image is not None


evaluation_key = cached.evaluation_digest(evaluation)  # names the content, for views shared between sessions
matrix = analysis.confusion(evaluation, analysis.MATRIX_ROWS)  # drawn: at most MATRIX_ROWS rows stay readable
confusions = analysis.top_confusions(evaluation)
predictions = analysis.predictions_table(evaluation)
# The open tab is tracked (and travels in the link) so that the concept tests read their images only when open.
matrix_tab, class_tab, image_tab, attention_tab, strategies_place, concepts_place = st.tabs(
    TABS, key=TAB_KEY, on_change="rerun")

with matrix_tab:
    normalized = st.toggle("Row-normalised (share of each true class)", key="ds_normalized")
    if len(evaluation.class_names) > analysis.FULL_MATRIX_LIMIT:
        st.caption(f"The model has {len(evaluation.class_names):,} classes; the matrix shows the {len(matrix.rows)} "
                   + (f"of the {len(matrix.rows) + matrix.hidden:,} present in the folder with the most mistakes"
                      if matrix.hidden else "present in the folder")
                   + f", with every other prediction in '{analysis.OTHER}'."
                   + (" The CSV export holds every class." if matrix.hidden else ""))
    order = [matrix.label(c) for c in matrix.columns]

    def matrix_chart() -> alt.LayerChart:
        frame = matrix.frame(normalized)
        long = frame.rename_axis("true").reset_index().melt(id_vars="true", var_name="predicted", value_name="value")
        counts = matrix.frame().rename_axis("true").reset_index().melt(id_vars="true", var_name="predicted",
                                                                       value_name="count")
        long["count"] = counts["count"].to_numpy()  # both melted the same way, so rows line up
        cell = alt.selection_point(name="cell", fields=["true", "predicted"], on="click")
        # One cell size both ways, so cells stay square for any class count (the chart's width follows it).
        step = max(MATRIX_CELL[0], min(MATRIX_CELL[1], MATRIX_WIDTH // len(order)))
        base = alt.Chart(long).encode(
            x=alt.X("predicted:N", sort=order, title="predicted class"),
            y=alt.Y("true:N", sort=order[: len(matrix.rows)], title="true class"),
        )
        heat = base.mark_rect().encode(
            color=alt.Color("value:Q", scale=alt.Scale(scheme="blues"), title="share" if normalized else "images"),
            opacity=alt.condition(cell, alt.value(1.0), alt.value(0.55)),
            tooltip=["true", "predicted", "count", alt.Tooltip("value:Q", format=".2f" if normalized else "d")],
        ).add_params(cell)
        labels = base.mark_text(fontSize=10).encode(
            text=alt.Text("value:Q", format=".2f" if normalized else "d"),
            color=alt.condition(alt.datum.value > float(frame.to_numpy().max()) / 2, alt.value("white"),
                                alt.value("black")),
        ).transform_filter(alt.datum.count > 0)
        return (heat + labels).properties(width=alt.Step(step), height=alt.Step(step))

    # width="content": Streamlit would otherwise stretch the chart to the page, and its cells with it.
    event = st.altair_chart(cached.chart(("ds_matrix", evaluation_key, normalized), matrix_chart), key="ds_matrix",
                            on_select="rerun", selection_mode="cell", width="content")
    clicked = (event.selection.get("cell") or [None])[0] if event else None

    # Clicking a cell and choosing it below are the same selection; a new click wins.
    names_rows = [matrix.label(r) for r in matrix.rows]
    if clicked and clicked != st.session_state.get("ds_last_click"):
        st.session_state["ds_last_click"] = clicked
        st.session_state["ds_cell_true"], st.session_state["ds_cell_predicted"] = clicked["true"], clicked["predicted"]
    if st.session_state.get("ds_cell_true") not in names_rows or st.session_state.get("ds_cell_predicted") not in order:
        # From the matrix, not the confusion list: a wide model's worst confusion can be a class with no column.
        true_output, predicted_output = analysis.default_cell(matrix)
        st.session_state["ds_cell_true"] = matrix.label(true_output)
        st.session_state["ds_cell_predicted"] = matrix.label(predicted_output)
    picks = st.columns([1, 1, 2])
    true_name = picks[0].selectbox("True class", names_rows, key="ds_cell_true")
    predicted_name = picks[1].selectbox("Predicted class", order, key="ds_cell_predicted")
    members = analysis.cell_members(evaluation, evaluation.class_names.index(true_name) if true_name in evaluation.class_names else -1,
                                  evaluation.class_names.index(predicted_name) if predicted_name in evaluation.class_names else -1,
                                  matrix.columns)
    picks[2].markdown(f"**{counted(len(members), 'image')}** {'was' if len(members) == 1 else 'were'} true *{true_name}* and predicted *{predicted_name}*"
                      + (f"; the first {GALLERY_LIMIT} are shown." if len(members) > GALLERY_LIMIT else "."))
    if len(members):
        st.caption("Under each image: its file, then the model's three most probable classes with their probabilities.")
    gallery = st.columns(6)
    unreachable = sum(not _image_with_map(gallery[slot % 6], index) for slot, index in enumerate(members[:GALLERY_LIMIT]))
    if unreachable:
        st.caption(f"{unreachable} of these images cannot be read from this server "
                   + ("(not inside its data folders, or not there any more), so their Grad-CAM is shown alone."
                      if evaluation.cams.size else "(not inside its data folders, or not there any more)."))
    st.markdown("**Top confusions**")
    st.dataframe(confusions, hide_index=True, width="stretch",
                 column_config={"share of true class": st.column_config.ProgressColumn(format="%.2f", min_value=0.0, max_value=1.0)})

with class_tab:
    scores = analysis.class_report(evaluation)
    bar = st.column_config.ProgressColumn(format="%.3f", min_value=0.0, max_value=1.0)
    st.dataframe(scores, hide_index=True, width="stretch", column_config={"precision": bar, "recall": bar, "f1": bar})

with image_tab:
    filters = st.columns([1, 2])
    errors_only = filters[0].toggle("Errors only", key="ds_errors_only")
    wanted = filters[1].multiselect("True class", sorted(set(predictions["true_class"])), key="ds_image_classes")
    shown = predictions[~predictions["correct"]] if errors_only else predictions
    shown = shown[shown["true_class"].isin(wanted)] if wanted else shown
    st.caption(f"{len(shown):,} of {len(predictions):,} images. Click a column header to sort, and the box at a "
               "row's left to see that image with its Grad-CAM.")
    # Keyed by the filters: a row picked in one filtered table means nothing in another.
    rows_key = f"ds_image_row_{errors_only}_{hashlib.blake2b(repr(sorted(wanted)).encode(), digest_size=8).hexdigest()}"
    picked = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                          key=rows_key)
    picked_rows = [row for row in picked.selection.rows if row < len(shown)] if picked else []
    if picked_rows:
        _image_with_map(st.columns(3)[0], int(shown.index[picked_rows[0]]))  # the table's index is the image's

with attention_tab:
    worst = analysis.worst_classes(evaluation, 2 * ATTENTION_CLASSES)
    shown_classes = worst
    if evaluation.cams.size and len(worst) == 2 * ATTENTION_CLASSES:  # more classes than fit: the user picks
        present = np.flatnonzero(np.bincount(evaluation.true, minlength=len(evaluation.class_names)))
        shown_classes = st.multiselect(
            "Classes", present.tolist(), default=worst[:ATTENTION_CLASSES], format_func=evaluation.class_names.__getitem__,
            key="ds_attention_classes", help=f"It starts on the {ATTENTION_CLASSES} classes with the most mistakes.")
    attention = cached.class_attention(evaluation_key, shown_classes, image_roots, evaluation)
    if not evaluation.cams.size:
        st.info(f"Grad-CAM is unavailable for this model: {model.cam_unavailable}" if model else
                "These results hold no Grad-CAM: they were made without a CAM layer.")
    elif attention:
        look = st.columns([2, 1])
        opacity, colormap = overlay_controls(look[0], look[1], "ds_")
        st.caption(f"Each class's mean image (of up to {analysis.MEAN_IMAGE_SAMPLE} of its images), and its mean Grad-CAM "
                   "(of the predicted class) over the images the model got right and over those it got wrong; "
                   "(right/all) after the name.")
        if all(item.mean_image is None for item in attention):
            st.caption("The images cannot be read from this server (not inside its data folders, or not there any "
                       "more), so each class's mean Grad-CAM is shown alone, on grey.")
        per_row = 4
        for start in range(0, len(attention), per_row):
            for column, item in zip(st.columns(per_row), attention[start : start + per_row]):
                column.markdown(f"**{item.name}** · {item.correct}/{item.correct + item.wrong} right")
                strip = cached.picture(("ds_attention", evaluation_key, image_roots, item.name, colormap, opacity),
                                       lambda item=item: dataset_report.attention_strip(item, colormap, opacity))
                column.image(strip, width="stretch", caption=("mean image" if item.mean_image is not None
                                                              else "no image") + " · when right · when wrong")

with strategies_place:
    strategies = strategies_tab.draw(evaluation, evaluation_key, image_roots)

with concepts_place:
    concepts_tab.draw(concepts_place.open is not False, model, folder, evaluation,
                      tuple(roots) if source == SERVER_FOLDER else None,
                      DEMOS[source].shortcut_class if source in DEMOS else None,
                      asked.mapping.mode if asked else AUTO, asked.batch_size if asked else BATCH.default)

st.subheader("Export")
exports = st.columns(5)
# Files are made when asked for, not on every run.
exports[0].download_button("Predictions (CSV)", lambda: predictions.to_csv(index=False), "predictions.csv", "text/csv",
                           on_click="ignore", key="ds_predictions_csv")
exports[1].download_button("Confusion matrix (CSV)", lambda: analysis.confusion(evaluation).frame().to_csv(),  # every class
                           "confusion_matrix.csv", "text/csv", on_click="ignore", key="ds_confusion_csv")
exports[2].download_button("Confusion matrix (PNG)", lambda: dataset_report.confusion_png(matrix), "confusion_matrix.png",
                           "image/png", on_click="ignore", key="ds_confusion_png")
if attention:
    exports[3].download_button("Attention per class (PNG)",
                               lambda: render.png_bytes(dataset_report.attention_grid(attention, colormap, opacity)),
                               "class_attention.png", "image/png", on_click="ignore", key="ds_attention_png")
exports[4].download_button(
    "Export report (HTML)", lambda: dataset_report.report_html(evaluation, model_name, read=lambda location: read_image(location, image_roots),
                                                               strategies=strategies),
    "dataset_report.html", "text/html",
    on_click="ignore", key="ds_report", help="One file with every picture inside; opens offline.")
