"""Concepts without examples: a class's concepts found by non-negative matrix factorisation (NMF) of a layer's
activations over the class's images, as in Deep Feature Factorization (Collins et al. 2018, also in
pytorch-grad-cam) and the factorisation step of CRAFT (Fel et al. 2023).

At a layer with a spatial output the activations of N images, (N, h, w, C), are N * h * w points in C channels,
non-negative after a ReLU. NMF writes them as ``W @ H``: ``H`` (k, C) holds k concept directions, ``W`` (N * h * w, k)
how much of each concept every position holds. Reshaped to (N, h, w, k), ``W`` is each concept's heatmap on every
image; no example of a concept is needed, the class's own images show what it is. Positions are factorised, not whole
images (CRAFT factorises crops' pooled activations): the heatmaps then come from the factorisation itself, and a
concept that lives in one place (a mark in a corner) shows there.

Each concept's importance to the class logit is first-order: the gradient of the logit with respect to the layer's
activations dotted with the concept's part of them, ``W_c H_c``, summed over positions and averaged over the images.
When the model is linear after the layer (global average pooling and a dense head) that is exactly how much the logit
falls when the concept's part is taken out of the activations; otherwise it is that change to first order. (CRAFT
estimates importance with Sobol indices over random masks of the concepts, which costs many passes per image; one
backward pass per image gives the activations and the gradient together here.)

A layer without a ReLU has negative activations, which NMF cannot describe. They are set to 0 and their share of the
activations' magnitude is reported, as long as that share is under ``MAX_NEGATIVE_SHARE``; above it the concepts would
describe less than half of what the layer holds, and the layer is declined in one sentence (DFF's alternative,
shifting every channel by its minimum, turns the negative part into a constant offset that the factorisation then
spends concepts on, everywhere on every image).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from explainers.concepts.tcav import ImageSet, WorkCounter, check_layer
from explainers.errors import InputError, counted, echo
from explainers.methods.registry import Param, ParamSet, PassGroup, in_batches, resolve_params
from explainers.models.loading import LoadedModel

DISCOVERED_FILE = "discovered.json"
# Fewer images cannot show that a concept recurs: with two or three, a concept is as likely one picture's
# peculiarity, and the exemplars and the crops (each from a different image) would repeat the same few pictures.
MIN_IMAGES = 5
EXEMPLARS = 4  # images shown per concept with its heatmap: those where its heatmap's mass is largest
# Above this share of the activations' magnitude below 0, a layer is declined rather than clipped (module docstring).
MAX_NEGATIVE_SHARE = 0.5
NEGATIVE_NOTE_SHARE = 0.01  # below this share, clipping changes nothing worth a sentence
# A crop is the cell's own area in the input and this many cells around it on each side, clamped inside the image.
# A cell's receptive field is wider than its area, but most of the gradient-weighted (effective) field lies near the
# cell's centre; one cell around it keeps a mark or a part whole when it straddles two cells, and the crop small
# enough to read as "this part of the picture".
CROP_MARGIN_CELLS = 1
# scikit-learn's NMF: coordinate descent from the NNDSVDa start (deterministic, and far quicker than multiplicative
# updates: 0.9 s against 3.2 s for 5 concepts of the shortcut CNN's 100 sevens, the same error).
NMF_SOLVER = "cd"
NMF_INIT = "nndsvda"
NMF_MAX_ITER = 500
NMF_TOLERANCE = 1e-4
# The estimate's model of the fit: iterations to converge grow with the concepts. Measured at the default layers of
# the shortcut CNN (100 sevens) and EfficientNet-Lite0 (14 photos): 20 to 26 iterations for 5 concepts, 32 to 85
# for 8 to 12; 10 + 4 per concept lies in that spread.
ITERATIONS_BASE = 10
ITERATIONS_PER_CONCEPT = 4
PROBE_ROWS = 2048  # positions in the timed probe fit; the fit's cost grows linearly in positions
PROBE_ITERATIONS = 8

COMPONENTS = Param("components", 5, "concepts found per class: each a direction in the layer's channels, with its "
                                    "heatmap on every image", 2, 12, presets=(3, 5, 8, 12), label="Concepts per class")
IMAGES = Param("images", 100, "images of the class factorised, drawn with the seed when it has more",
               MIN_IMAGES, 1000, presets=(50, 100, 200, 500), label="Images of the class")
CROPS = Param("crops", 6, "best-matching crops per concept, each from a different image: the patch around the "
                          "position where the concept is strongest", 1, 20, presets=(3, 6, 10), label="Crops per concept")
SEED = Param("seed", 0, "draws the images when the class has more than asked for, and seeds the factorisation: the same "
                        "seed, the same answer", 0, 2**31 - 1, label="Seed")
FACTORISATION = ParamSet("factorisation", "the concept discovery", (COMPONENTS, IMAGES, CROPS, SEED))


@dataclass(frozen=True, kw_only=True)
class FactorisationSettings:
    """The concept discovery's settings, checked (``factorisation_settings``)."""

    components: int
    images: int
    crops: int
    seed: int


