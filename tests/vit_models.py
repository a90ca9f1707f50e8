"""A small Vision Transformer built from stock Keras layers, and pictures whose evidence sits in one known patch.

The ViT has the usual shape: a patch-embedding convolution, a class token and learned position embeddings, pre-norm
blocks (LayerNorm, MultiHeadAttention, residual; LayerNorm, MLP, residual), a final LayerNorm and a head on the
class token (or, with ``class_token=False``, on the tokens' mean). The class token and the positions are Dense layers
fed by constants computed from the input, so the model holds no custom layer and loads with ``safe_mode`` on.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np

PATCH = 8
SIZE = 32  # a 4 x 4 patch grid
COLOURS = ((230, 40, 40), (40, 80, 230))  # class 0: a red patch, class 1: a blue one
DISTRACTOR = (40, 200, 60)  # a green patch in every picture, elsewhere: evidence for no class


def small_vit(*, classes: int = 2, dim: int = 32, blocks: int = 2, heads: int = 2, class_token: bool = True,
              seed: int = 0, name: str = "small_vit") -> keras.Model:
    keras.utils.set_random_seed(seed)
    grid = SIZE // PATCH
    inputs = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inputs)
    x = keras.layers.Conv2D(dim, PATCH, strides=PATCH, name="patch_embedding")(x)
    tokens = keras.layers.Reshape((grid * grid, dim), name="patch_tokens")(x)
    if class_token:
        ones = keras.ops.ones_like(tokens[:, :1, :1])  # (N, 1, 1): a constant the class token's bias rides on
        cls = keras.layers.Dense(dim, name="class_token")(ones)
        tokens = keras.layers.Concatenate(axis=1, name="with_class_token")([cls, tokens])
    count = grid * grid + int(class_token)
    one_hot = keras.ops.zeros_like(tokens[:, :, :1]) + keras.ops.eye(count)[None]  # (N, T, T)
    positions = keras.layers.Dense(dim, use_bias=False, name="positions")(one_hot)
    x = keras.layers.Add(name="embedded")([tokens, positions])
    for block in range(1, blocks + 1):
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm1")(x)
        y = keras.layers.MultiHeadAttention(heads, dim // heads, name=f"block{block}_attention")(y, y)
        x = keras.layers.Add(name=f"block{block}_residual1")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{block}_norm2")(x)
        y = keras.layers.Dense(2 * dim, activation="gelu", name=f"block{block}_mlp1")(y)
        y = keras.layers.Dense(dim, name=f"block{block}_mlp2")(y)
        x = keras.layers.Add(name=f"block{block}_output")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    pooled = x[:, 0] if class_token else keras.layers.GlobalAveragePooling1D(name="token_mean")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head")(pooled)
    return keras.Model(inputs, outputs, name=name)


class EvidencePictures(NamedTuple):
    pixels: np.ndarray  # (N, SIZE, SIZE, 3) uint8
    labels: np.ndarray  # (N,) the class: which colour the evidence patch has
    evidence: np.ndarray  # (N,) the evidence patch's index on the grid, row by row
    masks: np.ndarray  # (N, SIZE, SIZE) bool: the evidence patch's pixels


def evidence_pictures(count: int, seed: int = 0) -> EvidencePictures:
    """Grey noise with one coloured patch (its colour is the class) and one green distractor patch elsewhere, both
    on the patch grid."""
    rng = np.random.default_rng(seed)
    grid = SIZE // PATCH
    pixels = rng.integers(90, 166, (count, SIZE, SIZE, 1), dtype=np.uint8).repeat(3, axis=-1)
    labels = rng.integers(0, len(COLOURS), count)
    evidence = rng.integers(0, grid * grid, count)
    distractor = (evidence + rng.integers(1, grid * grid, count)) % (grid * grid)
    masks = np.zeros((count, SIZE, SIZE), bool)
    for i in range(count):
        for patch, colour in ((evidence[i], COLOURS[labels[i]]), (distractor[i], DISTRACTOR)):
            row, col = divmod(int(patch), grid)
            block = (slice(row * PATCH, (row + 1) * PATCH), slice(col * PATCH, (col + 1) * PATCH))
            shade = rng.integers(-25, 26, 3)
            pixels[i][block] = np.clip(np.array(colour) + shade, 0, 255).astype(np.uint8)
        row, col = divmod(int(evidence[i]), grid)
        masks[i, row * PATCH : (row + 1) * PATCH, col * PATCH : (col + 1) * PATCH] = True
    return EvidencePictures(pixels, labels, evidence, masks)


def trained_vit(*, class_token: bool = True, images: int = 1200, epochs: int = 6, seed: int = 0) -> keras.Model:
    """``small_vit`` trained on ``evidence_pictures``: it must find the coloured patch among noise and a distractor."""
    model = small_vit(class_token=class_token, seed=seed)
    data = evidence_pictures(images, seed=seed + 100)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.pixels.astype(np.float32), data.labels, epochs=epochs, batch_size=32, verbose=0)
    return model
