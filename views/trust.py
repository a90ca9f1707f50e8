"""Which method to trust: attribution methods scored over a dataset by metrics, per class, with intervals."""

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import streamlit as st

import explainers as ex
from explainers import REGISTRY, estimates, unavailable_methods
from explainers.datasets.evaluation import Progress
from explainers.datasets.mapping import BY_POSITION
from explainers.datasets.sources import Listing, list_images
from explainers.errors import echo
from explainers.options import PER_CLASS, SEED
from explainers.runtime.cache import cache_dir
from explainers.trust import FAMILIES, METRICS
from explainers.trust import masks as object_masks
from explainers.trust.evaluate import TrustResult, evaluate_trust_iter, sample_listing, trust_seconds
from explainers.trust.scoring import TARGETS, TrustRequest, trust_request
from ui import budget, cached, data_source, param_widgets, share, trust_results
from ui.data_source import DEMO, SERVER_FOLDER
from ui.selection import current
from ui.stops import stop, stopped_on_input_error
from ui.zip_upload import unpacked_zip

RESULTS_FOLDER = "A trust results folder on the server"
NO_MASKS, STROKES, ZIP_MASKS = "None", "The digits' strokes", "The masks/ folder in the ZIP"
SERVER_MASKS, SERVER_BOXES, UPLOADED_BOXES = "A masks folder on the server", "A boxes CSV on the server", \
    "A boxes CSV (upload)"
TARGET_WORDS = {"true": "Its true class (its folder)", "predicted": "The model's predicted class"}
# Fast, and one of each kind: gradients, path integrals, propagation and two CAMs; Score-CAM's masks cost the most.
DEFAULT_METHODS = ["gradcam", "saliency", "integrated_gradients", "guided_backprop", "scorecam"]
# Evaluations a session keeps: going back to an earlier choice shows it again at once (the estimate cannot see that
# its values are cached, and would ask for the button again).
KEPT_RESULTS = 3
_RESULTS, _STOPPED, _PROGRESS = "_trust_results", "_trust_stopped", "_trust_progress"
_LISTINGS, _MASKS = "_trust_listings", "_trust_masks"


class Dataset(NamedTuple):
    model: ex.LoadedModel
    listing: Listing
    zip_masks: Path | None  # a masks/ folder found beside the class folders of an uploaded ZIP


class Chosen(NamedTuple):
    """Masks as chosen: the masks (None without), and what names them in a request's key."""

    masks: object_masks.ObjectMasks | None
    key: tuple


class Stopped(NamedTuple):
    key: tuple
    done: int  # images of the sample scored before the Stop


selection = current()
st.title("Which method to trust")
st.caption("Attribution methods scored over your images by metrics of faithfulness, randomisation, robustness, "
           "complexity and localisation: per class, with 95% intervals, how stable each ranking is, and where the "
           "metrics agree.")

roots = ex.data_roots.configured_roots()
source = data_source.choose_source("trust_source", roots, RESULTS_FOLDER)


def _dataset() -> Dataset:
    """The images the source names, listed for the model that will explain them; the page stops with one sentence
    when there are none."""
    zip_masks = None
    with stopped_on_input_error():
        if source == DEMO:
            folder: str | None = str(ex.samples.DIGITS_TEST_FOLDER)
        elif source == SERVER_FOLDER:
            typed = st.text_input("Folder path", key="trust_path", placeholder=str(roots[0] / "validation"),
                                  help=f"A folder of class folders inside {ex.data_roots.describe(roots)}; a relative "
                                       f"path starts in {roots[0]}.").strip()
            folder = str(ex.data_roots.resolve_inside(typed, roots)) if typed else None
        else:
            folder = unpacked_zip("trust", "trust", "Inside: <class name>/<image> (one top folder is fine), and "
                                  "optionally masks/ beside the class folders, mirroring their paths (white = the object).")
            if folder is not None:
                folder, zip_masks = (str(part) if part is not None else None
                                     for part in object_masks.split_masks_folder(folder))
    if folder is None:
        stop("Give the folder of class folders above.", "info")
    model = data_source.explaining_model(source, selection, "on 1,000 held-out MNIST digits, each digit's strokes "
                                                            "serving as its object mask")

    def listed() -> Listing:
        with stopped_on_input_error(), st.spinner("Listing the images…"):
            return list_images(folder, model, roots=roots if source == SERVER_FOLDER else None)

    listing = data_source.listed_once(_LISTINGS, (folder, model.fingerprint, tuple(model.class_names)), listed)
    if listing.mapping.unknown:
        st.warning(f"{len(listing.mapping.unknown)} class folder(s) the model has no class for are left out: "
                   + ", ".join(echo(name, 40) for name in listing.mapping.unknown[:10]) + ".")
    if listing.mapping.mode == BY_POSITION and len(listing.mapping.output_of_folder) != len(model.class_names):
        st.warning(f"{model.display_name} has {len(model.class_names):,} outputs and the folder "
                   f"{len(listing.mapping.output_of_folder)} classes; they are matched by position (the first sorted "
                   "folder is output 0).")
    if not listing.paths:
        stop("The folder holds no image of a class the model knows.")
    return Dataset(model, listing, Path(zip_masks) if zip_masks else None)


