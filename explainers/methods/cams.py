"""The CAM family: ``relu(sum_k weights_k * A_k)`` at a layer, each method only its weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from explainers.errors import InputError
from explainers.methods.gradients import channel_max_abs
from explainers.methods.maps import rescale, upsample
from explainers.methods.registry import CamWeights, Job, Param, PassGroup, in_batches, register
from explainers.runtime.passes import Runtime
from explainers.runtime.probe import cam_head


def combine_cam(activations: np.ndarray, weights: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``relu(sum_k weights_k * A_k)`` upsampled to ``size``; weights broadcast against ``(N, h, w, K)``."""
    return upsample(np.maximum((weights * activations).sum(axis=-1), 0.0), size)


class GradientCams(NamedTuple):
    """What ``gradient_cams`` gives: one map array per layer asked, and the pass's classes and logits."""

    maps: list[np.ndarray]  # per layer, (N, H, W) float32
    classes: np.ndarray  # (N,) the class each map explains (TOP1 resolved)
    logits: np.ndarray  # (N, classes)


def _peak_normalised(maps: np.ndarray) -> np.ndarray:
    """Each map divided by its largest value, so a CAM (never negative) lies in [0, 1]; an all-zero map stays 0."""
    peak = maps.reshape(len(maps), -1).max(axis=1)[:, None, None]
    return np.where(peak > 0, maps / np.where(peak > 0, peak, 1), 0).astype(np.float32)


def gradient_cams(runtime: Runtime, x: np.ndarray, targets: np.ndarray, layers: Sequence[str], weights_fn: CamWeights,
                  *, batch_size: int, size: tuple[int, int] | None = None, peak_normalised: bool = False
                  ) -> GradientCams:
    """The gradient-CAM pass, written once: one backward pass for ``targets`` through every layer of ``layers``,
    then each layer's ``relu(sum_k weights_k * A_k)`` with ``weights_fn``'s weights (a method's, a layer grid's,
    the dataset rows' Grad-CAM).

    ``size`` (H, W) upsamples the maps to it; None keeps each layer's own resolution. ``peak_normalised`` scales
    each map by its peak into [0, 1], as a dataset's rows store them.
    """
    result = runtime.gradients(x, targets, tuple(layers), batch_size=batch_size)
    maps = []
    for activations, grads in zip(result.activations, result.layer_gradients, strict=True):
        cam = combine_cam(activations, weights_fn(activations, grads), activations.shape[1:3] if size is None else size)
        maps.append(_peak_normalised(cam) if peak_normalised else cam)
    return GradientCams(maps, result.classes, result.logits)


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


