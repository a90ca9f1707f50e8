"""Shareable views: the selections that define a view live in the URL's query parameters.

On a session's first run, parameters in the URL seed the widgets (keys below);
at the end of every run the current values are written back, so the address bar
always holds a link that reopens this view. Values a widget would reject are
dropped (choices) or clamped (numeric ranges); uploaded files cannot travel in a
link and are left out; the link says which kinds were left out, and the recipient is told.

Streamlit forgets a page's widget values when the visitor switches to another page, so a visit
would reset it: ``keep`` and ``remembered`` copy each page's view values as its runs start and end,
and ``keep`` puts them back when the page is drawn again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

import streamlit as st

from explainers import REGISTRY, InputError, sample_images
from explainers.concepts.factorisation import FACTORISATION
from explainers.concepts.strategies import BY, STRATEGIES
from explainers.concepts.tcav import TCAV
from explainers.errors import echo
from explainers.methods.registry import Param
from explainers.options import CURVE_STEPS, DATASET, PER_CLASS, SEED
from explainers.trust import METRICS

from . import budget, param_widgets, view_settings, widgets

_RESTORED = "_share_restored"
_KEPT = "_share_kept"  # {page prefix: {widget key: value}}: each page's view as its last run started or ended
_LAST_PAGE = "_share_last_page"  # the prefix of the page the previous run drew
# The link parameter naming the uploads a view used, which cannot travel in a link.
LEFT_OUT = "uploads_left_out"
_USED_UPLOADS = "_share_used_uploads"  # the kinds of upload the view drawn in this run uses
# Each kind of upload a view can use: what it is called, and what whoever opens the link gets instead.
UPLOADS = {
    "model": ("an uploaded model", "this app's default model is shown instead"),
    "labels": ("an uploaded class-names file", "the model's classes are shown by number"),
    "images": ("uploaded images", "only the bundled images the link names are shown"),
    "dataset": ("an uploaded ZIP of images", "upload it on the dataset page to see its results"),
    "trust": ("an uploaded ZIP of images or boxes CSV", "upload it on the trust page to see its results"),
    "concepts": ("an uploaded ZIP of concept folders", "upload it on the dataset page's Concepts tab"),
}
_NAMED_MISSING = 3  # image names a link lacks that its note names; the rest are counted


def _text(key: str) -> Param:
    """A widget whose value is a name or a path, checked where it is used (a choice the page offers, a path
    inside the data roots)."""
    return Param(key, "", "text, used as the page checks it")


def _names(key: str) -> Param:
    """A multiselect's chosen names; the page keeps only those it offers."""
    return Param(key, (), "names, kept where the page offers them")


def _switch(key: str) -> Param:
    return Param(key, False, "on or off")


def _whole(key: str) -> Param:
    return Param(key, 0, "a whole number the page checks (a class index, a batch size)")


# Widget keys -> the Param their values travel as (a link's value is checked, clamped into a number's bounds, or
# dropped). Numbers with bounds are the Params their widgets are drawn from: one description of each.
SIDEBAR = {key: _text(key) for key in ("model_spec", "own_model_path", "top5_image",
                                        # what makes a model by path the sender's: labels file, preprocessing, output
                                        "own_model_labels_path", "own_model_preprocessing", "own_model_output")}
SIDEBAR["image_names"] = _names("image_names")
_OWN_MODEL_KEYS = ("own_model_path", "own_model_labels_path", "own_model_preprocessing", "own_model_output")
_INT_NAMES = {"ds_attention_classes"}  # lists of class indices, not of names
PAGES: dict[str, Param] = {
    **{key: _text(key) for key in (
        "overview_layer", "grid_method", "grid_class_mode", "grid_layer_mode", "grid_positions", "grid_mode",
        "grid_features_layer", "grid_features_image", "cmp_class_mode", "ds_source", "ds_path",
        "ds_cam_layer", "ds_cell_true", "ds_cell_predicted", "ds_results_path", "learned_layer", "learned_target",
        "trust_source", "trust_path", "trust_results_path", "trust_masks", "trust_masks_path", "trust_boxes_path",
        "trust_target", "trust_heat_metric", "ds_tab", "ds_str_class", "ds_tcav_source", "ds_tcav_random", "ds_tcav_layer",
        "ds_concepts_path", "ds_nmf_class", "ds_nmf_layer")},
    **{key: _names(key) for key in (
        "grid_layers", "cmp_methods", "ds_image_classes", "ds_attention_classes", "learned_classes", "trust_methods",
        "ds_tcav_concepts", "ds_tcav_classes")},
    **{key: _switch(key) for key in ("ds_normalized", "ds_errors_only", "learned_stretch")},
    **{key: _whole(key) for key in ("grid_class", "cmp_class")},
    "cmp_clip": Param("cmp_clip", 99.0, "the percentile maps are clipped at"),
    **{f"{prefix}{param.name}": param for prefix in ("grid_", "cmp_", "ds_", "ds_str_") for param in widgets.OVERLAY},
    "grid_top_n": widgets.TOP_CLASSES,
    "grid_features_count": view_settings.FEATURE_CHANNELS,
    "learned_channel_count": view_settings.LEARNED_CHANNELS,
    "cmp_steps": CURVE_STEPS,
    "trust_per_class": PER_CLASS,
    "trust_seed": SEED,
    "ds_mapping": DATASET.params[0],
    "ds_batch": DATASET.params[1],
    **{param_widgets.key(view_settings.LEARNED.name, param.name, view_settings.LEARNED_PREFIX): param
       for param in view_settings.LEARNED.params},
    "ds_str_by": BY,
    **{param_widgets.key(described.name, param.name, prefix): param
       for described, prefix in ((STRATEGIES, "ds_str_"), (TCAV, "ds_tcav_"), (FACTORISATION, "ds_nmf_"))
       for param in described.params},
}
# One layer picker per CAM method (compare, trust); one box per trust metric, whether it is scored.
_PREFIXED = {"cmp_layer_": _text("layer"), "trust_layer_": _text("layer"), "trust_use_": _switch("use")}


