"""Randomisation: does a map change when the model's learned weights are destroyed? (Adebayo et al. 2018)

Per image, the map is compared with the same method's map of the same class on the model with its top
layers re-drawn. The re-drawn model is the sanity check's (``explainers.scores.sanity``): one randomised
copy per model, its passes traced once, each layer's new weights fixed by the seed and its place from
the top, so its maps are cached under the same stage as the sanity check's and shared with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import rankdata

from explainers.methods.registry import Param, PassGroup
from explainers.scores.sanity import SANITY_THRESHOLD, copy_of, redraw, stage_counts, stage_model
from explainers.trust.registry import CostContext, MetricBatch, register_metric
from explainers.trust.remake import by_request, remake

DEFAULT_LAYERS = 8  # the sanity check's middle stage: the head and the deepest blocks
RANDOMISATION_SEED = 0  # the sanity check's default seed, so both share the randomised maps they cache


def rank_correlations(maps: np.ndarray, remade: np.ndarray) -> np.ndarray:
    """``(M,)`` Spearman correlation of each map's pixels with its remade map's (ties share their mean rank).

    NaN when the map itself is constant: it has no ranks to keep. 0 when only the remade map is constant
    (randomisation wiped it out, as Grad-CAM's ReLU often does): it kept none of the map's order, the sanity
    check's rule too.
    """
    first = rankdata(maps.reshape(len(maps), -1), axis=1)
    second = rankdata(remade.reshape(len(remade), -1), axis=1)
    first -= first.mean(axis=1, keepdims=True)
    second -= second.mean(axis=1, keepdims=True)
    first_spread, second_spread = np.sqrt((first**2).sum(axis=1)), np.sqrt((second**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        correlations = (first * second).sum(axis=1) / (first_spread * second_spread)
    return np.where(first_spread == 0, np.nan, np.where(second_spread == 0, 0.0, correlations))


def randomised_maps(batch: MetricBatch, layers: int, seed: int = RANDOMISATION_SEED) -> np.ndarray | None:
    """``(M, H, W)`` each map made again on the model with its top ``layers`` weighted layers re-drawn (capped at
    the model's weighted layers); None when the model has no weighted layer to re-draw.

    It uses the sanity check's own copy and stage naming (``sanity`` has no public per-stage call): a second
    mechanism would hold a second clone of the weights, trace every pass again and cache its maps apart.
    """
    counts = stage_counts(batch.model, (layers,))
    if not counts:
        return None
    count = counts[0]
    remade = np.empty(batch.maps.shape, np.float32)
    copy = copy_of(batch.model)
    with copy.lock:  # one check at a time changes the copy's weights
        copy.reset(batch.model)
        for index in range(count):
            redraw(copy.weighted[index], seed, index)
        stage = stage_model(batch.model, count, seed, copy.clone, copy.runtime)
        for request, members in by_request(batch).items():
            remade[members] = remake(stage, batch.pixels[members], request, batch.classes[members], batch.batch_size)
            copy.ran.add((request.method, request.layer))
    return remade


def _remade_once(params: dict[str, Any], context: CostContext) -> list[PassGroup]:
    """Every map made once more, on the randomised model."""
    return context.method_passes(context.maps)


@register_metric(
    "model_randomisation", "Model randomisation", "randomisation", "Adebayo et al. 2018, arXiv:1810.03292",
    higher_is_better=False, threshold=SANITY_THRESHOLD, cost=_remade_once,
    params=(Param("layers", DEFAULT_LAYERS, "weighted layers re-drawn from the top (capped at the model's)", 1, 256, 1,
                  label="Layers re-drawn"),),
    help="Spearman rank correlation between the map and the same method's map of the same class on a copy of the "
         "model whose top `layers` weighted layers (all of them when the model has fewer) are re-drawn from seed 0, "
         "as the sanity check does. Near 1: the map ignores what the model learned; a method passes below 0.5. "
         "0 when randomisation leaves a constant map; NaN when the map itself is constant or the model has no "
         "weighted layer.")
def model_randomisation(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    remade = randomised_maps(batch, int(params["layers"]))
    if remade is None:
        return np.full(len(batch), np.nan)
    return rank_correlations(batch.maps.astype(np.float64), remade.astype(np.float64))
