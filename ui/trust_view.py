"""The trust page's tables and charts, built from a ``TrustSummary`` (pages draw the charts through ``cached.chart``).

Numbers are formatted as the HTML report formats them (``explainers.trust.report``), so the page and the report
show the same text, and a test can compare it with the engine's values. Every chart's scale fits its data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainers.trust.registry import get_metric
from explainers.trust.report import interval, method_label, number, ordering, verdict_words
from explainers.trust.summary import TrustSummary

WINNER = "★"  # before each metric's best mean in the table (every method sharing it)
WINNER_STYLE = "font-weight: 600; background-color: rgba(28, 131, 225, 0.12)"
IMAGES = "images"  # the score table's last column: the images each metric scored
# A card's marks, as Streamlit's own icon font draws them (an emoji needs a font the browser may lack).
GOOD, NOT_GOOD = ":green[:material/check_circle:]", ":red[:material/cancel:]"
CELL = (34, 64)  # px: the smallest and largest side of a heatmap cell
HEATMAP_WIDTH = 760  # px: the widest a heatmap's cells make it


def metric_label(name: str) -> str:
    return get_metric(name).label


def arrow(metric: str) -> str:
    return "↑" if get_metric(metric).higher_is_better else "↓"


def row_name(metric: str) -> str:
    return f"{metric_label(metric)} {arrow(metric)}"


def winners(summary: TrustSummary, metric: str) -> set[str]:
    """The methods with the best mean by ``metric``: the top of its ranking, and any method whose mean equals it."""
    ranking = summary.ranking.get(metric) or []
    if not ranking:
        return set()
    top = summary.overall[ranking[0]][metric].mean
    return {m for m in ranking if math.isclose(summary.overall[m][metric].mean, top, rel_tol=1e-12, abs_tol=1e-15)}


def images_scored(summary: TrustSummary, metric: str) -> int:
    """The images with a value of ``metric`` (the most any method has: a constant map has none)."""
    return max((e.images for e in (summary.overall[m].get(metric) for m in summary.methods) if e is not None), default=0)


def score_table(summary: TrustSummary) -> pd.DataFrame:
    """A row per metric, a column per method: each cell the mean with its interval, each metric's winner starred;
    then the images the metric scored. Metrics as rows: there are rarely more methods than a page's width holds."""
    rows = {}
    for metric in summary.metrics:
        best = winners(summary, metric)
        rows[row_name(metric)] = [(f"{WINNER} " if method in best else "") + interval(summary.overall[method].get(metric))
                                  for method in summary.methods] + [f"{images_scored(summary, metric):,}"]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=[*map(method_label, summary.methods), IMAGES])
    frame.index.name = "metric"
    return frame


def winner_cells(table: pd.DataFrame) -> pd.DataFrame:
    """CSS for ``score_table``'s cells: the winners' bold on a light tint, so they stand out without the star."""
    return table.map(lambda text: WINNER_STYLE if str(text).startswith(WINNER) else "")


def stability_table(summary: TrustSummary) -> pd.DataFrame:
    """Per metric: its ranking, best first (``=`` between equal means), and how often its top method stays on top
    across bootstrap resamples."""
    return pd.DataFrame([{"metric": metric_label(metric),
                          "better": "higher" if get_metric(metric).higher_is_better else "lower",
                          "ranking, best first": ordering(summary, metric),
                          "top stays on top": summary.stability.get(metric, float("nan"))} for metric in summary.metrics],
                        columns=["metric", "better", "ranking, best first", "top stays on top"])


def card_lines(summary: TrustSummary, method: str) -> list[str]:
    """A method's card as Markdown lines: per metric, good or not, the verdict and the numbers behind it."""
    return [f"{GOOD if v.good else NOT_GOOD} **{metric_label(v.metric)}**: {verdict_words(v)}; {interval(v.estimate)}, "
            f"{get_metric(v.metric).direction}" for v in summary.cards.get(method, [])]