def _spec(key: str) -> Param | None:
    if key in SIDEBAR or key in PAGES:
        return SIDEBAR.get(key) or PAGES[key]
    if key.startswith(param_widgets.PREFIX):  # read from the registry now: a method added later has its keys too
        return param_widgets.params_by_key(REGISTRY).get(key)
    if key.startswith(param_widgets.TRUST_METHOD_PREFIX):
        return param_widgets.params_by_key(REGISTRY, param_widgets.TRUST_METHOD_PREFIX).get(key)
    if key.startswith(param_widgets.TRUST_METRIC_PREFIX):  # a plugin's metric too, once registered
        return param_widgets.params_by_key(METRICS, param_widgets.TRUST_METRIC_PREFIX).get(key)
    return next((spec for prefix, spec in _PREFIXED.items() if key.startswith(prefix)), None)


def _parse(key: str, spec: Param, values: list[str]) -> Any:
    """The widget value a URL parameter stands for; ValueError when it cannot be one (a choice not offered, not a
    number). A page setting's number out of its bounds is clamped into them (a hand-edited "steps=5000" asks for the
    most); a method's or a metric's parameter out of bounds falls back to its default, as it may change what the
    method computes."""
    if spec.kind is tuple:
        return [int(v) if key in _INT_NAMES else v for v in values if v]
    text = values[-1]
    if spec.kind is bool:
        return text.lower() in ("1", "true", "yes", "on")
    if spec.kind in (int, float) and not spec.choices and (key in PAGES or key in SIDEBAR):
        number = float(text)  # ValueError for what is no number; clamped, then checked as the widget would
        if spec.low is not None:
            number = max(float(spec.low), number)
        if spec.high is not None:
            number = min(float(spec.high), number)
        text = str(int(number)) if spec.kind is int and number.is_integer() else str(number)
    try:
        return spec.check(text, spec.name)
    except InputError:
        raise ValueError(text) from None


