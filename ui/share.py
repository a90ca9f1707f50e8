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
from dataclasses import dataclass
from urllib.parse import urlencode

import streamlit as st

from explainers import REGISTRY, InputError, sample_images
from explainers.errors import echo
from explainers.methods.registry import Param
from explainers.trust import METRICS

from . import budget, method_params

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
}
_NAMED_MISSING = 3  # image names a link lacks that its note names; the rest are counted


@dataclass(frozen=True)
class Shared:
    kind: type  # str, int, float, bool or list
    low: float | None = None
    high: float | None = None
    item: type = str  # a list's items


_TEXT, _LIST, _INT, _BOOL = Shared(str), Shared(list), Shared(int), Shared(bool)
_UNIT = Shared(float, 0.0, 1.0)

# Widget keys -> how their values travel. The sidebar's are part of every view.
SIDEBAR = {"model_spec": _TEXT, "own_model_path": _TEXT, "image_names": _LIST, "top5_image": _TEXT,
           # what makes a model by path the sender's: its labels file, preprocessing and output
           "own_model_labels_path": _TEXT, "own_model_preprocessing": _TEXT, "own_model_output": _TEXT}
_OWN_MODEL_KEYS = ("own_model_path", "own_model_labels_path", "own_model_preprocessing", "own_model_output")
PAGES = {
    "overview_layer": _TEXT,
    "grid_method": _TEXT, "grid_class_mode": _TEXT, "grid_top_n": Shared(int, 1, 5), "grid_class": _INT,
    "grid_layer_mode": _TEXT, "grid_layers": _LIST, "grid_positions": _TEXT, "grid_opacity": _UNIT,
    "grid_colormap": _TEXT, "grid_mode": _TEXT,
    "grid_features_layer": _TEXT, "grid_features_image": _TEXT, "grid_features_count": Shared(int, 4, 32),
    "cmp_methods": _LIST, "cmp_class_mode": _TEXT, "cmp_class": _INT,
    "cmp_opacity": _UNIT, "cmp_colormap": _TEXT, "cmp_clip": Shared(float), "cmp_steps": _INT,
    "ds_source": _TEXT, "ds_path": _TEXT, "ds_mapping": _TEXT, "ds_cam_layer": _TEXT, "ds_batch": _INT,
    "ds_cell_true": _TEXT, "ds_cell_predicted": _TEXT, "ds_normalized": _BOOL, "ds_errors_only": _BOOL,
    "ds_image_classes": _LIST, "ds_opacity": _UNIT, "ds_colormap": _TEXT,
    "ds_results_path": _TEXT, "ds_attention_classes": Shared(list, item=int),
    "learned_steps": Shared(int, 10, 300), "learned_tv": Shared(float, 0.0, 3.0), "learned_norm": Shared(float, 0.0, 1.0),
    "learned_jitter": Shared(int, 0, 16), "learned_seed": Shared(int, 0, 2**31 - 1),
    "learned_rate": Shared(float, 0.3, 10.0), "learned_classes": _LIST,
    "learned_layer": _TEXT, "learned_channel_count": Shared(int, 1, 12), "learned_target": _TEXT,
    "learned_stretch": _BOOL,
    "trust_source": _TEXT, "trust_path": _TEXT, "trust_results_path": _TEXT, "trust_masks": _TEXT,
    "trust_masks_path": _TEXT, "trust_boxes_path": _TEXT, "trust_methods": _LIST,
    "trust_per_class": Shared(int, 1, 100_000), "trust_seed": Shared(int, 0, 2**31 - 1), "trust_target": _TEXT,
    "trust_heat_metric": _TEXT,
}
# One layer picker per CAM method (compare, trust); one box per trust metric, whether it is scored.
_PREFIXED = {"cmp_layer_": _TEXT, "trust_layer_": _TEXT, "trust_use_": _BOOL}


def _spec(key: str) -> Shared | Param | None:
    if key in SIDEBAR or key in PAGES:
        return SIDEBAR.get(key) or PAGES[key]
    if key.startswith(method_params.PREFIX):  # read from the registry now: a method added later has its keys too
        return method_params.params_by_key(REGISTRY).get(key)
    if key.startswith(method_params.TRUST_METHOD_PREFIX):
        return method_params.params_by_key(REGISTRY, method_params.TRUST_METHOD_PREFIX).get(key)
    if key.startswith(method_params.TRUST_METRIC_PREFIX):  # a plugin's metric too, once registered
        return method_params.params_by_key(METRICS, method_params.TRUST_METRIC_PREFIX).get(key)
    return next((spec for prefix, spec in _PREFIXED.items() if key.startswith(prefix)), None)


def _parse(spec: Shared | Param, values: list[str]):
    """The widget value a URL parameter stands for; ValueError when it cannot be one."""
    if isinstance(spec, Param):  # a method's parameter: the registration says what it may be
        try:
            return spec.check(values[-1] if spec.kind is not bool else values[-1].lower() in ("1", "true"), spec.name)
        except InputError:
            raise ValueError(values[-1]) from None
    if spec.kind is list:
        return [spec.item(v) for v in values if v]
    text = values[-1]
    if spec.kind is bool:
        return text.lower() in ("1", "true", "yes", "on")
    value = spec.kind(text)
    if spec.low is not None:
        value = max(spec.kind(spec.low), value)
    if spec.high is not None:
        value = min(spec.kind(spec.high), value)
    return value


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
            value = _parse(spec, st.query_params.get_all(key))
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
