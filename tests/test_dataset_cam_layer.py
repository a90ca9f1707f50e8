"""A dataset evaluation's Grad-CAM layer: ``DEFAULT_LAYER`` is a value of its own, so a layer that happens to be
called "default" is evaluated at that layer, not at the model's own CAM layer."""

import keras
import numpy as np
import pytest
from PIL import Image

from explainers.datasets import DEFAULT_LAYER, PER_FILE, evaluate
from explainers.datasets.scoring import chosen_cam_layer
from helpers import random_images, wrap


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(5)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="default")(x)  # 16x16
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="last")(x)  # 8x8
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return wrap(keras.Model(inputs, outputs))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cam_layer")
    for index, image in enumerate(random_images(6, seed=7)):
        (root / f"class {index % 3}").mkdir(exist_ok=True)
        Image.fromarray(image).save(root / f"class {index % 3}" / f"{index}.png")
    return root


def test_default_layer_is_the_models_own_cam_layer_and_a_name_is_that_layer(model):
    assert model.default_cam_layer == "last"
    assert chosen_cam_layer(model, DEFAULT_LAYER) == "last"
    assert chosen_cam_layer(model, "default") == "default"  # the layer of that name, not the sentinel
    assert chosen_cam_layer(model, None) is None


def test_a_layer_called_default_is_evaluated_at_that_layer(model, folder):
    PER_FILE.clear()
    at_own_layer = evaluate(model, folder)  # cam_layer=DEFAULT_LAYER
    at_named_layer = evaluate(model, folder, cam_layer="default")
    PER_FILE.clear()  # computed afresh, not read back from the rows cached under the same layer
    at_last = evaluate(model, folder, cam_layer="last")
    assert at_own_layer.cam_layer == "last" and at_own_layer.cams.shape == (6, 8, 8)
    assert at_named_layer.cam_layer == "default" and at_named_layer.cams.shape == (6, 16, 16)
    np.testing.assert_array_equal(at_own_layer.cams, at_last.cams)  # the sentinel is exactly the named own layer
    # The prediction does not depend on where the map is taken.
    np.testing.assert_array_equal(at_own_layer.top_classes, at_named_layer.top_classes)
