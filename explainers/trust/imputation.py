"""Noisy linear imputation (Rong et al. 2022, ROAD): removed pixels filled from their neighbours, plus noise.

A removed pixel takes the weighted mean of its eight neighbours, direct ones weighing 1/6 and diagonal ones
1/12 (the weights sum to 1), neighbours outside the image left out and the rest renormalised. Removed
neighbours are unknowns too, so the filled values solve one sparse linear system per image: for each removed
pixel ``i``, ``d_i x_i - sum_{removed j} w_ij x_j = sum_{kept j} w_ij p_j`` with ``d_i`` the weight of its
neighbours inside the image. The system is symmetric and diagonally dominant, and has a unique solution as long
as one pixel of the image is kept. Filling from the neighbours, rather than with black, leaves little trace of
the removed shape for the model to read: the paper's point.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve

# (row offset, column offset, weight): the paper's neighbour weights, direct 1/6, diagonal 1/12.
NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
    (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12),
)


# Small images' systems are solved several at once, stacked block-diagonally, to spare SuperLU's per-call overhead
# (half the time at 28 × 28); beyond this many unknowns one image per call was faster (at 224 × 224).
BLOCK_UNKNOWNS = 8192


def linear_fill(pixels: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` float64: ``pixels`` with every ``removed`` ``(N, H, W)`` pixel set to the weighted mean
    of its neighbours inside the image (the others renormalised), kept pixels unchanged.

    The N images' systems are independent: consecutive images are solved together while their unknowns number at
    most ``BLOCK_UNKNOWNS``, which changes no value. An image with every pixel removed has no solution and raises
    ValueError.
    """
    count = len(removed)
    # C order, always: the writes go through flat views, which a copy of a broadcast input would not give.
    filled = np.array(pixels, np.float64, order="C")
    if removed.reshape(count, -1).all(axis=1).any():
        raise ValueError("linear imputation needs at least one kept pixel per image")
    unknowns = removed.reshape(count, -1).sum(axis=1)
    first = 0
    while first < count:
        last = first + 1
        while last < count and unknowns[first : last + 1].sum() <= BLOCK_UNKNOWNS:
            last += 1
        if unknowns[first:last].any():
            _fill_together(filled[first:last], removed[first:last])
        first = last
    return filled


def _fill_together(filled: np.ndarray, removed: np.ndarray) -> None:
    """Solve the systems of the images ``filled`` (C-ordered, written in place) as one block-diagonal system."""
    count, height, width = removed.shape
    flat = filled.reshape(count * height * width, -1)
    image, row, column = np.nonzero(removed)
    unknowns = len(image)
    unknown_of = np.full(removed.shape, -1, np.int64)  # each removed pixel's place among the unknowns
    unknown_of[image, row, column] = np.arange(unknowns)
    diagonal = np.zeros(unknowns)
    right = np.zeros((unknowns, flat.shape[1]))
    rows, columns, values = [], [], []
    for d_row, d_column, weight in NEIGHBOUR_WEIGHTS:
        near_row, near_column = row + d_row, column + d_column
        inside = (near_row >= 0) & (near_row < height) & (near_column >= 0) & (near_column < width)
        diagonal[inside] += weight
        at = np.flatnonzero(inside)
        neighbour = unknown_of[image[at], near_row[at], near_column[at]]
        unknown = neighbour >= 0
        rows.append(at[unknown])
        columns.append(neighbour[unknown])
        values.append(np.full(unknown.sum(), -weight))
        kept = at[~unknown]
        kept_flat = (image[kept] * height + near_row[kept]) * width + near_column[kept]
        right[kept] += weight * flat[kept_flat]  # each removed pixel once per offset: no repeated index
    rows.append(np.arange(unknowns))
    columns.append(np.arange(unknowns))
    values.append(diagonal)
    system = csc_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                        shape=(unknowns, unknowns))
    # SuperLU's default column ordering (COLAMD): minimum degree on A + Aᵀ was faster on one blob-shaped removal but
    # took 28 s instead of 0.5 s on 70% of a 224 × 224 image removed in speckles.
    solution = spsolve(system, right)
    flat[(image * height + row) * width + column] = solution.reshape(unknowns, -1)


def noisy_linear_fill(pixels: np.ndarray, removed: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """``linear_fill`` plus Gaussian noise of standard deviation ``noise`` on every removed pixel and channel,
    drawn from ``rng`` in row-major order of the removed pixels; kept pixels unchanged."""
    filled = linear_fill(pixels, removed)
    if noise > 0:
        filled[removed] += rng.normal(0.0, noise, filled[removed].shape)
    return filled
