"""Model randomisation for the sanity check of Adebayo et al. 2018 (arXiv:1810.03292).

A map that explains the model must change when the model's learned weights are
destroyed. We copy the model and re-draw the weights of its top layers; the
original is never touched.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from .models import LoadedModel


def weighted_layers_from_top(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers that own trainable weights, nested models included, from the output backwards."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(reversed(weighted_layers_from_top(layer)))
        elif layer.trainable_weights:
            found.append(layer)
    return found[::-1]


def randomize_top_layers(model: LoadedModel, count: int, seed: int = 0) -> LoadedModel:
    """A copy of ``model`` whose ``count`` top weighted layers have freshly drawn weights.

    Each trainable weight is re-drawn from a normal distribution with the spread of
    the learned values; batch-norm statistics stay, so activations keep a sane range.
    The original model is never touched.
    """
    clone = keras.models.clone_model(model.model)
    clone.set_weights(model.model.get_weights())
    randomize(weighted_layers_from_top(clone)[:count], np.random.default_rng(seed))
    return dataclasses.replace(model, model=clone, spec=f"{model.spec} (top {count} randomised)", fingerprint="")


def randomize(layers: list[keras.layers.Layer], rng: np.random.Generator) -> None:
    """Re-draw every trainable weight of ``layers`` in place, with the spread of its learned values."""
    for layer in layers:
        for variable in layer.trainable_weights:
            value = keras.ops.convert_to_numpy(variable)
            variable.assign(rng.normal(0.0, float(value.std()) or 0.05, value.shape).astype(value.dtype))
