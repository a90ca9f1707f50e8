"""The faithfulness metrics (deletion, insertion, ROAD MoRF and LeRF): each equals a plain loop written here (one map,
one step, one image through the Keras model at a time), the imputation solves its equations, the registered cost is
the passes run, and on a model whose evidence is a known quadrant the quadrant beats a random map and its inverse."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image, ImageFilter

import explainers as ex
from explainers import scores
from explainers.trust import METRICS, CostContext, MapRequest, MetricBatch, imputation
from explainers.trust.imputation import linear_fill, noisy_linear_fill
from helpers import gap_dense_model, wrap

SIZE = 12
HALF = SIZE // 2
FAITHFULNESS = ("deletion", "insertion", "road_morf", "road_lerf")
REQUEST = MapRequest("constructed", None, ())


def quadrant_model() -> keras.Model:
    """Class 0's logit is 8 × the top-left quadrant's mean brightness (0..1), class 1's a constant 4: no training."""
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, activation="softmax")])
    quadrant = np.zeros((SIZE, SIZE, 3), np.float32)
    quadrant[:HALF, :HALF] = 1.0
    kernel = np.zeros((SIZE * SIZE * 3, 2), np.float32)
    kernel[:, 0] = quadrant.ravel() * 8.0 / (quadrant.sum() * 255.0)
    model.layers[-1].set_weights([kernel, np.array([0.0, 4.0], np.float32)])
    return model


def quadrant_images(count: int, seed: int = 0) -> np.ndarray:
    """Dark noise with a bright top-left quadrant: the evidence for class 0."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (count, SIZE, SIZE, 3), dtype=np.uint8)
    images[:, :HALF, :HALF] = rng.integers(200, 256, (count, HALF, HALF, 3), dtype=np.uint8)
    return images


def mixed_batch(model: ex.LoadedModel, batch_size: int = 4) -> MetricBatch:
    """3 images × 2 'methods' (random maps, some with tied values) = 6 maps, explaining different classes."""
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    maps = rng.normal(size=(6, SIZE, SIZE)).astype(np.float32)
    maps[1] = np.round(maps[1])  # many equal values: the tie rule decides the order
    return MetricBatch(model=model, pixels=np.repeat(images, 2, axis=0), maps=maps,
                       classes=np.array([0, 1, 2, 0, 1, 2], np.int32), requests=[REQUEST] * 6,
                       seeds=np.array([11, 11, 22, 22, 33, 33], np.int64), batch_size=batch_size)


@pytest.fixture(scope="module")
def small_cnn():
    keras_model = gap_dense_model(size=SIZE, classes=3)
    return keras_model, wrap(keras_model)


# --- plain references: one map, one step, one image through the Keras model at a time --------------------------------

def probability(keras_model: keras.Model, image: np.ndarray, target: int) -> float:
    """The model's probability of ``target`` for one image (preprocessing "none": the pixels are the input)."""
    return float(keras.ops.convert_to_numpy(keras_model(image[None].astype(np.float32), training=False))[0, target])


def order_most_positive_first(raw: np.ndarray) -> list[tuple[int, int]]:
    """Pixel coordinates by decreasing value; equal values top-left first (row by row)."""
    cells = [(r, c) for r in range(raw.shape[0]) for c in range(raw.shape[1])]
    return sorted(cells, key=lambda rc: (-float(raw[rc]), rc[0], rc[1]))


def trapezoid_area(values: list[float]) -> float:
    width = 1.0 / (len(values) - 1)
    return sum((a + b) / 2 * width for a, b in zip(values[:-1], values[1:]))


def plain_curve_area(keras_model, image, raw, target, steps, insertion: bool) -> float:
    order = order_most_positive_first(raw)
    start = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(10))) if insertion else None
    values = []
    for k in range(steps + 1):
        changed = order[: round(k / steps * len(order))]
        current = start.copy() if insertion else image.copy()
        for r, c in changed:
            current[r, c] = image[r, c] if insertion else 0
        values.append(probability(keras_model, current, target))
    return trapezoid_area(values)


WEIGHTS = {(dr, dc): (1 / 6 if dr == 0 or dc == 0 else 1 / 12) for dr in (-1, 0, 1) for dc in (-1, 0, 1)
           if (dr, dc) != (0, 0)}


def neighbours(r: int, c: int, height: int, width: int) -> list[tuple[int, int, float]]:
    return [(r + dr, c + dc, w) for (dr, dc), w in WEIGHTS.items() if 0 <= r + dr < height and 0 <= c + dc < width]


