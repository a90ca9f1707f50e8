"""Score a batch of images: every chosen method's maps, then every chosen metric over all of them at once.

This is the unit the in-process run and the Ray actors share. Values are cached per image (its
pixels), explained class, method with its layer and parameters, and metric with its parameters,
so adding a method computes only that method, and a stopped run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from explainers.attribution import attribute
from explainers.errors import InputError
from explainers.inputs.images import content_digest
from explainers.methods.registry import get_method, resolve_params
from explainers.models.loading import LoadedModel
from explainers.runtime.cache import ResultCache
from explainers.scores.agreement import rank_correlation
from explainers.trust.registry import MapRequest, MetricBatch, get_metric

VALUES = ResultCache(max_bytes=64 << 20)
VALUE_BYTES = 200  # what one cached value costs with its key (measured roughly; the cache counts payload bytes)
TARGETS = ("true", "predicted")  # which class each map explains: the image's folder, or the model's top class


class MetricRequest(NamedTuple):
    name: str
    params: tuple[tuple[str, Any], ...]  # resolved, sorted by name


@dataclass(frozen=True)
class TrustRequest:
    """What an evaluation computes per image: these methods' maps of this class, scored by these metrics."""

    methods: tuple[MapRequest, ...]
    metrics: tuple[MetricRequest, ...]
    target: str = "true"
    batch_size: int = 64

    @property
    def method_names(self) -> list[str]:
        return [m.method for m in self.methods]

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def describe(self) -> dict[str, Any]:
        """The request as plain values: for ``trust.json`` and for links."""
        return {"methods": {m.method: {"layer": m.layer, "params": dict(m.params)} for m in self.methods},
                "metrics": {m.name: dict(m.params) for m in self.metrics}, "target": self.target}


def trust_request(model: LoadedModel, methods: Mapping[str, tuple[str | None, Mapping[str, Any]]] | Sequence[str],
                  metrics: Mapping[str, Mapping[str, Any]] | Sequence[str], *, has_masks: bool, target: str = "true",
                  batch_size: int = 64) -> TrustRequest:
    """Methods (``{name: (layer, params)}`` or names) and metrics (``{name: params}`` or names), checked and resolved.

    Raises InputError with one sentence for an unknown name or parameter, a method the model cannot run, or a
    metric the inputs do not allow (a localisation metric without masks).
    """
    if not methods:
        raise InputError("Choose at least one method to evaluate.")
    if not metrics:
        raise InputError("Choose at least one metric to evaluate the methods by.")
    if target not in TARGETS:
        raise InputError(f"The class to explain must be {' or '.join(TARGETS)}; got {target!r}.")
    asked = methods if isinstance(methods, Mapping) else {name: (None, {}) for name in methods}
    chosen = []
    for name, (layer, params) in asked.items():
        method = get_method(name)
        if why := method.unavailable(model):
            raise InputError(f"{method.label} cannot run on {model.display_name}: {why}")
        resolved = resolve_params(method, dict(params))
        if method.needs_layer:
            layer = layer or model.default_cam_layer
        chosen.append(MapRequest(name, layer if method.needs_layer else None, tuple(sorted(resolved.items()))))
    wanted = metrics if isinstance(metrics, Mapping) else {name: {} for name in metrics}
    scored = []
    for name, params in wanted.items():
        metric = get_metric(name)
        if why := metric.unavailable(has_masks):
            raise InputError(why)
        scored.append(MetricRequest(name, tuple(sorted(resolve_params(metric, dict(params)).items()))))
    return TrustRequest(tuple(chosen), tuple(scored), target, batch_size)


class Row(NamedTuple):
    """One score: a metric's value for one method's map of one image."""

    image: str  # the path a results folder names the image by
    true_class: int
    explained_class: int
    method: str
    metric: str
    value: float


class ImageRow(NamedTuple):
    """What is known of one scored image besides its scores."""

    image: str
    true_class: int
    predicted_class: int
    explained_class: int
    p_explained: float  # the model's probability of the explained class
    map_agreement: float  # mean rank correlation between the methods' maps of it: low where methods disagree
    has_mask: bool


@dataclass
class ScoredBatch:
    rows: list[Row]
    images: list[ImageRow]
    computed_per_image: list[int]  # values computed in this call per image (the rest came from the cache)

    @property
    def computed(self) -> int:
        return sum(self.computed_per_image)


def _value_key(model: LoadedModel, digest: str, explained: int, method: MapRequest, metric: MetricRequest,
               mask: str | None) -> tuple:
    """A value's cache key: all it was computed from, the object mask too when the metric reads one (the same image
    with another mask is another value)."""
    return "trust", model.fingerprint, digest, explained, method, metric, mask


