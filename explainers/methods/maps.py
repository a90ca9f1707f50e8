"""Resizing and normalising attribution maps; the shared last steps of every method."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(N, h, w)`` -> ``(N, H, W)`` by bilinear interpolation (float32)."""
    if maps.shape[1:] == tuple(size):
        return maps.astype(np.float32, copy=False)
    resized = tf.image.resize(maps[..., None].astype(np.float32), size, method="bilinear")
    return resized.numpy()[..., 0]


def rescale(maps: np.ndarray) -> np.ndarray:
    """Each ``maps[i]`` shifted and scaled to span [0, 1]; a constant map becomes all zeros."""
    maps = maps.astype(np.float32, copy=False)
    axes = tuple(range(1, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0).astype(np.float32)


def normalize(maps: np.ndarray) -> np.ndarray:
    """Each map's magnitude scaled to [0, 1] (signed maps count evidence for and against alike)."""
    return rescale(np.abs(maps))


def to_sizes(maps: np.ndarray, sizes: Sequence[tuple[int, int]]) -> np.ndarray | list[np.ndarray]:
    """Resize map ``i`` (``(..., h, w)``) to ``sizes[i]``.

    Returns one array when all sizes agree, else a list (images of different sizes).
    """
    resized = []
    for item, size in zip(maps, sizes):
        flat = item.reshape(-1, *item.shape[-2:])
        resized.append(np.clip(upsample(flat, size), 0, 1).reshape(*item.shape[:-2], *size))
    if len(set(map(tuple, sizes))) <= 1:
        return np.stack(resized) if resized else np.zeros((0, 0, 0), np.float32)
    return resized