def dense_fill(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The imputation as a dense system, one equation per removed pixel written out in loops."""
    height, width = removed.shape
    unknowns = [(r, c) for r in range(height) for c in range(width) if removed[r, c]]
    index = {rc: i for i, rc in enumerate(unknowns)}
    system = np.zeros((len(unknowns), len(unknowns)))
    right = np.zeros((len(unknowns), image.shape[-1]))
    for i, (r, c) in enumerate(unknowns):
        for nr, nc, w in neighbours(r, c, height, width):
            system[i, i] += w
            if removed[nr, nc]:
                system[i, index[(nr, nc)]] -= w
            else:
                right[i] += w * image[nr, nc]
    filled = image.astype(np.float64)
    if unknowns:
        solution = np.linalg.solve(system, right)
        for i, (r, c) in enumerate(unknowns):
            filled[r, c] = solution[i]
    return filled


def plain_road(keras_model, image, raw, target, seed, steps, noise, most_relevant_first: bool) -> float:
    order = order_most_positive_first(raw)
    rng = np.random.default_rng(seed)
    values = []
    for fraction in np.linspace(0.1, 0.9, steps):
        count = round(fraction * len(order))
        gone = order[:count] if most_relevant_first else order[len(order) - count:]
        removed = np.zeros(raw.shape, bool)
        for r, c in gone:
            removed[r, c] = True
        filled = dense_fill(image, removed)
        filled[removed] += rng.normal(0.0, noise * 255, (int(removed.sum()), 3))  # row by row, channels innermost
        values.append(probability(keras_model, np.clip(filled, 0, 255), target))
    return float(np.mean(values))


# --- each metric equals its plain loop -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["deletion", "insertion"])
def test_deletion_and_insertion_equal_a_plain_loop_per_map_and_step(small_cnn, name):
    keras_model, model = small_cnn
    batch = mixed_batch(model)
    got = METRICS[name].run(batch, {"steps": 6})
    want = [plain_curve_area(keras_model, batch.pixels[m], batch.maps[m], int(batch.classes[m]), 6,
                             insertion=name == "insertion") for m in range(len(batch))]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert got.dtype == np.float64 and got.shape == (6,)


@pytest.mark.parametrize("name", ["road_morf", "road_lerf"])
def test_road_equals_a_plain_loop_with_a_dense_solve_per_map_and_fraction(small_cnn, name):
    keras_model, model = small_cnn
    batch = mixed_batch(model)
    params = {"steps": 3, "noise": 0.05}
    got = METRICS[name].run(batch, params)
    want = [plain_road(keras_model, batch.pixels[m], batch.maps[m], int(batch.classes[m]), int(batch.seeds[m]),
                       3, 0.05, most_relevant_first=name == "road_morf") for m in range(len(batch))]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert got.dtype == np.float64 and got.shape == (6,)


def test_a_maps_score_does_not_depend_on_the_batch_it_comes_with(small_cnn):
    _, model = small_cnn
    batch = mixed_batch(model)
    alone = MetricBatch(model=model, pixels=batch.pixels[3:4], maps=batch.maps[3:4], classes=batch.classes[3:4],
                        requests=[REQUEST], seeds=batch.seeds[3:4], batch_size=64)
    for name in FAITHFULNESS:
        metric = METRICS[name]
        assert metric.run(alone, metric.defaults)[0] == pytest.approx(metric.run(batch, metric.defaults)[3], abs=1e-6)


def test_the_trust_curves_are_the_compare_pages_curves(small_cnn):
    _, model = small_cnn
    batch = mixed_batch(model)
    attribution = ex.Attribution("constructed", None, {}, batch.maps, batch.classes, 0.0, 0)
    curves = scores.deletion_insertion(model, list(batch.pixels), attribution, steps=8)
    np.testing.assert_allclose(METRICS["deletion"].run(batch, {"steps": 8}), curves.deletion_auc, atol=1e-6)
    np.testing.assert_allclose(METRICS["insertion"].run(batch, {"steps": 8}), curves.insertion_auc, atol=1e-6)


@pytest.mark.parametrize("name", FAITHFULNESS)
def test_the_registered_cost_is_the_passes_run_in_full_batches(small_cnn, monkeypatch, name):
    _, model = small_cnn
    batch = mixed_batch(model, batch_size=4)
    metric = METRICS[name]
    params = dict(metric.defaults, steps=4)
    sent = []  # (inputs, batch size) of every call to the model
    original = model.runtime.class_probabilities
    monkeypatch.setattr(model.runtime, "class_probabilities",
                        lambda x, classes, batch_size: sent.append((len(x), batch_size)) or original(x, classes,
                                                                                                     batch_size))
    before = model.runtime.passes_run
    metric.run(batch, params)
    passes = model.runtime.passes_run - before
    cost = metric.cost(params, CostContext(len(batch), (SIZE, SIZE), 4, lambda images: []))
    per_map = 5 if name in ("deletion", "insertion") else 4
    assert sum(count for _, _, count in cost) == passes
    assert sum(size * count for _, size, count in cost) == sum(n for n, _ in sent) == len(batch) * per_map
    assert {size for _, size in sent} == {4}
    assert all(n % 4 == 0 for n, _ in sent[:-1])  # only the last call holds a partial batch


# --- the imputation solves its equations ------------------------------------------------------------------------------

def test_every_filled_pixel_is_the_weighted_mean_of_its_neighbours_and_kept_pixels_do_not_move(monkeypatch):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 9, 13, 3)).astype(np.float64)  # not square: rows and columns not swapped
    removed = rng.random((3, 9, 13)) < np.array([0.2, 0.6, 0.95])[:, None, None]
    removed[:, 0, 0] = removed[:, -1, -1] = removed[:, 0, 5] = True  # corners and borders among them
    removed[2, 4, 6] = False  # at least one kept pixel per image
    filled = linear_fill(images, removed)
    np.testing.assert_array_equal(filled[~removed], images[~removed])
    for n, r, c in zip(*np.nonzero(removed)):
        near = neighbours(r, c, 9, 13)
        mean = sum(w * filled[n, nr, nc] for nr, nc, w in near) / sum(w for _, _, w in near)
        np.testing.assert_allclose(filled[n, r, c], mean, atol=1e-8)
    # The images' systems are solved together; each one alone gives the same values.
    np.testing.assert_allclose(filled[1], dense_fill(images[1], removed[1]), atol=1e-8)
    monkeypatch.setattr(imputation, "BLOCK_UNKNOWNS", 1)
    np.testing.assert_allclose(linear_fill(images, removed), filled, atol=1e-8)


def test_noise_lands_on_the_filled_pixels_only_with_the_stated_spread():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (1, 40, 40, 3)).astype(np.float64)
    removed = rng.random((1, 40, 40)) < 0.5
    noisy = noisy_linear_fill(image, removed, 2.55, np.random.default_rng(9))
    difference = noisy - linear_fill(image, removed)
    np.testing.assert_array_equal(difference[~removed], 0.0)
    np.testing.assert_allclose(difference[removed], np.random.default_rng(9).normal(0, 2.55, (removed.sum(), 3)),
                               atol=1e-9)
    with pytest.raises(ValueError, match="at least one kept pixel"):
        linear_fill(image, np.ones((1, 40, 40), bool))


# --- known answer: the quadrant the model reads beats a random map and its inverse ------------------------------------

def test_the_evidence_quadrant_beats_a_random_map_and_its_inverse_on_every_faithfulness_metric():
    model = wrap(quadrant_model())
    images = quadrant_images(4)
    oracle = np.zeros((SIZE, SIZE), np.float32)
    oracle[:HALF, :HALF] = 1.0
    kinds = {"oracle": np.repeat(oracle[None], 4, 0), "random": np.random.default_rng(5).random((4, SIZE, SIZE)),
             "inverse": np.repeat(-oracle[None], 4, 0)}
    assert model.predict(list(images))[:, 0].min() > 0.9  # the model does see class 0 in every image
    names = list(kinds)
    batch = MetricBatch(model=model, pixels=np.concatenate([images] * 3), maps=np.concatenate(list(kinds.values())),
                        classes=np.zeros(12, np.int32), requests=[REQUEST] * 12,
                        seeds=np.tile(np.arange(4, dtype=np.int64), 3), batch_size=8)
    for name in FAITHFULNESS:
        metric = METRICS[name]
        values = dict(zip(names, metric.run(batch, metric.defaults).reshape(3, 4)))
        for other in ("random", "inverse"):
            assert all(metric.better(a, b) for a, b in zip(values["oracle"], values[other])), (name, other, values)


def test_each_metric_says_which_way_is_better_and_what_it_costs_by_default():
    assert [METRICS[n].higher_is_better for n in FAITHFULNESS] == [False, True, False, True]
    assert all(METRICS[n].family == "faithfulness" for n in FAITHFULNESS)
    context = CostContext(10, (SIZE, SIZE), 64, lambda images: [])
    assert [sum(s * c for _, s, c in METRICS[n].cost(METRICS[n].defaults, context)) for n in FAITHFULNESS] == [
        170, 170, 50, 50]
