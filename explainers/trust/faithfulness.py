"""Faithfulness: does removing what the map points at change the model's score?

Deletion and insertion (Petsiuk et al. 2018) send the model the very inputs the Compare page's curves do
(built by ``explainers.scores.faithfulness``); ROAD (Rong et al. 2022) fills the removed pixels by noisy
linear imputation (``explainers.trust.imputation``), so the removed shape itself tells the model little.
Each metric makes the perturbed inputs of every map in the batch, image by image and method by method, and
sends them through the model together in full batches: its passes depend on the number of maps, not on how
the batch mixes images and methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from explainers.methods.registry import Param, PassGroup
from explainers.scores.faithfulness import (
    INSERTION_BLUR_RADIUS,
    curve_counts,
    curve_fractions,
    deletion_inputs,
    insertion_inputs,
    removal_ranks,
)
from explainers.trust.imputation import noisy_linear_fill
from explainers.trust.registry import CostContext, MetricBatch, forward_batches, register_metric

ROAD_PROBE_STEPS = 5  # fractions imputed when timing ROAD's work on a map; more are priced in proportion
ROAD_PROBE_REPEATS = 3  # timed maps; the fastest counts, as the others met other work on the cores
ROAD_PROBE_SECONDS = 0.1  # no further timed map once the timings add up to this

ROAD_FIRST, ROAD_LAST = 0.1, 0.9  # the share of pixels removed at ROAD's first and last step (the paper's range)
PIXEL_RANGE = 255.0  # ROAD's noise is stated as a share of it, as the paper's code adds it to images scaled to 0..1


def class_probabilities_of(batch: MetricBatch, inputs_of: Callable[[int], np.ndarray], per_map: int) -> np.ndarray:
    """``(M, per_map)`` the model's probability of each map's class on each of its perturbed inputs.

    ``inputs_of(m)`` makes map ``m``'s ``per_map`` inputs as pixels ``(per_map, H, W, 3)`` on the 0..255 scale. They
    are made map by map, queued, and sent as soon as full batches of ``batch.batch_size`` are queued (the rest at the
    end): ``forward_batches(M * per_map, batch_size)`` passes, with only about a batch's inputs held at a time.
    """
    size = batch.batch_size
    classes = np.repeat(batch.classes.astype(np.int32), per_map)
    probabilities = np.empty(len(batch) * per_map)
    queued: list[np.ndarray] = []
    sent = waiting = 0

    def send(rows: int) -> None:
        nonlocal queued, sent, waiting
        pixels = np.concatenate(queued)
        x = batch.model.to_input(pixels[:rows])
        probabilities[sent : sent + rows] = batch.model.runtime.class_probabilities(x, classes[sent : sent + rows],
                                                                                    size)
        queued, sent, waiting = [pixels[rows:]], sent + rows, waiting - rows

    for m in range(len(batch)):
        queued.append(inputs_of(m))
        waiting += per_map
        if waiting >= size:
            send(waiting - waiting % size)
    if waiting:
        send(waiting)
    return probabilities.reshape(len(batch), per_map)


def _curve_cost(params: dict[str, Any], context: CostContext) -> list[PassGroup]:
    """One input per point of the curve, ``steps + 1`` per map."""
    return forward_batches(context.maps * (int(params["steps"]) + 1), context.batch_size)


def curve_areas(batch: MetricBatch, steps: int, make: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
                ) -> np.ndarray:
    """``(M,)`` the area under each map's curve of class probability over the fraction of pixels changed, by the
    trapezoid rule over ``steps + 1`` equal steps from 0 to 1; ``make`` is ``deletion_inputs`` or
    ``insertion_inputs``, the Compare page's own."""
    counts = curve_counts(steps, batch.pixels.shape[1] * batch.pixels.shape[2])
    probabilities = class_probabilities_of(
        batch, lambda m: make(batch.pixels[m], removal_ranks(batch.maps[m]), counts), steps + 1)
    return np.trapezoid(probabilities, curve_fractions(steps), axis=1)


