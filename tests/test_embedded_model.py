"""The embedded EfficientNet-Lite0: converted from the shipped PyTorch file, correct, cached."""

import pickle

import numpy as np
import pytest

import explainers as ex
from explainers.models import efficientnet_lite
from explainers.models.pth_reader import read_legacy_state_dict

CAT_CLASSES = {"tabby cat", "tiger cat", "Persian cat", "Siamese cat", "Egyptian Mau", "cougar", "lynx"}


def test_every_weight_in_the_pytorch_file_is_used():
    state = read_legacy_state_dict(efficientnet_lite.weights_path())
    used = {f"{prefix}.{p}" for prefix in efficientnet_lite._torch_to_keras_names().values() for p in
            ("weight", "bias", "running_mean", "running_var")}
    used |= {"_fc.weight", "_fc.bias"}
    learned = {k for k in state if not k.endswith("num_batches_tracked")}
    assert learned - used == set()


def test_converted_model_has_the_specified_architecture(embedded_model):
    model = embedded_model.model
    assert model.input_shape == (None, 224, 224, 3)
    assert model.output_shape == (None, 1000)
    assert model.get_layer("block_9_expand").output.shape[1:] == (14, 14, 672)
    assert model.get_layer("head_conv").output.shape[1:] == (7, 7, 1280)
    # Residual adds exist exactly where stride is 1 and channels match: 9 of the 16 blocks.
    assert sum(1 for layer in model.layers if layer.name.endswith("_add")) == 9
    assert 4.5e6 < model.count_params() < 4.8e6


def test_cat_photo_has_a_cat_class_in_its_top_3(embedded_model, sample):
    top3 = embedded_model.top_k(embedded_model.predict([sample("cat_chelsea")]), 3)[0]
    assert CAT_CLASSES & {name for _, name, _ in top3}


def test_coffee_photo_is_espresso(embedded_model, sample):
    top1 = embedded_model.top_k(embedded_model.predict([sample("coffee")]), 1)[0][0]
    assert top1[1] == "espresso"


def test_predictions_are_probabilities_in_a_batch(embedded_model, sample):
    images = [sample(name) for name in ex.sample_images()]
    probabilities = embedded_model.predict(images, batch_size=3)
    assert probabilities.shape == (len(images), 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    # Batching must not change results: the single-image call agrees.
    np.testing.assert_allclose(embedded_model.predict(images[:1])[0], probabilities[0], atol=1e-5)


def test_conversion_is_cached_and_the_cache_is_used(embedded_model, sample, monkeypatch):
    assert efficientnet_lite.cached_model_path().exists()

    def fail():
        raise AssertionError("converted again although a cached model exists")

    monkeypatch.setattr(efficientnet_lite, "convert", fail)
    reloaded = ex.load_model(ex.DEFAULT_MODEL)
    assert reloaded.fingerprint == embedded_model.fingerprint
    image = [sample("coffee")]
    np.testing.assert_allclose(reloaded.predict(image), embedded_model.predict(image), atol=1e-6)


def test_a_truncated_cache_file_is_rebuilt(embedded_model, monkeypatch, tmp_path):
    monkeypatch.setenv("ATTRIBUTION_DASHBOARD_CACHE", str(tmp_path))
    path = efficientnet_lite.cached_model_path()
    path.write_bytes(b"PK\x03\x04 not a whole zip")
    assert ex.load_model(ex.DEFAULT_MODEL).fingerprint == embedded_model.fingerprint


def test_weights_reader_refuses_code_in_a_pickle(tmp_path):
    crafted = tmp_path / "evil.pth"
    with open(crafted, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85q\x01Rq\x02.")
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        read_legacy_state_dict(crafted)


def test_class_names_are_unique_and_readable():
    names = ex.models.labels.imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert names[967] == "espresso" and names[281] == "tabby cat"
    assert all(0 < len(name) <= 40 for name in names)


def test_weights_reader_refuses_code_in_the_header_pickles_too(tmp_path):
    crafted = tmp_path / "evil_header.pth"
    marker = tmp_path / "ran"
    with open(crafted, "wb") as f:  # the very first pickle, the magic number, runs a command
        f.write(b"\x80\x02cos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode()
                + b"q\x00\x85q\x01Rq\x02.")
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        read_legacy_state_dict(crafted)
    assert not marker.exists()
