"""The trust page's results: the method × metric table, per class, ranking stability and agreement, the cards, the
images where the methods disagree, and the downloads; the same for a fresh evaluation and an opened folder."""

from __future__ import annotations

import functools
import json
from typing import NamedTuple

import pandas as pd
import streamlit as st

import explainers as ex
from explainers.datasets.sources import Listing, Reader
from explainers.errors import counted, echo
from explainers.reports import comparison, render
from explainers.trust import storage
from explainers.trust.evaluate import TrustResult
from explainers.trust.report import trust_report_html
from explainers.trust.summary import TrustSummary, summarise

from . import cached, trust_view

DISAGREEING = 4  # images shown where the methods' maps agree least
THUMB = 120  # px: the height of each map there
TABS = ["Per class", "Ranking stability and agreement", "Cards", "Where methods disagree"]


class Shown(NamedTuple):
    """An evaluation as the page shows it: its scores, their summary, and what else the view needs."""

    result: TrustResult
    summary: TrustSummary | None  # None when no image could be scored
    per_class: int | None
    seed: int
    token: str  # names the scores' content, for cached charts
    described: dict | None = None  # trust.json's content, for a results folder


class Scored(NamedTuple):
    """What the images were scored with, when the page has it: the model (for maps) and the listing (to read them)."""

    model: ex.LoadedModel
    listing: Listing


def shown(result: TrustResult, per_class: int | None, seed: int) -> Shown:
    """A fresh evaluation's ``result`` with its summary, bootstrapped with ``seed`` (as ``trust.json`` records it)."""
    request = result.request
    summary = summarise(result.rows, request.method_names, request.metric_names, seed=seed) if len(result.rows) else None
    return Shown(result, summary, per_class, seed, cached.trust_token(result.rows, (request, seed)))


def problems(result: TrustResult) -> None:
    """Images left out, and images scored without their localisation values, in one sentence each and a list."""
    if result.skipped:
        st.warning(f"Left out {counted(len(result.skipped), 'image')} that could not be read; the first: "
                   f"{result.skipped[0][1]}")
    if result.mask_problems:
        st.warning(f"No localisation values for {counted(len(result.mask_problems), 'image')}, scored by the other "
                   f"metrics; the first: {result.mask_problems[0][1]}")
    for title, items in (("Left out", result.skipped), ("Without localisation values", result.mask_problems)):
        if items:
            with st.expander(f"{title} ({len(items):,})"):
                st.dataframe(pd.DataFrame(items, columns=["image", "why"]), hide_index=True, width="stretch")


def score_table(shown: Shown, summary: TrustSummary) -> None:
    table = trust_view.score_table(summary)
    # A static table: its cells wrap, so any number of methods fits the page's width.
    st.table(table.style.apply(trust_view.winner_cells, axis=None))
    st.caption(f"Each cell: the mean over the images, then its {summary.resamples:,}-resample 95% bootstrap interval; "
               f"{trust_view.WINNER} marks each metric's best mean; ↑ higher is better, ↓ lower is better; the "
               "metrics' checkboxes above say what each computes.")


def per_class(shown: Shown, summary: TrustSummary) -> None:
    names = shown.result.class_names
    if st.session_state.get("trust_heat_metric") not in summary.metrics:
        st.session_state["trust_heat_metric"] = summary.metrics[0]
    metric = st.columns([1, 2])[0].selectbox("Metric", summary.metrics, key="trust_heat_metric",
                                             format_func=trust_view.metric_label)
    frame = trust_view.class_frame(summary, metric, names)
    if not len(frame):
        st.info(f"No image has a value of {trust_view.metric_label(metric)}.")
        return
    st.altair_chart(cached.chart(("trust_heat", shown.token, metric, tuple(names)),
                                 lambda: trust_view.class_heatmap(summary, metric, names)), width="content")
    st.caption(f"Each cell: the class's mean {trust_view.metric_label(metric)} (hover for its interval and images); "
               "darker is better.")


def stability(shown: Shown, summary: TrustSummary) -> None:
    st.dataframe(trust_view.stability_table(summary), hide_index=True, width="stretch", column_config={
        "top stays on top": st.column_config.ProgressColumn(
            format="percent", min_value=0.0, max_value=1.0,
            help=f"The share of {summary.resamples:,} bootstrap resamples of the images in which the method ranked "
                 "first stays first: near 100%, the winner is clear; near 1 / methods, it is a toss-up.")})
    if len(summary.agreement) >= 2:
        st.markdown("**Do the metrics agree?**")
        st.altair_chart(cached.chart(("trust_agreement", shown.token), lambda: trust_view.agreement_chart(summary)),
                        width="content")
        few = (f" With {len(summary.methods)} methods, τ takes few values." if len(summary.methods) < 4 else "")
        st.caption("Kendall τ between two metrics' rankings of the methods: 1, the same order; −1, reversed; n/a "
                   f"where a metric ranks fewer than two methods or all equally.{few}")


