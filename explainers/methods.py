"""The attribution methods, one registry entry each.

Every method answers the same call: given a prepared batch (a ``Job``) and its
parameters, return raw maps ``(N, H, W)`` at the model's input resolution and
the class each map explains. The shared steps (running the model in batches,
choosing classes, upsampling, normalising, caching) live elsewhere, so a method
is only what makes it different. The CAM family shares one formula,
``relu(sum_k weights_k * A_k)``, and differs only in the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .images import blur
from .maps import rescale, upsample
from .probe import cam_head
from .runtime import Runtime


@dataclass
class Job:
    """One batch to explain, prepared once and shared by every method."""

    runtime: Runtime
    x: np.ndarray  # (N, H, W, C) preprocessed model input
    pixels: np.ndarray  # (N, H, W, 3) uint8, the same images before preprocessing
    to_input: Callable[[np.ndarray], np.ndarray]  # pixels like ``pixels`` to model input like ``x``
    targets: np.ndarray  # (N,) int32 class per image, TOP1 = the model's own top class
    layer: str | None
    seeds: list[int]  # one per image, from its content, so random draws don't depend on the batch
    batch_size: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x.shape[1:3]

    def top_classes(self) -> np.ndarray:
        """Targets with TOP1 resolved; costs one forward pass only if any is TOP1."""
        if (self.targets >= 0).all():
            return self.targets
        return self.runtime.forward(self.x, self.targets, batch_size=self.batch_size).classes


MethodFn = Callable[[Job, dict[str, Any]], tuple[np.ndarray, np.ndarray]]
CamWeights = Callable[[np.ndarray, np.ndarray], np.ndarray]
# The passes a method cannot avoid for ``images`` images at ``batch_size``, as groups of
# (backward?, images per pass, number of passes): what the benchmark's floor is made of.
PassGroup = tuple[bool, int, int]
Cost = Callable[[dict[str, Any], int, int], list[PassGroup]]


@dataclass(frozen=True)
class Param:
    """One parameter of a method: enough for a widget, a link, a command-line option and a check.

    The type is the default's. ``low``/``high`` bound numbers (``step`` is the
    widget's increment); ``choices`` lists every allowed value instead;
    ``presets`` are the values a widget offers when the allowed range is wider.
    """

    name: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()
    presets: tuple = ()
    label: str = ""  # for widgets; the name, capitalised, when empty

    @property
    def kind(self) -> type:
        return type(self.default)

    def check(self, value: Any, label: str) -> Any:
        """``value`` converted to this parameter's type; InputError with one sentence when it is not allowed."""
        try:
            converted = self.kind(value) if not isinstance(value, bool) or self.kind is bool else None
        except (TypeError, ValueError):
            converted = None
        if self.kind in (int, float) and isinstance(converted, float) and not np.isfinite(converted):
            converted = None
        if self.kind is int and converted is not None and converted != value and not isinstance(value, str):
            converted = None  # 2.5 is no number of samples
        if converted is None:
            raise self._refusal(value, label)
        if (self.choices and converted not in self.choices) or (self.low is not None and converted < self.low) or (
                self.high is not None and converted > self.high):
            raise self._refusal(value, label)
        return converted

    def _refusal(self, value: Any, label: str) -> InputError:
        return InputError(f"The {self.name} of {label} must be {self.describe()}; got {value!r}.")

    def describe(self) -> str:
        """The allowed values in words: ``an integer from 1 to 200``, ``black or blurred``."""
        if self.choices:
            return " or ".join(str(c) for c in self.choices)
        noun = {int: "an integer", float: "a number", bool: "true or false", str: "text"}[self.kind]
        number = (lambda v: f"{int(v):,}") if self.kind is int else (lambda v: f"{v:g}")
        if self.low is not None and self.high is not None:
            return f"{noun} from {number(self.low)} to {number(self.high)}"
        if self.low is not None:
            return f"{noun} of at least {number(self.low)}"
        return noun


def one_pass(params: dict, images: int, batch_size: int) -> list[PassGroup]:
    """One backward pass over the images: what input-gradient methods and gradient CAMs need."""
    return [(True, images, 1)]


