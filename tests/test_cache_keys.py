"""Every cache keys on what the model receives: two variants differing only in preprocessing never share an entry.

Each case computes a result under one preprocessing, then under another (where a shared entry would be
served), and compares the second with the same computation made with every cache empty.
"""

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
import streamlit as st
from PIL import Image

import explainers as ex
from explainers.attribution import INPUTS
from explainers.datasets.in_process import PER_FILE
from explainers.learned import VISUALIZATIONS
from helpers import random_images, wrap
from ui import cached


def _network() -> keras.Model:
    """No rescaling inside: what it computes depends on the preprocessing it is given."""
    keras.utils.set_random_seed(7)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_b")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def variants() -> tuple[ex.LoadedModel, ex.LoadedModel]:
    base = wrap(_network())
    return base.variant(preprocessing="unit"), base.variant(preprocessing="tf")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    for label in range(2):
        (root / f"class {label}").mkdir()
        for i, image in enumerate(random_images(3, seed=label)):
            Image.fromarray(image).save(root / f"class {label}" / f"{i}.png")
    return root


def _empty_every_cache() -> None:
    for engine_cache in (ex.RESULTS, INPUTS, PER_FILE, VISUALIZATIONS):
        engine_cache.clear()
    st.cache_data.clear()


IMAGES = random_images(2, seed=5)
Compute = Callable[[ex.LoadedModel, Path], np.ndarray]
CASES: dict[str, Compute] = {
    "dashboard predictions": lambda m, d: cached.predict(m, IMAGES),
    "dashboard layer grid": lambda m, d: np.stack(cached.layer_grid(m, IMAGES, ["conv_a", "conv_b"], [0, 1], "gradcam")),
    "dashboard feature maps": lambda m, d: cached.feature_maps(m, IMAGES[0], "conv_b", 4).mean_activation,
    "dashboard sanity check": lambda m, d: cached.sanity_checks(
        m, IMAGES, {"gradcam": ("conv_b", {})}, [0, 1])["gradcam"].correlations,
    "engine maps": lambda m, d: ex.attribute(m, IMAGES, "saliency", targets=[0, 1]).raw,
    "engine CAM maps": lambda m, d: ex.attribute(m, IMAGES, "gradcam", targets=[0, 1], layer="conv_b").raw,
    "engine layer grid": lambda m, d: np.asarray(ex.layer_grid(m, IMAGES, ["conv_a", "conv_b"], [0, 1])),
    "engine faithfulness curves": lambda m, d: ex.scores.deletion_insertion(
        m, IMAGES, ex.attribute(m, IMAGES, "gradcam", targets=[0, 1], layer="conv_b"), steps=4).deletion,
    "engine sanity check": lambda m, d: ex.scores.sanity.sanity_check(
        m, IMAGES, "gradcam", [0, 1], "conv_b").correlations,
    "dataset rows": lambda m, d: ex.datasets.evaluate(m, d, cam_layer="conv_b").top_probabilities,
    "class visualisations": lambda m, d: ex.class_visualization(m, [0], steps=10).astype(np.float32),
}


def test_variants_differing_in_preprocessing_differ_in_fingerprint_but_share_the_network(variants):
    unit, tf = variants
    assert unit.fingerprint != tf.fingerprint
    assert unit.network_fingerprint == tf.network_fingerprint
    assert unit.runtime is tf.runtime  # compiled passes are shared: they depend on the network only
    renamed = unit.variant([f"name {i}" for i in range(4)], "a labels file")
    assert renamed.fingerprint == unit.fingerprint  # names change no computation


@pytest.mark.parametrize("case", list(CASES))
def test_a_cache_never_serves_one_preprocessing_to_another(case, variants, dataset):
    unit, tf = variants
    compute = CASES[case]
    _empty_every_cache()
    under_unit = compute(unit, dataset)
    under_tf = compute(tf, dataset)  # a cache keyed without the preprocessing serves the unit result here
    _empty_every_cache()
    fresh_tf = compute(tf, dataset)
    assert not np.allclose(under_unit, fresh_tf), "the two preprocessings must give different results to tell apart"
    np.testing.assert_allclose(under_tf, fresh_tf, rtol=1e-5, atol=1e-6)


def _retrained(model: ex.LoadedModel) -> ex.LoadedModel:
    """The same architecture and preprocessing with other weights: what a model retrained over its file is."""
    network = keras.models.clone_model(model.model)
    network.set_weights([w * 1.5 + 0.01 for w in model.model.get_weights()])
    return wrap(network).variant(preprocessing=model.preprocessing)


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("dashboard")])
def test_a_dashboard_cache_never_serves_one_model_s_weights_to_another(case, variants, dataset):
    unit, _ = variants
    other = _retrained(unit)
    assert other.fingerprint != unit.fingerprint
    _empty_every_cache()
    first = CASES[case](unit, dataset)
    served = CASES[case](other, dataset)  # keyed without the weights, this is ``first``
    _empty_every_cache()
    fresh = CASES[case](other, dataset)
    assert not np.allclose(first, fresh)
    np.testing.assert_allclose(served, fresh, rtol=1e-5, atol=1e-6)


def test_large_photos_differing_in_one_pixel_are_not_served_each_other_s_predictions(variants):
    # Past 500,000 values Streamlit hashes a sample of an array: a pixel outside it would not change the key.
    side = 600  # 1,080,000 values; the model reads them all, unresized, so every pixel moves its prediction
    keras.utils.set_random_seed(3)
    inputs = keras.Input((side, side, 3))
    means = keras.layers.GlobalAveragePooling2D()(inputs)  # one pixel moves a mean by 1/360,000 of its change
    outputs = keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(0, 100))(means)
    model = wrap(keras.Model(inputs, outputs)).variant(preprocessing="unit")
    base = random_images(1, size=side, seed=3)[0]
    _empty_every_cache()
    for position in [(17, 411), (303, 5), (598, 599), (150, 150), (444, 87)]:
        changed = base.copy()
        changed[position] = 0
        changed[position[0], position[1], 0] = 255  # a saturated red pixel: the max-pooled feature of some channel
        cached.predict(model, [base])
        served = cached.predict(model, [changed])
        fresh = model.predict([changed])
        assert not np.array_equal(fresh, model.predict([base])), "the pixel must change the prediction to tell apart"
        np.testing.assert_array_equal(served, fresh)
