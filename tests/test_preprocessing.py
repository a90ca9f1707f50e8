"""Each model family's preprocessing matches Keras's own preprocess_input (an independent implementation)."""

import numpy as np
import pytest
from keras.applications import efficientnet, imagenet_utils, inception_v3, mobilenet_v2, resnet50, vgg16

import explainers as ex
from explainers.models.preprocessing import preprocess
from explainers.models.zoo import ZOO

PIXELS = np.random.default_rng(0).integers(0, 256, size=(2, 8, 8, 3), dtype=np.uint8)

KERAS_REFERENCE = {
    "MobileNetV2": mobilenet_v2.preprocess_input,
    "VGG16": vgg16.preprocess_input,
    "VGG19": vgg16.preprocess_input,
    "ResNet50": resnet50.preprocess_input,
    "InceptionV3": inception_v3.preprocess_input,
    "EfficientNetB0": efficientnet.preprocess_input,
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_preprocessing_matches_keras(name):
    expected = KERAS_REFERENCE[name](PIXELS.astype(np.float32).copy())
    np.testing.assert_allclose(preprocess(PIXELS, ZOO[name].preprocessing), expected, rtol=1e-5, atol=1e-4)


def test_torch_preset_matches_keras_torch_mode():
    expected = imagenet_utils.preprocess_input(PIXELS.astype(np.float32).copy(), mode="torch")
    np.testing.assert_allclose(preprocess(PIXELS, "torch"), expected, rtol=1e-5, atol=1e-5)


def test_efficientnet_lite_maps_0_127_255():
    pixels = np.array([0, 127, 255], np.uint8).reshape(1, 1, 3, 1).repeat(3, axis=-1)
    np.testing.assert_allclose(preprocess(pixels, "efficientnet_lite")[0, 0, :, 0], [-127 / 128, 0.0, 1.0])


def test_model_preprocess_resizes_any_image_to_the_input_size(embedded_model):
    batch = embedded_model.preprocess([np.zeros((300, 451, 3), np.uint8), np.full((50, 20), 255, np.uint8)])
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[1], 1.0)


def test_unknown_preset_is_one_clear_error():
    with pytest.raises(ex.InputError, match="'bgr' is not a preprocessing preset"):
        ex.load_model("whatever.keras", preprocessing="bgr")
