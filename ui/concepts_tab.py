"""The "Concepts" tab of "Your dataset": whether the model uses concepts the visitor names by example images (TCAV,
tested against random pseudo-concepts), and which concepts it uses unasked (factorisation of a layer's activations).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

import explainers as ex
from explainers import estimates
from explainers.concepts.factorisation import (
    EXEMPLARS,
    FACTORISATION,
    Discovery,
    check_discovery,
    discover_concepts,
    discovery_json,
    discovery_seconds,
    factorisation_settings,
)
from explainers.concepts.tcav import (
    RANDOM_IMAGES,
    TCAV,
    ConceptFolder,
    PreparedTcav,
    TcavResult,
    result_json,
    run_tcav,
    tcav_seconds,
    tcav_settings,
)
from explainers.datasets.evaluation import Evaluation
from explainers.errors import InputError, counted, echo
from explainers.inputs.images import IMAGE_SUFFIXES
from explainers.reports.concepts import concepts_png
from explainers.reports.factorisation import discovery_picture

from . import budget, cached, param_widgets
from .stops import shown_on_input_error
from .zip_upload import unpacked_zip

PREFIX = "ds_tcav_"
DISCOVER_PREFIX = "ds_nmf_"
BUNDLED, ZIP, SERVER = "The demo's concept folders", "A ZIP of concept folders", "Folders on the server"
RANDOM_FOLDER = "random"  # a concept folder of this name holds the random images instead
FROM_DATASET, FROM_FOLDER = "Drawn from this dataset", f"The '{RANDOM_FOLDER}' folder"
MAX_CONCEPTS = 7  # concepts tested at once: one colour each in the chart; more would crowd every class's bars
_RESULT, _DISCOVERY = "ds_tcav_result", "ds_nmf_result"


def _start_afresh_when(key: str, context: object) -> None:
    """Drop widget ``key``'s value when ``context`` (what its choices and default come from: another dataset, the
    demo's folders) changed since the last run, so it starts on its default; a value from a link, on the first run,
    is kept."""
    seen = f"_{key}_context"
    if seen in st.session_state and st.session_state[seen] != context:
        st.session_state.pop(key, None)
    st.session_state[seen] = context


def _with_images(folder: Path) -> bool:
    try:
        return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())
    except OSError:
        return False


def concept_folders(parent: Path, shown: str, roots: Sequence[Path] | None = None) -> dict[str, Path]:
    """The concept folders of ``parent``: its subfolders holding images, by name (one top folder around them, as a
    ZIP often has, is looked through), inside ``roots`` when given (a link leading out is no concept). InputError in
    one sentence when there is none."""
    try:
        subfolders = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    except OSError as error:
        raise InputError(f"'{echo(shown)}' cannot be read: {error.strerror or error}.") from None
    if len(subfolders) == 1 and not _with_images(subfolders[0]):
        return concept_folders(subfolders[0], f"{shown}/{subfolders[0].name}", roots)
    found = {p.name: p for p in subfolders if _with_images(p)
             and (roots is None or ex.data_roots.inside(p.resolve(), roots))}
    if not found:
        raise InputError(f"'{echo(shown)}' holds no concept folder: give one folder of images per concept "
                         f"(<concept>/<image>), and optionally a '{RANDOM_FOLDER}' folder of random images.")
    return found


def _concepts_parent(source: str, roots: Sequence[Path]) -> tuple[Path, str] | None:
    """Where the concept folders are, and how messages name it; None until the visitor gives them."""
    if source == BUNDLED:
        return ex.samples.SHORTCUT_CONCEPTS_FOLDER, "the demo's concepts"
    if source == ZIP:
        folder = unpacked_zip("concepts", "ds_concepts", "Inside: one folder of images per concept "
                              f"(<concept>/<image>), and optionally '{RANDOM_FOLDER}/' with random images.",
                              label="ZIP of concept folders")
        return (Path(folder), "the ZIP") if folder else None
    path = st.text_input("Folder of concept folders", key="ds_concepts_path",
                         placeholder=str(roots[0] / "concepts"),
                         help=f"A folder inside {ex.data_roots.describe(roots)} holding one folder of images per "
                              f"concept, and optionally '{RANDOM_FOLDER}/'.").strip()
    return (ex.data_roots.resolve_inside(path, roots), path) if path else None


def _random_folder(source: str, folders: dict[str, Path]) -> Path | None:
    if source == BUNDLED:
        return ex.samples.SHORTCUT_RANDOM_FOLDER
    return folders.get(RANDOM_FOLDER)


def _default_classes(present: list[str], shortcut_class: str | None) -> list[str]:
    """The demo's shortcut class and one other; otherwise the first two classes: a quick first test to widen."""
    first = [shortcut_class] if shortcut_class in present else []
    return first + [name for name in present if name not in first][: 2 - len(first)]