def _encode(value) -> str | list[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return str(value)


def _known_images(names: list[str]) -> tuple[list[str], str | None]:
    """The link's image names this app has, and a sentence naming those it has not (None when all are found).

    Only the bundled samples can be in a link (uploads never travel), so those are the names to look for.
    """
    known = sample_images()
    missing = [name for name in names if name not in known]
    if not missing:
        return names, None
    found = [name for name in names if name in known]
    named = [f"'{echo(name)}'" for name in missing[:_NAMED_MISSING]]  # a link can hold any number, of any length
    if len(missing) > _NAMED_MISSING:
        named.append(f"{len(missing) - _NAMED_MISSING:,} more")
    quoted = " and ".join(named) if len(named) <= 2 else f"{', '.join(named[:-1])} and {named[-1]}"
    subject = f"The link's image {quoted} is" if len(missing) == 1 else f"The link's images {quoted} are"
    instead = "the other images it names are shown" if found else "the default images are shown instead"
    return found, f"{subject} not among this app's images; {instead}."


def _joined(words: list[str]) -> str:
    return " and ".join(words) if len(words) <= 2 else f"{', '.join(words[:-1])} and {words[-1]}"


def used_upload(kind: str) -> None:
    """Say that the view drawn in this run uses an upload of ``kind`` (a key of UPLOADS), which its link cannot carry."""
    st.session_state.setdefault(_USED_UPLOADS, set()).add(kind)


def _left_out_note(kinds: list[str]) -> str:
    """The sentence whoever opens a link reads when the sender's view used uploads."""
    used = _joined([UPLOADS[kind][0] for kind in kinds])
    instead = "; ".join(UPLOADS[kind][1] for kind in kinds)
    return f"The sender's view used {used}, which a link cannot carry: {instead}."


def restore() -> list[str]:
    """Seed widgets from the URL, once per session, before any widget is drawn.

    Returns one sentence per link value the user should know was not used (an image name
    not found, the uploads the sender's view used); empty on every later run.
    """
    st.session_state[_USED_UPLOADS] = set()  # said anew by whatever reads an upload in this run
    if st.session_state.get(_RESTORED):
        return []
    st.session_state[_RESTORED] = True
    notes = []
    for key in st.query_params:
        spec = _spec(key)
        if spec is None or key in st.session_state:
            continue
        try:
            value = _parse(key, spec, st.query_params.get_all(key))
        except ValueError:
            continue  # a hand-edited or stale link: the widget keeps its default
        if key == "image_names":
            value, note = _known_images(value)
            if note:
                notes.append(note)
                if not value:
                    continue  # none found: the sidebar's default images, rather than an empty page
        st.session_state[key] = value
    left_out = [kind for kind in UPLOADS if kind in st.query_params.get_all(LEFT_OUT)]
    if left_out:
        notes.append(_left_out_note(left_out))
    return notes


def _link_values(page_prefix: str) -> dict[str, str | list[str]]:
    """The query parameters of a link to the current view: the sidebar's and this page's values, and the uploads
    left out."""
    uploads = st.session_state.get(_USED_UPLOADS, set())
    # An own model travels by its server path, with what makes it the sender's; an uploaded one not at all.
    own_by_path = st.session_state.get("model_spec") == "own" and bool(st.session_state.get("own_model_path")) \
        and "model" not in uploads
    values: dict[str, str | list[str]] = {}
    for key, value in st.session_state.items():
        if not isinstance(key, str) or _spec(key) is None:
            continue
        if key in SIDEBAR or (page_prefix and key.startswith(page_prefix)):
            if key == "image_names":
                value = [name for name in value if not name.startswith("upload: ")]  # files cannot travel in a link
            if (key == "model_spec" and value == "own" or key in _OWN_MODEL_KEYS) and not own_by_path:
                continue
            values[key] = _encode(value)
    left_out = [kind for kind in UPLOADS if kind in uploads]
    if left_out:
        values[LEFT_OUT] = left_out
    return values


def publish(page_prefix: str = "") -> None:
    """Write the sidebar's and this page's current values into the URL (replacing other pages' parameters)."""
    values = _link_values(page_prefix)
    if values != {k: st.query_params.get_all(k) if isinstance(v, list) else st.query_params.get(k)
                  for k, v in values.items()} or set(st.query_params) != set(values):
        st.query_params.from_dict(values)


def offer_link(slot, page_prefix: str, url_path: str) -> None:
    """Draw into ``slot`` (an ``st.empty``) a "Copy link" button for the current view, and what the link leaves out.

    Streamlit has no clipboard call: the button opens the link as code, whose copy icon copies it.
    """
    values = _link_values(page_prefix)
    left_out = values.get(LEFT_OUT, [])
    # The address the browser shows for this page, without its query; None where there is no browser (tests).
    address = st.context.url or f"/{url_path}"
    link = f"{address}?{urlencode(values, doseq=True)}" if values else address
    with slot.container():
        with st.popover("Copy link", icon=":material/link:", width="stretch",
                        help="A link that reopens this view: the model, images, page and settings."):
            st.code(link, language=None, wrap_lines=True)
            st.caption("The icon at the right of the link copies it.")
        if left_out:
            st.caption(f"Not in this link: {_joined([UPLOADS[kind][0] for kind in left_out])}. Uploads cannot "
                       "travel in a link; whoever opens it is told so.")


def keep(page_prefix: str) -> None:
    """Put back this page's view as the visitor left it, when they come back from another page, and copy the view
    as this run starts; call before the page draws and before ``publish``.

    Streamlit deletes the values of a page's widgets when the visitor switches to another page
    (before that page's run starts), so the values are copied into a plain session key, and this
    puts the copies back before its widgets are drawn again.

    The copy is taken here, not only as the run ends: each click in the browser (a widget changed, another page
    chosen) makes Streamlit stop the run under way and start a new one at once, and a stopped run ends at its next
    Streamlit call, never reaching the copy at its end. The values the browser sent are in the session before the
    run starts, so from here on they are kept, before the link shows them.
    """
    if st.session_state.get(_LAST_PAGE) != page_prefix:
        for key, value in st.session_state.get(_KEPT, {}).get(page_prefix, {}).items():
            if key not in st.session_state:
                st.session_state[key] = value
    st.session_state[_LAST_PAGE] = page_prefix
    _copy_view(page_prefix)


def _copy_view(page_prefix: str) -> None:
    """This page's view values, as they are now, become its kept copy. A value the page deleted is left out of the
    copy, so it does not come back either."""
    st.session_state.setdefault(_KEPT, {})[page_prefix] = {
        key: value for key, value in st.session_state.items()
        if isinstance(key, str) and key.startswith(page_prefix) and _spec(key) is not None}


@contextmanager
def remembered(page_prefix: str) -> Iterator[None]:
    """Around a page's run: copy its view values when the run ends (st.stop, st.rerun, an error, or its end), with
    the values the page set itself (a default it chose, a clicked cell), unless a newer run replaced this one (or
    the tab closed).

    A replaced run leaves the copy ``keep`` took as it started: the newer run owns the session's values, which
    its page switch may already have cleared (Streamlit also refuses a stopped run any further session access).
    """
    replaced = budget.run_stopped()
    try:
        yield
    finally:
        if not replaced():
            _copy_view(page_prefix)
