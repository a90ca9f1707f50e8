"""What an Evaluation says, as numbers and tables: confusion matrix, per-class scores, top confusions, per-image
table, skipped files, and per class the mean image and mean Grad-CAM. ``reports.dataset`` draws them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explainers.datasets.evaluation import Evaluation
from explainers.datasets.scan import NOT_AN_IMAGE, OUTSIDE_CLASSES
from explainers.inputs.images import resize_batch
from explainers.methods.maps import upsample

FULL_MATRIX_LIMIT = 30  # up to this many outputs the matrix shows every class; past it, the classes present
MATRIX_ROWS = 40  # past this many classes present, a drawn matrix keeps those with the most mistakes
OTHER = "(other classes)"
MEAN_IMAGE_SAMPLE = 16  # images read per class for its mean image: enough to see the typical picture
THUMBNAIL = 64  # longest side of a mean image and of a map drawn without one


@dataclass
class Confusion:
    """Counts with true classes as rows and predicted classes as columns."""

    counts: np.ndarray  # (R, C) int
    rows: list[int]  # model output index per row
    columns: list[int]  # model output index per column; -1 for the "other classes" column
    names: list[str]  # the model's class names
    hidden: int = 0  # true classes with images that have no row (the matrix keeps those with the most mistakes)

    def label(self, output: int) -> str:
        return OTHER if output < 0 else self.names[output]

    def frame(self, normalize: bool = False) -> pd.DataFrame:
        values = self.counts.astype(np.float64)
        if normalize:
            values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
        return pd.DataFrame(values if normalize else self.counts, index=[self.label(r) for r in self.rows],
                            columns=[self.label(c) for c in self.columns])


def confusion(ev: Evaluation, max_rows: int | None = None) -> Confusion:
    """The confusion matrix; condensed to the classes present (plus one column for the rest) for wide models.

    With ``max_rows`` and more classes present than that (a 1,000-class validation
    set), only the ``max_rows`` true classes with the most mistakes are kept, so a
    drawn matrix stays readable; ``hidden`` counts the rows left out.
    """
    predicted, classes = ev.predicted, len(ev.class_names)
    if classes <= FULL_MATRIX_LIMIT:
        rows = columns = list(range(classes))
        hidden = 0
    else:
        present = np.flatnonzero(np.bincount(ev.true, minlength=classes))
        if max_rows is not None and len(present) > max_rows:
            mistakes = np.bincount(ev.true[ev.true != predicted], minlength=classes)[present]
            present = np.sort(present[np.argsort(-mistakes, kind="stable")[:max_rows]])
        rows = present.tolist()
        hidden = int((np.bincount(ev.true, minlength=classes) > 0).sum()) - len(rows)
        kept = np.isin(ev.true, rows)
        columns = rows + ([-1] if np.isin(predicted[kept], rows, invert=True).any() else [])
    # Output index -> matrix row / column; outputs without a column count in "other classes".
    row_of = np.full(classes, -1, np.int64)
    row_of[rows] = np.arange(len(rows))
    column_of = np.full(classes, columns.index(-1) if -1 in columns else -1, np.int64)
    column_of[[c for c in columns if c >= 0]] = np.arange(len([c for c in columns if c >= 0]))
    r, c = row_of[ev.true], column_of[predicted]
    keep = (r >= 0) & (c >= 0)
    counts = np.bincount(r[keep] * len(columns) + c[keep], minlength=len(rows) * len(columns))
    return Confusion(counts.reshape(len(rows), len(columns)).astype(np.int64), rows, columns, ev.class_names, hidden)


def worst_classes(ev: Evaluation, count: int = 24) -> list[int]:
    """Every class with images when there are at most ``count``; else the ``count`` with the most mistakes."""
    support = np.bincount(ev.true, minlength=len(ev.class_names))
    present = np.flatnonzero(support)
    if len(present) <= count:
        return present.tolist()
    mistakes = np.bincount(ev.true[ev.true != ev.predicted], minlength=len(ev.class_names))[present]
    return present[np.argsort(-mistakes, kind="stable")[:count]].tolist()


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
    peak_row, peak_column = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return matrix.rows[int(peak_row)], matrix.columns[int(peak_column)]


def cell_members(ev: Evaluation, true_class: int, predicted_class: int,
                 columns: Sequence[int] | None = None) -> np.ndarray:
    """Indices of the images in one cell; ``predicted_class=-1`` is the "other classes" column, every
    prediction outside ``columns`` (the matrix's; by default the classes present)."""
    predicted = ev.predicted
    if predicted_class < 0:
        shown = [c for c in columns if c >= 0] if columns is not None else np.unique(ev.true)
        return np.flatnonzero((ev.true == true_class) & np.isin(predicted, shown, invert=True))
    return np.flatnonzero((ev.true == true_class) & (predicted == predicted_class))


def class_report(ev: Evaluation) -> pd.DataFrame:
    """Precision, recall, F1 and support for every class with images, computed from the predictions."""
    # Counted with bincount: a loop of masks over 1,000 classes and 100,000 images takes seconds.
    classes, predicted = len(ev.class_names), ev.predicted
    support = np.bincount(ev.true, minlength=classes)
    claimed = np.bincount(predicted, minlength=classes)
    hits = np.bincount(ev.true[ev.true == predicted], minlength=classes)
    present = np.flatnonzero(support)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(claimed > 0, hits / np.maximum(claimed, 1), 0.0)[present]
        recall = (hits / np.maximum(support, 1))[present]
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.where(precision + recall > 0,
                                                                              precision + recall, 1), 0.0)
    return pd.DataFrame({"class": [ev.class_names[c] for c in present], "precision": precision, "recall": recall,
                         "f1": f1, "support": support[present].astype(np.int64)},
                        columns=["class", "precision", "recall", "f1", "support"])


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