def _scores_table(result: TcavResult) -> pd.DataFrame:
    return pd.DataFrame([{"class": item.class_name, "concept": item.concept, "TCAV score": item.score,
                          "pseudo-concepts (2.5-97.5%)": f"{item.null_score_low:.2f}–{item.null_score_high:.2f}",
                          "p": item.p_value, "p (Holm)": item.p_adjusted,
                          "verdict": "significant" if item.significant else
                          ("not significant" if item.separable else "no CAV: not told from random images")}
                         for item in result.scores])


def _show(result: TcavResult) -> None:
    st.image(concepts_png(result), width="content")
    if all(item.null_score_low == 0 and item.null_score_high == 1 for item in result.scores):
        st.caption(f"At {result.layer} the pseudo-concepts scored from 0 to 1, so the grey bands span everything: "
                   "scores come out 0 or 1 when every image's gradient is the same, as after a global pooling and a "
                   "linear head. The test still holds, as it compares directional derivatives; an earlier layer "
                   "gives graded scores.")
    st.dataframe(_scores_table(result), hide_index=True, width="stretch",
                 column_config={"TCAV score": st.column_config.ProgressColumn(format="%.2f", min_value=0.0,
                                                                              max_value=1.0),
                                "p": st.column_config.NumberColumn(format="%.4f"),
                                "p (Holm)": st.column_config.NumberColumn(format="%.4f")})
    st.caption(f"Layer {result.layer}; {result.tests} tests, each concept against {result.pseudo_concepts:,} "
               f"pseudo-concepts (sets of random images in the concept's role), so the smallest p-value is "
               f"{result.smallest_p:.2g}; {result.settings.runs} runs; {result.random_images:,} random images "
               f"({'drawn from the dataset' if result.random_source == 'dataset' else 'from the random folder'}); "
               f"{result.seconds:.0f} s. The grey band is the pseudo-concepts' spread: a score inside it says no more "
               "than a random set of images would. The test is two-sided, so a significant score near 0 means the "
               "concept lowers the class's score. CAV accuracy on held-out images: "
               + ", ".join(f"{c.name} {c.cav_accuracy:.0%}" for c in result.concepts) + ".")
    st.download_button("Concept scores (JSON)", lambda: json.dumps(result_json(result), indent=1), "concepts.json",
                       "application/json", on_click="ignore", key=f"{PREFIX}json")


def _run(model: ex.LoadedModel, prepared: PreparedTcav, batch_size: int) -> TcavResult:
    bar = st.progress(0.0, "Testing concepts…")

    def advance(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), f"Testing concepts: {done:,} of {total:,} steps")

    result = run_tcav(model, prepared.plan, batch_size, advance)
    bar.empty()
    return result


