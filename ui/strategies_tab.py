"""The "Strategies" tab of "Your dataset": each class's Grad-CAMs split into the distinct strategies the model uses
(as SpRAy does), where each strategy's mass lies, and those that may be shortcuts."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from explainers.concepts.strategies import BY, STRATEGIES, ClassStrategies, Strategies, strategies_json
from explainers.datasets.evaluation import Evaluation, read_image
from explainers.errors import counted
from explainers.reports.strategies import strategy_picture, summary_table, where_table

from . import cached, param_widgets
from .stops import shown_on_input_error
from .widgets import overlay_controls

PREFIX = "ds_str_"  # every widget key of the tab
BY_KEY, CLASS_KEY = f"{PREFIX}by", f"{PREFIX}class"


def _sentence(result: ClassStrategies, by: str) -> str:
    """How the class was split, in words: the maps seen, the sample, how the number was chosen."""
    seen = (f"a seeded sample of {result.clustered:,} of its {result.sampled_from:,} maps; the rest joined the "
            "nearest strategy" if result.sampled else f"its {counted(result.sampled_from, 'map')}")
    chosen = ("the number chosen by the largest eigengap of the maps' affinity graph" if result.chosen_by == "eigengap"
              else "the number as set")
    return (f"Images of {by} class **{result.name}**: {counted(result.k, 'strategy', 'strategies')} from {seen}, "
            f"{chosen}; maps averaged to {result.grid[0]}×{result.grid[1]} cells. Shares are of each strategy's mean "
            "map (corners: a quarter of each side; border: the outer eighth).")


def draw(evaluation: Evaluation, token: str, image_roots: tuple[Path, ...] | None) -> Strategies | None:
    """The tab; the strategies found, or None when they cannot be (the reason shown)."""
    st.caption("Each class's Grad-CAMs clustered into the distinct strategies the model uses (spectral clustering of "
               "the maps, as SpRAy does). A strategy whose mass sits mostly in a corner, on the border or off the "
               "object may be a shortcut: a watermark, a tag, a background.")
    if not evaluation.cams.size:
        st.info("These results hold no Grad-CAM, so there are no maps to cluster.")
        return None
    top = st.columns([1, 1, 1])
    by = param_widgets.widget(top[0], BY, BY_KEY)
    opacity, colormap = overlay_controls(top[1], top[2], PREFIX)
    with st.expander("Clustering settings"):
        settings = param_widgets.draw(st.container(), STRATEGIES, PREFIX)
    chosen = tuple(sorted(settings.items()))
    found = None
    with shown_on_input_error(), st.spinner("Clustering the maps…"):
        found = cached.strategies(token, by, chosen, evaluation)
    if found is None:
        return None
    summary = summary_table(found)
    share = st.column_config.ProgressColumn(format="%.2f", min_value=0.0, max_value=1.0)
    st.dataframe(summary, hide_index=True, width="stretch", column_config={"largest share": share})
    for why in found.skipped.values():
        st.caption(why)
    names = list(found.classes)
    if st.session_state.get(CLASS_KEY) not in names:  # a flagged class first: what a reviewer came to see
        flagged = summary.loc[summary["possible shortcuts"] > 0, "class"].tolist()
        st.session_state[CLASS_KEY] = (flagged or names)[0]
    name = st.selectbox("Class", names, key=CLASS_KEY)
    result = found.classes[name]
    st.markdown(_sentence(result, by))
    for number, cluster in enumerate(result.clusters, 1):
        if cluster.reason:
            st.warning(f"Strategy {number} ({counted(cluster.size, 'image')}, {cluster.share:.0%} of the class): "
                       f"{cluster.reason}")
    st.dataframe(where_table(result), hide_index=True, width="stretch",
                 column_config={column: share for column in ("share of class", "border", "centre", "in that corner",
                                                             "on the object")})
    locations = [evaluation.location(int(row)) for row in result.rows]
    picture = cached.picture(("ds_strategies", token, by, chosen, name, image_roots, colormap, opacity),
                             lambda: strategy_picture(result, locations, lambda at: read_image(at, image_roots),
                                                      colormap=colormap, opacity=opacity))
    st.image(picture, caption="One row per strategy, largest first: the mean of its images, its mean map over it, "
                              "and the members nearest its centre with their own maps.")
    st.download_button("Strategies (JSON)", lambda: json.dumps(strategies_json(found), indent=1), "strategies.json",
                       "application/json", on_click="ignore", key=f"{PREFIX}json")
    return found
