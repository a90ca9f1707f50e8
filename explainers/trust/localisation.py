"""Localisation: does a map point at the object the user marked? Read from the map and its mask, no model pass.

Both metrics read the raw map's positive side: evidence for the explained class, not evidence against it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt

from explainers.methods.registry import Param
from explainers.trust.registry import MetricBatch, register_metric


def near_masks(masks: np.ndarray, tolerance: float) -> np.ndarray:
    """``(M, H, W)`` bool: the pixels on each mask or within ``tolerance`` pixels (Euclidean) of it."""
    if tolerance <= 0:
        return masks.astype(bool)
    # The distance from every pixel to its nearest mask pixel; an empty mask has none, and stays empty.
    return np.stack([distance_transform_edt(~mask) <= tolerance if mask.any() else mask
                     for mask in masks.astype(bool)])


def _object_masks(batch: MetricBatch) -> np.ndarray:
    """The batch's ``(M, H, W)`` masks. Both metrics here are registered with ``needs_masks``, so the evaluation
    refuses them without masks and sends them only images that have one: a batch without is a bug, said here."""
    if batch.masks is None:
        raise ValueError("A localisation metric was sent a batch without object masks.")
    return batch.masks


@register_metric(
    "pointing_game", "Pointing game", "localisation", "Zhang et al. 2016, arXiv:1608.00507",
    higher_is_better=True, needs_masks=True,
    params=(Param("tolerance", 0, "pixels, at the model's input size, by which the map's peak may miss the mask",
                  0, 64, 1, label="Tolerance (pixels)"),),
    help="1 when the map's largest value lies on the mask or within `tolerance` pixels of it (Euclidean distance at "
         "the model's input size; default 0, exact; Zhang et al. allowed 15 pixels on images of about 224), else 0. "
         "When several pixels share the largest value, it is a hit if any of them is. NaN for a constant map (it "
         "points nowhere) or an empty mask.")
def pointing_game(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    masks = _object_masks(batch)
    maps = batch.maps.reshape(len(batch), -1)
    near = near_masks(masks, float(params["tolerance"])).reshape(len(batch), -1)
    peaks = maps == maps.max(axis=1, keepdims=True)
    hits = (peaks & near).any(axis=1).astype(np.float64)
    undefined = (np.ptp(maps, axis=1) == 0) | ~masks.reshape(len(batch), -1).any(axis=1)
    return np.where(undefined, np.nan, hits)


@register_metric(
    "relevance_mass", "Relevance mass accuracy", "localisation", "Arras et al. 2022, doi:10.1016/j.inffus.2021.11.008",
    higher_is_better=True, needs_masks=True,
    help="The share of the map's positive relevance that lies on the mask: the sum of its positive values inside "
         "the mask over their sum over the image (negative values left out). 1: all of it on the object. NaN when "
         "the map has no positive value or the mask is empty.")
def relevance_mass(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    positive = np.clip(batch.maps.reshape(len(batch), -1).astype(np.float64), 0, None)
    masks = _object_masks(batch).reshape(len(batch), -1)
    inside, total = (positive * masks).sum(axis=1), positive.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total > 0) & masks.any(axis=1), inside / total, np.nan)