def tcav_section(active: bool, model: ex.LoadedModel, data: str, data_roots: tuple[Path, ...] | None,
                 present: list[str], shortcut_class: str | None, mapping: str, batch_size: int) -> None:
    """Concepts the visitor names by example images, each tested on the chosen classes (``present``: those with
    images). ``data_roots``: the roots ``data`` must lie in, when a visitor typed it. The widgets are drawn even in a
    hidden tab (so they keep their values); the images are read only when it is ``active``."""
    roots = ex.data_roots.configured_roots()
    st.markdown("A concept is a folder of images that show it (a watermark, stripes, a ruler). At the chosen layer a "
                "linear classifier learns the concept's direction against random images; a class's TCAV score is "
                "the share of its images whose score rises along it. Each concept is tested against pseudo-concepts "
                "(random sets in its role), corrected for the number of tests: a folder no different from the random "
                "images comes out not significant.")
    sources = ([BUNDLED] if shortcut_class is not None else []) + [ZIP] + ([SERVER] if roots else [])
    _start_afresh_when(f"{PREFIX}source", sources)  # the demo's folders came or went: start on the first
    source = st.radio("Concepts", sources, horizontal=True, key=f"{PREFIX}source")
    parent = _concepts_parent(source, roots)
    if parent is None:
        st.info("Give the concept folders above.")
        return
    folders: dict[str, Path] = {}
    with shown_on_input_error():
        folders = concept_folders(*parent, roots if source == SERVER else None)
    if not folders:
        return
    names = [name for name in folders if name != RANDOM_FOLDER]
    random_folder = _random_folder(source, folders)
    row = st.columns([2, 1, 1])
    chosen = row[0].multiselect("Concepts to test", names, default=names[:MAX_CONCEPTS], key=f"{PREFIX}concepts",
                                max_selections=MAX_CONCEPTS)
    random_choice = row[1].radio("Random images", [FROM_FOLDER, FROM_DATASET] if random_folder else [FROM_DATASET],
                                 key=f"{PREFIX}random", help=RANDOM_IMAGES.help)
    layer = row[2].selectbox("Layer", model.conv_layers, format_func=model.layer_label, index=model.conv_layers.index(model.default_cam_layer)
                             if model.default_cam_layer in model.conv_layers else 0, key=f"{PREFIX}layer")
    _start_afresh_when(f"{PREFIX}classes", (present, shortcut_class))
    classes = st.multiselect("Classes to score", present, default=_default_classes(present, shortcut_class),
                             key=f"{PREFIX}classes")
    with st.expander("Test settings"):
        settings_values = param_widgets.draw(st.container(), TCAV, PREFIX)
    if not chosen or not classes:
        st.info("Choose at least one concept and one class.")
        return
    if not active:
        return
    stamp = cached.folders_stamp([*folders.values(), *([random_folder] if random_folder else [])])
    prepared = None
    with shown_on_input_error(), st.spinner("Reading the concept, class and random images…"):
        settings = tcav_settings(**settings_values)
        random = (ConceptFolder(name=RANDOM_FOLDER, folder=random_folder, shown=RANDOM_FOLDER)
                  if random_choice == FROM_FOLDER and random_folder else None)
        prepared = cached.tcav_plan(model, data, tuple(ConceptFolder(name=name, folder=folders[name], shown=name)
                                                       for name in chosen),
                                    random, tuple(classes), layer, settings, mapping, data_roots,
                                    tuple(roots) if source == SERVER else None, stamp)
    if prepared is None:
        return
    for why in prepared.skipped_files[:5]:
        st.caption(f"Skipped: {why}")
    plan = prepared.plan
    request = (model.fingerprint, data, tuple(chosen), random_choice, tuple(classes), layer,
               tuple(sorted(settings_values.items())), mapping, stamp)
    kept: dict = st.session_state.setdefault(_RESULT, {})
    if request not in kept:
        seconds = tcav_seconds(model, plan, batch_size)
        what = (f"Testing {counted(len(plan.concepts), 'concept')} on {counted(len(plan.classes), 'class', 'classes')} "
                f"({plan.fits:,} CAVs to fit)")
        # Always on a press: the tab is drawn with the page, and a test is never what a visitor opened it for.
        if not budget.allowed(seconds, what) or not st.button(
                f"Test the concepts ({estimates.describe(seconds)})", key=f"{PREFIX}run", type="primary",
                help=f"{what}; nothing runs before you press."):
            return
        kept.clear()  # one result per session: a new request replaces it
        kept[request] = _run(model, prepared, batch_size)
        st.caption(f"Estimated {estimates.describe(seconds)}; took {kept[request].seconds:.0f} s.")
    _show(kept[request])


def draw(active: bool, model: ex.LoadedModel | None, data: str | None, evaluation: Evaluation,
         data_roots: tuple[Path, ...] | None, shortcut_class: str | None, mapping: str, batch_size: int) -> None:
    """The tab; ``active`` when it is open (only then are images read). ``data`` is the evaluated folder of class subfolders (None for a results folder, which holds no
    model) and ``evaluation`` what it gave; ``shortcut_class`` the class the bundled shortcut demo marks, when it is
    the source."""
    st.subheader("Concepts you name (TCAV)")
    if model is None or data is None:
        st.info("Concept tests run the model on the images: choose a demo, a ZIP or a folder of images as the source "
                "above (a results folder holds no model).")
        return
    present = [evaluation.class_names[index] for index in sorted(set(evaluation.true.tolist()))]
    tcav_section(active, model, data, data_roots, present, shortcut_class, mapping, batch_size)
    st.subheader("Concepts found without examples")
    discovery_section(active, model, data, data_roots, present, shortcut_class, mapping, batch_size)


