"""A dataset evaluation drawn: the confusion matrix as a picture, class attention as strips and grids, the offline
HTML report and the CLI's report files. The numbers they show come from ``datasets.analysis``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from explainers.concepts.strategies import Strategies
from explainers.datasets.analysis import (
    MATRIX_ROWS,
    ClassAttention,
    Confusion,
    class_attention,
    class_report,
    confusion,
    predictions_table,
    summary,
    top_confusions,
    worst_classes,
)
from explainers.datasets.evaluation import Evaluation
from explainers.reports.html import Section, html_report
from explainers.reports.render import compose_grid, overlay, png_bytes
from explainers.reports.strategies import strategy_picture, summary_table, where_table

REPORT_STRATEGY_CLASSES = 10  # with no flagged class, every class's strategies are drawn up to this many classes


def matrix_caption(matrix: Confusion) -> str:
    """What a drawn matrix shows, in one or two sentences."""
    text = "Rows: true class; columns: predicted."
    if matrix.hidden:
        text += (f" The {len(matrix.rows)} classes with the most mistakes of the {len(matrix.rows) + matrix.hidden} "
                 f"with images are shown; the CSV holds them all.")
    return text


def confusion_png(matrix: Confusion, normalize: bool = False) -> bytes:
    """The confusion matrix as a labelled PNG (matplotlib), for reports and downloads."""
    from explainers.reports.figures import figure_png, new_figure

    frame = matrix.frame(normalize)
    side = max(4.0, 0.45 * len(frame.columns) + 2)
    figure, axes = new_figure(side + 1, max(3.5, 0.45 * len(frame) + 2))
    axes.imshow(frame.to_numpy(dtype=float), cmap="Blues")
    axes.set_xticks(range(len(frame.columns)), frame.columns, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(frame.index)), frame.index, fontsize=8)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    peak = float(frame.to_numpy(dtype=float).max()) or 1.0
    for (i, j), value in np.ndenumerate(frame.to_numpy(dtype=float)):
        if value:
            axes.text(j, i, f"{value:.2f}" if normalize else f"{int(value)}", ha="center", va="center", fontsize=7,
                      color="white" if value > peak / 2 else "black")
    return figure_png(figure)


def attention_grid(attention: list[ClassAttention], colormap: str = "jet", opacity: float = 0.5, cell: int = 96) -> np.ndarray:
    """Classes as rows; columns: mean image, attention when right, attention when wrong (blank when none)."""
    cells = [_panels(item, colormap, opacity) for item in attention]
    labels = [f"{item.name} ({item.correct}/{item.correct + item.wrong})" for item in attention]
    return compose_grid(cells, labels, ["mean image", "when right", "when wrong"], cell)


def _panels(item: ClassAttention, colormap: str, opacity: float) -> list[np.ndarray]:
    """Mean image, map when right, map when wrong; without a mean image each map is drawn alone on grey."""
    shape = next(m.shape for m in (item.correct_map, item.wrong_map) if m is not None)
    base = item.mean_image if item.mean_image is not None else np.full((*shape, 3), 128, np.uint8)
    strength = opacity if item.mean_image is not None else 1.0

    def panel(map_: np.ndarray | None) -> np.ndarray:
        return np.full_like(base, 255) if map_ is None else overlay(base, map_, strength, colormap)

    return [base, panel(item.correct_map), panel(item.wrong_map)]


def attention_strip(item: ClassAttention, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """One class's mean image, attention when right and when wrong, side by side (white when there are none)."""
    panels = _panels(item, colormap, opacity)
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def strategy_sections(ev: Evaluation, strategies: Strategies, read: Callable[[str], np.ndarray | None] | None,
                      colormap: str = "jet", opacity: float = 0.5) -> list[Section]:
    """The strategies in a report: every class's count in a table, then the picture of each class with a possible
    shortcut (every class's when none is flagged and there are few)."""
    table = summary_table(strategies)
    flagged = [name for name, result in strategies.classes.items() if any(c.shortcut for c in result.clusters)]
    drawn = flagged or (list(strategies.classes) if len(strategies.classes) <= REPORT_STRATEGY_CLASSES else [])
    caption = (f"Grad-CAMs of each {strategies.by} class clustered into strategies; "
               + (f"{len(flagged)} class(es) with a possible shortcut, drawn below." if flagged else
                  "no strategy is flagged as a possible shortcut."))
    sections = [Section("Strategies per class", text=caption, table=table)]
    for name in drawn:
        result = strategies.classes[name]
        locations = [ev.location(int(row)) for row in result.rows]
        reasons = " ".join(f"Strategy {n}: {c.reason}" for n, c in enumerate(result.clusters, 1) if c.reason)
        sections.append(Section(f"Strategies of {name}", table=where_table(result),
                                png=png_bytes(strategy_picture(result, locations, read, colormap=colormap,
                                                               opacity=opacity)),
                                caption=reasons or "One row per strategy: mean image, mean map, exemplars."))
    return sections


def report_html(ev: Evaluation, model_name: str, colormap: str = "jet", opacity: float = 0.5,
                read: Callable[[str], np.ndarray | None] | None = None, strategies: Strategies | None = None) -> str:
    """The dataset view as one offline HTML file: scores, confusion matrix, confusions, attention, the strategies
    when given, skipped files."""
    totals = summary(ev)
    matrix = confusion(ev, MATRIX_ROWS)
    overview = pd.DataFrame([{"images": totals["images"], "accuracy": totals["accuracy"], "macro F1": totals["macro_f1"],
                              "skipped files": len(ev.skipped), "class mapping": ev.mapping.mode,
                              "Grad-CAM layer": ev.cam_layer or "none"}])
    sections = [
        Section("Summary", table=overview),
        Section("Confusion matrix", png=confusion_png(matrix), caption=matrix_caption(matrix)),
        Section("Per class", table=class_report(ev)),
        Section("Top confusions", table=top_confusions(ev)),
    ]
    attention = class_attention(ev, worst_classes(ev), read)
    if attention:
        sections.append(Section("Attention per class", png=png_bytes(attention_grid(attention, colormap, opacity)),
                                caption="Mean image; mean Grad-CAM of the predicted class when right and when wrong."))
    if strategies is not None and strategies.classes:
        sections += strategy_sections(ev, strategies, read, colormap, opacity)
    if ev.skipped:
        sections.append(Section("Skipped files", table=pd.DataFrame(ev.skipped, columns=["file", "reason"])))
    return html_report("Dataset evaluation", f"{model_name} on {ev.root_name} · {len(ev.files):,} images", sections)


def write_files(ev: Evaluation, out: Path, read: Callable[[str], np.ndarray | None] | None = None) -> list[Path]:
    """The CLI's report files in ``out``: predictions.csv, confusion_matrix.csv (every class) and .png
    (readable: at most MATRIX_ROWS rows), metrics.json and class_attention.png when there are maps."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "predictions.csv", out / "confusion_matrix.csv", out / "confusion_matrix.png", out / "metrics.json"]
    predictions_table(ev).to_csv(written[0], index=False)
    confusion(ev).frame().to_csv(written[1])
    written[2].write_bytes(confusion_png(confusion(ev, MATRIX_ROWS)))
    metrics = {**summary(ev), "mapping": ev.mapping.mode, "model": ev.model_name, "runner": ev.runner,
               "per_class": class_report(ev).to_dict(orient="records")}
    written[3].write_text(json.dumps(metrics, indent=2) + "\n")
    attention = class_attention(ev, worst_classes(ev), read)
    if attention:
        written.append(out / "class_attention.png")
        written[-1].write_bytes(png_bytes(attention_grid(attention)))
    return written
