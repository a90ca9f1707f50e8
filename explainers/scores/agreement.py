"""Agreement between methods: rank correlation of their maps."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.stats import spearmanr


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps' pixels (0 when either map is constant)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def agreement(maps: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Method names and the ``(M, M)`` mean rank correlation between their maps of the same images: ``maps`` holds
    each method's ``(N, H, W)`` raw maps, image ``i`` of every method being the same image."""
    names = list(maps)
    matrix = np.eye(len(names))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            pairs = zip(maps[names[a]], maps[names[b]])
            matrix[a, b] = matrix[b, a] = np.mean([rank_correlation(x, y) for x, y in pairs])
    return names, matrix
