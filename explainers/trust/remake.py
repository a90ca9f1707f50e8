"""Making a batch's maps again, on other inputs or another model: one ``attribute`` call per method request.

A batch holds maps of several methods; metrics that remake maps (on noisy copies of the images, on a
randomised model) group them by how they were made, so each group's maps come from a single call that
batches its passes and caches its maps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from explainers.attribution import attribute
from explainers.models.loading import LoadedModel
from explainers.trust.registry import MapRequest, MetricBatch

MAX_MAP_BATCH = 64  # the largest batch a metric sends to a method, as the evaluation does for the original maps


def by_request(batch: MetricBatch) -> dict[MapRequest, np.ndarray]:
    """``{request: indices of the batch's maps made that way}``, in the order requests first appear."""
    groups: dict[MapRequest, list[int]] = {}
    for index, request in enumerate(batch.requests):
        groups.setdefault(request, []).append(index)
    return {request: np.asarray(indices, np.intp) for request, indices in groups.items()}


def remake(model: LoadedModel, images: Sequence[np.ndarray] | np.ndarray, request: MapRequest, classes: np.ndarray,
           batch_size: int) -> np.ndarray:
    """``(N, H, W)`` raw maps of ``images`` made as ``request`` says, each explaining ``classes[i]``."""
    return attribute(model, list(images), request.method, np.asarray(classes, np.int32), request.layer,
                     batch_size=min(batch_size, MAX_MAP_BATCH), **dict(request.params)).raw