def factorisation_settings(**given: Any) -> FactorisationSettings:
    """``FACTORISATION``'s parameters as given (the rest at their defaults), each checked; InputError with one
    sentence."""
    return FactorisationSettings(**resolve_params(FACTORISATION, given))


# --- the factorisation: activations in, concepts out (NumPy and scikit-learn only) ---


@dataclass(frozen=True, kw_only=True)
class Factors:
    """Non-negative activations (N, h, w, C) written as ``heatmaps`` x ``directions``: ``A[n, i, j] ~ sum_c
    heatmaps[n, i, j, c] * directions[c]``."""

    heatmaps: np.ndarray  # (N, h, w, k) float32: each concept's coefficient at every position, in activation units
    directions: np.ndarray  # (k, C) float32, each of unit length (the scale is in the heatmaps)
    error: float  # ||A - W H|| / ||A|| (Frobenius), on the activations factorised (negatives set to 0)
    iterations: int


def one_thread() -> Any:
    """A context in which NumPy's and scikit-learn's numerical libraries use one thread. The fit's products are
    small; with the cores shared (the server's sessions, TensorFlow's own threads), OpenBLAS's two threads waited on
    each other about 16 ms an iteration: on the shortcut CNN's 100 sevens 5 concepts took 0.9 s, and 0.03 s on one
    thread; 105 photos at EfficientNet-Lite0's last layer (7 x 7 x 1,280) 1.4 s, and 0.3 s."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def factorise(activations: np.ndarray, components: int, seed: int) -> Factors:
    """NMF of non-negative ``activations`` (N, h, w, C) into ``components`` concepts; each direction is scaled to
    unit length and its heatmaps take the scale, so coefficients compare across concepts."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    n, h, w, channels = activations.shape
    flat = activations.reshape(-1, channels).astype(np.float32)
    model = NMF(components, init=NMF_INIT, solver=NMF_SOLVER, max_iter=NMF_MAX_ITER, tol=NMF_TOLERANCE,
                random_state=seed)
    with warnings.catch_warnings(), one_thread():
        # Not converged within NMF_MAX_ITER still gives a usable factorisation; its error is reported.
        warnings.simplefilter("ignore", ConvergenceWarning)
        coefficients = model.fit_transform(flat)
    directions = model.components_.astype(np.float64)
    norms = np.linalg.norm(directions, axis=1)
    norms[norms == 0] = 1.0  # a concept the fit left empty stays empty
    coefficients = coefficients * norms
    directions = directions / norms[:, None]
    residual = np.linalg.norm(flat - coefficients @ directions)
    total = float(np.linalg.norm(flat))
    return Factors(heatmaps=coefficients.reshape(n, h, w, components).astype(np.float32),
                   directions=directions.astype(np.float32), error=float(residual / total) if total else 0.0,
                   iterations=int(model.n_iter_))


def negative_share(activations: np.ndarray) -> float:
    """The share of the activations' magnitude (sum of absolute values) below 0: what setting negatives to 0 loses."""
    magnitude = float(np.abs(activations).sum(dtype=np.float64))
    if magnitude == 0:
        return 0.0
    return float(np.clip(-activations, 0, None).sum(dtype=np.float64)) / magnitude


