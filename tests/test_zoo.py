"""Zoo models: weights from the Keras cache, and one clear sentence (fast) when they cannot be had."""

import dataclasses
import time

import numpy as np
import pytest

import explainers as ex
from explainers.models import zoo


def test_missing_weights_offline_fail_fast_naming_file_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    def no_network(url, target):
        raise OSError("Name or service not known")

    monkeypatch.setattr(zoo, "_download", no_network)
    start = time.monotonic()
    with pytest.raises(ex.ModelUnavailableError) as error:
        ex.load_model("keras:MobileNetV2")
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" in message
    assert str(tmp_path / "models") in message
    assert "\n" not in message


def test_a_hanging_download_is_abandoned_at_the_deadline(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(zoo, "_download", lambda url, target: time.sleep(30))
    start = time.monotonic()
    with pytest.raises(ex.ModelUnavailableError, match="no answer within 1 s"):
        zoo.fetch_weights(zoo.ZOO["VGG16"], deadline=1.0)
    assert time.monotonic() - start < 3


def test_weights_in_the_keras_cache_are_used_without_downloading(monkeypatch, tmp_path):
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    # Keras 3 only writes weights files ending in .weights.h5; the lookup logic is the same.
    entry = dataclasses.replace(zoo.ZOO["MobileNetV2"], weights_file="mobilenet_v2_test.weights.h5")
    monkeypatch.setitem(zoo.ZOO, "MobileNetV2", entry)
    reference = keras.applications.MobileNetV2(weights=None)
    (tmp_path / "models").mkdir()
    reference.save_weights(tmp_path / "models" / entry.weights_file)
    monkeypatch.setattr(zoo, "_download", lambda url, target: pytest.fail("downloaded although cached"))

    loaded = ex.load_model("keras:MobileNetV2")
    assert loaded.network_fingerprint == ex.models.weights_fingerprint(reference)
    assert loaded.input_size == (224, 224) and loaded.preprocessing == "tf"
    assert loaded.default_layers == ("block_2_expand", "block_9_expand", "Conv_1")
    image = np.random.default_rng(0).integers(0, 255, (100, 120, 3), np.uint8)
    np.testing.assert_allclose(loaded.predict([image]), reference.predict(loaded.preprocess([image]), verbose=0), atol=1e-5)


def test_unknown_zoo_name():
    with pytest.raises(ex.InputError, match="'ResNet9000' is not in the model zoo"):
        ex.load_model("keras:ResNet9000")
