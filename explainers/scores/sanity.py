"""The sanity check (Adebayo et al. 2018, arXiv:1810.03292): does a map depend on what the model learned?

The weights are re-drawn from the top layer down, in stages; a map that explains
the model must drift away from the original (low rank correlation). One that
stays put explains the image instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from explainers.attribution import attribute
from explainers.inputs.images import ImageLike
from explainers.models.loading import LoadedModel, weights_fingerprint
from explainers.runtime.targets import Targets
from explainers.scores.agreement import rank_correlation

# Above this mean rank correlation with the original, after the top layers are
# destroyed, a map is flagged as not depending on what the model learned.
SANITY_THRESHOLD = 0.5

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
