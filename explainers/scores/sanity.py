"""The sanity check (Adebayo et al. 2018, arXiv:1810.03292): does a map depend on what the model learned?

Cascading randomisation: the weights are re-drawn from the top layer down, in
stages, each stage keeping the layers re-drawn before it; a map that explains the
model must drift away from the original (low rank correlation). One that stays
put explains the image instead.

Every method of a request shares one copy of the model, kept per model with its
compiled passes, so a check traces each pass once, and a later check (another
class, another method) traces nothing. Each layer's new weights depend only on
the seed and the layer's place from the top, so a stage is the same model
whichever stages came before it, and its maps are cached like any other.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from explainers.attribution import Attribution, attribute, cached_maps
from explainers.errors import counted
from explainers.estimates import maps_seconds
from explainers.inputs.images import ImageLike
from explainers.models.loading import LoadedModel
from explainers.runtime.lru import LruCache
from explainers.runtime.passes import Runtime
from explainers.runtime.targets import Targets
from explainers.scores.agreement import rank_correlation

# Above this mean rank correlation with the original, after the top layers are
# destroyed, a map is flagged as not depending on what the model learned.
SANITY_THRESHOLD = 0.5
# Weighted layers re-drawn at each stage, from the top: the classifier alone, then the head, then the deepest
# blocks (on the embedded model, everything after its last downsampling). Three stages keep the cascade's
# shape at three maps per method and image; each stage costs about what the original maps cost.
DEFAULT_STAGES = (1, 8, 32)
# Before a model's randomised copy has run a method, its first stage also traces that method's passes: on the
# development machine's 2-core CPU the default three methods' traces take about 4.5 s together on the embedded model.
TRACE_ALLOWANCE_SECONDS = 1.5
MAX_COPIES = 2  # randomised copies kept: each holds a second set of the model's weights and traced graphs

Request = tuple[str | None, Mapping[str, Any]]  # (layer, parameters) of one method


@dataclass
class SanityCheck:
    layers_randomized: list[int]  # cumulative count of weighted layers re-drawn, from the top
    deepest_layer: list[str]  # the deepest re-drawn layer at each stage
    correlations: np.ndarray  # (stages, N) rank correlation with the original map
    seconds: float = 0.0  # compute time of the stages' maps, whenever they were computed (cached maps included)
    weighted_layers: int = 0  # the model's weighted layers: a stage of that many re-draws them all

    @property
    def stage_labels(self) -> list[str]:
        """Each stage as charts and reports name it: ``top 8``, ``top 4 (all)``."""
        return [stage_label(count, self.weighted_layers) for count in self.layers_randomized]

    @property
    def flagged(self) -> bool:
        """True when the map barely changes once the top layers are destroyed."""
        return bool(self.correlations[-1].mean() > SANITY_THRESHOLD)


class _RandomisedCopy:
    """One clone of a model whose top layers are re-drawn in place, with the compiled passes traced on it."""

    def __init__(self, model: LoadedModel) -> None:
        self.clone = keras.models.clone_model(model.model)
        self.runtime = Runtime(self.clone, model.output_kind)
        self.weighted = weighted_layers_from_top(self.clone)
        self.lock = threading.Lock()  # one check at a time changes the weights
        self.ran: set[tuple] = set()  # (method, layer) whose passes are traced on the clone

    def reset(self, model: LoadedModel) -> None:
        self.clone.set_weights(model.model.get_weights())


COPIES: LruCache[_RandomisedCopy] = LruCache(MAX_COPIES)


def copy_of(model: LoadedModel) -> _RandomisedCopy:
    # The clone depends on the network only: variants under other preprocessing share it.
    return COPIES.get_or_make(model.network_fingerprint, lambda: _RandomisedCopy(model))


def stage_model(model: LoadedModel, count: int, seed: int, clone: keras.Model | None = None,
                 runtime: Runtime | None = None) -> LoadedModel:
    """``model`` with its top ``count`` weighted layers re-drawn from ``seed``, as the engine's caches see it.

    Without ``clone`` it only names the stage (to look its maps up); with it, it runs on the clone.
    """
    stage = dataclasses.replace(model, model=clone if clone is not None else model.model,
                                spec=f"{model.spec} (top {count} randomised)",
                                network_fingerprint=f"{model.network_fingerprint}|top {count} re-drawn, seed {seed}")
    stage.__dict__.update({k: v for k, v in model.__dict__.items() if k == "layers"})  # same graph, same layers
    if runtime is not None:
        stage.__dict__["runtime"] = runtime
    return stage


def stage_counts(model: LoadedModel, stages: Sequence[int] = DEFAULT_STAGES) -> list[int]:
    """The stages a check really runs on ``model``: each count capped at its weighted layers, each once, growing.

    On a model with 4 weighted layers, ``(1, 8, 32)`` runs two stages: the top 1, then all 4.
    """
    total = len(weighted_layers_from_top(model.model))
    return sorted({min(int(s), total) for s in stages if int(s) > 0})


def stage_label(count: int, total: int) -> str:
    """A stage's name on a chart's categorical axis: ``top 8``, or ``top 4 (all)`` when it re-draws every layer."""
    return f"top {count} (all)" if count == total else f"top {count}"


def describe_stages(model: LoadedModel, methods: int, images: int, stages: Sequence[int] = DEFAULT_STAGES) -> str:
    """One sentence on what a check of ``methods`` methods on ``images`` images runs on ``model``: the stages it
    really has (``stage_counts``) and the maps they make."""
    counts, total = stage_counts(model, stages), len(weighted_layers_from_top(model.model))
    if not counts:
        return f"{model.display_name} has no layer with trainable weights to re-draw, so there is nothing to check."
    several = len(counts) > 1
    listed = f"{', '.join(map(str, counts[:-1]))} and {counts[-1]}" if several else str(counts[0])
    capped = " (the last stage: all of them)" if several and counts[-1] == total else ""
    sizes = [counted(len(counts), "stage"), counted(methods, "method"), counted(images, "image")]
    return (f"It runs on a randomised copy of the model: its top {listed} of {total} weighted layers re-drawn"
            f"{' in turn' if several else ''}{capped}, one map per stage, method and image ({' × '.join(sizes)} = "
            f"{counted(len(counts) * methods * images, 'map')}).")


def sanity_check(
    model: LoadedModel,
    images: Sequence[ImageLike],
    method: str,
    targets: Targets = None,
    layer: str | None = None,
    stages: Sequence[int] = DEFAULT_STAGES,
    seed: int = 0,
    **params,
) -> SanityCheck:
    """Cascading randomisation of one method: re-draw the top layers' weights in growing stages, compare maps."""
    return sanity_checks(model, images, {method: (layer, params)}, targets, stages, seed)[method]


