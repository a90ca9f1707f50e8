"""The randomisation, robustness, complexity and localisation metrics: each equals a plain loop written here, and
each finds the known answer on a model whose evidence is the top-left quadrant."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.stats import spearmanr

import explainers as ex
from explainers.methods.registry import REGISTRY, register
from explainers.scores import sanity
from explainers.trust import CostContext, MapRequest, MetricBatch, get_metric
from explainers.trust.randomisation import randomised_maps
from helpers import two_conv_model, wrap

SIZE = 12
QUADRANT = np.zeros((SIZE, SIZE), bool)
QUADRANT[: SIZE // 2, : SIZE // 2] = True
RANDOM_MAP = "trust_test_random_map"
CONSTANT_MAP = "trust_test_constant_map"


def images(count: int, seed: int = 0) -> np.ndarray:
    """Noise pictures, kept off black so every region has some brightness."""
    return np.random.default_rng(seed).integers(20, 236, (count, SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny() -> ex.LoadedModel:
    """Three weighted layers (conv_a, conv_b, head) and a linear head, so its scores are its outputs."""
    return two_conv_model(SIZE, 8, seed=5, name="trust tiny")


class QuadrantGate(keras.layers.Layer):
    """Passes its input on the top-left quadrant and zero elsewhere: the model sees nothing else."""

    def call(self, x):
        return x * keras.ops.convert_to_tensor(QUADRANT[None, :, :, None].astype("float32"))


@pytest.fixture(scope="module")
def quadrant_model() -> ex.LoadedModel:
    """Fixed weights, no training: class 0's score grows with the top-left quadrant's brightness, class 1's falls."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    brightness = keras.layers.Conv2D(1, 1, use_bias=False, name="brightness")
    x = QuadrantGate(name="evidence")(brightness(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    head = keras.layers.Dense(2, name="head")
    outputs = head(x)
    brightness.set_weights([np.full((1, 1, 3, 1), 1 / 3, np.float32)])
    head.set_weights([np.array([[40.0, -40.0]], np.float32), np.array([-5.0, 5.0], np.float32)])
    return wrap(keras.Model(inputs, outputs), name="trust quadrant")


@pytest.fixture
def model_free_methods():
    """Two methods whose maps ignore the model: a random map drawn from the image's content, and a constant map."""

    @register(RANDOM_MAP, "Random map (test)", "this test")
    def random_map(job, params):
        maps = np.stack([np.random.default_rng(seed).random(job.size) for seed in job.seeds])
        return maps.astype(np.float32), job.top_classes()

    @register(CONSTANT_MAP, "Constant map (test)", "this test")
    def constant_map(job, params):
        return np.ones((len(job.x), *job.size), np.float32), job.top_classes()

    yield
    REGISTRY.pop(RANDOM_MAP)
    REGISTRY.pop(CONSTANT_MAP)


def make_batch(model: ex.LoadedModel, pixels: np.ndarray, methods: list[str], classes: np.ndarray,
               masks: np.ndarray | None = None) -> MetricBatch:
    """Every image under every method, image-major within each method, as the evaluation builds a batch."""
    maps, requests = [], []
    for method in methods:
        layer = model.default_cam_layer if REGISTRY[method].needs_layer else None
        made = ex.attribute(model, list(pixels), method, classes, layer)
        maps.append(made.raw)
        requests += [MapRequest(method, layer, tuple(sorted(made.params.items())))] * len(pixels)
    count = len(methods)
    seeds = np.array([int(ex.content_digest([p])[:8], 16) for p in pixels] * count, np.int64)
    return MetricBatch(model=model, pixels=np.concatenate([pixels] * count), maps=np.concatenate(maps),
                       classes=np.concatenate([classes] * count).astype(np.int32), requests=requests, seeds=seeds,
                       masks=None if masks is None else np.concatenate([masks] * count), batch_size=8)


def score(name: str, batch: MetricBatch, **params) -> np.ndarray:
    metric = get_metric(name)
    values = metric.run(batch, {**metric.defaults, **params})
    assert values.shape == (len(batch),) and values.dtype == np.float64
    return values


def tape_saliency(keras_model: keras.Model, pixels: np.ndarray, target: int) -> np.ndarray:
    """|d score / d pixel|, largest over channels, for one image: Saliency without the engine."""
    x = tf.convert_to_tensor(pixels[None].astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = keras_model(x)[0, target]
    return np.abs(tape.gradient(score, x).numpy()[0]).max(axis=-1)


# Complexity -------------------------------------------------------------------------------------------------------

def test_sparseness_is_the_gini_index_of_the_maps_magnitudes(tiny):
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(5, 4, 4)).astype(np.float32) * rng.random((5, 1, 1)).astype(np.float32)
    maps[3] = 0.0
    maps[4] = 0.0
    maps[4, 1, 2] = -3.0  # one pixel holds all: as concentrated as 16 pixels allow
    batch = MetricBatch(tiny, np.zeros((5, 4, 4, 3), np.uint8), maps, np.zeros(5, np.int32),
                        [MapRequest("saliency", None, ())] * 5, np.zeros(5, np.int64))
    expected = []
    for item in maps:
        values = np.abs(item).ravel().astype(np.float64)
        # Half the mean absolute difference over every pair, over the mean: the textbook Gini coefficient.
        pairs = sum(abs(a - b) for a in values for b in values)
        expected.append(pairs / (2 * len(values) ** 2 * values.mean()) if values.sum() > 0 else np.nan)
    np.testing.assert_allclose(score("sparseness", batch), expected, rtol=1e-10)
    assert np.isnan(expected[3]) and expected[4] == pytest.approx(15 / 16)


# Localisation -----------------------------------------------------------------------------------------------------

def localisation_cases(tiny) -> MetricBatch:
    """Integer-valued signed maps, so peaks tie, with box masks of several sizes; one constant map, one empty mask,
    one map with no positive value."""
    rng = np.random.default_rng(2)
    maps = rng.integers(-40, 41, (12, SIZE, SIZE)).astype(np.float32)
    masks = np.zeros((12, SIZE, SIZE), bool)
    for m in range(12):
        top, left = rng.integers(0, SIZE - 3, 2)
        height, width = rng.integers(1, 4, 2)
        masks[m, top : top + height, left : left + width] = True
    maps[9] = 2.0  # constant
    masks[10] = False  # empty
    maps[11] = -np.abs(maps[11])  # nothing positive
    return MetricBatch(tiny, np.zeros((12, SIZE, SIZE, 3), np.uint8), maps, np.zeros(12, np.int32),
                       [MapRequest("saliency", None, ())] * 12, np.zeros(12, np.int64), masks)


@pytest.mark.parametrize("tolerance", [0, 1, 3])
def test_pointing_game_equals_a_loop_over_the_peaks_and_the_mask_pixels(tiny, tolerance):
    batch = localisation_cases(tiny)
    expected = []
    for item, mask in zip(batch.maps, batch.masks):
        if item.max() == item.min() or not mask.any():
            expected.append(np.nan)
            continue
        object_pixels = np.argwhere(mask)
        hit = False
        for row, col in np.argwhere(item == item.max()):  # every pixel holding the peak
            nearest = min(np.hypot(row - r, col - c) for r, c in object_pixels)
            hit = hit or nearest <= tolerance
        expected.append(float(hit))
    got = score("pointing_game", batch, tolerance=tolerance)
    np.testing.assert_array_equal(got, expected)
    assert 0 < np.nanmean(got) < 1  # the cases have hits and misses
    assert any((item == item.max()).sum() > 1 for item in batch.maps[:9])  # and peaks shared by several pixels


def test_pointing_game_grows_with_the_tolerance(tiny):
    batch = localisation_cases(tiny)
    means = [np.nanmean(score("pointing_game", batch, tolerance=t)) for t in (0, 1, 3, 6, 20)]
    assert means == sorted(means) and means[0] < means[-1] == 1.0


def test_relevance_mass_equals_a_loop_over_the_pixels(tiny):
    batch = localisation_cases(tiny)
    expected = []
    for item, mask in zip(batch.maps, batch.masks):
        inside = total = 0.0
        for value, on_object in zip(item.ravel().tolist(), mask.ravel()):  # Python floats: double sums
            if value > 0:
                total += value
                inside += value if on_object else 0.0
        expected.append(inside / total if total > 0 and mask.any() else np.nan)
    np.testing.assert_allclose(score("relevance_mass", batch), expected, rtol=1e-12)
    assert np.isnan(expected[10]) and np.isnan(expected[11]) and expected[9] == pytest.approx(batch.masks[9].mean())


def test_on_a_model_whose_evidence_is_the_quadrant_gradient_maps_find_it_and_a_random_map_does_not(
        quadrant_model, model_free_methods):
    pixels = images(40, seed=3)
    classes = np.zeros(40, np.int32)
    masks = np.repeat(QUADRANT[None], 40, axis=0)
    methods = ["saliency", "gradcam", RANDOM_MAP]
    batch = make_batch(quadrant_model, pixels, methods, classes, masks)
    assert quadrant_model.default_cam_layer == "evidence"
    pointing = score("pointing_game", batch).reshape(3, 40).mean(axis=1)
    mass = score("relevance_mass", batch).reshape(3, 40).mean(axis=1)
    assert pointing[0] == pointing[1] == 1.0  # every peak on the quadrant
    np.testing.assert_allclose(mass[:2], 1.0)  # and all their relevance
    # A random map's peak lands on the quadrant about as often as the quadrant's share of the image, a quarter.
    assert 0.1 < pointing[2] < 0.45 and 0.2 < mass[2] < 0.3


# Robustness -------------------------------------------------------------------------------------------------------

def test_max_sensitivity_equals_a_loop_over_draws_with_plain_gradients(tiny):
    pixels = images(3, seed=4)
    classes = np.array([0, 1, 2], np.int32)
    batch = make_batch(tiny, pixels, ["saliency"], classes)
    samples, radius = 4, 6.0
    expected = []
    for image, target, seed in zip(pixels, classes, batch.seeds):
        original = tape_saliency(tiny.model, image, int(target))
        original = original / np.abs(original).max()
        rng = np.random.default_rng(int(seed))
        changes = []
        for _ in range(samples):  # one draw at a time, in the order the metric draws them all at once
            noisy = np.clip(np.rint(image + rng.uniform(-1.0, 1.0, image.shape) * radius), 0, 255).astype(np.uint8)
            moved = tape_saliency(tiny.model, noisy, int(target))
            changes.append(np.linalg.norm(moved / np.abs(moved).max() - original) / np.linalg.norm(original))
        expected.append(max(changes))
    got = score("max_sensitivity", batch, samples=samples, radius=radius)
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert (got > 0).all()


def test_max_sensitivity_is_zero_for_a_constant_map_and_grows_with_the_radius_for_saliency(tiny, model_free_methods):
    pixels = images(6, seed=5)
    batch = make_batch(tiny, pixels, [CONSTANT_MAP, "saliency"], np.zeros(6, np.int32))
    by_radius = [score("max_sensitivity", batch, samples=3, radius=r).reshape(2, 6) for r in (1.0, 8.0, 40.0)]
    assert all((values[0] == 0).all() for values in by_radius)
    saliency = [values[1].mean() for values in by_radius]
    assert saliency[0] < saliency[1] < saliency[2]


def test_max_sensitivity_of_several_methods_in_one_batch_is_each_methods_own_with_one_call_per_method(tiny):
    pixels = images(5, seed=6)
    classes = np.array([0, 1, 2, 0, 1], np.int32)
    together = make_batch(tiny, pixels, ["saliency", "gradient_x_input"], classes)
    alone = [make_batch(tiny, pixels, [method], classes) for method in ("saliency", "gradient_x_input")]
    before = tiny.runtime.passes_run
    got = score("max_sensitivity", together, samples=4, radius=3.0)
    # All 5 images × 4 draws of a method in one call, sent in batches of 8: 3 passes per method.
    assert tiny.runtime.passes_run - before == 2 * 3
    np.testing.assert_array_equal(got, np.concatenate([score("max_sensitivity", b, samples=4, radius=3.0)
                                                       for b in alone]))


# Randomisation ----------------------------------------------------------------------------------------------------

def test_model_randomisation_correlates_each_map_with_its_map_on_the_sanity_checks_randomised_model(tiny):
    pixels = images(4, seed=7)
    classes = np.array([0, 1, 2, 1], np.int32)
    batch = make_batch(tiny, pixels, ["saliency"], classes)
    # The default 8 layers, capped at the tiny model's 3: the weights of randomize_top_layers(model, 3).
    randomised = sanity.randomize_top_layers(tiny, 3).model
    expected = [spearmanr(item.ravel(), tape_saliency(randomised, image, int(target)).ravel()).statistic
                for item, image, target in zip(batch.maps, pixels, classes)]
    got = score("model_randomisation", batch)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(score("model_randomisation", batch, layers=3), got)  # 8 is capped at 3
    assert not np.allclose(score("model_randomisation", batch, layers=1), got)  # the head alone is another model


def test_a_map_that_ignores_the_model_keeps_its_correlation_and_saliency_loses_it(tiny, model_free_methods):
    pixels = images(8, seed=8)
    batch = make_batch(tiny, pixels, [RANDOM_MAP, "saliency", CONSTANT_MAP], np.zeros(8, np.int32))
    values = score("model_randomisation", batch).reshape(3, 8)
    np.testing.assert_allclose(values[0], 1.0)  # the same map on any model
    metric = get_metric("model_randomisation")
    assert values[1].mean() < metric.threshold and not metric.higher_is_better
    assert np.isnan(values[2]).all()  # a constant map has no ranks to correlate


def test_a_map_that_randomisation_wipes_out_scores_zero(quadrant_model):
    """Re-drawn, the quadrant model's evidence layer turns negative for class 0, and Grad-CAM's ReLU leaves zeros."""
    batch = make_batch(quadrant_model, images(4, seed=10), ["gradcam"], np.zeros(4, np.int32))
    remade = randomised_maps(batch, 8)
    assert (np.ptp(batch.maps.reshape(4, -1), axis=1) > 0).all() and (remade == 0).all()
    np.testing.assert_array_equal(score("model_randomisation", batch), 0.0)


# Costs ------------------------------------------------------------------------------------------------------------

def test_each_metric_states_the_passes_it_runs():
    context = CostContext(maps=7, size=(SIZE, SIZE), batch_size=8, method_passes=lambda n: [(True, n, 1)])
    assert get_metric("model_randomisation").cost({"layers": 8}, context) == [(True, 7, 1)]
    assert get_metric("max_sensitivity").cost({"samples": 10, "radius": 5.0}, context) == [(True, 70, 1)]
    for name in ("sparseness", "pointing_game", "relevance_mass"):
        assert get_metric(name).cost(get_metric(name).defaults, context) == []
    assert get_metric("pointing_game").needs_masks and get_metric("relevance_mass").needs_masks
