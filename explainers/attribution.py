"""The public calls: ``attribute`` (raw maps), ``explain`` (maps in [0, 1] at image resolution), ``layer_grid``.

Results are cached per image, keyed by the model's fingerprint (its network and
what it receives: preprocessing, channels, input size, output kind), the image's
pixels, the method, its parameters, the layer and the class, so asking again, or adding one image to a selection, computes only what is new.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainers.errors import InputError
from explainers.inputs.images import ImageLike, as_rgb_array, content_digest
from explainers.methods.cams import gradient_cams
from explainers.methods.completeness import Completeness
from explainers.methods.maps import normalize, to_sizes
from explainers.methods.registry import REGISTRY, CamWeights, Job, Maps, Method, get_method, resolve_params
from explainers.models.loading import LoadedModel
from explainers.runtime.cache import ResultCache, SingleFlight
from explainers.runtime.passes import DEFAULT_BATCH_SIZE
from explainers.runtime.targets import Targets, resolve_targets

RESULTS = ResultCache()
IN_FLIGHT = SingleFlight()
INPUTS = ResultCache(max_bytes=256 << 20)

# Below this probability the model all but rules the explained class out: its map still looks as sure as
# any other after per-image normalisation, so every view that shows one says so.
LOW_PROBABILITY = 0.01


@dataclass
class Attribution:
    """Raw maps for a batch, before normalisation: what the faithfulness metrics use."""

    method: str
    layer: str | None
    params: dict[str, Any]
    raw: np.ndarray  # (N, H, W) float32 at the model's input resolution; signed for IG and Gradient x Input
    classes: np.ndarray  # (N,) the class each map explains
    seconds: float  # time spent computing in this call (0 when every map came from the cache)
    cached: int  # how many of the N maps came from the cache
    # (N,) seconds each map took when it was computed, kept with it in the cache (a batch's time is shared
    # equally by its maps); None for maps built by hand. (N,) bool: which maps this call found in the cache.
    map_seconds: np.ndarray | None = None
    from_cache: np.ndarray | None = None
    # For methods that report it (``Method.reports_completeness``): each map's sum beside f(x) - f(x0), kept
    # with the map in the cache; None for other methods and maps built by hand.
    completeness: Completeness | None = None

    @property
    def compute_seconds(self) -> float:
        """Seconds the N maps took to compute, whenever that was: what the method costs, cached or not."""
        return float(self.map_seconds.sum()) if self.map_seconds is not None else self.seconds


def is_low_probability(probability: float) -> bool:
    """True when a map explains a class the model gives less than ``LOW_PROBABILITY``."""
    return float(probability) < LOW_PROBABILITY


def format_probability(probability: float) -> str:
    """``p = 0.790``, or ``p < 0.001`` for what three decimals would round to zero."""
    return "p < 0.001" if probability < 0.0005 else f"p = {probability:.3f}"


def low_probability_note(subject: str, class_name: str, probability: float) -> str:
    """The sentence shown beside a map of an unlikely class: ``subject`` (an image's name) explained as it."""
    return (f"{subject} is explained as {class_name}, which the model gives {format_probability(probability)}, "
            f"below {LOW_PROBABILITY:g}: the map shows evidence for a class the model all but rules out, "
            "scaled to look as strong as any other.")


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedMap:
    """One map as ``RESULTS`` keeps it. A record, not a tuple: reading a field by position fails at once."""

    raw: np.ndarray  # (H, W) float32 at the model's input resolution
    explained_class: int  # the class the map explains (TOP1 and LEAST resolved)
    seconds: float  # what computing it took (a batch's time shared equally by its maps)
    completeness: Completeness | None = None  # its completeness figures, for methods that report them


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInput:
    """One image as ``INPUTS`` keeps it for a model: resized, and preprocessed."""

    pixels: np.ndarray  # (H, W, 3) uint8 at the model's input size
    model_input: np.ndarray  # (H, W, C) what the model receives


def _filled(hit: CachedMap | None) -> CachedMap:
    assert hit is not None, "every map asked for is cached or computed by now"
    return hit


def _store(context: tuple, digest: str, wanted: int, hit: CachedMap) -> None:
    """Cache ``hit`` under the class asked for and, when that was TOP1 or LEAST, under the class it resolved to."""
    RESULTS.put((*context, digest, int(wanted)), hit, hit.raw)
    if wanted < 0:  # TOP1 or LEAST: the same map also answers a request naming that class
        RESULTS.put((*context, digest, hit.explained_class), hit, hit.raw)


def _layer_for(model: LoadedModel, method_name: str, layer: str | None, needs_layer: bool) -> str | None:
    return _checked_layer(model, method_name, layer) if needs_layer else None


def _checked_layer(model: LoadedModel, method_name: str, layer: str | None) -> str:
    """The layer a method that reads one explains at: ``layer``, else the model's default; InputError for none."""
    layer = layer or model.default_cam_layer
    if layer is None:
        raise InputError(f"{method_name} needs a layer with a spatial output, and this model has none.")
    if layer not in model.conv_layers:
        raise InputError(f"'{layer}' is not a layer with a spatial output in {model.display_name}.")
    return layer


def unavailable_methods(model: LoadedModel) -> dict[str, str]:
    """``{method: why it cannot run on this model}``; methods not listed can."""
    return {name: why for name, method in REGISTRY.items() if (why := method.unavailable(model))}


def prepare_images(model: LoadedModel, images: Sequence[ImageLike]) -> tuple[list[np.ndarray], list[str]]:
    if len(images) == 0:
        raise InputError("No images to explain; select or upload at least one.")
    arrays = [as_rgb_array(image) for image in images]
    return arrays, [content_digest([a]) for a in arrays]


def model_inputs(model: LoadedModel, arrays: list[np.ndarray], digests: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Resized pixels and preprocessed inputs, cached per image: every method on a page shares them."""
    pixels, inputs = [], []
    for array, digest in zip(arrays, digests):
        key = ("input", model.fingerprint, digest)
        hit = INPUTS.get(key)
        if hit is None:
            resized = model.resize([array])
            hit = ModelInput(pixels=resized[0], model_input=model.to_input(resized)[0])
            INPUTS.put(key, hit, hit.model_input)
        pixels.append(hit.pixels)
        inputs.append(hit.model_input)
    return np.stack(pixels), np.stack(inputs)


def _job(model: LoadedModel, arrays: list[np.ndarray], digests: list[str], targets: np.ndarray,
         layer: str | None, batch_size: int) -> Job:
    pixels, x = model_inputs(model, arrays, digests)
    return Job(
        runtime=model.runtime,
        x=x,
        pixels=pixels,
        to_input=model.to_input,
        targets=targets,
        layer=layer,
        seeds=[int(d[:8], 16) for d in digests],
        batch_size=batch_size,
    )


def attribute(
    model: LoadedModel,
    images: Sequence[ImageLike],
    method: str = "gradcam",
    targets: Targets = None,
    layer: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    **params: Any,
) -> Attribution:
    """Raw attribution maps ``(N, H, W)`` at the model's input resolution, with the explained classes."""
    request = _request(model, images, method, targets, layer, params)
    keys = request.keys
    found: list[CachedMap | None] = [RESULTS.get(key) for key in keys]
    missing = [i for i, hit in enumerate(found) if hit is None]
    seconds = 0.0
    if missing:
        with IN_FLIGHT.hold(tuple(keys[i] for i in missing)):  # the same request from another session waits
            found = [RESULTS.get(key) for key in keys]
            missing = [i for i, hit in enumerate(found) if hit is None]
            if missing:
                start = time.perf_counter()
                job = _job(model, [request.arrays[i] for i in missing], [request.digests[i] for i in missing],
                           request.wanted[missing], request.layer, batch_size)
                raw, classes, completeness = Maps(*request.method.run(job, request.params))
                seconds = time.perf_counter() - start
                for j, i in enumerate(missing):
                    hit = CachedMap(raw=raw[j].astype(np.float32), explained_class=int(classes[j]),
                                    seconds=seconds / len(missing),
                                    completeness=None if completeness is None else completeness.select([j]))
                    _store(request.context, request.digests[i], request.wanted[i], hit)
                    found[i] = hit
    hits = [_filled(hit) for hit in found]
    from_cache = np.ones(len(hits), bool)
    from_cache[missing] = False
    figures = [hit.completeness for hit in hits if hit.completeness is not None]
    return Attribution(
        method=method,
        layer=request.layer,
        params=request.params,
        raw=np.stack([hit.raw for hit in hits]),
        classes=np.array([hit.explained_class for hit in hits], np.int32),
        seconds=seconds,
        cached=len(hits) - len(missing),
        map_seconds=np.array([hit.seconds for hit in hits], np.float64),
        from_cache=from_cache,
        completeness=Completeness.concatenate(figures) if len(figures) == len(hits) else None,  # all or none
    )


@dataclass(frozen=True, kw_only=True)
class _Request:
    """Everything ``attribute`` derives from its arguments, down to each map's cache key."""

    method: Method
    params: dict[str, Any]  # every parameter, checked, defaults filled in
    layer: str | None  # the layer the method reads; None for methods that need none
    arrays: list[np.ndarray]  # the images as RGB arrays
    digests: list[str]  # each image's content digest
    wanted: np.ndarray  # (N,) int32 the class asked for per image (TOP1 and LEAST unresolved)
    context: tuple  # the cache key's part shared by every map of the request
    keys: list[tuple]  # each map's cache key


def _request(model: LoadedModel, images: Sequence[ImageLike], name: str, targets: Targets, layer: str | None,
             params: dict[str, Any]) -> _Request:
    method = get_method(name)
    params = resolve_params(method, params)
    layer = _layer_for(model, method.label, layer, method.needs_layer)
    arrays, digests = prepare_images(model, images)
    wanted = resolve_targets(targets, len(arrays), model.class_names)
    context = (model.fingerprint, name, layer, tuple(sorted(params.items())))
    keys = [(*context, digest, int(t)) for digest, t in zip(digests, wanted)]
    return _Request(method=method, params=params, layer=layer, arrays=arrays, digests=digests, wanted=wanted,
                    context=context, keys=keys)


def cached_maps(model: LoadedModel, images: Sequence[ImageLike], method: str = "gradcam", targets: Targets = None,
                layer: str | None = None, **params: Any) -> int:
    """How many of the maps ``attribute`` would return are in the cache already; computes nothing."""
    keys = _request(model, images, method, targets, layer, params).keys
    return sum(RESULTS.get(key) is not None for key in keys)


def explain(
    model: LoadedModel,
    images: Sequence[ImageLike],
    method: str = "gradcam",
    targets: Targets = None,
    layer: str | None = None,
    **params: Any,
) -> np.ndarray | list[np.ndarray]:
    """Maps in [0, 1] at each image's own resolution: ``(N, H, W)`` float32.

    Images of different sizes give a list of ``(H_i, W_i)`` maps instead.
    Unnormalised maps: ``attribute``.
    """
    arrays = [as_rgb_array(image) for image in images]
    result = attribute(model, arrays, method, targets, layer, **params)
    return to_sizes(normalize(result.raw), [a.shape[:2] for a in arrays])


@dataclass(frozen=True, kw_only=True)
class _Grid:
    """What ``layer_grid`` asks for: a gradient CAM of every image at every layer, each cell cached under the
    single-layer ``attribute`` key of its layer's ``contexts`` entry."""

    model: LoadedModel
    cam_weights: CamWeights  # the gradient CAM's channel weights
    arrays: list[np.ndarray]  # the images as RGB arrays
    digests: list[str]  # each image's content digest
    wanted: np.ndarray  # (N,) int32 the class asked for per image
    layers: list[str]
    contexts: list[tuple]  # per layer, the cache key's part shared by its cells
    batch_size: int

    def lookup(self) -> tuple[list[list[CachedMap | None]], list[int]]:
        """The cached cells, ``(N, L)``, and the images with a cell missing."""
        cells = [[RESULTS.get((*c, d, int(t))) for c in self.contexts] for d, t in zip(self.digests, self.wanted)]
        return cells, [i for i, row in enumerate(cells) if any(hit is None for hit in row)]


def _fill_grid(grid: _Grid, found: list[list[CachedMap | None]], missing: list[int]) -> None:
    """Compute the grid cells of the ``missing`` images in one pass and cache each as a single-layer result."""
    if not missing:
        return
    start = time.perf_counter()
    job = _job(grid.model, [grid.arrays[i] for i in missing], [grid.digests[i] for i in missing],
               grid.wanted[missing], None, grid.batch_size)
    cams = gradient_cams(job.runtime, job.x, job.targets, grid.layers, grid.cam_weights,
                         batch_size=grid.batch_size, size=job.size)
    share = (time.perf_counter() - start) / (len(missing) * len(grid.contexts))  # the one pass, shared by every cell
    for index, context in enumerate(grid.contexts):
        for j, i in enumerate(missing):
            hit = CachedMap(raw=cams.maps[index][j], explained_class=int(cams.classes[j]), seconds=share)
            _store(context, grid.digests[i], grid.wanted[i], hit)
            found[i][index] = hit


def layer_grid(
    model: LoadedModel,
    images: Sequence[ImageLike],
    layers: Sequence[str],
    targets: Targets = None,
    method: str = "gradcam",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray | list[np.ndarray]:
    """A gradient CAM for every layer in ``layers`` from ONE forward and backward pass.

    Returns ``(N, L, H, W)`` in [0, 1] at each image's resolution (a list of
    ``(L, H_i, W_i)`` when image sizes differ). Each cell is also cached as the
    single-layer ``attribute`` result, and cached cells are not recomputed.
    """
    cam = get_method(method)
    if cam.cam_weights is None:
        takes = ", ".join(m.label for m in REGISTRY.values() if m.cam_weights)
        raise InputError(f"A layer grid takes a gradient CAM ({takes}), not {cam.label}.")
    layers = [_checked_layer(model, cam.label, layer) for layer in layers]
    if not layers:
        raise InputError("Choose at least one layer for the grid.")
    arrays, digests = prepare_images(model, images)
    grid = _Grid(model=model, cam_weights=cam.cam_weights, arrays=arrays, digests=digests,
                 wanted=resolve_targets(targets, len(arrays), model.class_names), layers=layers,
                 contexts=[(model.fingerprint, method, layer, ()) for layer in layers], batch_size=batch_size)
    found, missing = grid.lookup()
    if missing:
        request = (*grid.contexts[0][:3], tuple(layers), *((digests[i], int(grid.wanted[i])) for i in missing))
        with IN_FLIGHT.hold(request):  # the same grid asked by another session waits, then finds it cached
            found, missing = grid.lookup()
            _fill_grid(grid, found, missing)
    raw = np.stack([[_filled(hit).raw for hit in row] for row in found])  # (N, L, H, W)
    normalized = normalize(raw.reshape(-1, *raw.shape[2:])).reshape(raw.shape)
    return to_sizes(normalized, [a.shape[:2] for a in arrays])
