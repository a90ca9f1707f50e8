"""The comparison page's Altair charts, built from the engine's results (pages draw them through ``cached.chart``).

Each method keeps its registered colour and point shape, so methods shown together
differ in both; every axis fits its data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainers import REGISTRY
from explainers.scores import SanityCheck, sanity
from explainers.scores.faithfulness import Curves

CURVE_DASHES = {"deletion": [1, 0], "insertion": [6, 3]}  # solid and dashed, in the chart and its legend


def fitted_domain(values, low: float, high: float) -> list[float]:
    """An axis from ``low`` to ``high``, widened to the next tenth wherever ``values`` go beyond: data never overflows."""
    values = np.asarray(values, float)
    return [min(low, float(np.floor(values.min() * 10) / 10)), max(high, float(np.ceil(values.max() * 10) / 10))]


def _method_encodings(methods: Sequence[str]) -> tuple[alt.Color, alt.Shape]:
    labels = [REGISTRY[n].label for n in methods]
    colours = alt.Scale(domain=labels, range=[REGISTRY[n].colour for n in methods])
    shapes = alt.Scale(domain=labels, range=[REGISTRY[n].shape for n in methods])
    return alt.Color("method:N", scale=colours, sort=labels), alt.Shape("method:N", scale=shapes, sort=labels)


def curves_chart(curves: Mapping[str, Curves]) -> alt.LayerChart:
    """Mean deletion and insertion curves over the images, one colour per method and one dash per curve."""
    colour, shape = _method_encodings(list(curves))
    long = pd.concat([
        pd.DataFrame({"method": REGISTRY[n].label, "curve": kind, "fraction of pixels": c.fractions,
                      "class probability": getattr(c, kind).mean(axis=0)})
        for n, c in curves.items() for kind in CURVE_DASHES
    ])
    base = alt.Chart(long).encode(
        x=alt.X("fraction of pixels:Q", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("class probability:Q", scale=alt.Scale(domain=fitted_domain(long["class probability"], 0, 1))),
        color=colour,
    )
    # The kind of curve is the line's dash, drawn by its own layer so that its legend shows lines; a point
    # mark (where the shapes live) would turn both legend entries into the same filled dot.
    lines = base.mark_line().encode(strokeDash=alt.StrokeDash(
        "curve:N", scale=alt.Scale(domain=list(CURVE_DASHES), range=list(CURVE_DASHES.values())),
        legend=alt.Legend(title="curve", symbolType="stroke", symbolSize=500, symbolStrokeWidth=2,
                          symbolStrokeColor="black")))
    points = base.mark_point(filled=True).encode(
        shape=shape,
        tooltip=["method", "curve", "fraction of pixels", alt.Tooltip("class probability:Q", format=".3f")],
    )
    return lines + points


def sanity_chart(checks: Mapping[str, SanityCheck]) -> alt.LayerChart:
    """Mean rank correlation with the original map per stage, each method in its colour, and the flag threshold."""
    colour, shape = _method_encodings(list(checks))
    table = pd.DataFrame([{"method": REGISTRY[name].label, "stage": stage, "down to": layer,
                           "rank correlation": corr.mean()}
                          for name, check in checks.items()
                          for stage, layer, corr in zip(check.stage_labels, check.deepest_layer, check.correlations)])
    # One category per stage that ran, in the cascade's order: a count axis would invent stages in between.
    stages = list(dict.fromkeys(table["stage"]))
    # Points large enough that each method's shape reads at a glance: a stage is a handful of points.
    lines = alt.Chart(table).mark_line(point=alt.OverlayMarkDef(filled=True, size=100)).encode(
        x=alt.X("stage:O", title="weighted layers re-drawn, from the top", sort=stages,
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y("rank correlation:Q", title="rank correlation with the original map",
                scale=alt.Scale(domain=fitted_domain(table["rank correlation"], 0, 1))),
        color=colour,
        shape=shape,
        tooltip=["method", "stage", "down to", alt.Tooltip("rank correlation:Q", format=".2f")],
    )
    threshold = alt.Chart(pd.DataFrame({"threshold": [sanity.SANITY_THRESHOLD]})).mark_rule(
        strokeDash=[2, 2], color="gray").encode(y="threshold:Q", tooltip=["threshold"])
    return lines + threshold


def agreement_chart(methods: Sequence[str], agreement: np.ndarray) -> alt.LayerChart:
    """The methods' pairwise Spearman correlations as a labelled heatmap."""
    cells = pd.DataFrame([{"a": REGISTRY[a].label, "b": REGISTRY[b].label, "spearman": agreement[i, j]}
                          for i, a in enumerate(methods) for j, b in enumerate(methods)])
    base = alt.Chart(cells).encode(x=alt.X("a:N", title=None, axis=alt.Axis(labelAngle=0)), y=alt.Y("b:N", title=None))
    return (base.mark_rect().encode(color=alt.Color("spearman:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue")))
            + base.mark_text().encode(text=alt.Text("spearman:Q", format=".2f")))