def _image_key(model: LoadedModel, digest: str, explained: int, methods: tuple[MapRequest, ...]) -> tuple:
    return "trust-image", model.fingerprint, digest, explained, methods


def _mean_agreement(maps: list[np.ndarray]) -> float:
    pairs = [rank_correlation(maps[a], maps[b]) for a in range(len(maps)) for b in range(a + 1, len(maps))]
    return float(np.mean(pairs)) if pairs else float("nan")


def score_images(model: LoadedModel, request: TrustRequest, paths: Sequence[str], true_classes: Sequence[int],
                 images: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> ScoredBatch:
    """Every value of ``request`` for these images; ``masks[i]`` is image i's object mask at the model's input size
    (None without one: its localisation values are left out, not guessed)."""
    pixels = model.resize(images)
    digests = [content_digest([p]) for p in pixels]
    mask_digests = [None if mask is None else content_digest([np.asarray(mask, np.uint8)]) for mask in masks]
    probabilities = model.predict(list(pixels), batch_size=request.batch_size)
    predicted = probabilities.argmax(axis=1)
    explained = np.asarray(true_classes if request.target == "true" else predicted, np.int32)

    def _mask_of(metric: MetricRequest, image: int) -> str | None:
        return mask_digests[image] if get_metric(metric.name).needs_masks else None

    values: dict[tuple[int, int, int], float] = {}  # (image, method, metric) index -> value
    missing: dict[int, list[tuple[int, int]]] = {}  # metric -> [(image, method)] to compute
    for i, digest in enumerate(digests):
        for k, method in enumerate(request.methods):
            for j, metric in enumerate(request.metrics):
                if get_metric(metric.name).needs_masks and masks[i] is None:
                    continue
                hit = VALUES.get(_value_key(model, digest, int(explained[i]), method, metric, _mask_of(metric, i)))
                if hit is None:
                    missing.setdefault(j, []).append((i, k))
                else:
                    values[(i, k, j)] = hit
    cached_agreements = [VALUES.get(_image_key(model, d, int(e), request.methods)) for d, e in zip(digests, explained)]
    need_maps = {k for pairs in missing.values() for _, k in pairs}
    if any(a is None for a in cached_agreements):
        need_maps = set(range(len(request.methods)))
    maps = {k: attribute(model, list(pixels), request.methods[k].method, explained, request.methods[k].layer,
                         batch_size=min(request.batch_size, 64), **dict(request.methods[k].params)).raw
            for k in sorted(need_maps)}
    computed = [0] * len(paths)
    for j, pairs in missing.items():
        metric = request.metrics[j]
        registered = get_metric(metric.name)
        index = np.array([i for i, _ in pairs])
        batch = MetricBatch(
            model=model, pixels=pixels[index], maps=np.stack([maps[k][i] for i, k in pairs]),
            classes=explained[index], requests=[request.methods[k] for _, k in pairs],
            seeds=np.array([int(digests[i][:8], 16) for i in index], np.int64),
            masks=np.stack([masks[i] for i in index]) if registered.needs_masks else None, batch_size=request.batch_size)
        scores = np.asarray(registered.run(batch, dict(metric.params)), np.float64)
        for (i, k), value in zip(pairs, scores):
            values[(i, k, j)] = float(value)
            key = _value_key(model, digests[i], int(explained[i]), request.methods[k], metric, _mask_of(metric, i))
            VALUES.put(key, float(value), np.empty(VALUE_BYTES, np.uint8))
            computed[i] += 1
    agreements: list[float] = []
    for i, cached in enumerate(cached_agreements):
        if cached is None:
            agreements.append(_mean_agreement([maps[k][i] for k in range(len(request.methods))]))
            VALUES.put(_image_key(model, digests[i], int(explained[i]), request.methods), agreements[i],
                       np.empty(VALUE_BYTES, np.uint8))
        else:
            agreements.append(float(cached))
    rows = [Row(paths[i], int(true_classes[i]), int(explained[i]), request.methods[k].method,
                request.metrics[j].name, value) for (i, k, j), value in sorted(values.items())]
    image_rows = [ImageRow(paths[i], int(true_classes[i]), int(predicted[i]), int(explained[i]),
                           float(probabilities[i, explained[i]]), float(agreements[i]), masks[i] is not None)
                  for i in range(len(paths))]
    return ScoredBatch(rows, image_rows, computed)