def concept_importances(gradients: np.ndarray, factors: Factors) -> np.ndarray:
    """(N, k) each image's first-order importance of each concept to the logit: the logit's gradient with respect to
    the activations ``gradients`` (N, h, w, C) dotted with the concept's part of them, summed over positions."""
    along = gradients.astype(np.float64) @ factors.directions.astype(np.float64).T  # (N, h, w, k): gradient . H_c
    return (along * factors.heatmaps).sum(axis=(1, 2))


@dataclass(frozen=True, kw_only=True)
class CropBox:
    """A patch of the input, in its pixels."""

    top: int
    left: int
    height: int
    width: int


def crop_box(cell: tuple[int, int], grid: tuple[int, int], size: tuple[int, int],
             margin: int = CROP_MARGIN_CELLS) -> CropBox:
    """The input patch around layer cell ``cell`` (row, column) of a ``grid`` (h, w) over an input of ``size``
    (H, W): the cell's area scaled to the input and ``margin`` cells around it (``CROP_MARGIN_CELLS``: an
    approximation of what the cell sees), shifted inside the image where it would cross its edge."""
    box = []
    for at, cells, pixels in zip(cell, grid, size):
        step = pixels / cells
        extent = min(pixels, max(1, round(step * (1 + 2 * margin))))
        start = round((at + 0.5) * step - extent / 2)
        box += [min(max(0, start), pixels - extent), extent]
    return CropBox(top=box[0], left=box[2], height=box[1], width=box[3])


# --- the records ---


@dataclass(frozen=True, kw_only=True)
class ConceptCrop:
    """One best-matching crop of a concept: the patch of one image around the position where the concept is
    strongest on it."""

    image: int  # position of the image in ``Discovery.images``
    source: str  # the image's name as given (``Discovery.images.sources``)
    cell: tuple[int, int]  # (row, column) of the position at the layer
    coefficient: float  # the concept's heatmap there
    box: CropBox  # in the input's pixels
    pixels: np.ndarray  # (height, width, 3) uint8


@dataclass(frozen=True, kw_only=True)
class DiscoveredConcept:
    """One concept of a class: its direction, its importance to the class logit, where it shows best."""

    number: int  # 1 = the most important
    importance: float  # mean over images of gradient . (the concept's part of the activations): logit units
    importance_spread: float  # standard deviation over images
    share: float  # importance / the sum of every concept's |importance|: signed, the shares' magnitudes add up to 1
    direction: np.ndarray  # (C,) float32 of unit length, in the layer's channels
    mass: float  # mean over images of the heatmap's sum over positions
    exemplars: tuple[int, ...]  # positions in ``Discovery.images`` where the heatmap's mass is largest, largest first
    exemplar_maps: np.ndarray  # (EXEMPLARS, H, W) float32 in [0, 1]: their heatmaps at the input size, over the
    # concept's largest coefficient on any image (so one exemplar's map is comparable with another's)
    crops: tuple[ConceptCrop, ...]  # from distinct images, strongest first


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """The concepts found for one class at one layer, most important first."""

    layer: str
    class_index: int
    class_name: str
    concepts: tuple[DiscoveredConcept, ...]
    images: ImageSet  # the images factorised (their pixels at the input size and their sources)
    available: int  # the class's images given; ``len(images)`` of them were drawn with the seed when more
    heatmaps: np.ndarray  # (N, h, w, k) float32, each concept's coefficient at every position, in ``concepts`` order
    reconstruction_error: float  # ||A - W H|| / ||A|| on the activations factorised (negatives set to 0)
    negative_share: float  # share of the activations' magnitude below 0, set to 0 before the factorisation
    activation_importance: float  # mean over images of gradient . (all the activations): what the concepts split
    iterations: int  # of the NMF fit
    settings: FactorisationSettings
    notes: tuple[str, ...]  # sentences worth showing beside the result (clipped negatives, images drawn)
    seconds: float

    @property
    def sources(self) -> tuple[str, ...]:
        return self.images.sources


# --- running it on a model ---


