"""Widgets drawn from ``Param`` descriptions: a method's, a trust metric's or a page's own settings. A new method or
metric needs no page edit to be tuned or shared, and a setting's bounds are the same in its widget, its link and
its check."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st

from explainers.methods.registry import Described, Param

PREFIX = "cmp_param_"  # widget keys: cmp_param_<method>__<parameter>; the comparison page's link carries them
# The trust page's: trust_param_<method>__<parameter> and trust_metric_<metric>__<parameter>, in its link.
TRUST_METHOD_PREFIX, TRUST_METRIC_PREFIX = "trust_param_", "trust_metric_"
_SLIDER_STEPS = 400  # past this many positions a slider is too fine to drag: a number box instead


def key(method: str, param: str, prefix: str = PREFIX) -> str:
    return f"{prefix}{method}__{param}"


def params_by_key(registry: Mapping[str, Described], prefix: str = PREFIX) -> dict[str, Param]:
    """Every registered method's (or metric's) parameter by its widget key, for links."""
    return {key(name, p.name, prefix): p for name, method in registry.items() for p in method.params}


def label(param: Param) -> str:
    return param.label or param.name.replace("_", " ").capitalize()


def widget(container, param: Param, widget_key: str) -> Any:
    """The widget ``param`` describes, keyed ``widget_key``: a toggle, a radio or a slider of its choices, a slider
    (or, when finer than a hand can drag, a number box) between its bounds, or a text box."""
    common = {"help": param.help, "key": widget_key}
    if param.kind is bool:
        return container.toggle(label(param), param.default, **common)
    if param.choices:
        if all(isinstance(c, str) for c in param.choices):
            return container.radio(label(param), list(param.choices), list(param.choices).index(param.default),
                                   horizontal=True, **common)
        return container.select_slider(label(param), list(param.choices), param.default, **common)
    if param.presets:
        current = st.session_state.get(widget_key, param.default)
        options = sorted({*param.presets, param.default, *([current] if isinstance(current, param.kind) else [])})
        return container.select_slider(label(param), options, param.default, **common)
    if param.kind in (int, float) and param.low is not None and param.high is not None:
        step = param.step or (1 if param.kind is int else (param.high - param.low) / 100)
        if (param.high - param.low) / step <= _SLIDER_STEPS:
            return container.slider(label(param), param.kind(param.low), param.kind(param.high), param.default,
                                    param.kind(step), **common)
        return container.number_input(label(param), param.kind(param.low), param.kind(param.high), param.default,
                                      param.kind(step), **common)
    if param.kind in (int, float):
        return container.number_input(label(param), value=param.default, **common)
    return container.text_input(label(param), param.default, **common)


def draw(container, method: Described, prefix: str = PREFIX) -> dict[str, Any]:
    """The method's (or metric's) parameter widgets in ``container``, keyed ``<prefix><name>__<parameter>``; their
    values by parameter name."""
    return {param.name: widget(container, param, key(method.name, param.name, prefix)) for param in method.params}