def _gradient_cam(weights_fn: CamWeights) -> Callable[[Job, dict], tuple[np.ndarray, np.ndarray]]:
    def run(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
        cams = gradient_cams(job.runtime, job.x, job.targets, (job.needed_layer(),), weights_fn,
                             batch_size=job.batch_size, size=job.size)
        return cams.maps[0], cams.classes

    return run


def register_gradient_cam(name: str, label: str, reference: str, weights_fn: CamWeights) -> None:
    """A gradient CAM is only its channel weights: the pass, the sum and the layer grid are shared."""
    register(name, label, reference, needs_layer=True, cam_weights=weights_fn)(_gradient_cam(weights_fn))


register_gradient_cam("gradcam", "Grad-CAM", "Selvaraju et al. 2017, arXiv:1610.02391", gradcam_weights)


register_gradient_cam("gradcam_plus_plus", "Grad-CAM++",
                      "Chattopadhyay et al. 2018, arXiv:1710.11063; as in the authors' released code, the pixel "
                      "weights are normalised to sum to 1 per channel (pytorch-grad-cam does not, so the two differ "
                      "most on shallow layers)", gradcam_plus_plus_weights)


register_gradient_cam("layercam", "Layer-CAM", "Jiang et al. 2021, IEEE TIP 30", layercam_weights)


@register("guided_gradcam", "Guided Grad-CAM", "Selvaraju et al. 2017, arXiv:1610.02391", needs_layer=True,
          cost=lambda params, images, batch_size, size: in_batches(True, images, batch_size, repeat=2))
def guided_gradcam(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    cam, classes = _gradient_cam(gradcam_weights)(job, params)
    guided = job.runtime.gradients(job.x, classes, wrt_input=True, guided=True, batch_size=job.batch_size)
    return channel_max_abs(guided.gradients_at_input() * cam[..., None]), classes


_CAM_ENDING = "CAM needs a model ending in global average pooling then a dense layer; use Grad-CAM instead."


def _cam_requirement(model: Any) -> str | None:
    return model.cam_unavailable or (None if cam_head(model.model) is not None else _CAM_ENDING)


@register("cam", "CAM", "Zhou et al. 2016, arXiv:1512.04150", requires=_cam_requirement,
          cost=lambda params, images, batch_size, size: in_batches(False, images, batch_size))
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


def _scorecam_cost(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    # A forward pass for the activations, then one per masked copy (with max_n 0, every channel:
    # unknown here, so the floor counts 256).
    return in_batches(False, images, batch_size) + in_batches(False, params["max_n"] or 256, batch_size, repeat=images)


@register("scorecam", "Score-CAM", "Wang et al. 2020, arXiv:1910.01279; Faster Score-CAM channel selection",
          needs_layer=True, cost=_scorecam_cost,
          params=(Param("max_n", 64, "channels scored, those varying most over the image (0: every channel)",
                        0, 4096, presets=(16, 32, 64, 128, 256), label="Channels (Faster Score-CAM)"),))
def scorecam(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    max_n = params["max_n"]
    forward = job.runtime.forward(job.x, job.targets, (job.needed_layer(),), batch_size=job.batch_size)
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


def hirescam_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """The gradients themselves, per pixel: ``relu(sum_k dS/dA_k * A_k)`` stays faithful to the score."""
    return grads


def xgradcam_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """``w_k = sum_ij (A_kij / sum_ij A_kij) dS/dA_kij``: ``(N, 1, 1, K)``; a channel summing to 0 weighs 0."""
    sums = activations.sum(axis=(1, 2), keepdims=True)
    shares = np.where(sums != 0, activations / np.where(sums != 0, sums, 1.0), 0.0)
    return (shares * grads).sum(axis=(1, 2), keepdims=True)


def eigencam_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Each image's first right singular vector of its uncentred ``(h*w, K)`` activations: ``(N, 1, 1, K)``.

    Class-agnostic (the gradients are ignored). A singular vector's sign is arbitrary;
    it is chosen so that the projection's sum is positive, i.e. the map follows the
    activations' mass. (A sign read from the centred covariance with the channel sum
    flips a projection of one sign, as an uncentred one usually is, to all negative,
    and the ReLU then leaves a blank map.) Activations that are not all zero always
    give a projection with some positive entry.
    """
    n, h, w, k = activations.shape
    weights = np.empty((n, k), np.float32)
    for i, acts in enumerate(activations.reshape(n, h * w, k).astype(np.float64)):
        vector = np.linalg.svd(acts, full_matrices=False)[2][0]
        weights[i] = -vector if (acts @ vector).sum() < 0 else vector
    return weights[:, None, None, :]


register_gradient_cam("hirescam", "HiResCAM", "Draelos & Carin 2020, arXiv:2011.08891", hirescam_weights)


register_gradient_cam("xgradcam", "XGrad-CAM", "Fu et al. 2020, arXiv:2008.02312", xgradcam_weights)


register_gradient_cam("eigencam", "Eigen-CAM",
                      "Muhammad & Yeasin 2020, arXiv:2008.00299; the paper's uncentred SVD of the activations "
                      "(pytorch-grad-cam centres them first), its sign chosen to follow the activations' mass",
                      eigencam_weights)
