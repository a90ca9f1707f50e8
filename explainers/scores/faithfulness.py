"""Deletion and insertion curves (Petsiuk et al. 2018): is a map faithful to the model?"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from explainers.attribution import IN_FLIGHT, RESULTS, Attribution, model_inputs, prepare_images
from explainers.inputs.images import ImageLike, blur
from explainers.methods.registry import PassGroup
from explainers.models.loading import LoadedModel
from explainers.runtime.passes import DEFAULT_BATCH_SIZE

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


@dataclass(frozen=True, slots=True, kw_only=True)
class _ImageCurves:
    """One map's two curves as ``RESULTS`` keeps them."""

    deletion: np.ndarray  # (S + 1,) class probability as the most relevant pixels turn black
    insertion: np.ndarray  # (S + 1,) class probability as they appear sharp on a blurred copy


def curve_fractions(steps: int) -> np.ndarray:
    """``(steps + 1,)`` the share of pixels removed (deletion) or revealed (insertion) at each point of a curve."""
    return np.linspace(0.0, 1.0, steps + 1)


def curve_counts(steps: int, pixel_count: int) -> np.ndarray:
    """``(steps + 1,)`` how many pixels are removed or revealed at each point: the fraction's, rounded to nearest."""
    return np.rint(curve_fractions(steps) * pixel_count).astype(int)


def removal_ranks(raw: np.ndarray) -> np.ndarray:
    """``(H, W)`` each pixel's place when ``raw``'s values are ranked most positive first, 0 for the first; equal
    values keep row-major order (the top-left one first), so a map's order never depends on the sort's whims."""
    ranks = np.empty(raw.size, np.int64)
    ranks[np.argsort(-raw.ravel(), kind="stable")] = np.arange(raw.size)
    return ranks.reshape(raw.shape)


# The deletion and insertion inputs of one map, built here only: the Compare page's curves and the trust page's
# deletion and insertion metrics (``explainers.trust.faithfulness``) send the model the same pixels.
def deletion_inputs(pixels: np.ndarray, ranks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(len(counts), H, W, 3)`` uint8: ``pixels`` ``(H, W, 3)`` with their first ``counts[k]`` pixels by
    ``ranks`` set to black, one image per count."""
    chosen = (ranks[None] < counts[:, None, None])[..., None]  # (S+1, H, W, 1)
    return np.where(chosen, np.zeros_like(pixels), pixels)


def insertion_inputs(pixels: np.ndarray, ranks: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(len(counts), H, W, 3)`` uint8: ``pixels`` blurred (Gaussian, radius ``INSERTION_BLUR_RADIUS``) with their
    first ``counts[k]`` pixels by ``ranks`` shown sharp, one image per count."""
    chosen = (ranks[None] < counts[:, None, None])[..., None]
    return np.where(chosen, pixels, blur(pixels[None], INSERTION_BLUR_RADIUS)[0])


def _map_digest(raw: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(raw, np.float32).tobytes(), digest_size=16).hexdigest()


def _key(model: LoadedModel, digest: str, raw: np.ndarray, target: int, steps: int) -> tuple:
    # Keyed by the map's own bytes, so any map (a method's, or one built by hand) is safe to cache.
    return "curves", model.fingerprint, digest, _map_digest(raw), int(target), steps


def cached_curves(model: LoadedModel, images: Sequence[ImageLike], attribution: Attribution, steps: int = 16) -> int:
    """How many of ``attribution``'s maps have their curves at ``steps`` in the cache already; computes nothing."""
    _, digests = prepare_images(model, images)
    return sum(RESULTS.get(_key(model, digest, raw, target, steps)) is not None
               for digest, raw, target in zip(digests, attribution.raw, attribution.classes))


def curve_passes(maps: int, steps: int) -> list[PassGroup]:
    """The forward passes the curves of ``maps`` maps cost (as ``Method.cost`` counts them): one batch of
    ``2 * (steps + 1)`` inputs per map."""
    return [PassGroup(backward=False, images_per_pass=2 * (steps + 1), passes=maps)] if maps else []


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
    fractions = curve_fractions(steps)
    counts = curve_counts(steps, height * width)
    deletion, insertion = [], []
    for i, raw in enumerate(attribution.raw):
        key = _key(model, digests[i], raw, attribution.classes[i], steps)
        with IN_FLIGHT.hold(key):  # another session scoring the same map waits, then reads the cache
            hit = RESULTS.get(key)
            if hit is None:
                hit = _curves(model, pixels[i], raw, int(attribution.classes[i]), counts, batch_size, key)
        deletion.append(hit.deletion)
        insertion.append(hit.insertion)
    return Curves(fractions, np.array(deletion), np.array(insertion))


def _curves(model: LoadedModel, pixels: np.ndarray, raw: np.ndarray, target: int, counts: np.ndarray,
            batch_size: int, key: tuple) -> _ImageCurves:
    """One image's deletion and insertion probabilities, stored under ``key``."""
    steps = len(counts) - 1
    ranks = removal_ranks(raw)
    x = model.to_input(np.concatenate([deletion_inputs(pixels, ranks, counts),
                                       insertion_inputs(pixels, ranks, counts)]))
    classes = np.full(len(x), target, np.int32)
    # All 2 * (steps + 1) inputs of an image in one batch: larger batches cost less per image on a CPU.
    probabilities = model.runtime.class_probabilities(x, classes, max(batch_size, len(x)))
    hit = _ImageCurves(deletion=probabilities[: steps + 1], insertion=probabilities[steps + 1 :])
    RESULTS.put(key, hit, probabilities)
    return hit