def _layer_shape(model: LoadedModel, layer: str) -> tuple[int, int, int]:
    """(h, w, C) of ``layer``'s output."""
    for info in model.layers:
        if info.path == layer and info.height and info.width and info.channels:
            return info.height, info.width, info.channels
    raise InputError(f"'{echo(layer)}' is not a layer of {model.display_name} with a spatial output; "
                     "`python -m explainers layers` lists them.")


def check_discovery(model: LoadedModel, layer: str | None, class_name: str, images: int,
                    settings: FactorisationSettings) -> str:
    """The layer to factorise, after checking the request before any pass: InputError with one sentence for a layer
    without a spatial output, a class with too few images, or more concepts than the layer can hold."""
    layer = check_layer(model, layer)
    if images < MIN_IMAGES:
        found = "no image" if images == 0 else f"only {counted(images, 'image')}"
        raise InputError(f"The class '{echo(class_name)}' has {found}; discovering its concepts needs at least "
                         f"{MIN_IMAGES}, so that a concept recurs over several pictures.")
    h, w, channels = _layer_shape(model, layer)
    most = min(channels, min(images, settings.images) * h * w)
    if settings.components > most:
        raise InputError(f"The layer '{echo(layer)}' of {model.display_name} has {counted(channels, 'channel')}, so it "
                         f"holds at most {counted(most, 'concept')}, fewer than the {settings.components} asked for; ask "
                         f"for at most {most}.")
    return layer


def _drawn(images: ImageSet, count: int, seed: int) -> ImageSet:
    """``images`` when it holds at most ``count``, else ``count`` of them drawn with ``seed``, in their order."""
    if len(images) <= count:
        return images
    rows = np.sort(np.random.default_rng(seed).permutation(len(images))[:count])
    return ImageSet(images.name, images.pixels[rows], tuple(images.sources[i] for i in rows))


def _passes(model: LoadedModel, images: ImageSet, class_index: int, layer: str, batch_size: int,
            advance: Callable[[int], None]) -> tuple[np.ndarray, np.ndarray]:
    """The layer's activations and the class logit's gradient with respect to them, (N, h, w, C) each: one backward
    pass per batch gives both (``Runtime.gradients``)."""
    activations, gradients = [], []
    for start in range(0, len(images), batch_size):
        pixels = images.pixels[start:start + batch_size]
        x = model.to_input(pixels)
        result = model.runtime.gradients(x, np.full(len(x), class_index, np.int32), (layer,), batch_size=batch_size)
        activations.append(result.activations[0])
        gradients.append(result.layer_gradients[0])
        advance(len(pixels))
    return np.concatenate(activations), np.concatenate(gradients)