def top_classes_text(classes: np.ndarray, probabilities: np.ndarray, class_names: list[str], count: int = 3) -> str:
    """One image's ``count`` most probable classes, e.g. ``"3: 58% · 2: 42% · 5: <1%"``, from its top-k
    ``classes`` (k,) and their ``probabilities`` (k,), most probable first."""
    return " · ".join(f"{class_names[c]}: {percent_text(float(p))}" for c, p in zip(classes[:count], probabilities[:count]))


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
    names = np.asarray(ev.class_names, dtype=object)  # indexed at once: 100,000 rows by name lookups take a while
    table = {"file": ev.files, "true_class": names[ev.true], "predicted_class": names[ev.predicted],
             "correct": ev.true == ev.predicted, "p_true": ev.p_true}
    for k in range(min(3, len(ev.class_names))):
        table[f"top{k + 1}_class"] = names[ev.top_classes[:, k]] if len(ev.files) else []
        table[f"top{k + 1}_probability"] = ev.top_probabilities[:, k] if len(ev.files) else []
    table["lowest_class"] = names[ev.least_class]
    table["lowest_probability"] = ev.least_probability
    return pd.DataFrame(table)


@dataclass
class ClassAttention:
    name: str
    mean_image: np.ndarray | None  # (t, t', 3) uint8 mean of a sample of the class's images; None when none was readable
    correct_map: np.ndarray | None  # (t, t') mean Grad-CAM over correctly classified images, in [0, 1]
    wrong_map: np.ndarray | None  # the same over misclassified images
    correct: int
    wrong: int
    sampled: int = 0  # images the mean image averages


def thumbnail_size(ev: Evaluation) -> tuple[int, int]:
    """(t, t') of mean images and maps: the model's input scaled to at most THUMBNAIL a side (the maps' aspect
    when the input size is not known)."""
    height, width = ev.input_size or (ev.cams.shape[1:3] if ev.cams.size else (1, 1))
    scale = min(1.0, THUMBNAIL / max(height, width)) if ev.input_size else THUMBNAIL / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _mean_maps(ev: Evaluation, classes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(sums (len(classes), 2, h, w), counts (len(classes), 2)) of Grad-CAMs, [:, 0] wrong and [:, 1] right."""
    slot = np.full(len(ev.class_names), -1, np.int64)
    slot[classes] = np.arange(len(classes))
    group = slot[ev.true] * 2 + (ev.true == ev.predicted)
    keep = slot[ev.true] >= 0
    group, cams = group[keep], ev.cams[keep]
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group, minlength=2 * len(classes))
    sums = np.zeros((2 * len(classes), *ev.cams.shape[1:]), np.float64)
    if len(order):
        # Sorted once and summed per run of equal groups: far faster than a mask per class on 100,000 maps.
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        filled = counts > 0
        sums[filled] = np.add.reduceat(cams[order].astype(np.float64), starts[filled], axis=0)
    return sums.reshape(len(classes), 2, *ev.cams.shape[1:]), counts.reshape(len(classes), 2)


def _mean_image(ev: Evaluation, members: np.ndarray, size: tuple[int, int], read: Callable[[str], np.ndarray | None],
                sample: int) -> tuple[np.ndarray | None, int]:
    """The mean of up to ``sample`` of ``members``' images (a seeded pick), and how many could be read."""
    picked = np.random.default_rng(0).permutation(members)[:sample] if len(members) > sample else members
    images = [image for image in (read(ev.location(int(i))) for i in picked) if image is not None]
    if not images:
        return None, 0
    return resize_batch(images, size).mean(axis=0).round().astype(np.uint8), len(images)


def class_attention(ev: Evaluation, classes: Sequence[int] | None = None,
                    read: Callable[[str], np.ndarray | None] | None = None,
                    sample: int = MEAN_IMAGE_SAMPLE) -> list[ClassAttention]:
    """Per class with images (or per output in ``classes``): its mean image and mean Grad-CAM (of the
    predicted class) over right and wrong calls.

    The maps use every image. The mean image averages a seeded sample of at most
    ``sample`` images, read with ``read(location)`` (None when one cannot be read);
    without ``read``, or when none of a class's images can be read, it is None.
    """
    if ev.cams.size == 0:
        return []
    present = np.flatnonzero(np.bincount(ev.true, minlength=len(ev.class_names)))
    with_images = set(present.tolist())
    classes = [int(c) for c in (present if classes is None else classes) if c in with_images]
    if not classes:
        return []
    size = thumbnail_size(ev)
    sums, counts = _mean_maps(ev, classes)
    # Upsampling is linear, so the means are taken at the layer's resolution and only they are upsampled (at once).
    means = sums / np.maximum(counts, 1)[:, :, None, None]
    maps = upsample(means.reshape(-1, *means.shape[2:]).astype(np.float32), size).reshape(*counts.shape, *size)
    peaks = maps.reshape(*counts.shape, -1).max(axis=2)
    maps = np.where(peaks[:, :, None, None] > 0, maps / np.where(peaks > 0, peaks, 1)[:, :, None, None], maps)
    found = []
    for n, c in enumerate(classes):
        image, sampled = (_mean_image(ev, np.flatnonzero(ev.true == c), size, read, sample) if read is not None
                          else (None, 0))
        right, wrong = (maps[n, k] if counts[n, k] else None for k in (1, 0))
        found.append(ClassAttention(ev.class_names[c], image, right, wrong, int(counts[n, 1]), int(counts[n, 0]),
                                    sampled))
    return found
