"""Methods read from a Vision Transformer's attention: attention rollout and gradient-weighted attention.

Both read every ``keras.layers.MultiHeadAttention`` of the model's graph, whose scores ``(N, heads, T, T)`` the probe
exposes (``models.transformers.attention_path``), and end with the row of the token the head reads: the class token's row
when the tokens carry extra ones before the patches (``TokenGrid``), otherwise the mean of the patch tokens' rows (a
model pooling its tokens reads them all alike). That row's patch entries, laid on the patch grid, are the map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from explainers.errors import InputError
from explainers.methods.maps import upsample
from explainers.methods.registry import Job, Method, Param, in_batches, one_pass, register
from explainers.models.transformers import TokenGrid, attention_layers, attention_path

_NO_ATTENTION = ("This method reads a Vision Transformer's attention, and the model has no Keras MultiHeadAttention "
                 "layer in its graph.")


def _no_attention(model: Any) -> str | None:
    """Why a model offers no attention to read (a LoadedModel), or None."""
    return None if attention_layers(model.model) else _NO_ATTENTION


def reads_attention(method: Method) -> bool:
    """Whether ``method`` reads a Vision Transformer's attention, and so runs on no other model."""
    return method.requires is _no_attention


def _grid(job: Job, tokens: int) -> TokenGrid:
    grid = TokenGrid.of(tokens, job.size)
    if grid is None:
        raise InputError(f"The model's {tokens} attention tokens lie on no patch grid of its "
                         f"{job.size[0]}×{job.size[1]} input, so its attention cannot be drawn as a map.")
    return grid


def _read_row(relevance: np.ndarray, grid: TokenGrid, size: tuple[int, int]) -> np.ndarray:
    """``(N, T, T)`` token-to-token relevance -> ``(N, H, W)``: the row the head reads, its patches on the grid."""
    rows = relevance[:, 0, :] if grid.extra else relevance.mean(axis=1)
    patches = rows[:, grid.extra :].reshape(len(rows), grid.rows, grid.cols)
    return upsample(patches.astype(np.float32), size)


def _fused(scores: np.ndarray, fusion: str) -> np.ndarray:
    """``(N, heads, T, T)`` -> ``(N, T, T)``: the heads fused by their mean, maximum or minimum."""
    if fusion == "max":
        return scores.max(axis=1)
    return scores.min(axis=1) if fusion == "min" else scores.mean(axis=1)


def rollout(scores: list[np.ndarray], fusion: str = "mean", discard: float = 0.0) -> np.ndarray:
    """Attention rollout over the layers' scores (first layer first): ``R = Â_L ⋯ Â_1`` with
    ``Â = normalise(0.5 A + 0.5 I)``, A the heads fused; ``discard`` zeroes that share of each row's weakest
    entries (never the diagonal) before the identity is added."""
    relevance = None
    for layer_scores in scores:
        attention = _fused(layer_scores.astype(np.float64), fusion)
        tokens = attention.shape[-1]
        if discard > 0:
            cut = np.quantile(attention, discard, axis=-1, keepdims=True)
            attention = np.where((attention < cut) & ~np.eye(tokens, dtype=bool), 0.0, attention)
        attention = 0.5 * attention + 0.5 * np.eye(tokens)
        attention /= attention.sum(axis=-1, keepdims=True)
        relevance = attention if relevance is None else attention @ relevance
    if relevance is None:
        raise ValueError("rollout needs the scores of at least one attention layer")
    return relevance


def gradient_weighted(scores: list[np.ndarray], gradients: list[np.ndarray]) -> np.ndarray:
    """Chefer et al.'s relevance for self-attention: ``R = I``, then per layer (first first)
    ``R += E_h[(∇A ⊙ A)⁺] R``."""
    tokens = scores[0].shape[-1]
    relevance = np.broadcast_to(np.eye(tokens), (len(scores[0]), tokens, tokens)).copy()
    for layer_scores, layer_gradients in zip(scores, gradients, strict=True):
        weighted = np.maximum(layer_gradients.astype(np.float64) * layer_scores, 0.0).mean(axis=1)
        relevance = relevance + weighted @ relevance
    return relevance


def _paths(job: Job) -> tuple[str, ...]:
    layers = attention_layers(job.runtime.model)
    if not layers:
        raise InputError(_NO_ATTENTION)
    return tuple(attention_path(layer) for layer in layers)


@register("attention_rollout", "Attention rollout", "Abnar & Zuidema 2020, arXiv:2005.00928; class-agnostic",
          requires=_no_attention, cost=lambda params, images, batch_size, size: in_batches(False, images, batch_size),
          params=(Param("head_fusion", "mean", "how each layer's heads are fused", choices=("mean", "max", "min"),
                        label="Head fusion"),
                  Param("discard", 0.0, "share of each row's weakest attention set to zero", 0.0, 0.95, 0.05,
                        label="Discard (share)")))
def attention_rollout(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.forward(job.x, job.targets, _paths(job), batch_size=job.batch_size)
    relevance = rollout(result.activations, params["head_fusion"], params["discard"])
    return _read_row(relevance, _grid(job, relevance.shape[-1]), job.size), result.classes


@register("transformer_attribution", "Transformer attribution",
          "Chefer et al. 2021, arXiv:2103.15679 (gradient-weighted attention, class-specific)",
          requires=_no_attention, cost=one_pass)
def transformer_attribution(job: Job, params: dict) -> tuple[np.ndarray, np.ndarray]:
    result = job.runtime.gradients(job.x, job.targets, _paths(job), batch_size=job.batch_size)
    relevance = gradient_weighted(result.activations, result.layer_gradients)
    return _read_row(relevance, _grid(job, relevance.shape[-1]), job.size), result.classes