@dataclass(frozen=True)
class Method:
    """A method's description: from it come the pages' widgets, link keys, CLI options and benchmark floor."""

    name: str
    label: str
    reference: str
    run: MethodFn
    params: tuple[Param, ...] = ()
    needs_layer: bool = False
    cam_weights: CamWeights | None = None  # set for gradient CAMs: they can fill a layer grid in one pass
    cost: Cost = one_pass
    requires: Callable[[Any], str | None] | None = None  # model -> why it cannot run there, beyond needing a layer

    @property
    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def unavailable(self, model: Any) -> str | None:
        """Why this method cannot run on ``model`` (a LoadedModel), or None when it can."""
        if self.needs_layer and model.cam_unavailable:
            return model.cam_unavailable
        return self.requires(model) if self.requires else None


REGISTRY: dict[str, Method] = {}


def register(name: str, label: str, reference: str, *, params: tuple[Param, ...] = (), needs_layer: bool = False,
             cam_weights: CamWeights | None = None, cost: Cost = one_pass,
             requires: Callable[[Any], str | None] | None = None) -> Callable[[MethodFn], MethodFn]:
    """Decorate a method's function to add it, described, to the registry (and so to every page, link and CLI)."""

    def add(fn: MethodFn) -> MethodFn:
        REGISTRY[name] = Method(name, label, reference, fn, tuple(params), needs_layer, cam_weights, cost, requires)
        return fn

    return add


def _per_image_samples(param: str) -> Cost:
    """Cost of averaging gradients over ``params[param]`` points per image, in batches, plus one forward pass."""

    def cost(params: dict, images: int, batch_size: int) -> list[PassGroup]:
        batches, rest = divmod(int(params[param]), batch_size)
        return [(True, batch_size, batches * images)] + ([(True, rest, images)] if rest else []) + [(False, images, 1)]

    return cost


# ---- input-gradient methods -------------------------------------------------------------


def _channel_max_abs(grads: np.ndarray) -> np.ndarray:
    return np.abs(grads).max(axis=-1)


@register("saliency", "Saliency", "Simonyan et al. 2013, arXiv:1312.6034")
def saliency(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, batch_size=job.batch_size)
    return _channel_max_abs(result.input_gradients), result.classes


def _averaged_gradients(job: Job, classes: np.ndarray, points: Callable[[int], np.ndarray], weights: np.ndarray | None,
                        absolute: bool) -> np.ndarray:
    """Per image, the (weighted) mean input gradient over ``points(i)`` ``(S, H, W, C)``."""
    out = np.empty_like(job.x)
    for i in range(len(job.x)):
        batch = points(i)
        grads = job.runtime.gradients(
            batch, np.full(len(batch), classes[i], np.int32), wrt_input=True, batch_size=job.batch_size
        ).input_gradients
        grads = np.abs(grads) if absolute else grads
        out[i] = np.tensordot(weights, grads, axes=1) if weights is not None else grads.mean(axis=0)
    return out


@register("smoothgrad", "SmoothGrad", "Smilkov et al. 2017, arXiv:1706.03825", cost=_per_image_samples("samples"),
          params=(Param("samples", 25, "noisy copies of each image whose gradients are averaged", 1, 200, 1),
                  Param("noise", 0.15, "noise level, as a share of the input's value range", 0.0, 1.0, 0.05,
                        label="Noise (share of the value range)"),
                  Param("seed", 0, "seed of the noise (each image also seeds by its content)", 0, 2**31 - 1)))
