"""Where a Vision Transformer keeps what the maps read: its attention layers, and each block's tokens on the patch grid.

A transformer block's tokens are ``(N, T, D)``: ``extra`` leading tokens (a class token, distillation or register
tokens) followed by one token per patch, row by row, as in ViT, DeiT and keras-hub's ViT. ``TokenGrid`` states that
assumption once: the patches are the *last* ``rows * cols`` tokens, the grid has the input picture's aspect ratio,
and at most ``MAX_EXTRA_TOKENS`` tokens come before them.

Blocks are found by their attention layers (``keras.layers.MultiHeadAttention``), wherever they sit: in the model's
graph (a functional ViT), or inside a layer whose ``call`` is Python code (keras-hub's ``ViTEncoder``), whose inner
tensors no graph replay can reach; the probe observes those layers' calls during a pass instead. Block N's tokens
are those entering its attention (the query, after the block's first normalisation): in a class-token model the
last block's *output* carries no gradient on the patch tokens, as only the class token reaches the head, so every
gradient CAM there would be blank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from explainers.runtime.keras_internals import first_input, held_layers, producing_operation

# Separates a nested model's name from its inner layer's name. Keras forbids "/" in
# layer names, so a path can never be ambiguous.
PATH_SEPARATOR = "/"
# What a path may address past an attention layer's own path, "<attention path>/<part>": an attention layer is no
# model, so no real layer path continues past one.
ATTENTION_SCORES = "attention scores"  # (N, heads, T, T), softmax-normalised
QUERY_TOKENS = "query tokens"  # (N, T, D): its query, for an attention layer inside a layer's Python call
MAX_EXTRA_TOKENS = 8  # class + distillation + register tokens a grid may carry before its patches


@dataclass(frozen=True)
class TokenGrid:
    """How a ``(N, T, D)`` token tensor lies on the patch grid: ``extra`` leading tokens, then ``rows * cols``."""

    extra: int
    rows: int
    cols: int

    @classmethod
    def of(cls, tokens: int, input_size: tuple[int, int]) -> TokenGrid | None:
        """The grid of ``tokens`` tokens for an input of ``input_size`` (H, W): the fewest extra tokens that leave a
        grid of at least 2 x 2 with the picture's aspect ratio (square patches), or None when none does."""
        height, width = input_size
        for extra in range(min(MAX_EXTRA_TOKENS, tokens) + 1):
            patches = tokens - extra
            rows = round(math.sqrt(patches * height / width))
            if rows >= 2 and patches % rows == 0 and patches // rows >= 2 and height * (patches // rows) == width * rows:
                return cls(extra, rows, patches // rows)
        return None

    def lay_out(self, tokens):
        """``(N, T, D)`` tokens (a tensor) as ``(N, rows, cols, D)``, the extra tokens dropped."""
        patches = tokens[:, self.extra :, :]
        return keras.ops.reshape(patches, (-1, self.rows, self.cols, patches.shape[-1]))


@dataclass(frozen=True)
class AttentionSite:
    """One attention layer of the model, and how a pass reaches it."""

    path: str  # "block1_attention", or "vit_backbone/vit_encoder/transformer_block_1/mha" inside a Python call
    layer: keras.layers.MultiHeadAttention
    container: keras.layers.Layer | None = None  # the graph's layer whose Python call holds it; None: a graph node

    @property
    def in_graph(self) -> bool:
        """A node of a functional graph; otherwise inside a layer's Python call, observed during a pass."""
        return self.container is None


@dataclass(frozen=True)
class BlockTokens:
    """A block's tokens as a CAM layer: the path a pass asks for, and how they lie on the patch grid."""

    path: str  # the layer producing the attention's query, or "<attention path>/query tokens" for an observed one
    class_name: str
    grid: TokenGrid
    channels: int
    number: int  # the block's number, from 1


def attention_path(layer_path: str) -> str:
    """The probe path of the attention scores ``(N, heads, T, T)`` of the attention layer at ``layer_path``."""
    return f"{layer_path}{PATH_SEPARATOR}{ATTENTION_SCORES}"


def addressed_part(path: str) -> tuple[str, str] | None:
    """``(attention layer path, ATTENTION_SCORES or QUERY_TOKENS)`` when ``path`` addresses a part of an attention
    layer, else None."""
    head, _, tail = path.rpartition(PATH_SEPARATOR)
    return (head, tail) if head and tail in (ATTENTION_SCORES, QUERY_TOKENS) else None


def _held_attention(layer: keras.layers.Layer, prefix: str) -> list[tuple[str, keras.layers.MultiHeadAttention]]:
    found: list[tuple[str, keras.layers.MultiHeadAttention]] = []
    for inner in held_layers(layer):
        path = f"{prefix}{inner.name}"
        if isinstance(inner, keras.layers.MultiHeadAttention):
            found.append((path, inner))
        else:
            found.extend(_held_attention(inner, f"{path}{PATH_SEPARATOR}"))
    return found


def attention_sites(model: keras.Model, prefix: str = "") -> list[AttentionSite]:
    """Every MultiHeadAttention of the model in graph order, nested models and layers' Python calls included."""
    found: list[AttentionSite] = []
    for layer in model.layers:
        path = f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            found.extend(attention_sites(layer, f"{path}{PATH_SEPARATOR}"))
        elif isinstance(layer, keras.layers.MultiHeadAttention):
            found.append(AttentionSite(path, layer))
        else:
            found.extend(AttentionSite(inner_path, inner, container=layer)
                         for inner_path, inner in _held_attention(layer, f"{path}{PATH_SEPARATOR}"))
    return found


def attention_layers(model: keras.Model) -> list[str]:
    """The paths of the model's attention layers, in graph order: what attention rollout multiplies."""
    return [site.path for site in attention_sites(model)]


def input_size(model: keras.Model) -> tuple[int, int] | None:
    """The model's picture size (H, W), when its input is a batch of pictures of a known size."""
    shape = tuple(model.inputs[0].shape) if model.inputs else ()
    return (shape[1], shape[2]) if len(shape) == 4 and shape[1] and shape[2] else None


def _query_shape(site: AttentionSite) -> tuple:
    """The shape of the tokens entering ``site``'s attention, as the graph knows it before any pass: the query's own
    for a graph node; for an observed one, the shape of its container's input (a ViT encoder keeps its token count)."""
    tensor = first_input(site.container if site.container is not None else site.layer)
    return tuple(tensor.shape)


def block_tokens(model: keras.Model) -> list[BlockTokens]:
    """Per attention layer whose query lies on a patch grid, that query as a CAM layer, numbered by block."""
    size = input_size(model)
    found: list[BlockTokens] = []
    for site in attention_sites(model) if size else []:
        shape = _query_shape(site)
        grid = TokenGrid.of(shape[1], size) if len(shape) == 3 and shape[1] and size else None
        if grid is None:
            continue
        if site.in_graph:
            producer = producing_operation(first_input(site.layer))
            if not isinstance(producer, keras.layers.Layer):  # a keras.ops call: no layer a picker could name
                continue
            inner = site.path.rpartition(PATH_SEPARATOR)[0]
            path = f"{inner}{PATH_SEPARATOR}{producer.name}" if inner else producer.name
            class_name = type(producer).__name__
        else:
            path, class_name = f"{site.path}{PATH_SEPARATOR}{QUERY_TOKENS}", "MultiHeadAttention query"
        found.append(BlockTokens(path, class_name, grid, int(shape[2]), len(found) + 1))
    return found