def _uploaded_boxes() -> tuple[Path, str] | None:
    """An uploaded boxes CSV, kept in the cache under its content's hash, and its name."""
    upload = st.file_uploader("Boxes CSV", type=["csv"], key="trust_boxes_file",
                              help="Rows path,x0,y0,x1,y1: the image's path inside the dataset (cat/001.jpg) and a box "
                                   "in its pixels; a header row is optional; several rows of one image are one mask.")
    if upload is None:
        return None
    share.used_upload("trust")
    data = upload.getvalue()
    path = cache_dir() / "uploads" / f"boxes-{hashlib.blake2b(data, digest_size=16).hexdigest()}.csv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return path, upload.name


def _masks(dataset: Dataset) -> Chosen:
    """The masks the visitor chose: None (with the reason shown once) when there are none or they cannot be used."""
    options = ([STROKES] if source == DEMO else []) + ([ZIP_MASKS] if dataset.zip_masks else []) + [NO_MASKS] + (
        [SERVER_MASKS, SERVER_BOXES] if source == SERVER_FOLDER else []) + [UPLOADED_BOXES]
    if st.session_state.get("trust_masks") not in options:
        st.session_state["trust_masks"] = options[0]  # the strokes, or the ZIP's masks when it holds them
    kind = st.radio("Object masks", options, horizontal=True, key="trust_masks",
                    help="Where each image's object is, for the localisation metrics: a masks folder mirroring the "
                         "images' paths (white = the object), boxes, or the digits' own strokes.")
    try:
        if kind == NO_MASKS:
            return Chosen(None, (NO_MASKS,))
        if kind == STROKES:
            return Chosen(object_masks.masks_from_strokes(), (STROKES,))
        if kind == ZIP_MASKS:
            return _kept_masks((ZIP_MASKS, str(dataset.zip_masks)), lambda: object_masks.masks_from_folder(
                dataset.zip_masks, shown="masks/ in the ZIP"))
        if kind == UPLOADED_BOXES:
            uploaded = _uploaded_boxes()
            if uploaded is None:
                st.info("Upload the boxes CSV above, or choose other masks.")
                return Chosen(None, (NO_MASKS,))
            path, name = uploaded
            return _kept_masks((UPLOADED_BOXES, str(path)), lambda: object_masks.masks_from_boxes(path, shown=name))
        typed_key = "trust_masks_path" if kind == SERVER_MASKS else "trust_boxes_path"
        typed = st.text_input("Masks folder" if kind == SERVER_MASKS else "Boxes CSV", key=typed_key,
                              help=f"Inside {ex.data_roots.describe(roots)}; a relative path starts in {roots[0]}.").strip()
        if not typed:
            st.info(f"Give the {'masks folder' if kind == SERVER_MASKS else 'boxes CSV'} above, or choose other masks.")
            return Chosen(None, (NO_MASKS,))
        reader = object_masks.masks_from_folder if kind == SERVER_MASKS else object_masks.masks_from_boxes
        return _kept_masks((kind, typed), lambda: reader(typed, roots=roots, shown=typed))
    except ex.InputError as error:
        st.error(str(error))  # the rest goes on without masks: the localisation metrics say why they are off
        return Chosen(None, (NO_MASKS,))


def _kept_masks(key: tuple, read) -> Chosen:
    """Masks read once per session and source (a folder's listing or a CSV's rows), until another is chosen."""
    kept: dict = st.session_state.setdefault(_MASKS, {})
    if key not in kept:
        masks = read()
        kept.clear()
        kept[key] = masks
    return Chosen(kept[key], key)