def cards(shown: Shown, summary: TrustSummary) -> None:
    per_row = min(3, len(summary.methods))
    for start in range(0, len(summary.methods), per_row):
        for column, method in zip(st.columns(per_row), summary.methods[start:start + per_row]):
            verdicts = summary.cards.get(method, [])
            with column.container(border=True):
                good = sum(v.good for v in verdicts)
                st.markdown(f"**{trust_view.method_label(method)}** · good on {good} of {len(verdicts)}")
                st.markdown("  \n".join(trust_view.card_lines(summary, method)) or "No verdict.")
    st.caption(f"{trust_view.GOOD} best, or tied with the best (their intervals overlap), and not failing a metric's "
               f"bar; {trust_view.NOT_GOOD} behind the best, or failing the bar.")


def disagreements(shown: Shown, scored: Scored | None) -> None:
    result = shown.result
    worst = trust_view.disagreeing_images(result.images, DISAGREEING)
    if not len(worst):
        st.info("No image has maps of two methods to compare.")
        return
    names = result.class_names

    def name(label: int) -> str:  # a folder's trust.json may lack the class names
        return names[label] if 0 <= label < len(names) else str(label)

    if scored is None:
        table = worst.assign(true=worst.true_class.map(name), explained=worst.explained_class.map(name))
        st.dataframe(table[["image", "true", "explained", "p_explained", "map_agreement"]], hide_index=True,
                     width="stretch")
        st.caption("Mean rank correlation between the methods' maps of each image (1: the same ranking of pixels). "
                   "Their maps need the model, and a results folder opens without it.")
        return
    model = scored.model
    where = dict(zip(scored.listing.paths, scored.listing.sources))
    reader = Reader(scored.listing.root, scored.listing.remote)
    decoded = [reader.decode(where[path], path) for path in worst.image]
    readable = [i for i, image in enumerate(decoded) if not isinstance(image, str)]
    pixels = model.resize([image for image in decoded if not isinstance(image, str)])
    targets = [int(worst.explained_class.iloc[i]) for i in readable]
    maps = {m.method: ex.attribute(model, list(pixels), m.method, targets=targets, layer=m.layer,
                                       **dict(m.params)).raw for m in result.request.methods}
    header = st.columns(1 + len(maps))
    header[0].markdown("**image**")
    for column, method in zip(header[1:], maps):
        column.markdown(f"**{trust_view.method_label(method)}**")
    for position, i in enumerate(readable):
        row = worst.iloc[i]
        columns = st.columns(1 + len(maps))
        columns[0].image(cached.picture(("trust_photo", cached.digest(pixels[position]), THUMB),
                                        functools.partial(render.thumbnail, pixels[position], THUMB)), width=THUMB)
        columns[0].caption(f"{row.image} · true {name(row.true_class)}, explained {name(row.explained_class)} "
                           f"(p = {row.p_explained:.2f}) · agreement {row.map_agreement:.2f}")
        for column, raw in zip(columns[1:], maps.values()):
            key = ("trust_cell", cached.digest(pixels[position]), cached.digest(raw[position]), THUMB)
            column.image(cached.picture(key, functools.partial(comparison.comparison_cell, pixels[position],
                                                               raw[position], THUMB)), width=THUMB)
    st.caption("The images whose methods' maps agree least (mean rank correlation between each pair of methods' "
               "maps; 1: the same ranking of pixels), each map over its image (99th-percentile clip, jet).")


def downloads(shown: Shown, summary: TrustSummary) -> None:
    result = shown.result

    def trust_json() -> str:
        described = shown.described or storage.as_json(result, summary, shown.per_class, shown.seed)
        return json.dumps(described, indent=1)

    columns = st.columns(4)
    columns[0].download_button("Report (HTML)", lambda: trust_report_html(result, summary), "trust_report.html",
                               "text/html", on_click="ignore", key="trust_report",
                               help="One file with every table; opens offline.")
    columns[1].download_button("trust.json", trust_json, "trust.json", "application/json", on_click="ignore",
                               key="trust_json", help="The answer as `python -m explainers trust` writes it.")
    columns[2].download_button("Scores per image (CSV)", lambda: result.rows.to_csv(index=False), "trust_rows.csv",
                               "text/csv", on_click="ignore", key="trust_rows")


def show(shown: Shown, scored: Scored | None) -> None:
    """Everything the page shows of an evaluation; ``scored`` is None for a results folder opened without its model."""
    result, summary = shown.result, shown.summary
    request = result.request
    explained = "true" if request.target == "true" else "predicted"
    cached_values = f"; {result.computed:,} values computed in this run, the rest from the cache" if scored else ""
    by = f" by {echo(result.model_name)}" if result.model_name else ""
    st.caption(f"{len(result.images):,} of the {result.total:,} sampled images of '{echo(result.root)}' scored{by} "
               f"in {result.seconds:.1f} s, each map explaining the image's {explained} class; masks: "
               f"{result.masks or 'none'}{cached_values}.")
    problems(result)
    if summary is None:
        st.error("No image could be scored; see the list above.")
        return
    st.subheader("Methods × metrics")
    score_table(shown, summary)
    tabs = st.tabs(TABS)
    with tabs[0]:
        per_class(shown, summary)
    with tabs[1]:
        stability(shown, summary)
    with tabs[2]:
        cards(shown, summary)
    with tabs[3]:
        disagreements(shown, scored)
    st.subheader("Export")
    downloads(shown, summary)
