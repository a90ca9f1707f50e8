"""What a request will cost before it runs, and the ceiling a hosted copy puts on one request.

An estimate counts the passes each map cannot avoid, as its method's registration states them
(``Method.cost``, at the model's input size), at the seconds per image a backward and a forward pass
took on this model (``Runtime.pass_seconds``, timed once per network). A map already in the cache costs nothing.
NumPy work besides the passes and first traces of a pass are left out: on the embedded model the passes
are most of a method's time (``python -m explainers.bench`` prints each method's time over this floor).
The trust evaluation's estimate (``trust.evaluate.trust_seconds``) prices each pass at its own size instead
(``sized_passes_seconds``): its metrics send passes of 1 to 64 images, whose cost per image differs by several times
on a small model.

The dashboard shows an estimate above a few seconds and waits for a button; above the server's ceiling
(``settings.max_request_seconds``) it refuses the request in one sentence (``check_ceiling``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from explainers import settings
from explainers.attribution import attribute, cached_maps
from explainers.errors import InputError
from explainers.inputs.images import ImageLike
from explainers.methods.registry import PassGroup, get_method, resolve_params
from explainers.models.loading import LoadedModel
from explainers.runtime.passes import DEFAULT_BATCH_SIZE
from explainers.runtime.targets import Targets
from explainers.scores.faithfulness import cached_curves, curve_passes

Request = tuple[str | None, Mapping[str, Any]]  # (layer, parameters) of one method


def passes_seconds(model: LoadedModel, passes: Iterable[PassGroup]) -> float:
    """Seconds ``passes`` (groups of backward?, images per pass, passes) take on ``model`` at its measured pass cost."""
    passes = list(passes)
    if not passes:  # nothing to run (all cached): no need to time a pass, which costs a second on a fresh server
        return 0.0
    backward, forward = model.runtime.pass_seconds()
    return sum(group.images_per_pass * group.passes * (backward if group.backward else forward) for group in passes)


def sized_passes_seconds(model: LoadedModel, passes: Iterable[PassGroup]) -> float:
    """Seconds ``passes`` take on ``model``, each pass priced at the measured cost of a pass of its own size
    (``Runtime.pass_cost``): a pass costs a fixed part besides its images, which pricing per image leaves out for small
    batches and counts too often for large ones. What the trust evaluation's estimate uses, as its metrics send
    passes from 1 to 64 images."""
    passes = [group for group in passes if group.images_per_pass > 0 and group.passes > 0]
    if not passes:
        return 0.0
    cost = model.runtime.pass_cost()
    return sum(group.passes * cost.seconds(group.backward, group.images_per_pass) for group in passes)


def maps_seconds(model: LoadedModel, method: str, params: Mapping[str, Any], maps: int) -> float:
    """Seconds ``maps`` maps of ``method`` with ``params`` (defaults for the rest) take to compute on ``model``."""
    if maps <= 0:
        return 0.0
    registered = get_method(method)
    passes = registered.cost(resolve_params(registered, dict(params)), maps, DEFAULT_BATCH_SIZE, model.input_size)
    return passes_seconds(model, passes)


def estimate_seconds(model: LoadedModel, images: Sequence[ImageLike], method: str = "gradcam", targets: Targets = None,
                     layer: str | None = None, **params: Any) -> float:
    """About how many seconds ``attribute(model, images, method, targets, layer, **params)`` would take now.

    Computes nothing: maps in the cache cost nothing, each other map its method's registered passes.
    """
    missing = len(images) - cached_maps(model, images, method, targets, layer, **params)
    return maps_seconds(model, method, params, missing)


def grid_seconds(model: LoadedModel, images: Sequence[ImageLike], layers: Sequence[str], targets: Targets = None,
                 method: str = "gradcam") -> float:
    """About how many seconds ``layer_grid(model, images, layers, targets, method)`` would take now.

    One pass fills every layer of an image, so an image costs one map of the method (its registered passes)
    unless every one of its cells is cached.
    """
    missing = max((len(images) - cached_maps(model, images, method, targets, layer) for layer in layers), default=0)
    return maps_seconds(model, method, {}, missing)


def comparison_seconds(model: LoadedModel, images: Sequence[ImageLike], methods: Mapping[str, Request],
                       targets: Targets = None, steps: int = 16) -> float:
    """About how many seconds the maps of several methods (``{method: (layer, parameters)}``) and their deletion
    and insertion curves at ``steps`` (``scores.deletion_insertion``) would take now; computes nothing new."""
    total = 0.0
    for name, (layer, params) in methods.items():
        cached = cached_maps(model, images, name, targets, layer, **params)
        total += maps_seconds(model, name, params, len(images) - cached)
        unscored = len(images)
        if cached == len(images):  # the maps are at hand from the cache, so their curves can be looked up
            unscored -= cached_curves(model, images, attribute(model, images, name, targets, layer, **params), steps)
        total += passes_seconds(model, curve_passes(unscored, steps))
    return total


def evaluation_seconds(model: LoadedModel, images: int, cam_layer: str | None) -> float:
    """About how many seconds scoring ``images`` images of a dataset takes (``datasets.evaluate_iter``): one pass
    each, backward when it takes a Grad-CAM at ``cam_layer``; reading the next batch overlaps the pass."""
    return passes_seconds(model, [PassGroup(backward=cam_layer is not None, images_per_pass=1, passes=images)])


def duration(seconds: float) -> str:
    """``40 s``, ``9 min``, ``2.5 h``: a duration in the unit a person reads it in."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def describe(seconds: float) -> str:
    """An estimate as pages show it: ``under 1 s``, ``about 40 s``, ``about 9 min``."""
    return "under 1 s" if seconds < 1 else f"about {duration(seconds)}"


def check_ceiling(seconds: float, what: str) -> None:
    """Raise InputError when ``what`` (``"Computing these maps"``), estimated at ``seconds``, is above this
    server's ceiling on one request (``settings.max_request_seconds``); one sentence names both."""
    ceiling = settings.max_request_seconds()
    if ceiling is not None and seconds > ceiling:
        raise InputError(f"{what} would take {describe(seconds)}, more than the {duration(ceiling)} this server "
                         "allows one request, so it is not run.")