def discover_concepts(model: LoadedModel, images: ImageSet, class_index: int, /, layer: str | None = None, *,
                      batch_size: int = 64, on_progress: Callable[[int, int], None] | None = None,
                      **settings: Any) -> Discovery:
    """The concepts of class ``class_index`` at ``layer`` (default: the model's own CAM layer) over ``images`` (the
    class's; up to ``images`` of them drawn with the seed), with ``FACTORISATION``'s settings; InputError with one
    sentence for a bad request (``check_discovery``), a layer whose activations are mostly negative or all zero.

    ``on_progress(done, total)`` counts images through passes, and one more for the factorisation. The first three
    arguments are positional only, so that the setting ``images`` (how many to use) can be given by keyword.
    """
    start = time.perf_counter()
    checked = factorisation_settings(**settings)
    if not 0 <= class_index < len(model.class_names):
        raise InputError(f"Class {class_index} is outside {model.display_name}'s {len(model.class_names)} classes "
                         f"(0 to {len(model.class_names) - 1}).")
    class_name = model.class_names[class_index]
    layer = check_discovery(model, layer, class_name, len(images), checked)
    used = _drawn(images, checked.images, checked.seed)
    advance = WorkCounter(len(used) + 1, on_progress)  # the images through the pass, then the factorisation
    activations, gradients = _passes(model, used, class_index, layer, batch_size, advance)
    negative = negative_share(activations)
    if negative > MAX_NEGATIVE_SHARE:
        raise InputError(f"The layer '{echo(layer)}' has mostly negative activations ({negative:.0%} of their "
                         "magnitude), which a factorisation into non-negative concepts would lose; choose a layer "
                         "after a ReLU (`python -m explainers layers` lists them).")
    clipped = np.maximum(activations, 0)
    if not clipped.any():
        raise InputError(f"The layer '{echo(layer)}' gives no positive activation on any image of the class "
                         f"'{echo(class_name)}', so it holds no concept to find; choose another layer.")
    factors = factorise(clipped, checked.components, checked.seed)
    advance(1)
    per_image = concept_importances(gradients, factors)  # (N, k)
    importance = per_image.mean(axis=0)
    order = np.argsort(-importance, kind="stable")
    heatmaps = factors.heatmaps[..., order]
    magnitude = float(np.abs(importance).sum())
    concepts = tuple(
        _concept(number, heatmaps[..., number - 1], factors.directions[index], per_image[:, index],
                 importance[index] / magnitude if magnitude else 0.0, used, model.input_size, checked.crops)
        for number, index in enumerate(order, 1))
    notes = []
    if negative >= NEGATIVE_NOTE_SHARE:
        notes.append(f"The layer's negative activations, {negative:.0%} of their magnitude, were set to 0: the "
                     "concepts describe the rest.")
    if len(used) < len(images):
        notes.append(f"{len(used):,} of the class's {counted(len(images), 'image')} were drawn with the seed.")
    return Discovery(layer=layer, class_index=class_index, class_name=class_name, concepts=concepts, images=used,
                     available=len(images), heatmaps=heatmaps, reconstruction_error=factors.error,
                     negative_share=negative,
                     activation_importance=float((gradients.astype(np.float64) * activations).sum(axis=(1, 2, 3))
                                                 .mean()),
                     iterations=factors.iterations, settings=checked, notes=tuple(notes),
                     seconds=time.perf_counter() - start)


