"""Input preprocessing presets: uint8 RGB pixels in, the value range a model was trained on out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
_TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
# ITU-R BT.601 luma, what PIL's "L" mode uses: a grayscale model sees what a grayscale file would hold.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class Preprocessing:
    name: str
    description: str
    apply: Callable[[np.ndarray], np.ndarray]


def _caffe(x: np.ndarray) -> np.ndarray:
    return x[..., ::-1] - _CAFFE_BGR_MEAN


def _values(vector: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:g}" for v in vector) + ")"


# Each description says what its function computes, x being a pixel's 0..255 value, with the constants the
# function uses: the sidebar, the overview and the CLI's --preprocess help all show these texts.
PRESETS: dict[str, Preprocessing] = {
    p.name: p
    for p in (
        Preprocessing("efficientnet_lite", "(x - 127) / 128", lambda x: (x - 127.0) / 128.0),
        Preprocessing("tf", "-1..1: x / 127.5 - 1", lambda x: x / 127.5 - 1.0),
        Preprocessing("unit", "0..1: x / 255", lambda x: x / 255.0),
        Preprocessing("caffe", f"RGB to BGR, minus the ImageNet BGR mean {_values(_CAFFE_BGR_MEAN)}", _caffe),
        Preprocessing("torch", f"(x / 255 - the ImageNet mean {_values(_TORCH_MEAN)}) / its std {_values(_TORCH_STD)},"
                               " per RGB channel", lambda x: (x / 255.0 - _TORCH_MEAN) / _TORCH_STD),
        Preprocessing("none", "raw 0..255 (the model normalises inside)", lambda x: x),
    )
}


def describe_presets() -> str:
    """Every preset and what it computes, in one line for help texts: ``tf: -1..1: x / 127.5 - 1; ...``."""
    return "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()) + " (x: a pixel's 0..255 value)"


def preprocess(pixels: np.ndarray, preset: str, channels: int = 3) -> np.ndarray:
    """Map ``(N, H, W, 3)`` uint8 RGB pixels to the model's input range, as float32 ``(N, H, W, channels)``.

    A one-channel model gets the luma of the preprocessed channels; for the
    presets that treat channels alike this equals preprocessing a grayscale file.
    """
    x = PRESETS[preset].apply(pixels.astype(np.float32)).astype(np.float32)
    if channels == 1:
        weights = LUMA[::-1] if preset == "caffe" else LUMA  # caffe has already swapped to BGR
        x = (x @ weights)[..., None]
    return x