def _methods(model: ex.LoadedModel) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """The methods chosen, with their layers and parameters: ``{name: (layer, params)}``."""
    unavailable = unavailable_methods(model)
    offered = [name for name in REGISTRY if name not in unavailable]
    if "trust_methods" in st.session_state:  # a link or another model's choice may name methods not offered here
        st.session_state["trust_methods"] = [m for m in st.session_state["trust_methods"] if m in offered]
    default = None if "trust_methods" in st.session_state else [m for m in DEFAULT_METHODS if m in offered]
    methods = st.multiselect("Methods", offered, default=default, key="trust_methods",
                             format_func=lambda m: REGISTRY[m].label)
    for reason in dict.fromkeys(unavailable.values()):
        names = ", ".join(REGISTRY[name].label for name, why in unavailable.items() if why == reason)
        st.caption(f"Not available here: {names}. {reason}")
    chosen = {}
    with st.expander("Method parameters"):
        columns = st.columns(3)
        for index, name in enumerate(methods):
            column = columns[index % 3]
            column.markdown(f"**{REGISTRY[name].label}**")
            params = param_widgets.draw(column, REGISTRY[name], param_widgets.TRUST_METHOD_PREFIX)
            layer = None
            if REGISTRY[name].needs_layer:
                layer_key = f"trust_layer_{name}"
                if st.session_state.get(layer_key, model.default_cam_layer) not in model.conv_layers:
                    st.session_state.pop(layer_key)
                layer = column.selectbox("Layer", model.conv_layers, key=layer_key,
                                         index=model.conv_layers.index(model.default_cam_layer))
            if not params and layer is None:
                column.caption("No parameters.")
            chosen[name] = (layer, params)
        if not methods:
            st.caption("Choose methods above.")
    return chosen


def _metrics(has_masks: bool) -> dict[str, dict[str, Any]]:
    """The metrics chosen, grouped by family, with their parameters: ``{name: params}``. A metric the inputs do not
    allow is shown disabled, with the reason."""
    st.markdown("**Metrics**")
    families = [family for family in FAMILIES if any(m.family == family for m in METRICS.values())]
    columns = st.columns(len(families))
    chosen = []
    for column, family in zip(columns, families):
        column.markdown(f"*{family.capitalize()}*", help=FAMILIES[family])
        for name, metric in METRICS.items():
            if metric.family != family:
                continue
            why = metric.unavailable(has_masks)
            help_text = f"{metric.help} {metric.direction.capitalize()}. {metric.reference}."
            key = f"trust_use_{name}"
            # Every metric the inputs allow, unless unticked. Set, not only defaulted: a choice whose box is not drawn
            # in a run (its metric unavailable for a while) stays, and travels in the link meanwhile.
            st.session_state[key] = st.session_state.get(key, True)
            if why:  # shown unticked and disabled under a key of its own: a reason, not a choice
                column.checkbox(metric.label, False, disabled=True, key=f"_trust_off_{name}", help=why)
                column.caption(why)
                continue
            if column.checkbox(metric.label, key=key, help=help_text):
                chosen.append(name)
    params: dict[str, dict[str, Any]] = {}
    with st.expander("Metric parameters"):
        tuned = [name for name in chosen if METRICS[name].params]
        columns = st.columns(3)
        for index, name in enumerate(tuned):
            column = columns[index % 3]
            column.markdown(f"**{METRICS[name].label}**")
            params[name] = param_widgets.draw(column, METRICS[name], param_widgets.TRUST_METRIC_PREFIX)
        if len(tuned) < len(chosen):
            st.caption("Without parameters: " + ", ".join(METRICS[n].label for n in chosen if not METRICS[n].params)
                       + ".")
    return {name: params.get(name, {}) for name in chosen}


def _partial(dataset: Dataset, request: TrustRequest, masks: object_masks.ObjectMasks | None, per_class: int | None,
             seed: int, done: int) -> TrustResult:
    """What a stopped run scored: the sample's first ``done`` images (the order the run took them in), every value
    from the cache; ``total`` stays the whole sample's."""
    sample = sample_listing(dataset.listing, per_class, seed)
    listing = dataset.listing
    scored = dataclasses.replace(listing, sources=sample.sources[:done], paths=sample.paths[:done],
                                 true=sample.true[:done], skipped=[])
    for step in evaluate_trust_iter(dataset.model, scored, request, None, seed, masks):
        if isinstance(step, TrustResult):
            return dataclasses.replace(step, total=len(sample.paths))
    raise AssertionError("evaluate_trust_iter ends with a TrustResult")


def _run(dataset: Dataset, request: TrustRequest, masks, per_class: int | None, seed: int, key: tuple,
         images: int, seconds: float) -> TrustResult:
    bar = st.progress(0.0, f"Starting: {images:,} images, {estimates.describe(seconds)}…")
    for step in evaluate_trust_iter(dataset.model, dataset.listing, request, per_class, seed, masks):
        if isinstance(step, Progress):
            st.session_state[_PROGRESS] = (key, step.done)  # what a Stop keeps
            left = f", about {estimates.duration(step.eta_seconds)} left" if np.isfinite(step.eta_seconds) else ""
            bar.progress(step.done / max(step.total, 1), f"{step.done:,} of {step.total:,} images scored{left}")
        else:
            bar.empty()
            return step
    raise AssertionError("evaluate_trust_iter ends with a TrustResult")


