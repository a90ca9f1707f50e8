"""Completeness: how far a map's sum is from the change of the score it claims to share out.

Integrated Gradients and DeepLIFT both claim that a map sums to f(x) - f(x0), where f is
the score the engine explains (the class's pre-softmax logit; for a one-unit sigmoid head,
+logit for class 1 and -logit for class 0: ``runtime.targets.class_scores``), x the image
and x0 the baseline. What they miss by is their completeness gap:

    delta        = sum(map) - (f(x) - f(x0))          (Captum's convergence delta)
    relative gap = |delta| / max(|f(x) - f(x0)|, SCORE_FLOOR)

The gap of Integrated Gradients is the error of its numerical path integral; the gap of
DeepLIFT's Rescale rule comes from nonlinear operations the rule does not cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from explainers.runtime.targets import class_scores

# Above this relative gap a map no longer shares out the score change it claims to, and the pages say what to do.
COMPLETENESS_TOLERANCE = 0.05
# Score changes smaller than this (in logits) are float32 noise on logits of order 10: dividing by them would
# make a vanishing delta look like a large gap.
SCORE_FLOOR = 1e-3


class Completeness(NamedTuple):
    """Per image, a map's sum beside the change of the explained score between the baseline and the image."""

    attribution_sum: np.ndarray  # (N,) float64, the sum of each map over pixels and channels
    score_at_input: np.ndarray  # (N,) f(x): the explained class's score at the image
    score_at_baseline: np.ndarray  # (N,) f(x0): the same class's score at the baseline

    @property
    def score_change(self) -> np.ndarray:
        """``(N,)`` f(x) - f(x0): what each map should sum to."""
        return self.score_at_input - self.score_at_baseline

    @property
    def delta(self) -> np.ndarray:
        """``(N,)`` sum(map) - (f(x) - f(x0)), signed: Captum's convergence delta."""
        return self.attribution_sum - self.score_change

    @property
    def relative_gap(self) -> np.ndarray:
        """``(N,)`` |delta| / max(|f(x) - f(x0)|, SCORE_FLOOR): 0.05 means the map misses by 5% of the change."""
        return np.abs(self.delta) / np.maximum(np.abs(self.score_change), SCORE_FLOOR)

    @property
    def above_tolerance(self) -> np.ndarray:
        """``(N,)`` bool: the maps whose relative gap is above ``COMPLETENESS_TOLERANCE``."""
        return self.relative_gap > COMPLETENESS_TOLERANCE

    def select(self, rows: Sequence[int] | np.ndarray) -> Completeness:
        """The figures of the images ``rows``, in that order."""
        return Completeness(*(np.asarray(figures)[np.asarray(rows, int)] for figures in self))

    @staticmethod
    def concatenate(parts: Sequence[Completeness]) -> Completeness:
        return Completeness(*(np.concatenate(figures) for figures in zip(*parts)))


def completeness_of(maps: np.ndarray, classes: np.ndarray, input_logits: np.ndarray,
                    baseline_logits: np.ndarray) -> Completeness:
    """The completeness figures of ``maps`` ``(N, H, W)`` explaining ``classes``, from the logits ``(N, classes)``
    the model gave each image and its baseline."""
    def scores(logits: np.ndarray) -> np.ndarray:
        return np.asarray(class_scores(np.asarray(logits, np.float32), np.asarray(classes, np.int32)), np.float64)

    return Completeness(maps.sum(axis=tuple(range(1, maps.ndim)), dtype=np.float64), scores(input_logits),
                        scores(baseline_logits))
