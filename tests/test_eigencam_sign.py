"""Eigen-CAM's sign: the map follows the activations' mass, so no layer with activations gives a blank map."""

import keras
import numpy as np
import pytest

import explainers as ex
from explainers.attribution import INPUTS
from explainers.runtime.targets import TOP1
from helpers import pearson, wrap

PHOTOS = ["astronaut", "cat_chelsea", "china_temple", "coffee", "flower", "rocket"]


@pytest.fixture(autouse=True)
def empty_cache():
    ex.RESULTS.clear()
    INPUTS.clear()


def _copy_red_and_green() -> keras.Model:
    """Input(2, 2, 3) -> a 1x1 convolution ``feat`` whose two channels copy R and G -> GAP -> softmax."""
    inputs = keras.Input((2, 2, 3))
    feat = keras.layers.Conv2D(2, 1, use_bias=False, name="feat")
    x = feat(inputs)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    feat.set_weights([np.array([[[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]], np.float32)])
    return model


def test_eigencam_of_non_negative_activations_is_their_positive_principal_projection():
    image = np.zeros((2, 2, 3), np.uint8)
    image[..., 0] = [[10, 11], [9, 10]]
    image[..., 1] = [[0, 0], [3, 1]]
    raw = ex.attribute(wrap(_copy_red_and_green()), [image], "eigencam", layer="feat").raw[0]
    # Reference written differently: the top eigenvector of A^T A (A = positions x channels, uncentred).
    activations = image[..., :2].reshape(4, 2).astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(activations.T @ activations)
    projection = activations @ eigenvectors[:, np.argmax(eigenvalues)]
    expected = np.abs(projection).reshape(2, 2)  # one sign everywhere: the mass-following sign makes it positive
    np.testing.assert_allclose(expected.ravel(), [9.96, 10.95, 9.24, 10.05], atol=0.01)
    np.testing.assert_allclose(raw, expected, rtol=1e-5)


def test_eigencam_sign_follows_the_mass_when_activations_take_both_signs():
    rng = np.random.default_rng(4)
    activations = rng.normal(0.0, 1.0, (3, 5, 5, 6)).astype(np.float32)
    activations[0] -= 2.0  # mostly negative: the projection's sign must still give a positive sum
    weights = ex.methods.cams.eigencam_weights(activations, np.zeros_like(activations))
    for acts, vector in zip(activations, weights[:, 0, 0, :]):
        projection = acts.reshape(-1, 6) @ vector
        assert projection.sum() >= 0 and projection.max() > 0
        top = np.linalg.svd(acts.reshape(-1, 6).astype(np.float64), full_matrices=False)[2][0]
        np.testing.assert_allclose(np.abs(vector), np.abs(top), rtol=1e-4, atol=1e-6)  # the paper's vector, up to sign


def test_eigencam_leaves_no_spatial_layer_of_the_embedded_model_blank(embedded_model, sample):
    """Every spatial layer, six photos, from one pass: a map is blank only where the activations are all zero.

    Before the sign followed the mass, 76 of the 140 layers gave a blank map on at least one photo.
    """
    model, photos = embedded_model, [sample(name) for name in PHOTOS]
    layers = model.conv_layers
    ex.layer_grid(model, photos, layers, method="eigencam")  # fills the per-layer cache in one pass
    x = model.preprocess(photos)
    every_activation = model.runtime.forward(x, np.full(len(x), TOP1, np.int32), tuple(layers)).activations
    blank, with_the_mass, non_negative = [], 0, 0
    for layer, activations in zip(layers, every_activation):
        raw = ex.attribute(model, photos, "eigencam", layer=layer).raw
        for name, cam, acts in zip(PHOTOS, raw, activations):
            if not np.any(acts):
                continue
            if not cam.max() > 0:
                blank.append((layer, name))
            elif acts.min() >= 0 and acts.shape[0] > 1:
                # Non-negative activations have a principal projection of one sign: the map is all of it, and
                # mostly rises with the channel sum (a few channels can dominate it, so not always).
                non_negative += 1
                mass = keras.ops.convert_to_numpy(keras.ops.image.resize(acts.sum(-1, keepdims=True), cam.shape))
                with_the_mass += pearson(cam, mass[..., 0]) > 0
    assert not blank, f"{len(blank)} blank maps, e.g. {blank[:5]}"
    assert non_negative > 150 and with_the_mass >= 0.95 * non_negative, (with_the_mass, non_negative)
