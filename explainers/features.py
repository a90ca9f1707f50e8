"""What a layer computes: its most active channels for one image, as small pictures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explainers.errors import InputError
from explainers.inputs.images import ImageLike, as_rgb_array
from explainers.methods.maps import rescale
from explainers.models.loading import LoadedModel
from explainers.runtime.targets import TOP1


@dataclass
class FeatureMaps:
    channels: np.ndarray  # (K,) channel indices, most active first
    mean_activation: np.ndarray  # (K,) each channel's mean activation over the image
    maps: np.ndarray  # (K, h, w) float32 in [0, 1], each channel scaled on its own


def feature_maps(model: LoadedModel, image: ImageLike, layer: str, count: int = 16) -> FeatureMaps:
    """The ``count`` channels of ``layer`` with the highest mean activation on ``image`` (one forward pass)."""
    if layer not in model.conv_layers:
        raise InputError(f"'{layer}' is not a layer with a spatial output in {model.display_name}.")
    x = model.preprocess([as_rgb_array(image)])
    activations = model.runtime.forward(x, np.array([TOP1], np.int32), (layer,)).activations[0][0]  # (h, w, C)
    means = activations.mean(axis=(0, 1))
    order = np.argsort(-means, kind="stable")[:count]
    return FeatureMaps(order, means[order], rescale(np.moveaxis(activations[..., order], -1, 0)))