CURVE_STEPS = Param("steps", 16, "equal steps from no pixel to every pixel", 4, 64, 1, label="Steps")
RANKING = "pixels ranked by the raw map, most positive first, equal values in row-major order (top-left first)"


@register_metric(
    "deletion", "Deletion", "faithfulness", "Petsiuk et al. 2018, arXiv:1806.07421",
    higher_is_better=False, params=(CURVE_STEPS,), cost=_curve_cost,
    help=f"With the {RANKING}, the first round(k/steps × H×W) pixels set to black for k = 0..`steps`: the area under "
         "the model's probability of the explained class against the fraction removed, from the image (0) to a "
         "black image (1), by the trapezoid rule; the Compare page's deletion curve. Low: removing what the map "
         "points at first makes the class fall fast.")
def deletion(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    return curve_areas(batch, int(params["steps"]), deletion_inputs)


@register_metric(
    "insertion", "Insertion", "faithfulness", "Petsiuk et al. 2018, arXiv:1806.07421",
    higher_is_better=True, params=(CURVE_STEPS,), cost=_curve_cost,
    help=f"From the image blurred (Gaussian, radius {INSERTION_BLUR_RADIUS:g} pixels at the model's input size), with "
         f"the {RANKING}, the first round(k/steps × H×W) pixels shown sharp for k = 0..`steps`: the area under the "
         "model's probability of the explained class against the fraction revealed, from the blurred image (0) to "
         "the image (1), by the trapezoid rule; the Compare page's insertion curve. High: what the map points at "
         "first brings the class back fast.")
def insertion(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    return curve_areas(batch, int(params["steps"]), insertion_inputs)


def road_fractions(steps: int) -> np.ndarray:
    """``(steps,)`` the shares of pixels ROAD removes, evenly from 10% to 90%."""
    return np.linspace(ROAD_FIRST, ROAD_LAST, steps)


def road_removed(raw: np.ndarray, steps: int, most_relevant_first: bool) -> np.ndarray:
    """``(steps, H, W)`` bool, True on the pixels removed at each fraction: round(f × H×W) of them, the first by
    ``removal_ranks`` (MoRF) or the last (LeRF)."""
    ranks = removal_ranks(raw)[None]
    counts = np.rint(road_fractions(steps) * raw.size).astype(int)[:, None, None]
    return ranks < counts if most_relevant_first else ranks >= raw.size - counts


def road_inputs(pixels: np.ndarray, raw: np.ndarray, steps: int, most_relevant_first: bool, noise: float,
                seed: int) -> np.ndarray:
    """``(steps, H, W, 3)`` float32 pixels: ``pixels`` with each fraction's removed pixels filled by noisy linear
    imputation, noise of standard deviation ``noise × 255`` drawn from ``seed`` (fraction by fraction, removed
    pixels in row-major order, channels innermost), then clipped to 0..255."""
    removed = road_removed(raw, steps, most_relevant_first)
    copies = np.broadcast_to(pixels, (steps, *pixels.shape))
    filled = noisy_linear_fill(copies, removed, noise * PIXEL_RANGE, np.random.default_rng(seed))
    return np.clip(filled, 0.0, PIXEL_RANGE).astype(np.float32)


def road_scores(batch: MetricBatch, params: dict[str, Any], most_relevant_first: bool) -> np.ndarray:
    """``(M,)`` each map's class probability averaged over ROAD's fractions; map ``m``'s noise from ``seeds[m]``."""
    steps, noise = int(params["steps"]), float(params["noise"])
    probabilities = class_probabilities_of(
        batch, lambda m: road_inputs(batch.pixels[m], batch.maps[m], steps, most_relevant_first, noise,
                                     int(batch.seeds[m])), steps)
    return probabilities.mean(axis=1)


def _road_cost(params: dict[str, Any], context: CostContext) -> list[PassGroup]:
    """One input per fraction, ``steps`` per map (the imputation is CPU work outside the model: ``_road_work``)."""
    return forward_batches(context.maps * int(params["steps"]), context.batch_size)


ROAD_MAP_SECONDS: dict[tuple[int, int], float] = {}


def road_map_seconds(size: tuple[int, int]) -> float:
    """Seconds ROAD's inputs for one map of ``size`` (H, W) take at ``ROAD_PROBE_STEPS`` fractions, timed once per
    size on a made-up image and map (the fastest of up to ``ROAD_PROBE_REPEATS``).

    The map is smooth noise (a few blobs of relevance, as maps have): removing one round blob took 20% longer to
    solve and speckles 10% less. A side 8 times longer takes about 130 times as long (4.5 ms a map at 28 × 28,
    0.6 s at 224 × 224), hence a timing per size rather than a rule.
    """
    size = (int(size[0]), int(size[1]))
    if size not in ROAD_MAP_SECONDS:
        rng = np.random.default_rng(0)
        raw = gaussian_filter(rng.normal(size=size), min(size) / 10)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        timings: list[float] = []
        # Repeated only while quick: a map at 224 × 224 takes long enough for one timing to be steady.
        while len(timings) < ROAD_PROBE_REPEATS and sum(timings) < ROAD_PROBE_SECONDS:
            start = time.perf_counter()
            road_inputs(pixels, raw, ROAD_PROBE_STEPS, True, 0.01, len(timings))
            timings.append(time.perf_counter() - start)
        ROAD_MAP_SECONDS[size] = min(timings)
    return ROAD_MAP_SECONDS[size]


def _road_work(params: dict[str, Any], context: CostContext) -> float:
    """The imputation: every map's ``steps`` fractions, at the time measured for maps of the model's size."""
    return context.maps * road_map_seconds(context.size) * int(params["steps"]) / ROAD_PROBE_STEPS


ROAD_PARAMS = (
    Param("steps", 5, "fractions of pixels removed, evenly from 10% to 90%", 2, 33, 1, label="Fractions"),
    Param("noise", 0.01, "standard deviation of the noise added to each filled pixel, as a share of the pixel range",
          0.0, 0.2, 0.005, label="Noise (share of 0..255)"),
)
ROAD_FILL = ("filled by noisy linear imputation: each removed pixel is the weighted mean of its 8 neighbours inside "
             "the image (direct 1/6, diagonal 1/12, renormalised over those inside; removed neighbours are unknowns "
             "too, solved for as one sparse linear system per image and fraction), plus Gaussian noise of standard "
             "deviation `noise` × 255 per pixel and channel (default 0.01, the paper's, 2.55 levels), drawn from a "
             "seed of the image's content (not of the batch), then clipped to 0..255")


@register_metric(
    "road_morf", "ROAD, most relevant first", "faithfulness", "Rong et al. 2022, arXiv:2202.00449",
    higher_is_better=False, params=ROAD_PARAMS, cost=_road_cost, work=_road_work,
    help=f"With the {RANKING}, for `steps` fractions f evenly from 10% to 90%, the first round(f × H×W) pixels (the "
         f"most relevant) are {ROAD_FILL}. The model's probability of the explained class, averaged over the "
         "fractions. Low: removing what the map points at hurts the class.")
def road_morf(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    return road_scores(batch, params, most_relevant_first=True)


@register_metric(
    "road_lerf", "ROAD, least relevant first", "faithfulness", "Rong et al. 2022, arXiv:2202.00449",
    higher_is_better=True, params=ROAD_PARAMS, cost=_road_cost, work=_road_work,
    help=f"With the {RANKING}, for `steps` fractions f evenly from 10% to 90%, the last round(f × H×W) pixels (the "
         f"least relevant) are {ROAD_FILL}. The model's probability of the explained class, averaged over the "
         "fractions (the paper's code removes 1 − f at f; over these fractions, symmetric about 50%, the average is "
         "the same up to rounding). High: what the map leaves out, the class does without.")
def road_lerf(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    return road_scores(batch, params, most_relevant_first=False)