def _concept(number: int, heatmaps: np.ndarray, direction: np.ndarray, per_image: np.ndarray, share: float,
             images: ImageSet, size: tuple[int, int], crops: int) -> DiscoveredConcept:
    """One concept's record from its heatmaps (N, h, w) and its importance on each image."""
    from explainers.methods.maps import upsample

    masses = heatmaps.sum(axis=(1, 2))
    exemplars = np.argsort(-masses, kind="stable")[:EXEMPLARS]
    peak = float(heatmaps.max())
    maps = np.clip(upsample(heatmaps[exemplars] / peak, size), 0, 1) if peak > 0 else np.zeros(
        (len(exemplars), *size), np.float32)
    strongest = heatmaps.reshape(len(heatmaps), -1)
    best_cell = strongest.argmax(axis=1)
    best = strongest[np.arange(len(heatmaps)), best_cell]
    grid = heatmaps.shape[1:3]
    chosen = []
    for image in np.argsort(-best, kind="stable")[:crops]:
        if best[image] <= 0:
            break  # the concept is absent from the rest: no crop shows it
        cell = (int(best_cell[image] // grid[1]), int(best_cell[image] % grid[1]))
        box = crop_box(cell, grid, size)
        chosen.append(ConceptCrop(
            image=int(image), source=images.sources[image], cell=cell, coefficient=float(best[image]), box=box,
            pixels=images.pixels[image, box.top:box.top + box.height, box.left:box.left + box.width].copy()))
    return DiscoveredConcept(number=number, importance=float(per_image.mean()),
                             importance_spread=float(per_image.std()), share=float(share),
                             direction=direction.astype(np.float32), mass=float(masses.mean()),
                             exemplars=tuple(int(i) for i in exemplars), exemplar_maps=maps.astype(np.float32),
                             crops=tuple(chosen))


# --- what it will cost ---


def discovery_passes(count: int, batch_size: int) -> list[PassGroup]:
    """The passes ``discover_concepts`` sends for ``count`` images: one backward pass per batch."""
    return in_batches(True, count, batch_size)


@functools.lru_cache(maxsize=64)
def _nmf_iteration_seconds(channels: int, components: int) -> tuple[float, float]:
    """Measured seconds of the NMF's start and of one of its iterations on ``PROBE_ROWS`` positions of ``channels``
    channels: a fit of one iteration and one of ``PROBE_ITERATIONS`` + 1 on sparse non-negative random activations
    (a ReLU layer's are mostly 0), the difference over ``PROBE_ITERATIONS``."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    probe = (np.abs(rng.normal(size=(PROBE_ROWS, channels))) * (rng.random((PROBE_ROWS, channels)) < 0.2)).astype(
        np.float32)

    def fit(iterations: int) -> float:
        model = NMF(components, init=NMF_INIT, solver=NMF_SOLVER, max_iter=iterations, tol=0.0, random_state=0)
        began = time.perf_counter()
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit_transform(probe)
        return time.perf_counter() - began

    fit(1)  # untimed: the first fit imports scikit-learn's solvers
    first = min(fit(1) for _ in range(2))
    longer = min(fit(1 + PROBE_ITERATIONS) for _ in range(2))
    per_iteration = max(0.0, (longer - first) / PROBE_ITERATIONS)
    return max(0.0, first - per_iteration), per_iteration


def nmf_seconds(positions: int, channels: int, components: int) -> float:
    """About how many seconds ``factorise`` takes on ``positions`` (N * h * w) points of ``channels``: the probe's
    measured start and iteration, scaled linearly in positions, times the expected iterations."""
    start, per_iteration = _nmf_iteration_seconds(channels, components)
    iterations = ITERATIONS_BASE + ITERATIONS_PER_CONCEPT * components
    return (start + per_iteration * iterations) * positions / PROBE_ROWS


def discovery_seconds(model: LoadedModel, count: int, layer: str | None = None, components: int = COMPONENTS.default,
                      batch_size: int = 64) -> float:
    """About how many seconds ``discover_concepts`` takes for ``count`` images at ``layer``: its backward passes at
    the model's measured cost of a pass of their size, and the factorisation (``nmf_seconds``). InputError for a layer
    without a spatial output."""
    from explainers.estimates import sized_passes_seconds

    layer = check_layer(model, layer)
    h, w, channels = _layer_shape(model, layer)
    return sized_passes_seconds(model, discovery_passes(count, batch_size)) + nmf_seconds(count * h * w, channels,
                                                                                          components)


# --- writing it ---


def discovery_json(discovery: Discovery, picture: str | None = None) -> dict[str, Any]:
    """One class's discovery as JSON: its concepts (importance, share, exemplars and crops by their sources) and
    how well the factorisation fits."""
    sources = discovery.images.sources
    return {
        "class_index": discovery.class_index,
        "layer": discovery.layer,
        "images": len(discovery.images),
        "available": discovery.available,
        "reconstruction_error": discovery.reconstruction_error,
        "negative_share": discovery.negative_share,
        "activation_importance": discovery.activation_importance,
        "iterations": discovery.iterations,
        "notes": list(discovery.notes),
        "seconds": discovery.seconds,
        "picture": picture,
        "concepts": [{
            "number": concept.number,
            "importance": concept.importance,
            "importance_spread": concept.importance_spread,
            "share": concept.share,
            "mass": concept.mass,
            "exemplars": [sources[i] for i in concept.exemplars],
            "crops": [{"source": crop.source, "cell": list(crop.cell), "coefficient": crop.coefficient,
                       "box": {"top": crop.box.top, "left": crop.box.left, "height": crop.box.height,
                               "width": crop.box.width}} for crop in concept.crops],
            "direction": [float(v) for v in concept.direction],
        } for concept in discovery.concepts],
    }


def discovered_json(discoveries: Sequence[Discovery], pictures: dict[str, str] | None = None) -> dict[str, Any]:
    """``discovered.json``'s content: ``{"layer", "settings", "classes": {class name: discovery_json}}``."""
    pictures = pictures or {}
    first = discoveries[0] if discoveries else None
    return {
        "layer": first.layer if first else None,
        "method": "non-negative matrix factorisation of the layer's activations over each class's images "
                  f"(scikit-learn NMF, {NMF_SOLVER} solver, {NMF_INIT} start); importance = mean over images of the "
                  "class logit's gradient . the concept's part of the activations",
        "settings": vars(first.settings).copy() if first else None,
        "classes": {d.class_name: discovery_json(d, pictures.get(d.class_name)) for d in discoveries},
    }
