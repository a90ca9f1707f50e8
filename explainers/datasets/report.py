"""What an Evaluation says: confusion matrix, per-class scores, top confusions, per-image table, class attention."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explainers.datasets.evaluate import Evaluation
from explainers.datasets.scan import NOT_AN_IMAGE, OUTSIDE_CLASSES
from explainers.methods.maps import upsample

FULL_MATRIX_LIMIT = 30  # up to this many outputs the matrix shows every class; past it, the classes present
OTHER = "(other classes)"


@dataclass
class Confusion:
    """Counts with true classes as rows and predicted classes as columns."""

    counts: np.ndarray  # (R, C) int
    rows: list[int]  # model output index per row
    columns: list[int]  # model output index per column; -1 for the "other classes" column
    names: list[str]  # the model's class names

    def label(self, output: int) -> str:
        return OTHER if output < 0 else self.names[output]

    def frame(self, normalize: bool = False) -> pd.DataFrame:
        values = self.counts.astype(np.float64)
        if normalize:
            values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
        return pd.DataFrame(values if normalize else self.counts, index=[self.label(r) for r in self.rows],
                            columns=[self.label(c) for c in self.columns])


def confusion(ev: Evaluation) -> Confusion:
    """The confusion matrix; condensed to the classes present (plus one column for the rest) for wide models."""
    predicted = ev.predicted
    if len(ev.class_names) <= FULL_MATRIX_LIMIT:
        rows = columns = list(range(len(ev.class_names)))
    else:
        rows = sorted(set(ev.true.tolist()))
        columns = rows + ([-1] if np.isin(predicted, rows, invert=True).any() else [])
    column_of = {c: j for j, c in enumerate(columns)}
    counts = np.zeros((len(rows), len(columns)), np.int64)
    row_of = {r: i for i, r in enumerate(rows)}
    for t, p in zip(ev.true.tolist(), predicted.tolist()):
        counts[row_of[t], column_of.get(p, column_of.get(-1, 0))] += 1
    return Confusion(counts, rows, columns, ev.class_names)


def default_cell(matrix: Confusion) -> tuple[int, int]:
    """(row output, column output) of the cell a viewer should see first: the largest off-diagonal one.

    Taken from the matrix itself, so on a condensed matrix the column is always one
    shown (a prediction outside the folder's classes is in the "other classes"
    column); with no mistakes, the largest diagonal cell.
    """
    counts = matrix.counts.copy()
    for i, row in enumerate(matrix.rows):
        if row in matrix.columns:
            counts[i, matrix.columns.index(row)] = 0
    if not counts.any():
        counts = matrix.counts
    i, j = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return matrix.rows[i], matrix.columns[j]


def cell_members(ev: Evaluation, true_class: int, predicted_class: int) -> np.ndarray:
    """Indices of the images in one cell; ``predicted_class=-1`` is the "other classes" column."""
    predicted = ev.predicted
    if predicted_class < 0:
        present = sorted(set(ev.true.tolist()))
        return np.flatnonzero((ev.true == true_class) & np.isin(predicted, present, invert=True))
    return np.flatnonzero((ev.true == true_class) & (predicted == predicted_class))


def class_report(ev: Evaluation) -> pd.DataFrame:
    """Precision, recall, F1 and support for every class with images, computed from the predictions."""
    predicted, rows = ev.predicted, []
    for c in sorted(set(ev.true.tolist())):
        hits = int(((ev.true == c) & (predicted == c)).sum())
        support, claimed = int((ev.true == c).sum()), int((predicted == c).sum())
        precision = hits / claimed if claimed else 0.0
        recall = hits / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": ev.class_names[c], "precision": precision, "recall": recall, "f1": f1, "support": support})
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


def summary(ev: Evaluation) -> dict:
    report = class_report(ev)
    return {
        "images": len(ev.files),
        "accuracy": ev.accuracy,
        "macro_precision": float(report["precision"].mean()) if len(report) else float("nan"),
        "macro_recall": float(report["recall"].mean()) if len(report) else float("nan"),
        "macro_f1": float(report["f1"].mean()) if len(report) else float("nan"),
        "skipped_files": len(ev.skipped),  # every file left out, found by the scan or while evaluating
        "unreadable_images": len(ev.skipped_images),  # of those, image files that could not be read or decoded
    }


def skipped_breakdown(ev: Evaluation) -> dict[str, int]:
    """How many of ``ev.skipped`` were left out for each kind of reason (kinds with none left out)."""
    found_by_scan = Counter(reason for _, reason in ev.skipped[: len(ev.skipped) - len(ev.skipped_images)])
    other = sum(found_by_scan.values()) - found_by_scan[NOT_AN_IMAGE] - found_by_scan[OUTSIDE_CLASSES]
    counts = {
        "unreadable or corrupt images": len(ev.skipped_images),
        "not images (by their extension)": found_by_scan[NOT_AN_IMAGE],
        "outside the class folders": found_by_scan[OUTSIDE_CLASSES],
        "links not followed, special files, unreadable or too deep folders": other,
    }
    return {kind: count for kind, count in counts.items() if count}


def percent_text(probability: float) -> str:
    """A probability in [0, 1] as a whole percentage that never rounds to a false 0% or 100%."""
    if probability < 0.01:
        return "<1%"
    if probability > 0.99 and probability < 1:
        return ">99%"
    return f"{round(probability * 100)}%"


def top_classes_text(probabilities: np.ndarray, class_names: list[str], count: int = 3) -> str:
    """One image's ``count`` most probable classes, e.g. ``"3: 58% · 2: 42% · 5: <1%"``; ``probabilities`` is (classes,)."""
    top = np.argsort(-probabilities, kind="stable")[:count]
    return " · ".join(f"{class_names[c]}: {percent_text(float(probabilities[c]))}" for c in top)