def _note_stop(key: tuple) -> None:
    progress = st.session_state.get(_PROGRESS)
    st.session_state[_STOPPED] = Stopped(key, progress[1] if progress and progress[0] == key else 0)


def _evaluated() -> tuple[trust_results.Shown, trust_results.Scored]:
    """The evaluation the inputs ask for: from this session's results, or run (after its estimate), or, after a
    Stop, what was scored before it."""
    dataset = _dataset()
    model, listing = dataset.model, dataset.listing
    chosen = _masks(dataset)
    methods = _methods(model)
    metrics = _metrics(chosen.masks is not None)
    sample_row = st.columns([1, 1, 2])
    per_class = int(param_widgets.widget(sample_row[0], PER_CLASS, "trust_per_class"))
    seed = int(param_widgets.widget(sample_row[1], SEED, "trust_seed"))
    target = sample_row[2].radio("Each map explains", TARGETS, format_func=TARGET_WORDS.get, horizontal=True,
                                 key="trust_target")
    with stopped_on_input_error("warning"):
        request = trust_request(model, methods, metrics, has_masks=chosen.masks is not None, target=target)
        sample = sample_listing(listing, per_class, seed)
    images = len(sample.paths)
    short = f" ({len(sample.classes_short)} classes have fewer and give all they have)" if sample.classes_short else ""
    st.caption(f"{images:,} images: up to {per_class:,} of each of {len(set(sample.true))} classes{short}, "
               f"{len(request.methods)} methods × {len(request.metrics)} metrics.")

    key = (model.fingerprint, tuple(model.class_names), listing.root, len(listing.paths), chosen.key, request,
           per_class, seed)
    scored = trust_results.Scored(model, listing)
    results: dict = st.session_state.setdefault(_RESULTS, {})
    if key in results:
        return results[key], scored
    stopped = st.session_state.get(_STOPPED)
    if stopped is not None and stopped.key == key:
        st.warning(f"Stopped after {stopped.done:,} of {images:,} images" + (
            "; the results below cover those." if stopped.done else ", before any was scored."))
        if st.button("Resume", key="trust_resume", type="primary",
                     help="Scored images come from the cache: the run continues where it stopped."):
            st.session_state.pop(_STOPPED)
            st.rerun()
        if not stopped.done:
            st.stop()
        partial = _partial(dataset, request, chosen.masks, per_class, seed, stopped.done)
        return trust_results.shown(partial, per_class, seed), scored
    seconds = trust_seconds(model, request, images)
    if not budget.approved("trust", key, seconds, f"Evaluating {images:,} images", button=f"Evaluate {images:,} images"):
        st.stop()
    st.button("Stop this run", key="trust_stop", on_click=_note_stop, args=(key,),
              help="The images scored so far stay cached; the results show them, and Resume continues.")
    result = _run(dataset, request, chosen.masks, per_class, seed, key, images, seconds)
    while len(results) >= KEPT_RESULTS:  # the oldest goes: an evaluation's rows can be large
        results.pop(next(iter(results)))
    results[key] = trust_results.shown(result, per_class, seed)
    st.rerun()  # drop the Stop button


def _opened_folder() -> trust_results.Shown:
    """A trust output folder inside the data roots, read with no model pass; the page stops with one sentence
    otherwise."""
    typed = st.text_input("Results folder", key="trust_results_path", placeholder=str(roots[0] / "trust"),
                          help="A folder `python -m explainers trust --out` wrote (trust.json, rows/*.parquet, "
                               f"images.parquet), inside {ex.data_roots.describe(roots)}; a relative path starts in "
                               f"{roots[0]}.").strip()
    if not typed:
        stop("Give a trust results folder above: it opens with no model pass.", "info")
    with stopped_on_input_error(), st.spinner("Reading the results…"):
        opened = cached.open_trust(ex.data_roots.resolve_inside(typed, roots), typed)
    result, described = opened.result, opened.described
    st.caption(f"Results of **{echo(result.model_name) or 'an unnamed model'}** on {echo(result.root)}, read from the "
               "folder with no model pass.")
    return trust_results.Shown(result, opened.summary if len(result.rows) else None, described.get("sample_per_class"),
                               int(described.get("seed", 0)), opened.token, described)


if source == RESULTS_FOLDER:
    trust_results.show(_opened_folder(), None)
else:
    trust_results.show(*_evaluated())
