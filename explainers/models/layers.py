"""Which layers of a model a CAM method can look at: every layer with a spatial (4-D) output, and the tokens of a
Vision Transformer's blocks laid out on their patch grid (``models.transformers``)."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from explainers.models.transformers import PATH_SEPARATOR, TokenGrid, block_tokens


@dataclass(frozen=True)
class LayerInfo:
    path: str  # "block_9_expand", or "mobilenetv2_1.00_224/block_9_expand" inside a nested model
    class_name: str  # "Conv2D", "DepthwiseConv2D", "ReLU"...
    height: int | None
    width: int | None
    channels: int | None
    tokens: TokenGrid | None = None  # a transformer block's tokens, laid on this grid
    block: int | None = None  # its block's number, from 1

    @property
    def resolution(self) -> str:
        return f"{self.height}x{self.width}"

    @property
    def is_conv(self) -> bool:
        return "Conv" in self.class_name

    @property
    def kind(self) -> str:
        """The layer's class, and for a block's tokens which block and how many leading tokens the grid drops."""
        if self.tokens is None:
            return self.class_name
        return f"{self.class_name}: block {self.block}'s tokens, {self.tokens.extra} before the patches dropped"

    @property
    def label(self) -> str:
        """What a layer picker shows: the path, and for a block's tokens "block N (tokens → 8×8)" first."""
        if self.tokens is None:
            return self.path
        return f"block {self.block} (tokens → {self.tokens.rows}×{self.tokens.cols}) · {self.path}"

    @property
    def heading(self) -> str:
        """A grid column's title: the label, with the resolution where the label does not give it."""
        return self.label if self.tokens is not None else f"{self.path} · {self.resolution}"


def _spatial_output_shape(layer: keras.layers.Layer) -> tuple | None:
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError):  # unbuilt, or called more than once
        return None
    return shape if len(shape) == 4 else None


def spatial_layers(model: keras.Model, prefix: str = "") -> list[LayerInfo]:
    """Every layer with a ``(batch, H, W, C)`` output, in graph order, nested models included, then each transformer
    block's tokens laid on their patch grid (``TokenGrid``).

    A nested model (a base network inside a wrapper, the usual transfer-learning
    shape) contributes its inner layers under ``"<nested name>/<layer name>"``
    rather than one opaque entry.
    """
    found: list[LayerInfo] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            found.extend(spatial_layers(layer, f"{prefix}{layer.name}{PATH_SEPARATOR}"))
            continue
        shape = _spatial_output_shape(layer)
        if shape is not None:
            found.append(LayerInfo(f"{prefix}{layer.name}", type(layer).__name__, shape[1], shape[2], shape[3]))
    if not prefix:  # once, over the whole model: an attention layer's input may come from the outer graph
        listed = {info.path for info in found}
        found.extend(LayerInfo(block.path, block.class_name, block.grid.rows, block.grid.cols, block.channels,
                               block.grid, block.number) for block in block_tokens(model) if block.path not in listed)
    return found


def conv_layer_names(model: keras.Model) -> list[str]:
    """The ordered paths of all layers with 4-D outputs (what ``LoadedModel.conv_layers`` lists)."""
    return [info.path for info in spatial_layers(model)]


def find_layer(model: keras.Model, path: str) -> keras.layers.Layer:
    """The layer at ``path`` ("name" or "nested/inner"); KeyError naming the path if absent."""
    layer: keras.layers.Layer = model
    for part in path.split(PATH_SEPARATOR):
        try:
            layer = layer.get_layer(part)
        except (ValueError, AttributeError):
            raise KeyError(f"the model has no layer '{path}'") from None
    return layer


def spread_over_depth(layers: list[LayerInfo], count: int = 3) -> list[str]:
    """``count`` conv layers spread evenly from early to last, a sensible default for a layer grid."""
    convs = [info.path for info in layers if info.is_conv or info.tokens] or [info.path for info in layers]
    if len(convs) <= count:
        return convs
    return [convs[round(i * (len(convs) - 1) / (count - 1))] for i in range(count)] if count > 1 else [convs[-1]]
