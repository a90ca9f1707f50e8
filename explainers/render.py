"""Turn maps into pictures: colour them and blend them over the photo. Display only; never recomputes a map."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma", "gray")
OVERLAY, HEATMAP, IMAGE = "overlay", "heatmap only", "image only"
DISPLAY_MODES = (OVERLAY, HEATMAP, IMAGE)


def colorize(map_: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 RGB."""
    lookup = (colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lookup[np.clip(np.rint(map_ * 255), 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, map_: np.ndarray, opacity: float = 0.5, colormap: str = "jet",
            mode: str = OVERLAY) -> np.ndarray:
    """Blend a ``(H, W)`` map in [0, 1] over a ``(H, W, 3)`` uint8 image of the same size."""
    if mode == IMAGE:
        return image
    heat = colorize(map_, colormap)
    if mode == HEATMAP:
        return heat
    return (image.astype(np.float32) * (1 - opacity) + heat.astype(np.float32) * opacity).round().astype(np.uint8)
