"""Methods read from input gradients: Saliency, SmoothGrad, Integrated Gradients, Gradient x Input, Guided Backprop."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from explainers.inputs.images import blur
from explainers.methods.completeness import completeness_of
from explainers.methods.registry import Cost, Job, Maps, Param, PassGroup, in_batches, register


def _sample_passes(samples: int, images: int, batch_size: int) -> list[PassGroup]:
    """The backward passes of ``samples`` points per image, each image's points in batches of their own."""
    return in_batches(True, samples, batch_size, repeat=images)


def _per_image_samples(param: str) -> Cost:
    """Cost of averaging gradients over ``params[param]`` points per image, in batches, plus one forward pass over
    the images to resolve the top class (which a call naming every class skips)."""

    def cost(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
        return _sample_passes(int(params[param]), images, batch_size) + in_batches(False, images, batch_size)

    return cost


def channel_max_abs(grads: np.ndarray) -> np.ndarray:
    """``(N, H, W, C)`` -> ``(N, H, W)``: each pixel's largest magnitude over its channels."""
    return np.abs(grads).max(axis=-1)


@register("saliency", "Saliency", "Simonyan et al. 2013, arXiv:1312.6034")
def saliency(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, batch_size=job.batch_size)
    return channel_max_abs(result.gradients_at_input()), result.classes


def _averaged_gradients(job: Job, classes: np.ndarray, points: Callable[[int], np.ndarray], weights: np.ndarray | None,
                        absolute: bool) -> np.ndarray:
    """Per image, the (weighted) mean input gradient over ``points(i)`` ``(S, H, W, C)``."""
    out = np.empty_like(job.x)
    for i in range(len(job.x)):
        batch = points(i)
        grads = job.runtime.gradients(
            batch, np.full(len(batch), classes[i], np.int32), wrt_input=True, batch_size=job.batch_size
        ).gradients_at_input()
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

    return channel_max_abs(_averaged_gradients(job, classes, noisy, None, absolute=True)), classes


def baseline_input(job: Job, kind: str, blur_radius: float) -> np.ndarray:
    """The reference input a path method starts from: a black image, or each image blurred."""
    if kind == "black":
        return job.to_input(np.zeros_like(job.pixels))
    return job.to_input(blur(job.pixels, blur_radius))


BASELINE_PARAMS = (Param("baseline", "black", "the reference image: black, or the image blurred", choices=("black", "blurred")),
                   Param("blur_radius", 20.0, "blur radius in pixels of the blurred baseline", 1.0, 100.0, 1.0))


def _path_cost(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    """The gradients at ``steps`` points per image, then one forward pass over every image and its baseline."""
    return _sample_passes(int(params["steps"]), images, batch_size) + in_batches(False, 2 * images, batch_size)


class Endpoints(NamedTuple):
    """A path's two ends through the model: the class each image explains and the logits there."""

    classes: np.ndarray  # (N,) TOP1 and LEAST resolved at the image
    input_logits: np.ndarray  # (N, classes)
    baseline_logits: np.ndarray  # (N, classes)


def path_endpoints(job: Job, baseline: np.ndarray) -> Endpoints:
    """The images and their baselines in one batched forward pass (it also resolves TOP1 and LEAST at the images)."""
    images = len(job.x)
    result = job.runtime.forward(np.concatenate([job.x, baseline]), np.concatenate([job.targets, job.targets]),
                                 batch_size=job.batch_size)
    return Endpoints(result.classes[:images], result.logits[:images], result.logits[images:])


@register("integrated_gradients", "Integrated Gradients", "Sundararajan et al. 2017, arXiv:1703.01365",
          cost=_path_cost,
          params=(Param("steps", 32, "points on the path from the baseline, Gauss-Legendre nodes", 1, 256, 1),
                  *BASELINE_PARAMS),
          completeness_advice=("Raise steps (up to 256): the path integral is a weighted sum of the gradients at "
                               "that many points, and the kinks of ReLU-like activations along the path make it "
                               "converge slowly and unevenly. On the embedded model 128 steps brought every bundled "
                               "photo under 5% with either baseline, where 32 left up to a third of the score change "
                               "unaccounted for."))
def integrated_gradients(job: Job, params: dict) -> Maps:
    steps = params["steps"]
    baseline = baseline_input(job, params["baseline"], params["blur_radius"])
    # f(x) and f(x0) for the completeness gap: the path's nodes never reach its ends.
    endpoints = path_endpoints(job, baseline)
    classes = endpoints.classes
    # Gauss-Legendre nodes on [0, 1]: on the embedded model's rough path integrand the
    # completeness error at 64 steps is 5% against the trapezoidal rule's 13%.
    nodes, node_weights = np.polynomial.legendre.leggauss(steps)
    alphas, weights = ((nodes + 1) / 2).astype(np.float32), (node_weights / 2).astype(np.float32)

    def path(i: int) -> np.ndarray:
        return baseline[i][None] + alphas[:, None, None, None] * (job.x[i] - baseline[i])[None]

    attributions = (job.x - baseline) * _averaged_gradients(job, classes, path, weights, absolute=False)
    maps = attributions.sum(axis=-1)
    return Maps(maps, classes, completeness_of(maps, classes, endpoints.input_logits, endpoints.baseline_logits))


@register("gradient_x_input", "Gradient x Input", "Shrikumar et al. 2016, arXiv:1605.01713")
def gradient_x_input(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, batch_size=job.batch_size)
    return (result.gradients_at_input() * job.x).sum(axis=-1), result.classes


@register("guided_backprop", "Guided Backprop", "Springenberg et al. 2014, arXiv:1412.6806")
def guided_backprop(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, guided=True, batch_size=job.batch_size)
    return channel_max_abs(result.gradients_at_input()), result.classes
