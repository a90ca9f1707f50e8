"""Shareable views: the selections that define a view live in the URL's query parameters.

On a session's first run, parameters in the URL seed the widgets (keys below);
at the end of every run the current values are written back, so the address bar
always holds a link that reopens this view. Values a widget would reject are
dropped (choices) or clamped (numeric ranges); uploaded files cannot travel in a
link and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from explainers import REGISTRY, InputError, sample_images
from explainers.methods.registry import Param

from . import method_params

_RESTORED = "_share_restored"


@dataclass(frozen=True)
class Shared:
    kind: type  # str, int, float, bool or list (of str)
    low: float | None = None
    high: float | None = None


_TEXT, _LIST, _INT, _BOOL = Shared(str), Shared(list), Shared(int), Shared(bool)
_UNIT = Shared(float, 0.0, 1.0)

# Widget keys -> how their values travel. The sidebar's are part of every view.
SIDEBAR = {"model_spec": _TEXT, "own_model_path": _TEXT, "image_names": _LIST, "top5_image": _TEXT}
PAGES = {
    "overview_layer": _TEXT,
    "grid_method": _TEXT, "grid_class_mode": _TEXT, "grid_top_n": Shared(int, 1, 5), "grid_class": _INT,
    "grid_layer_mode": _TEXT, "grid_layers": _LIST, "grid_positions": _TEXT, "grid_opacity": _UNIT,
    "grid_colormap": _TEXT, "grid_mode": _TEXT,
    "cmp_methods": _LIST, "cmp_class_mode": _TEXT, "cmp_class": _INT,
    "cmp_opacity": _UNIT, "cmp_colormap": _TEXT, "cmp_clip": Shared(float), "cmp_steps": _INT,
    "ds_source": _TEXT, "ds_path": _TEXT, "ds_mapping": _TEXT, "ds_cam_layer": _TEXT, "ds_batch": _INT,
    "ds_cell_true": _TEXT, "ds_cell_predicted": _TEXT, "ds_normalized": _BOOL, "ds_errors_only": _BOOL,
    "ds_image_classes": _LIST, "ds_opacity": _UNIT, "ds_colormap": _TEXT,
    "learned_steps": Shared(int, 10, 300), "learned_tv": Shared(float, 0.0, 3.0), "learned_norm": Shared(float, 0.0, 1.0),
    "learned_jitter": Shared(int, 0, 16), "learned_seed": Shared(int, 0, 2**31 - 1),
    "learned_rate": Shared(float, 0.3, 10.0), "learned_classes": _LIST,
    "learned_layer": _TEXT, "learned_channel_count": Shared(int, 1, 12), "learned_target": _TEXT,
    "learned_stretch": _BOOL,
}
_PREFIXED = {"cmp_layer_": _TEXT}  # one layer picker per CAM method


def _spec(key: str) -> Shared | Param | None:
    if key in SIDEBAR or key in PAGES:
        return SIDEBAR.get(key) or PAGES[key]
    if key.startswith(method_params.PREFIX):  # read from the registry now: a method added later has its keys too
        return method_params.params_by_key(REGISTRY).get(key)
    return next((spec for prefix, spec in _PREFIXED.items() if key.startswith(prefix)), None)


def _parse(spec: Shared | Param, values: list[str]):
    """The widget value a URL parameter stands for; ValueError when it cannot be one."""
    if isinstance(spec, Param):  # a method's parameter: the registration says what it may be
        try:
            return spec.check(values[-1] if spec.kind is not bool else values[-1].lower() in ("1", "true"), spec.name)
        except InputError:
            raise ValueError(values[-1]) from None
    if spec.kind is list:
        return [v for v in values if v]
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
    quoted = " and ".join(f"'{name}'" for name in missing)
    subject = f"The link's image {quoted} is" if len(missing) == 1 else f"The link's images {quoted} are"
    instead = "the other images it names are shown" if found else "the default images are shown instead"
    return found, f"{subject} not among this app's images; {instead}."


def restore() -> list[str]:
    """Seed widgets from the URL, once per session, before any widget is drawn.

    Returns one sentence per link value the user should know was not used (an image name
    not found); empty on every later run.
    """
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
    return notes


def publish(page_prefix: str = "") -> None:
    """Write the sidebar's and this page's current values into the URL (replacing other pages' parameters)."""
    values = {}
    for key, value in st.session_state.items():
        if not isinstance(key, str) or _spec(key) is None:
            continue
        if key in SIDEBAR or (page_prefix and key.startswith(page_prefix)):
            if key == "image_names":
                value = [name for name in value if not name.startswith("upload: ")]  # files cannot travel in a link
            if key == "model_spec" and value == "own" and not st.session_state.get("own_model_path"):
                continue
            values[key] = _encode(value)
    if values != {k: st.query_params.get_all(k) if isinstance(v, list) else st.query_params.get(k)
                  for k, v in values.items()} or set(st.query_params) != set(values):
        st.query_params.from_dict(values)
