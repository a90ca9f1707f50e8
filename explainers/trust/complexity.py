"""Complexity: is a map concentrated enough for a person to read? Read from the map alone, no model pass."""

from __future__ import annotations

from typing import Any

import numpy as np

from explainers.trust.registry import MetricBatch, register_metric


def gini(values: np.ndarray) -> np.ndarray:
    """The Gini index of each row of non-negative ``values`` (M, P): 0 when all are equal, towards 1 when one holds all.

    Rows sorted ascending, G = sum_i (2i - P - 1) v_i / (P sum v) for i = 1..P (Hurley & Rickard 2009's form);
    a row of zeros has no concentration to speak of and gets NaN.
    """
    ordered = np.sort(values, axis=1)
    count = ordered.shape[1]
    weights = 2 * np.arange(1, count + 1) - count - 1
    totals = ordered.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, (ordered * weights).sum(axis=1) / (count * totals), np.nan)


@register_metric("sparseness", "Sparseness (Gini)", "complexity", "Chalasani et al. 2020, arXiv:1810.06583",
                 higher_is_better=True,
                 help="The Gini index of the map's absolute values over its pixels: 0 when relevance is spread "
                      "evenly, near 1 when a few pixels hold it all.")
def sparseness(batch: MetricBatch, params: dict[str, Any]) -> np.ndarray:
    return gini(np.abs(batch.maps.reshape(len(batch), -1)).astype(np.float64))