def sanity_checks(
    model: LoadedModel,
    images: Sequence[ImageLike],
    methods: Mapping[str, Request],
    targets: Targets = None,
    stages: Sequence[int] = DEFAULT_STAGES,
    seed: int = 0,
) -> dict[str, SanityCheck]:
    """Cascading randomisation of several methods at once: ``{method: SanityCheck}``.

    ``methods`` maps each method to its ``(layer, parameters)``. Each stage re-draws
    the weights once and runs every method on them; maps are compared with each
    method's map on the original model (Spearman rank correlation per image).
    """
    originals = {name: attribute(model, images, name, targets, layer, **params)
                 for name, (layer, params) in methods.items()}
    copy = copy_of(model)
    counts = stage_counts(model, stages)
    after: dict[str, list[Attribution]] = {name: [] for name in methods}
    with copy.lock:
        copy.reset(model)
        done = 0
        for count in counts:
            for index in range(done, count):
                redraw(copy.weighted[index], seed, index)
            done = count
            stage = stage_model(model, count, seed, copy.clone, copy.runtime)
            for name, (layer, params) in methods.items():
                after[name].append(attribute(stage, images, name, list(originals[name].classes), layer, **params))
                copy.ran.add((name, after[name][-1].layer))
    deepest = [copy.weighted[count - 1].name for count in counts]
    return {name: SanityCheck(
        counts, deepest,
        np.array([[rank_correlation(a, b) for a, b in zip(originals[name].raw, stage.raw)] for stage in after[name]]),
        sum(stage.compute_seconds for stage in after[name]), len(copy.weighted),
    ) for name in methods}


def estimate_seconds(model: LoadedModel, images: Sequence[ImageLike], methods: Mapping[str, Request],
                     originals: Mapping[str, Attribution], stages: Sequence[int] = DEFAULT_STAGES, seed: int = 0) -> float:
    """About how long ``sanity_checks`` would take now, without running it.

    Each map not cached yet costs what any map does (``estimates.maps_seconds``: its
    method's registered passes at the model's measured pass cost); a method the
    model's randomised copy has not run yet adds ``TRACE_ALLOWANCE_SECONDS``.
    ``originals`` are the methods' maps on the model itself, for their classes.
    """
    copy = COPIES.get(model.network_fingerprint)
    total = 0.0
    for name, (layer, params) in methods.items():
        original = originals[name]
        missing = sum(len(original.raw) - cached_maps(stage_model(model, count, seed), images, name,
                                                      list(original.classes), layer, **params)
                      for count in stage_counts(model, stages))
        if not missing:
            continue
        total += maps_seconds(model, name, params, missing)  # the stages run on a copy of the same network
        if copy is None or (name, original.layer) not in copy.ran:
            total += TRACE_ALLOWANCE_SECONDS
    return total


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

    The same weights as stage ``count`` of ``sanity_checks`` with this seed. The
    original model is never touched.
    """
    clone = keras.models.clone_model(model.model)
    clone.set_weights(model.model.get_weights())
    for index, layer in enumerate(weighted_layers_from_top(clone)[:count]):
        redraw(layer, seed, index)
    return dataclasses.replace(model, model=clone, spec=f"{model.spec} (top {count} randomised)",
                               network_fingerprint="")


def redraw(layer: keras.layers.Layer, seed: int, index: int) -> None:
    """Re-draw every trainable weight of ``layer`` in place, with the spread of its learned values.

    Each weight is drawn from a normal distribution with the spread of the learned
    values; batch-norm statistics stay, so activations keep a sane range. The draw
    depends on ``seed`` and ``index`` (the layer's place from the top) only.
    """
    rng = np.random.default_rng([seed, index])
    for variable in layer.trainable_weights:
        value = keras.ops.convert_to_numpy(variable)
        variable.assign(rng.normal(0.0, float(value.std()) or 0.05, value.shape).astype(value.dtype))