def top_confusions(ev: Evaluation, count: int = 15) -> pd.DataFrame:
    """The most frequent (true, predicted) mistakes, with each one's share of the true class's images."""
    wrong = ev.true != ev.predicted
    pairs = pd.DataFrame({"true": ev.true[wrong], "predicted": ev.predicted[wrong]})
    if pairs.empty:
        return pd.DataFrame(columns=["true", "predicted", "images", "share of true class"])
    counted = pairs.value_counts().rename("images").reset_index().head(count)
    support = pd.Series(ev.true).value_counts()
    counted["share of true class"] = counted["images"] / counted["true"].map(support)
    counted["true"] = counted["true"].map(lambda c: ev.class_names[c])
    counted["predicted"] = counted["predicted"].map(lambda c: ev.class_names[c])
    return counted


def predictions_table(ev: Evaluation) -> pd.DataFrame:
    """One row per image: true class, top-3 predictions with probabilities, and the least likely class."""
    order = np.argsort(-ev.probabilities, axis=1)
    rows = np.arange(len(ev.files))
    table = {"file": ev.files, "true_class": [ev.class_names[t] for t in ev.true],
             "predicted_class": [ev.class_names[p] for p in order[:, 0]] if len(rows) else [],
             "correct": ev.true == ev.predicted,
             "p_true": ev.probabilities[rows, ev.true] if len(rows) else []}
    for k in range(min(3, ev.probabilities.shape[1])):
        table[f"top{k + 1}_class"] = [ev.class_names[c] for c in order[:, k]]
        table[f"top{k + 1}_probability"] = ev.probabilities[rows, order[:, k]]
    table["lowest_class"] = [ev.class_names[c] for c in order[:, -1]] if len(rows) else []
    table["lowest_probability"] = ev.probabilities[rows, order[:, -1]] if len(rows) else []
    return pd.DataFrame(table)


@dataclass
class ClassAttention:
    name: str
    mean_image: np.ndarray  # (t, t, 3) uint8
    correct_map: np.ndarray | None  # (t, t) mean Grad-CAM over correctly classified images, in [0, 1]
    wrong_map: np.ndarray | None  # the same over misclassified images
    correct: int
    wrong: int


def class_attention(ev: Evaluation) -> list[ClassAttention]:
    """Per class with images: its mean image and mean Grad-CAM (of the predicted class) over right and wrong calls."""
    if ev.cams.size == 0:
        return []
    size = ev.thumbnails.shape[1:3]
    right = ev.true == ev.predicted
    found = []
    for c in sorted(set(ev.true.tolist())):
        members = ev.true == c

        def mean_map(mask: np.ndarray) -> np.ndarray | None:
            if not mask.any():
                return None
            # Upsampling is linear, so the mean is taken at the layer's resolution and only it is upsampled.
            mean = upsample(ev.cams[mask].mean(axis=0)[None], size)[0]
            return mean / mean.max() if mean.max() > 0 else mean

        found.append(ClassAttention(
            ev.class_names[c], ev.thumbnails[members].mean(axis=0).round().astype(np.uint8),
            mean_map(members & right), mean_map(members & ~right), int((members & right).sum()), int((members & ~right).sum()),
        ))
    return found


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
    from explainers.reports.render import compose_grid

    cells = [_panels(item, colormap, opacity) for item in attention]
    labels = [f"{item.name} ({item.correct}/{item.correct + item.wrong})" for item in attention]
    return compose_grid(cells, labels, ["mean image", "when right", "when wrong"], cell)


def _panels(item: ClassAttention, colormap: str, opacity: float) -> list[np.ndarray]:
    from explainers.reports.render import overlay

    def panel(map_: np.ndarray | None) -> np.ndarray:
        return np.full_like(item.mean_image, 255) if map_ is None else overlay(item.mean_image, map_, opacity, colormap)

    return [item.mean_image, panel(item.correct_map), panel(item.wrong_map)]


def attention_strip(item: ClassAttention, colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """One class's mean image, attention when right and when wrong, side by side (white when there are none)."""
    panels = _panels(item, colormap, opacity)
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def report_html(ev: Evaluation, model_name: str, colormap: str = "jet", opacity: float = 0.5) -> str:
    """The dataset view as one offline HTML file: scores, confusion matrix, confusions, attention, skipped files."""
    from explainers.reports.html import Section, html_report
    from explainers.reports.render import png_bytes

    totals = summary(ev)
    overview = pd.DataFrame([{"images": totals["images"], "accuracy": totals["accuracy"], "macro F1": totals["macro_f1"],
                              "skipped files": len(ev.skipped), "class mapping": ev.mapping.mode,
                              "Grad-CAM layer": ev.cam_layer or "none"}])
    sections = [
        Section("Summary", table=overview),
        Section("Confusion matrix", png=confusion_png(confusion(ev)), caption="Rows: true class; columns: predicted."),
        Section("Per class", table=class_report(ev)),
        Section("Top confusions", table=top_confusions(ev)),
    ]
    attention = class_attention(ev)
    if attention:
        sections.append(Section("Attention per class", png=png_bytes(attention_grid(attention, colormap, opacity)),
                                caption="Mean image; mean Grad-CAM of the predicted class when right and when wrong."))
    if ev.skipped:
        sections.append(Section("Skipped files", table=pd.DataFrame(ev.skipped, columns=["file", "reason"])))
    return html_report("Dataset evaluation", f"{model_name} on {ev.root.name} · {len(ev.files):,} images", sections)
