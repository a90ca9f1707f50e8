"""Faithfulness scores on constructed cases whose right answer is known."""


import keras
import numpy as np
import pytest

import explainers as ex
from explainers import scores
from explainers.methods import REGISTRY, Method
from helpers import wrap

SIZE = 16


def region_model() -> keras.Model:
    """Class 0's logit is the mean brightness of the top-left 8x8 region; class 1's is a constant."""
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    region = np.zeros((SIZE, SIZE, 3), np.float32)
    region[:8, :8] = 1.0
    kernel = np.zeros((SIZE * SIZE * 3, 2), np.float32)
    kernel[:, 0] = region.ravel() * 8.0 / (region.sum() * 255.0)  # a bright region gives a logit of about 8
    model.layers[-1].set_weights([kernel, np.array([0.0, 4.0], np.float32)])
    return model


def bright_region_images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    images = []
    for _ in range(count):
        image = rng.integers(0, 40, (SIZE, SIZE, 3), dtype=np.uint8)
        image[:8, :8] = rng.integers(200, 256, (8, 8, 3), dtype=np.uint8)
        images.append(image)
    return images


def attribution_with(raw: np.ndarray, classes: list[int]) -> ex.Attribution:
    return ex.Attribution("constructed", None, {}, raw.astype(np.float32), np.array(classes, np.int32), 0.0, 0)


def test_ranking_the_region_first_wins_deletion_and_insertion():
    m = wrap(region_model())
    images = bright_region_images(2)
    right = np.zeros((2, SIZE, SIZE), np.float32)
    right[:, :8, :8] = 1.0
    right += np.random.default_rng(1).random((2, SIZE, SIZE)) * 0.01  # break ties inside and outside
    random = np.random.default_rng(2).random((2, SIZE, SIZE))
    aucs = {}
    for name, raw in {"right": right, "random": random, "reverse": -right}.items():
        curves = scores.deletion_insertion(m, images, attribution_with(raw, [0, 0]), steps=16)
        aucs[name] = (curves.deletion_auc.mean(), curves.insertion_auc.mean())
    assert aucs["right"][0] < aucs["random"][0] and aucs["right"][0] < aucs["reverse"][0]
    assert aucs["right"][1] > aucs["random"][1] and aucs["right"][1] > aucs["reverse"][1]


def test_curves_start_and_end_where_they_must():
    m = wrap(region_model())
    images = bright_region_images(1)
    curves = scores.deletion_insertion(m, images, attribution_with(np.random.default_rng(0).random((1, SIZE, SIZE)), [0]), steps=8)
    full = float(m.predict(images)[0, 0])
    black = float(m.predict([np.zeros_like(images[0])])[0, 0])
    assert curves.fractions.tolist() == pytest.approx(np.linspace(0, 1, 9).tolist())
    assert curves.deletion[0, 0] == pytest.approx(full, abs=1e-5) and curves.deletion[0, -1] == pytest.approx(black, abs=1e-5)
    assert curves.insertion[0, -1] == pytest.approx(full, abs=1e-5)


def edge_detector(job, params):
    """A 'method' that never looks at the model: the image's gradient magnitude."""
    gray = job.pixels.astype(np.float32).mean(axis=-1)
    edges = np.abs(np.diff(gray, axis=1, append=gray[:, -1:, :])) + np.abs(np.diff(gray, axis=2, append=gray[:, :, -1:]))
    return edges, job.top_classes()


def test_a_method_that_ignores_the_weights_is_flagged(embedded_model, sample, monkeypatch):
    monkeypatch.setitem(REGISTRY, "edges", Method(name="edges", label="Edge detector", reference="none", run=edge_detector))
    check = scores.sanity_check(embedded_model, [sample("coffee")], "edges", stages=(1, 8))
    assert check.correlations.min() > 0.99 and check.flagged


def test_gradcam_passes_the_sanity_check_and_the_original_model_is_untouched(embedded_model, sample):
    before = embedded_model.model.get_weights()[-1].copy()
    check = scores.sanity_check(embedded_model, [sample("coffee")], "gradcam", layer="block_9_expand", stages=(2, 8, 32))
    assert check.layers_randomized == [2, 8, 32]
    assert check.deepest_layer[0] == "head_conv_bn"
    assert not check.flagged and check.correlations[-1].mean() < scores.sanity.SANITY_THRESHOLD
    np.testing.assert_array_equal(embedded_model.model.get_weights()[-1], before)


def test_agreement_is_symmetric_with_a_unit_diagonal():
    rng = np.random.default_rng(0)
    base = rng.random((2, 8, 8))
    names, matrix = scores.agreement({"a": base, "same order": base * 3 + 1, "reversed": -base})
    assert names == ["a", "same order", "reversed"]
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_allclose(np.diag(matrix), 1.0)
    assert matrix[0, 1] == pytest.approx(1.0) and matrix[0, 2] == pytest.approx(-1.0)


def test_curves_are_cached_by_the_maps_content():
    m = wrap(region_model())
    images = bright_region_images(1)
    raw = np.random.default_rng(5).random((1, SIZE, SIZE))
    scores.deletion_insertion(m, images, attribution_with(raw, [0]), steps=8)
    passes = m.runtime.passes_run
    scores.deletion_insertion(m, images, attribution_with(raw.copy(), [0]), steps=8)
    assert m.runtime.passes_run == passes
    nudged = raw.copy()
    nudged[0, 0, 0] += 1e-6  # a different map, however slightly, is computed anew
    scores.deletion_insertion(m, images, attribution_with(nudged, [0]), steps=8)
    assert m.runtime.passes_run > passes
