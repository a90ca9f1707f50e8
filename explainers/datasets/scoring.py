"""Scoring a dataset's images: one pass per batch gives each image's compact row (top-k, p(true), least likely
class, Grad-CAM of the predicted class).

The in-process evaluation and the Ray pipeline both score batches with
``score_rows``; ``storage`` writes the rows as a results folder and reads them back.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Final

import numpy as np

from explainers.errors import InputError
from explainers.methods.cams import gradcam_weights, gradient_cams
from explainers.models.loading import LoadedModel
from explainers.runtime.targets import TOP1, probabilities_from_logits

TOP_K = 5


class DefaultLayer(enum.Enum):
    """The type of ``DEFAULT_LAYER``: a value of its own, so no layer's name (a layer may be called "default")
    can be mistaken for it."""

    DEFAULT_LAYER = enum.auto()


# Grad-CAM at the model's own CAM layer (``LoadedModel.default_cam_layer``), whatever it is called.
DEFAULT_LAYER: Final = DefaultLayer.DEFAULT_LAYER
CamLayer = str | DefaultLayer | None  # a layer's name, DEFAULT_LAYER, or None for no Grad-CAM


def chosen_cam_layer(model: LoadedModel, cam_layer: CamLayer) -> str | None:
    """The layer ``cam_layer`` names for ``model``: DEFAULT_LAYER becomes the model's own CAM layer."""
    return model.default_cam_layer if isinstance(cam_layer, DefaultLayer) else cam_layer


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoredRow:
    """One scored image's values, as a results folder's columns hold them (bar its path, true class and error): what
    the in-process evaluation caches per file. A record, so no reader depends on the columns' order."""

    top_classes: list[int]  # the TOP_K most probable classes, most probable first
    top_probabilities: list[float]
    p_true: float  # the probability of the image's true class
    least_class: int
    least_probability: float
    cam: bytes  # the Grad-CAM of the predicted class, float16 little-endian (h, w); empty without a CAM layer


RESULT_COLUMNS = tuple(field.name for field in fields(ScoredRow))
# A scored batch's columns, in the order a results folder stores them (``storage.SCHEMA``).
ROW_COLUMNS = ("path", "true_class", *RESULT_COLUMNS, "error")


def cam_shape(model: LoadedModel, cam_layer: str | None) -> tuple[int, int]:
    """(h, w) of the Grad-CAM ``score_rows`` gives at ``cam_layer``: the layer's spatial size; (0, 0) for None."""
    if cam_layer is None:
        return 0, 0
    for info in model.layers:
        if info.path == cam_layer and info.height and info.width:
            return int(info.height), int(info.width)
    raise InputError(f"'{cam_layer}' is not a layer of {model.display_name} with a fixed spatial size.")


def _scores(model: LoadedModel, images: list[np.ndarray], cam_layer: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (B, classes), cams (B, h, w) float32 in [0, 1], (B, 0, 0) without a CAM layer)."""
    x = model.to_input(model.resize(images))
    targets = np.full(len(x), TOP1, np.int32)
    if cam_layer is None:
        logits = model.runtime.forward(x, targets, batch_size=len(x)).logits
        cams = np.zeros((len(x), 0, 0), np.float32)
    else:
        # One backward pass gives both the logits and the predicted class's Grad-CAM, kept at the layer's resolution.
        result = gradient_cams(model.runtime, x, targets, (cam_layer,), gradcam_weights, batch_size=len(x),
                               peak_normalised=True)
        cams, logits = result.maps[0], result.logits
    return probabilities_from_logits(logits, model.output_kind), cams


def rows_from_scores(paths: Sequence[str], true: Sequence[int], probabilities: np.ndarray,
                     cams: np.ndarray) -> dict[str, list]:
    """ROW_COLUMNS of scored images: ``probabilities`` (N, classes), ``cams`` (N, h, w) in [0, 1]."""
    k = min(TOP_K, probabilities.shape[1])
    # A stable sort keeps the lowest index first among ties, as argmax does, so top-1 is the prediction.
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    true_arr = np.asarray(true, np.int64)
    least = probabilities.argmin(axis=1)
    rows = np.arange(len(probabilities))
    return row_columns(paths=paths, true=true_arr, top_classes=top,
                       top_probabilities=np.take_along_axis(probabilities, top, axis=1),
                       p_true=probabilities[rows, true_arr], least_class=least,
                       least_probability=probabilities[rows, least], cams=cams)


def row_columns(*, paths: Sequence[str], true: np.ndarray, top_classes: np.ndarray, top_probabilities: np.ndarray,
                p_true: np.ndarray, least_class: np.ndarray, least_probability: np.ndarray,
                cams: np.ndarray) -> dict[str, list]:
    """ROW_COLUMNS of scored rows, from their per-image arrays (named as an Evaluation's fields)."""
    return {
        "path": [str(p) for p in paths],
        "true_class": np.asarray(true).astype(np.int32).tolist(),
        "top_classes": top_classes.astype(np.int32).tolist(),
        "top_probabilities": top_probabilities.astype(np.float32).tolist(),
        "p_true": p_true.astype(np.float32).tolist(),
        "least_class": least_class.astype(np.int32).tolist(),
        "least_probability": least_probability.astype(np.float32).tolist(),
        "cam": [c.astype("<f2").tobytes() for c in cams] if cams.size else [b""] * len(paths),
        "error": [None] * len(paths),
    }


def score_rows(model: LoadedModel, paths: Sequence[str], true: Sequence[int], images: Sequence[np.ndarray | str],
               cam_layer: str | None) -> dict[str, list]:
    """One row per image (ROW_COLUMNS, in the order given): the model's pass for the images that decoded, an
    error row for each ``str`` entry (the reason it could not be read).

    ``cam_layer`` None skips Grad-CAM (``cam`` is then empty bytes). The result
    converts with ``pyarrow.table(columns, schema=storage.SCHEMA)`` and is a valid
    Ray Data ``map_batches`` return value.
    """
    good = [i for i, image in enumerate(images) if not isinstance(image, str)]
    decoded = [image for image in images if not isinstance(image, str)]  # the pixels of ``good``, in its order
    columns: dict[str, list] = {name: [None] * len(images) for name in ROW_COLUMNS}
    columns["path"] = [str(p) for p in paths]
    columns["true_class"] = [int(t) for t in true]
    for i, image in enumerate(images):
        if isinstance(image, str):
            columns["error"][i] = image
    if good:
        probabilities, cams = _scores(model, decoded, cam_layer)
        scored = rows_from_scores([paths[i] for i in good], [true[i] for i in good], probabilities, cams)
        for name in RESULT_COLUMNS:
            for j, i in enumerate(good):
                columns[name][i] = scored[name][j]
    return columns