def _cell_step(count: int) -> int:
    return max(CELL[0], min(CELL[1], HEATMAP_WIDTH // max(count, 1)))


def class_frame(summary: TrustSummary, metric: str, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per method and class with a value of ``metric``: its mean, interval and images."""
    rows = []
    for label, table in summary.per_class.items():
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        for method in summary.methods:
            estimate = table.get(method, {}).get(metric)
            if estimate is None or not estimate.images or not math.isfinite(estimate.mean):
                continue
            rows.append({"method": method_label(method), "class": name, "mean": estimate.mean, "low": estimate.low,
                         "high": estimate.high, "images": estimate.images, "text": number(estimate.mean)})
    return pd.DataFrame(rows, columns=["method", "class", "mean", "low", "high", "images", "text"])


def class_heatmap(summary: TrustSummary, metric: str, class_names: Sequence[str]) -> alt.LayerChart:
    """Methods × classes, each cell the class's mean of ``metric``: darker is better whichever way the metric runs."""
    cells = class_frame(summary, metric, class_names)
    classes = list(dict.fromkeys(cells["class"]))
    methods = [method_label(m) for m in summary.methods]
    spec = get_metric(metric)
    low, high = (float(cells["mean"].min()), float(cells["mean"].max())) if len(cells) else (0.0, 1.0)
    # Dark cells get white text: where the cell's share of the way from worst to best passes the middle.
    span = high - low
    goodness = (cells["mean"] - low) / span if span > 0 else pd.Series(0.5, index=cells.index)
    cells["ink"] = np.where((goodness if spec.higher_is_better else 1 - goodness) > 0.55, "white", "black")
    step = _cell_step(len(classes))
    base = alt.Chart(cells).encode(
        x=alt.X("class:N", sort=classes, title="true class", axis=alt.Axis(labelAngle=0 if len(classes) <= 12 else -45)),
        y=alt.Y("method:N", sort=methods, title=None, axis=alt.Axis(labelLimit=220)),  # whole method names
    )
    heat = base.mark_rect().encode(
        color=alt.Color("mean:Q", title=[spec.label, spec.direction], scale=alt.Scale(
            scheme="blues", reverse=not spec.higher_is_better, domain=[low, high] if span > 0 else alt.Undefined)),
        tooltip=["method", "class", alt.Tooltip("mean:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), "images"],
    )
    labels = base.mark_text(fontSize=11 if step >= 44 else 9).encode(
        text="text:N", color=alt.condition("datum.ink == 'white'", alt.value("white"), alt.value("black")))
    return (heat + labels).properties(width=alt.Step(step), height=alt.Step(30))


def agreement_frame(summary: TrustSummary) -> pd.DataFrame:
    agreement = summary.agreement
    return pd.DataFrame([{"a": metric_label(a), "b": metric_label(b), "tau": agreement.loc[a, b],
                          "text": "n/a" if not np.isfinite(agreement.loc[a, b]) else f"{agreement.loc[a, b]:.2f}"}
                         for a in agreement.index for b in agreement.columns], columns=["a", "b", "tau", "text"])


def agreement_chart(summary: TrustSummary) -> alt.LayerChart:
    """Kendall τ between each pair of metrics' rankings of the methods, −1 to 1, as a labelled heatmap."""
    cells = agreement_frame(summary)
    order = [metric_label(m) for m in summary.agreement.index]
    step = _cell_step(len(order))
    base = alt.Chart(cells).encode(
        # Every metric's name under its column: slanted names overlap only as boxes, which Vega would thin out.
        x=alt.X("a:N", sort=order, title=None, axis=alt.Axis(labelAngle=-35, labelLimit=180, labelOverlap=False)),
        y=alt.Y("b:N", sort=order, title=None, axis=alt.Axis(labelLimit=200)),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("tau:Q", title="Kendall τ", scale=alt.Scale(domain=[-1, 1], scheme="redblue")),
        tooltip=[alt.Tooltip("a:N", title="metric"), alt.Tooltip("b:N", title="and metric"),
                 alt.Tooltip("tau:Q", title="Kendall τ", format=".2f")],
    )
    labels = base.mark_text(fontSize=11).encode(
        text="text:N", color=alt.condition("abs(datum.tau) > 0.6", alt.value("white"), alt.value("black")))
    return (heat + labels).properties(width=alt.Step(step), height=alt.Step(step))


def disagreeing_images(images: pd.DataFrame, count: int) -> pd.DataFrame:
    """The ``count`` scored images whose methods' maps agree least (lowest mean rank correlation)."""
    valued = images[np.isfinite(images["map_agreement"].to_numpy(np.float64))]
    return valued.sort_values(["map_agreement", "image"], kind="stable").head(count)
