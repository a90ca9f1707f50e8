"""Methods that perturb the input and watch the class probability: Occlusion and RISE."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from explainers.methods.gradients import baseline_input
from explainers.methods.registry import Job, Param, PassGroup, in_batches, register
from explainers.runtime.targets import probabilities_from_logits


def _auto_size(value: int, size: tuple[int, int]) -> int:
    """``value``, or when it is 0 a seventh of the shorter side (32 px at 224 px), as the RISE paper's 7x7 grid."""
    return int(value) or max(1, -(-min(size) // 7))


def _starts(length: int, patch: int, stride: int) -> list[int]:
    """Patch offsets along one side; the last patch is moved to touch the edge so every pixel is covered."""
    starts = list(range(0, length - patch + 1, stride))
    return starts if starts[-1] == length - patch else [*starts, length - patch]


def occlusion_patches(size: tuple[int, int], patch: int, stride: int) -> tuple[list[int], list[int], int, int]:
    """``(tops, lefts, patch_height, patch_width)`` of the occluding patches on an image of ``size`` = (H, W).

    0 picks the defaults (patch: a seventh of the shorter side; stride: half the
    patch). The patch is clamped to the image, and the stride to the patch so that
    no pixel is left uncovered.
    """
    height, width = size
    side = _auto_size(patch, size)
    step = int(stride) or max(1, side // 2)
    patch_height, patch_width = min(side, height), min(side, width)
    return (_starts(height, patch_height, min(step, patch_height)), _starts(width, patch_width, min(step, patch_width)),
            patch_height, patch_width)


def _occlusion_cost(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    # One forward pass over the images (classes and unoccluded probabilities), then each image's copies.
    tops, lefts, _, _ = occlusion_patches(size, params["patch"], params["stride"])
    return in_batches(False, images, batch_size) + in_batches(False, len(tops) * len(lefts), batch_size, images)


def _fill_input(job: Job, fill: str, blur_radius: float) -> np.ndarray:
    """``(N, H, W, C)`` model input of what a patch shows instead of the image."""
    if fill == "mean":
        colour = job.pixels.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
        return job.to_input(np.broadcast_to(colour, job.pixels.shape))
    return baseline_input(job, fill, blur_radius)  # "black" or "blurred", as Integrated Gradients' baselines


@register("occlusion", "Occlusion", "Zeiler & Fergus 2014, arXiv:1311.2901", cost=_occlusion_cost,
          params=(Param("patch", 0, "side of the square hiding part of the image, in pixels at the model's input "
                                    "(0: a seventh of the shorter side, 32 at 224)", 0, 1024, 1),
                  Param("stride", 0, "step between patches in pixels, at most the patch (0: half the patch)",
                        0, 1024, 1),
                  Param("fill", "mean", "what a patch shows: black, the image's mean colour, or the image blurred",
                        choices=("black", "mean", "blurred")),
                  Param("blur_radius", 20.0, "blur radius in pixels of the blurred fill", 1.0, 100.0, 1.0)))
def occlusion(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the mean drop in the class probability over the patches covering it: ``(N, H, W)``, signed."""
    tops, lefts, patch_height, patch_width = occlusion_patches(job.size, params["patch"], params["stride"])
    patches = [(top, left) for top in tops for left in lefts]
    fill = _fill_input(job, params["fill"], params["blur_radius"])
    # One pass resolves the classes and gives the unoccluded probabilities at once.
    forward = job.runtime.forward(job.x, job.targets, batch_size=job.batch_size)
    classes = forward.classes
    reference = probabilities_from_logits(forward.logits, job.runtime.output_kind)[np.arange(len(job.x)), classes]
    coverage = np.zeros(job.size, np.float32)
    for top, left in patches:
        coverage[top : top + patch_height, left : left + patch_width] += 1
    maps = np.zeros((len(job.x), *job.size), np.float32)
    for i in range(len(job.x)):
        for start in range(0, len(patches), job.batch_size):
            chunk = patches[start : start + job.batch_size]
            copies = np.repeat(job.x[i][None], len(chunk), axis=0)
            for k, (top, left) in enumerate(chunk):
                window = (slice(top, top + patch_height), slice(left, left + patch_width))
                copies[(k, *window)] = fill[(i, *window)]
            drops = reference[i] - job.runtime.class_probabilities(
                copies, np.full(len(chunk), classes[i], np.int32), batch_size=job.batch_size)
            for drop, (top, left) in zip(drops, chunk):
                maps[i, top : top + patch_height, left : left + patch_width] += drop
    return maps / coverage, classes


def _bilinear_rows(cells: int, cell: int) -> np.ndarray:
    """``(cells * cell, cells)`` weights of bilinear upsampling by ``cell``, half-pixel centres as ``tf.image.resize``."""
    source = np.clip((np.arange(cells * cell) + 0.5) / cell - 0.5, 0, cells - 1)
    low = np.floor(source).astype(int)
    matrix = np.zeros((cells * cell, cells), np.float32)
    matrix[np.arange(len(source)), low] += 1 - (source - low)
    matrix[np.arange(len(source)), np.minimum(low + 1, cells - 1)] += source - low
    return matrix


def _rise_mask_batches(size: tuple[int, int], count: int, cell: int, keep: float, seed: int | Sequence[int],
                       batch_size: int) -> Iterator[np.ndarray]:
    """``rise_masks`` in batches of ``(<= batch_size, H, W)``: the same masks for any batch size."""
    height, width = size
    cell = _auto_size(cell, size)
    # ceil(side / cell) cells cover the image; one more leaves room for the random shift.
    rows, cols = -(-height // cell) + 1, -(-width // cell) + 1
    # Bilinear upsampling is separable, so each shifted crop is (H, rows) @ grid @ (cols, W):
    # no upsampled canvas larger than the image is ever built.
    down, across = _bilinear_rows(rows, cell), _bilinear_rows(cols, cell)
    rng = np.random.default_rng(seed)
    # Shifts first, all at once (2 integers a mask); the grids then come from one stream of
    # uniform draws, which NumPy fills in order, so batching does not change them.
    shifts = rng.integers(0, cell, (count, 2))
    for start in range(0, count, batch_size):
        grids = (rng.random((min(batch_size, count - start), rows, cols)) < keep).astype(np.float32)
        dy, dx = shifts[start : start + len(grids)].T
        yield down[dy[:, None] + np.arange(height)] @ grids @ across[dx[:, None] + np.arange(width)].transpose(0, 2, 1)


def rise_masks(size: tuple[int, int], count: int, cell: int, keep: float, seed: int | Sequence[int]) -> np.ndarray:
    """RISE's random masks for one image: ``(count, H, W)`` float32 in [0, 1].

    Each is a binary grid of ``cell``-pixel cells (0: a seventh of the shorter
    side), each cell kept with probability ``keep``, upsampled bilinearly and
    cropped to ``size`` at a random shift of less than a cell. ``seed`` is what
    ``np.random.default_rng`` takes; the method passes ``[seed, job.seeds[i]]``.
    """
    batches = list(_rise_mask_batches(size, count, cell, keep, seed, max(count, 1)))
    return np.concatenate(batches) if batches else np.zeros((0, *size), np.float32)


def _rise_cost(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    # A forward pass to resolve the top classes, then each image's masks.
    return in_batches(False, images, batch_size) + in_batches(False, int(params["masks"]), batch_size, images)


@register("rise", "RISE", "Petsiuk et al. 2018, arXiv:1806.07421; centred by default (the masks' mean probability "
                          "subtracted, a control variate): at 400 masks it finds a known evidence region as 4,000 of "
                          "the paper's plain masks do", cost=_rise_cost,
          params=(Param("masks", 400, "random masks whose class probabilities are averaged", 1, 10000, 50,
                        presets=(200, 400, 1000, 2000, 4000)),
                  Param("cell", 0, "grid cell of a mask, in pixels at the model's input "
                                   "(0: a seventh of the shorter side, 32 at 224)", 0, 256, 1),
                  Param("keep", 0.5, "probability that a cell of a mask shows the image", 0.05, 0.95, 0.05),
                  Param("seed", 0, "seed of the masks (each image also seeds by its content)", 0, 2**31 - 1),
                  Param("centred", True, "weight each mask by its class probability minus the masks' mean one: "
                                         "a control variate that shifts the expected map by a constant only and "
                                         "removes most of the noise of few masks (off: the paper's plain sum)")))
def rise(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """``sum_m (p_m - centre) M_m / (masks * keep)`` with ``p_m = p(class | x * M_m)``: ``(N, H, W)``.

    ``centre`` is the masks' mean probability (``centred``, the default) or 0 (the paper's sum,
    non-negative). Subtracting the mean changes the map's expectation only by a constant, and
    takes away the part of the sum that merely counts how often each pixel was shown, which is
    most of RISE's noise at a few hundred masks. One pass: ``sum_m p_m M_m - mean(p) sum_m M_m``.
    """
    count, keep = params["masks"], params["keep"]
    classes = job.top_classes()
    maps = np.zeros((len(job.x), *job.size), np.float32)
    for i in range(len(job.x)):
        # Masks multiply the pixels, not the model input, so a hidden cell is black whatever the preprocessing.
        pixels = job.pixels[i].astype(np.float32)
        weighted, shown, total = np.zeros(job.size, np.float64), np.zeros(job.size, np.float64), 0.0
        for masks in _rise_mask_batches(job.size, count, params["cell"], keep, [params["seed"], job.seeds[i]],
                                        job.batch_size):
            probabilities = job.runtime.class_probabilities(
                job.to_input(pixels[None] * masks[..., None]), np.full(len(masks), classes[i], np.int32),
                batch_size=job.batch_size)
            weighted += np.tensordot(probabilities, masks, axes=1)
            shown += masks.sum(axis=0)
            total += float(np.sum(probabilities, dtype=np.float64))
        centre = total / count if params["centred"] else 0.0
        maps[i] = (weighted - centre * shown) / (count * keep)
    return maps, classes