def _concepts_table(discovery: Discovery) -> pd.DataFrame:
    return pd.DataFrame([{"concept": concept.number, "importance (logit)": concept.importance,
                          "spread over images": concept.importance_spread, "share": concept.share,
                          "exemplars": ", ".join(discovery.sources[i] for i in concept.exemplars)}
                         for concept in discovery.concepts])


def discovery_section(active: bool, model: ex.LoadedModel, data: str, data_roots: tuple[Path, ...] | None,
                      present: list[str], shortcut_class: str | None, mapping: str, batch_size: int) -> None:
    """A class's concepts found by factorising a layer's activations over its images (as CRAFT and Deep Feature
    Factorization do): each concept's heatmaps on the images where it is strongest, its best-matching crops, and its
    importance to the class's score. Like the test above, images are read only in the open tab, and it runs on a
    press."""
    st.markdown("The layer's activations over a class's images are factorised into a few non-negative parts: each a "
                "direction in the layer's channels that the class's images share. Each concept shows where it lies "
                "on the images where it is strongest, the patches that match it best, and its importance: how much "
                "of the class's score it carries (gradient × its part of the activations).")
    row = st.columns([1, 1])
    _start_afresh_when(f"{DISCOVER_PREFIX}class", (present, shortcut_class))
    if st.session_state.get(f"{DISCOVER_PREFIX}class") not in present:
        st.session_state[f"{DISCOVER_PREFIX}class"] = shortcut_class if shortcut_class in present else present[0]
    class_name = row[0].selectbox("Class", present, key=f"{DISCOVER_PREFIX}class")
    layer = row[1].selectbox("Layer", model.conv_layers, format_func=model.layer_label, index=model.conv_layers.index(model.default_cam_layer)
                             if model.default_cam_layer in model.conv_layers else 0, key=f"{DISCOVER_PREFIX}layer")
    with st.expander("Discovery settings"):
        values = param_widgets.draw(st.container(), FACTORISATION, DISCOVER_PREFIX)
    if not active:
        return
    images = None
    with shown_on_input_error():
        settings = factorisation_settings(**values)
        images = cached.class_images(model, data, class_name, settings.images, settings.seed, mapping, data_roots)
        layer = check_discovery(model, layer, class_name, len(images), settings)
    if images is None:
        return
    request = (model.fingerprint, data, class_name, layer, tuple(sorted(values.items())), mapping, len(images))
    kept: dict = st.session_state.setdefault(_DISCOVERY, {})
    if request not in kept:
        seconds = discovery_seconds(model, len(images), layer, settings.components, batch_size)
        what = f"Finding {settings.components} concepts in {counted(len(images), 'image')} of {class_name}"
        if not budget.allowed(seconds, what) or not st.button(
                f"Find concepts ({estimates.describe(seconds)})", key=f"{DISCOVER_PREFIX}run", type="primary",
                help=f"{what}; nothing runs before you press."):
            return
        bar = st.progress(0.0, "Finding concepts…")

        def advance(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), f"Finding concepts: {done:,} of {total:,} steps")

        with shown_on_input_error():
            kept.clear()  # one result per session
            kept[request] = discover_concepts(model, images, model.class_names.index(class_name), layer,
                                              batch_size=batch_size, on_progress=advance, **values)
        bar.empty()
        if request not in kept:
            return
    discovery: Discovery = kept[request]
    for note in discovery.notes:
        st.caption(note)
    st.dataframe(_concepts_table(discovery), hide_index=True, width="stretch",
                 column_config={"share": st.column_config.NumberColumn(format="%+.2f")})
    picture = cached.picture(("ds_discovery", request), lambda: discovery_picture(discovery))
    st.image(picture, caption=f"One row per concept, most important first: its heatmap over the {EXEMPLARS} images "
                              "where it is strongest, then the patches that match it best (each from another image).")
    st.caption(f"Layer {discovery.layer}; {counted(len(discovery.images), 'image')} of {discovery.class_name} "
               f"(of {discovery.available:,}); the {len(discovery.concepts)} parts rebuild the activations within "
               f"{discovery.reconstruction_error:.0%}; {discovery.seconds:.1f} s.")
    st.download_button("Discovered concepts (JSON)", lambda: json.dumps(discovery_json(discovery), indent=1),
                       "discovered.json", "application/json", on_click="ignore", key=f"{DISCOVER_PREFIX}json")
