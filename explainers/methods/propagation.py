"""The propagation-rule family: DeepLIFT (Rescale), epsilon-LRP and DeconvNet, one backward pass per batch each.

Each method is the gradient pass with a different rule at the network's
nonlinearities (``probe.RULES``): the forward values are the model's own, and
only what flows back through each activation changes. Linear operations keep
their gradient, so a BatchNorm in inference counts as folded into the
convolution before it, and a residual add splits the signal as the gradient
does. Max pooling and other nonlinear operations that are not elementwise
activations (a squeeze-excite product) also keep their gradient: on such
networks DeepLIFT's sum is no longer exactly the change of the logit.
"""

from __future__ import annotations

import numpy as np

from explainers.methods.completeness import completeness_of
from explainers.methods.gradients import BASELINE_PARAMS, baseline_input
from explainers.methods.registry import Job, Maps, Param, PassGroup, register
from explainers.runtime.probe import DECONVNET, LRP_EPSILON, RESCALE


def _in_batches(images: int, per_pass: int, rows_per_image: int) -> list[PassGroup]:
    """Backward passes over ``images`` images, ``per_pass`` at a time, each image taking ``rows_per_image`` rows."""
    full, rest = divmod(images, per_pass)
    groups = (PassGroup(backward=True, images_per_pass=per_pass * rows_per_image, passes=full),
              PassGroup(backward=True, images_per_pass=rest * rows_per_image, passes=1))
    return [group for group in groups if group.images_per_pass and group.passes]


def _one_pass_per_batch(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    return _in_batches(images, batch_size, 1)


def _paired_passes(params: dict, images: int, batch_size: int, size: tuple[int, int]) -> list[PassGroup]:
    # Each image runs beside its baseline, so a pass of at most batch_size rows holds half as many images.
    return _in_batches(images, max(1, batch_size // 2), 2)


@register("deeplift", "DeepLIFT (Rescale)", "Shrikumar et al. 2017, arXiv:1704.02685", params=BASELINE_PARAMS,
          cost=_paired_passes,
          completeness_advice=("No parameter of DeepLIFT closes this gap (the baseline only changes the reference): "
                               "the Rescale rule is exact at elementwise activations (ReLU, ReLU6...), and this "
                               "network has nonlinear operations it does not cover (max pooling, the product of a "
                               "squeeze-excite gate, an activation that mixes elements or a custom one), which keep "
                               "their plain gradient. Read the map as approximate, or compare it with Integrated "
                               "Gradients at enough steps, which is complete on any network."))
def deeplift(job: Job, params: dict) -> Maps:
    """Signed contributions ``(N, H, W)``: (x - x0) times DeepLIFT's multipliers, summed over channels.

    With the Rescale rule at every activation, a network of linear operations and
    elementwise activations (ReLU, ReLU6...) has contributions summing exactly to
    logit(x) - logit(x0) for the explained class; max pooling breaks that, and the completeness figures
    returned with the maps say by how much (the paired pass gives the baselines' logits at no cost).
    """
    baseline = baseline_input(job, params["baseline"], params["blur_radius"])
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, rule=RESCALE, baselines=baseline,
                                   batch_size=job.batch_size)
    maps = ((job.x - baseline) * result.gradients_at_input()).sum(axis=-1)
    if result.baseline_logits is None:  # the rescale rule's paired pass always returns them
        raise ValueError("the rescale pass returned no baseline logits")
    return Maps(maps, result.classes, completeness_of(maps, result.classes, result.logits, result.baseline_logits))


# 1e-2 by default: pre-activations after a BatchNorm are of order 1, so epsilon changes little
# for clearly active units while bounding the ratio f(z) / (z + epsilon) of weak ones (near 0 it
# would amplify noise), which is what the stabiliser is for; 1e-9 is the plain epsilon -> 0 rule.
# The damping compounds over depth: on the embedded model's 33 ReLU6 layers, 1e-2 keeps the map
# (r = 0.92-0.97 with 1e-9), 0.1 reshapes it (r ~ 0.7) and 1 shrinks it ten-thousandfold.


@register("lrp_epsilon", "ε-LRP", "Bach et al. 2015, PLoS ONE 10(7); gradient formulation of Ancona et al. 2018",
          cost=_one_pass_per_batch,
          params=(Param("epsilon", 1e-2, "stabiliser of each activation's ratio f(z) / (z + ε·sign z); larger "
                        "absorbs the relevance of weak activations", low=1e-9, high=10.0,
                        presets=(1e-6, 1e-3, 1e-2, 0.1, 1.0)),))
def lrp_epsilon(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Relevance ``(N, H, W)``: input times the epsilon-rule gradient, summed over channels (signed).

    Each elementwise activation y = f(z) passes back upstream * f(z) / (z + ε·sign z),
    and linear layers their gradient: the epsilon rule of Bach et al. applied to the
    whole affine chain before each activation (a BatchNorm folded into its convolution).
    """
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, rule=LRP_EPSILON, epsilon=params["epsilon"],
                                   batch_size=job.batch_size)
    return (job.x * result.gradients_at_input()).sum(axis=-1), result.classes


@register("deconvnet", "DeconvNet", "Zeiler & Fergus 2014, arXiv:1311.2901", cost=_one_pass_per_batch)
def deconvnet(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W)`` max over channels of |the DeconvNet signal|: relu(upstream) at every ReLU, like Guided Backprop."""
    result = job.runtime.gradients(job.x, job.targets, wrt_input=True, rule=DECONVNET, batch_size=job.batch_size)
    return np.abs(result.gradients_at_input()).max(axis=-1), result.classes
