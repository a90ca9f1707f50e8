"""Robustness: does a map stay put when the image changes imperceptibly? (Yeh et al. 2019)

Each image gets a few noisy copies; every copy of every image is explained by the map's own method,
for the same class, in one call per method, and the map's largest relative change is its score.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explainers.methods.registry import Param, PassGroup
from explainers.trust.registry import CostContext, MetricBatch, register_metric
from explainers.trust.remake import by_request, remake


def noisy_copies(pixels: np.ndarray, seeds: np.ndarray, samples: int, radius: float) -> np.ndarray:
    """``(M, samples, H, W, 3)`` uint8: each image plus uniform noise in [-radius, radius] per pixel and channel,
    rounded to whole levels and clipped to 0..255. Image ``m``'s draws depend on ``seeds[m]`` only, so an image
    gets the same copies whichever batch and method it comes with."""
    copies = np.empty((len(pixels), samples, *pixels.shape[1:]), np.uint8)
    for m, (image, seed) in enumerate(zip(pixels, seeds)):
        noise = np.random.default_rng(int(seed)).uniform(-1.0, 1.0, (samples, *image.shape)) * radius
        copies[m] = np.clip(np.rint(image.astype(np.float64) + noise), 0, 255)
    return copies


def scaled_to_peak(maps: np.ndarray) -> np.ndarray:
    """Each map ``(..., H, W)`` divided by its largest absolute value; a map of zeros stays zeros."""
    peak = np.abs(maps).max(axis=(-2, -1), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)


def sensitivities(maps: np.ndarray, noisy_maps: np.ndarray) -> np.ndarray:
    """``(M,)`` max over draws of ||Φ(x+δ) − Φ(x)||₂ / ||Φ(x)||₂ for ``maps`` (M, H, W) and ``noisy_maps``
    (M, draws, H, W), every map first scaled to its peak; NaN for a map of zeros."""
    original = scaled_to_peak(maps.astype(np.float64))
    change = np.zeros(len(maps))
    for draw in range(noisy_maps.shape[1]):  # one draw at a time: the draws of a batch can be large
        noisy = scaled_to_peak(noisy_maps[:, draw].astype(np.float64))
        change = np.maximum(change, np.sqrt(((noisy - original) ** 2).sum(axis=(-2, -1))))
    size = np.sqrt((original**2).sum(axis=(-2, -1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(size > 0, change / size, np.nan)


def _remade_per_draw(params: dict[str, Any], context: CostContext) -> list[PassGroup]:
    """Every map made once more per draw."""
    return context.method_passes(context.maps * int(params["samples"]))


@register_metric(
    "max_sensitivity", "Max-sensitivity", "robustness", "Yeh et al. 2019, arXiv:1901.09392",
    higher_is_better=False, cost=_remade_per_draw,
    params=(Param("samples", 10, "noisy copies of each image", 1, 50, 1, label="Noisy copies"),
            Param("radius", 5.0, "largest change of a pixel, in levels of 0..255", 1.0, 64.0, 1.0,
                  label="Noise radius (pixel levels)")),
    help="The largest relative change of the map over `samples` noisy copies of the image, each pixel and channel "
         "moved by uniform noise of at most `radius` levels (5 of 0..255, about 2% of the range), rounded and "
         "clipped to 0..255, explained for the same class: max ||Φ(x+δ) − Φ(x)||₂ / ||Φ(x)||₂, each map first "
         "divided by its largest absolute value. 0: the map does not move. NaN when the map is all zeros.")
def max_sensitivity(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    samples, radius = int(params["samples"]), float(params["radius"])
    scores = np.empty(len(batch))
    for request, members in by_request(batch).items():  # one method's copies at a time: they can be large
        copies = noisy_copies(batch.pixels[members], batch.seeds[members], samples, radius)
        images = copies.reshape(-1, *copies.shape[2:])  # image-major: every draw of the first image, then the next
        remade = remake(batch.model, images, request, np.repeat(batch.classes[members], samples), batch.batch_size)
        scores[members] = sensitivities(batch.maps[members], remade.reshape(len(members), samples, *remade.shape[1:]))
    return scores