def smoothgrad(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    samples, noise, seed = params["samples"], params["noise"], params["seed"]
    classes = job.top_classes()

    def noisy(i: int) -> np.ndarray:
        x = job.x[i]
        sigma = noise * float(x.max() - x.min())
        rng = np.random.default_rng([seed, job.seeds[i]])
        return (x[None] + rng.normal(0.0, sigma, (samples, *x.shape))).astype(np.float32)

    return _channel_max_abs(_averaged_gradients(job, classes, noisy, None, absolute=True)), classes


def baseline_input(job: Job, kind: str, blur_radius: float) -> np.ndarray:
    """The reference input a path method starts from: a black image, or each image blurred."""
    if kind == "black":
        return job.to_input(np.zeros_like(job.pixels))
    return job.to_input(blur(job.pixels, blur_radius))


BASELINE_PARAMS = (Param("baseline", "black", "the reference image: black, or the image blurred", choices=("black", "blurred")),
                   Param("blur_radius", 20.0, "blur radius in pixels of the blurred baseline", 1.0, 100.0, 1.0))


@register("integrated_gradients", "Integrated Gradients", "Sundararajan et al. 2017, arXiv:1703.01365",
          cost=_per_image_samples("steps"),
          params=(Param("steps", 32, "points on the path from the baseline, Gauss-Legendre nodes", 1, 256, 1),
                  *BASELINE_PARAMS))
def integrated_gradients(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    steps = params["steps"]
    baseline = baseline_input(job, params["baseline"], params["blur_radius"])
    classes = job.top_classes()
    # Gauss-Legendre nodes on [0, 1]: on the embedded model's rough path integrand the
    # completeness error at 64 steps is 5% against the trapezoidal rule's 13%.
    nodes, node_weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = ((nodes + 1) / 2).astype(np.float32), (node_weights / 2).astype(np.float32)

    def path(i: int) -> np.ndarray:
        return baseline[i][None] + alphas[:, None, None, None] * (job.x[i] - baseline[i])[None]

    attributions = (job.x - baseline) * _averaged_gradients(job, classes, path, weights, absolute=False)
    return attributions.sum(axis=-1), classes


@register("gradient_x_input", "Gradient x Input", "Shrikumar et al. 2016, arXiv:1605.01713")
def gradient_x_input(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, batch_size=job.batch_size)
    return (result.input_gradients * job.x).sum(axis=-1), result.classes


@register("guided_backprop", "Guided Backprop", "Springenberg et al. 2014, arXiv:1412.6806")
def guided_backprop(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, guided=True, batch_size=job.batch_size)
    return _channel_max_abs(result.input_gradients), result.classes


# ---- the CAM family ----------------------------------------------------------------------


def combine_cam(activations: np.ndarray, weights: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``relu(sum_k weights_k * A_k)`` upsampled to ``size``; weights broadcast against ``(N, h, w, K)``."""
    return upsample(np.maximum((weights * activations).sum(axis=-1), 0.0), size)


def gradcam_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return grads.mean(axis=(1, 2), keepdims=True)


def gradcam_plus_plus_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    # Chattopadhyay et al.'s closed form for the pixel weights alpha (exponential score),
    # then, as in the authors' released code, alpha scaled to sum to 1 over each channel.
    g2, g3 = grads**2, grads**3
    activation_sums = activations.sum(axis=(1, 2), keepdims=True)
    denominator = 2 * g2 + activation_sums * g3
    alpha = np.where(g2 != 0, g2 / np.where(denominator != 0, denominator, 1.0), 0.0)
    alpha_sums = alpha.sum(axis=(1, 2), keepdims=True)
    alpha = alpha / np.where(alpha_sums != 0, alpha_sums, 1.0)
    return (alpha * np.maximum(grads, 0.0)).sum(axis=(1, 2), keepdims=True)


def layercam_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    return np.maximum(grads, 0.0)  # per pixel, not per channel: what keeps early layers sharp


def _gradient_cam(weights_fn: CamWeights) -> MethodFn:
    def run(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
        result = job.runtime.gradients(job.x, job.targets, (job.layer,), batch_size=job.batch_size)
        activations, grads = result.activations[0], result.layer_gradients[0]
        return combine_cam(activations, weights_fn(activations, grads), job.size), result.classes

    return run


def register_gradient_cam(name: str, label: str, reference: str, weights_fn: CamWeights) -> None:
    """A gradient CAM is only its channel weights: the pass, the sum and the layer grid are shared."""
    register(name, label, reference, needs_layer=True, cam_weights=weights_fn)(_gradient_cam(weights_fn))


register_gradient_cam("gradcam", "Grad-CAM", "Selvaraju et al. 2017, arXiv:1610.02391", gradcam_weights)
register_gradient_cam("gradcam_plus_plus", "Grad-CAM++", "Chattopadhyay et al. 2018, arXiv:1710.11063",
                      gradcam_plus_plus_weights)
register_gradient_cam("layercam", "Layer-CAM", "Jiang et al. 2021, IEEE TIP 30", layercam_weights)


@register("guided_gradcam", "Guided Grad-CAM", "Selvaraju et al. 2017, arXiv:1610.02391", needs_layer=True,
          cost=lambda params, images, batch_size: [(True, images, 2)])
def guided_gradcam(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    cam, classes = _gradient_cam(gradcam_weights)(job, params)
    guided = job.runtime.gradients(job.x, classes, wrt_input=True, guided=True, batch_size=job.batch_size)
    return _channel_max_abs(guided.input_gradients * cam[..., None]), classes


_CAM_ENDING = "CAM needs a model ending in global average pooling then a dense layer; use Grad-CAM instead."


def _cam_requirement(model: Any) -> str | None:
    return model.cam_unavailable or (None if cam_head(model.model) is not None else _CAM_ENDING)


@register("cam", "CAM", "Zhou et al. 2016, arXiv:1512.04150", requires=_cam_requirement,
          cost=lambda params, images, batch_size: [(False, images, 1)])
def cam(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    head = cam_head(job.runtime.model)
    if head is None:
        raise InputError(_CAM_ENDING)
    layer, dense = head
    result = job.runtime.forward(job.x, job.targets, (layer,), batch_size=job.batch_size)
    kernel = np.asarray(dense.get_weights()[0])  # (K, classes)
    if kernel.shape[1] == 1:  # binary head: class 0 is explained by the negated unit
        class_weights = np.where(result.classes[:, None] == 1, 1.0, -1.0) * kernel[:, 0]
    else:
        class_weights = kernel[:, result.classes].T  # (N, K)
    return combine_cam(result.activations[0], class_weights[:, None, None, :], job.size), result.classes


def _scorecam_cost(params: dict, images: int, batch_size: int) -> list[PassGroup]:
    # A forward pass for the activations, then one per masked copy (with max_n 0, every channel:
    # unknown here, so the floor counts 256).
    batches, rest = divmod(params["max_n"] or 256, batch_size)
    return [(False, images, 1), (False, batch_size, batches * images)] + ([(False, rest, images)] if rest else [])


@register("scorecam", "Score-CAM", "Wang et al. 2020, arXiv:1910.01279; Faster Score-CAM channel selection",
          needs_layer=True, cost=_scorecam_cost,
          params=(Param("max_n", 64, "channels scored, those varying most over the image (0: every channel)",
                        0, 4096, presets=(16, 32, 64, 128, 256), label="Channels (Faster Score-CAM)"),))
def scorecam(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    max_n = params["max_n"]
    forward = job.runtime.forward(job.x, job.targets, (job.layer,), batch_size=job.batch_size)
    activations, classes = forward.activations[0], forward.classes
    maps = np.empty((len(job.x), *job.size), np.float32)
    for i, acts in enumerate(activations):
        channels = np.arange(acts.shape[-1])
        if max_n and max_n < len(channels):
            # Faster Score-CAM: only the channels whose activation varies most over the image.
            channels = np.argsort(-acts.reshape(-1, acts.shape[-1]).var(axis=0), kind="stable")[: int(max_n)]
        weights = np.zeros(acts.shape[-1], np.float32)
        for start in range(0, len(channels), job.batch_size):
            chunk = channels[start : start + job.batch_size]
            masks = rescale(upsample(np.moveaxis(acts[..., chunk], -1, 0), job.size))  # (k, H, W) in [0, 1]
            masked = job.x[i][None] * masks[..., None]
            weights[chunk] = job.runtime.class_probabilities(masked, np.full(len(chunk), classes[i], np.int32),
                                                             batch_size=job.batch_size)
        maps[i] = combine_cam(acts[None], weights, job.size)[0]
    return maps, classes


def markdown_table() -> str:
    """The registered methods as the README's Markdown table: name, call name, parameters, reference."""

    def parameters(method: Method) -> str:
        given = ([] if not method.needs_layer else ["`layer`"]) + [
            f"`{p.name}={p.default!r}` ({p.describe()})" for p in method.params]
        return ", ".join(given)

    rows = ["| method | name | parameters (default, allowed) | reference |", "| --- | --- | --- | --- |"]
    rows += [f"| {m.label} | `{m.name}` | {parameters(m)} | {m.reference} |" for m in REGISTRY.values()]
    return "\n".join(rows)


def method_names() -> list[str]:
    """Names of the registered methods, in registration order."""
    return list(REGISTRY)


def get_method(name: str) -> Method:
    if name not in REGISTRY:
        raise InputError(f"'{name}' is not an attribution method; choose one of {', '.join(REGISTRY)}.")
    return REGISTRY[name]


def resolve_params(method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of ``method``: ``params`` checked and converted, defaults for the rest."""
    known = {p.name: p for p in method.params}
    unknown = set(params) - set(known)
    if unknown:
        takes = ", ".join(known) or "no parameters"
        raise InputError(f"'{sorted(unknown)[0]}' is not a parameter of {method.name}; it takes {takes}.")
    return {name: known[name].check(params[name], method.label) if name in params else known[name].default
            for name in known}
