"""Which layers of a model a CAM method can look at: every layer with a spatial (4-D) output."""

from __future__ import annotations

from dataclasses import dataclass

import keras

# Separates a nested model's name from its inner layer's name. Keras forbids "/" in
# layer names, so a path can never be ambiguous.
PATH_SEPARATOR = "/"


@dataclass(frozen=True)
class LayerInfo:
    path: str  # "block_9_expand", or "mobilenetv2_1.00_224/block_9_expand" inside a nested model
    class_name: str  # "Conv2D", "DepthwiseConv2D", "ReLU"...
    height: int | None
    width: int | None
    channels: int | None

    @property
    def resolution(self) -> str:
        return f"{self.height}x{self.width}"

    @property
    def is_conv(self) -> bool:
        return "Conv" in self.class_name


def _spatial_output_shape(layer: keras.layers.Layer) -> tuple | None:
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError):  # unbuilt, or called more than once
        return None
    return shape if len(shape) == 4 else None


def spatial_layers(model: keras.Model, prefix: str = "") -> list[LayerInfo]:
    """Every layer with a ``(batch, H, W, C)`` output, in graph order, nested models included.

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
    convs = [info.path for info in layers if info.is_conv] or [info.path for info in layers]
    if len(convs) <= count:
        return convs
    return [convs[round(i * (len(convs) - 1) / (count - 1))] for i in range(count)] if count > 1 else [convs[-1]]
