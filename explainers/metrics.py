"""Faithfulness scores: which map to trust, not just which looks best.

- Deletion and insertion (Petsiuk et al. 2018, RISE, arXiv:1806.07421): remove,
  or reveal, pixels in the order a map ranks them and follow the probability of
  the explained class. A faithful map makes it fall fast (low deletion AUC) and
  rise fast (high insertion AUC).
- Sanity check (Adebayo et al. 2018, arXiv:1810.03292): re-draw the weights from
  the top layer down; a map that explains the model must drift away from the
  original (low rank correlation). One that stays put explains the image instead.
- Agreement: rank correlation between methods' maps of the same image.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import keras
import numpy as np
from scipy.stats import spearmanr

from .attribution import IN_FLIGHT, RESULTS, Attribution, attribute, model_inputs, prepare_images
from .images import ImageLike, blur
from .models import LoadedModel, weights_fingerprint
from .runtime import DEFAULT_BATCH_SIZE
from .sanity import randomize, weighted_layers_from_top
from .targets import Targets

# Above this mean rank correlation with the original, after the top layers are
# destroyed, a map is flagged as not depending on what the model learned.
SANITY_THRESHOLD = 0.5
INSERTION_BLUR_RADIUS = 10.0


@dataclass
class Curves:
    """Class probability after each step of deletion and of insertion, per image."""

    fractions: np.ndarray  # (S + 1,) share of pixels removed (deletion) or revealed (insertion)
    deletion: np.ndarray  # (N, S + 1)
    insertion: np.ndarray  # (N, S + 1)

    @property
    def deletion_auc(self) -> np.ndarray:
        return np.trapezoid(self.deletion, self.fractions, axis=1)

    @property
    def insertion_auc(self) -> np.ndarray:
        return np.trapezoid(self.insertion, self.fractions, axis=1)


def _map_digest(raw: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(raw, np.float32).tobytes(), digest_size=16).hexdigest()


def deletion_insertion(
    model: LoadedModel,
    images: Sequence[ImageLike],
    attribution: Attribution,
    steps: int = 16,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Curves:
    """Deletion (towards black) and insertion (from a blurred copy) curves for ``attribution``'s maps.

    Pixels are ranked by the raw map, most positive first, at the model's input
    resolution. Each image needs ``2 * (steps + 1)`` forward passes, sent in batches.
    """
    arrays, digests = prepare_images(model, images)
    pixels, _ = model_inputs(model, arrays, digests)
    height, width = pixels.shape[1:3]
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.rint(fractions * height * width).astype(int)
    deletion, insertion = [], []
    for i, raw in enumerate(attribution.raw):
        # Keyed by the map's own bytes, so any map (a method's, or one built by hand) is safe to cache.
        key = ("curves", model.fingerprint, model.preprocessing, digests[i], _map_digest(raw),
               int(attribution.classes[i]), steps)
        with IN_FLIGHT.hold(key):  # another session scoring the same map waits, then reads the cache
            hit = RESULTS.get(key) or _curves(model, pixels[i], raw, int(attribution.classes[i]), counts, batch_size, key)
        deletion.append(hit[0])
        insertion.append(hit[1])
    return Curves(fractions, np.array(deletion), np.array(insertion))


def _curves(model: LoadedModel, pixels: np.ndarray, raw: np.ndarray, target: int, counts: np.ndarray,
            batch_size: int, key: tuple) -> tuple[np.ndarray, np.ndarray]:
    """One image's deletion and insertion probabilities, stored under ``key``."""
    height, width = pixels.shape[:2]
    steps = len(counts) - 1
    black = np.zeros_like(pixels)
    rank = np.empty(height * width, np.int64)
    rank[np.argsort(-raw.ravel(), kind="stable")] = np.arange(height * width)
    chosen = (rank.reshape(height, width)[None] < counts[:, None, None])[..., None]  # (S+1, H, W, 1)
    deleted = np.where(chosen, black, pixels)
    inserted = np.where(chosen, pixels, blur(pixels[None], INSERTION_BLUR_RADIUS)[0])
    x = model.to_input(np.concatenate([deleted, inserted]))
    classes = np.full(len(x), target, np.int32)
    # All 2 * (steps + 1) inputs of an image in one batch: larger batches cost less per image on a CPU.
    probabilities = model.runtime.class_probabilities(x, classes, max(batch_size, len(x)))
    hit = (probabilities[: steps + 1], probabilities[steps + 1 :])
    RESULTS.put(key, hit, probabilities)
    return hit


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps' pixels (0 when either map is constant)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


@dataclass
class SanityCheck:
    layers_randomized: list[int]  # cumulative count of weighted layers re-drawn, from the top
    deepest_layer: list[str]  # the deepest re-drawn layer at each stage
    correlations: np.ndarray  # (stages, N) rank correlation with the original map

    @property
    def flagged(self) -> bool:
        """True when the map barely changes once the top layers are destroyed."""
        return bool(self.correlations[-1].mean() > SANITY_THRESHOLD)


def sanity_check(
    model: LoadedModel,
    images: Sequence[ImageLike],
    method: str,
    targets: Targets = None,
    layer: str | None = None,
    stages: Sequence[int] = (1, 4, 8, 16, 32),
    seed: int = 0,
    **params,
) -> SanityCheck:
    """Cascading randomisation: re-draw the top layers' weights in growing stages, compare maps.

    Works on one copy of the model whose weights change in place between stages,
    so its compiled passes are traced once, not once per stage.
    """
    original = attribute(model, images, method, targets, layer, **params)
    clone = keras.models.clone_model(model.model)
    clone.set_weights(model.model.get_weights())
    copy = dataclasses.replace(model, model=clone, spec=f"{model.spec} (randomised)", fingerprint="x")
    weighted = weighted_layers_from_top(clone)
    rng = np.random.default_rng(seed)
    done, counts, names, correlations = 0, [], [], []
    for count in sorted({min(s, len(weighted)) for s in stages}):
        randomize(weighted[done:count], rng)
        done = count
        copy.fingerprint = weights_fingerprint(clone)  # a new key: cached maps of earlier stages stay apart
        after = attribute(copy, images, method, list(original.classes), layer, **params)
        counts.append(count)
        names.append(weighted[count - 1].name)
        correlations.append([rank_correlation(a, b) for a, b in zip(original.raw, after.raw)])
    return SanityCheck(counts, names, np.array(correlations))


def agreement(attributions: Mapping[str, Attribution]) -> tuple[list[str], np.ndarray]:
    """Method names and the ``(M, M)`` mean rank correlation between their maps of the same images."""
    names = list(attributions)
    matrix = np.eye(len(names))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            pairs = zip(attributions[names[a]].raw, attributions[names[b]].raw)
            matrix[a, b] = matrix[b, a] = np.mean([rank_correlation(x, y) for x, y in pairs])
    return names, matrix
