"""Known answer for "which method to trust": on a model whose evidence is a coloured patch the test places, the
whole evaluation (listing, masks folder, every metric masks allow, summary, trust folder) finds the patch, and a
random map registered by a plugin file ranks last on every faithfulness and localisation metric.

The model is set by hand, not trained: a 1×1 convolution reads redness (R − G) and greenness (G − R) above a
threshold, global average pooling and a dense layer turn them into the logits of "red" and "green". Every image is
grey noise (R = G = B, so no evidence) with one red or green patch (the evidence, marked by its mask) and one white
patch of the same size (bright and salient, but grey to the model: a method drawn to brightness points there).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pytest
from PIL import Image

from explainers import plugins
from explainers.datasets.mapping import BY_NAME
from explainers.datasets.sources import list_images
from explainers.inputs.images import content_digest
from explainers.methods.registry import REGISTRY
from explainers.models.loading import LoadedModel
from explainers.trust import METRICS, metric_names
from explainers.trust.evaluate import TrustResult, evaluate_trust
from explainers.trust.masks import masks_from_folder
from explainers.trust.scoring import TrustRequest, trust_request
from explainers.trust.storage import open_trust, write_trust
from explainers.trust.summary import TrustSummary, summarise
from helpers import wrap

SIZE = 48  # the images are made at the model's input size: masks need no resizing, so the area share is exact
PATCH = 16  # side of the evidence patch: 256 of 2,304 pixels, a chance level of 1/9 for a map that points anywhere
CLASSES = ("green", "red")  # sorted, as the folders are listed; the model's outputs in the same order
PER_CLASS = 16
THRESHOLD = 20.0  # levels of R − G (or G − R) below which a pixel is no evidence: grey noise is exactly 0
GAIN = 0.12  # logit per level of pooled evidence: a full patch (1/9 × about 180 levels) gives p ≈ 0.99
REAL_METHODS = ("gradcam", "saliency")
METHODS = (*REAL_METHODS, "random_map")
FAITHFULNESS = ("deletion", "insertion", "road_morf", "road_lerf")
LOCALISATION = ("pointing_game", "relevance_mass")
SEED = 0

PLUGIN = '''
import numpy as np

from explainers.methods.registry import register


def no_passes(params, images, batch_size, size):
    return []  # the map is drawn, not computed: no model pass


@register("random_map", "Random map", "the known-answer test's plugin", cost=no_passes)
def random_map(job, params):
    """Uniform noise in [0, 1) per pixel, seeded by the image's content: the same image always gets the same map."""
    maps = np.stack([np.random.default_rng(seed).random(job.size) for seed in job.seeds]).astype(np.float32)
    return maps, job.targets
'''


def patch_model() -> keras.Model:
    """Evidence by construction: class "red" gains GAIN per level of pooled ReLU(R − G − THRESHOLD), "green" the same
    for G − R; nothing else in the image moves either logit."""
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.Conv2D(2, 1, activation="relu", name="colour")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(pooled)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((1, 1, 3, 2), np.float32)
    kernel[0, 0, :, 0] = (-1.0, 1.0, 0.0)  # channel 0: greenness, G − R
    kernel[0, 0, :, 1] = (1.0, -1.0, 0.0)  # channel 1: redness, R − G
    model.get_layer("colour").set_weights([kernel, np.full(2, -THRESHOLD, np.float32)])
    head = np.array([[GAIN, -GAIN], [-GAIN, GAIN]], np.float32)  # outputs in CLASSES' order: green, red
    model.get_layer("head").set_weights([head, np.zeros(2, np.float32)])
    return model


def _corner(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(0, SIZE - PATCH + 1)), int(rng.integers(0, SIZE - PATCH + 1))


def known_image(colour: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, mask): grey noise, a white patch, and the class's coloured patch where the mask is, not overlapping."""
    grey = rng.integers(40, 200, (SIZE, SIZE, 1))
    image = np.repeat(grey, 3, axis=-1).astype(np.uint8)
    top, left = _corner(rng)
    mask = np.zeros((SIZE, SIZE), bool)
    mask[top : top + PATCH, left : left + PATCH] = True
    # The white distractor at a corner drawn among those where it does not touch the evidence (some always exist:
    # SIZE is 3 × PATCH).
    free = [(row, column) for row in range(SIZE - PATCH + 1) for column in range(SIZE - PATCH + 1)
            if not mask[row : row + PATCH, column : column + PATCH].any()]
    white_top, white_left = free[int(rng.integers(len(free)))]
    image[white_top : white_top + PATCH, white_left : white_left + PATCH] = 240
    strong, weak = (1, 0) if colour == "green" else (0, 1)  # R is channel 0, G channel 1
    patch = image[top : top + PATCH, left : left + PATCH]
    patch[..., strong] = rng.integers(180, 256, (PATCH, PATCH))
    patch[..., weak] = rng.integers(0, 60, (PATCH, PATCH))
    patch[..., 2] = rng.integers(0, 60, (PATCH, PATCH))
    return image, mask


class KnownData(NamedTuple):
    images: Path  # <class>/<nn>.png
    masks: Path  # the same paths, white on the evidence patch
    pixels: dict[str, np.ndarray]  # relative path -> pixels
    object_masks: dict[str, np.ndarray]  # relative path -> (SIZE, SIZE) bool


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> KnownData:
    root = tmp_path_factory.mktemp("known")
    rng = np.random.default_rng(SEED)
    pixels, object_masks = {}, {}
    for colour in CLASSES:
        for folder in (root / "images" / colour, root / "masks" / colour):
            folder.mkdir(parents=True)
        for index in range(PER_CLASS):
            relative = f"{colour}/{index:02d}.png"
            image, mask = known_image(colour, rng)
            Image.fromarray(image).save(root / "images" / relative)
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(root / "masks" / relative)
            pixels[relative], object_masks[relative] = image, mask
    return KnownData(root / "images", root / "masks", pixels, object_masks)


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return wrap(patch_model(), name="patch").variant(class_names=list(CLASSES))


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin file, loaded; what it registered, and the plugin itself, are gone once this module's tests end."""
    path = tmp_path_factory.mktemp("plugin") / "random_map_plugin.py"
    path.write_text(PLUGIN)
    methods = set(REGISTRY)
    plugins.load_plugin(path)
    yield path
    for name in set(REGISTRY) - methods:
        REGISTRY.pop(name)
    plugins._LOADED.pop(path.resolve(), None)
    sys.modules.pop(plugins.module_name(path.resolve()), None)


class Evaluation(NamedTuple):
    request: TrustRequest
    result: TrustResult
    summary: TrustSummary


@pytest.fixture(scope="module")
def evaluation(plugin, data, model) -> Evaluation:
    listing = list_images(data.images, model)
    assert listing.mapping.mode == BY_NAME and sorted(set(listing.true)) == [0, 1]
    request = trust_request(model, list(METHODS), metric_names(has_masks=True), has_masks=True)
    result = evaluate_trust(model, listing, request, seed=SEED, masks=masks_from_folder(data.masks))
    summary = summarise(result.rows, request.method_names, request.metric_names, seed=SEED)
    return Evaluation(request, result, summary)


def _means(summary: TrustSummary, metric: str) -> dict[str, float]:
    return {method: summary.overall[method][metric].mean for method in METHODS}


def test_the_evidence_is_the_patch_and_nothing_else(data, model):
    """The known answer holds: the model is sure of every image's class; greying the patch leaves it undecided
    (0.5), greying everything else, the white patch included, leaves it as sure."""
    paths = sorted(data.pixels)
    images = np.stack([data.pixels[p] for p in paths])
    masks = np.stack([data.object_masks[p] for p in paths])[..., None]
    labels = np.array([CLASSES.index(p.split("/")[0]) for p in paths])
    grey = np.full_like(images, 120)
    sure = model.predict(list(images))[np.arange(len(paths)), labels]
    without_patch = model.predict(list(np.where(masks, grey, images)))[np.arange(len(paths)), labels]
    only_patch = model.predict(list(np.where(masks, images, grey)))[np.arange(len(paths)), labels]
    assert sure.min() > 0.97
    np.testing.assert_allclose(without_patch, 0.5, atol=1e-6)
    np.testing.assert_allclose(only_patch, sure, atol=1e-5)


def test_every_image_is_scored_by_every_method_and_metric_with_its_mask(evaluation, data):
    result, request = evaluation.result, evaluation.request
    assert result.complete and not result.skipped and not result.mask_problems
    assert len(result.images) == len(data.pixels) and result.images.has_mask.all()
    assert set(FAITHFULNESS + LOCALISATION) <= set(request.metric_names)
    counts = result.rows.groupby(["method", "metric"]).size()
    assert len(counts) == len(METHODS) * len(request.metric_names) and counts.eq(len(data.pixels)).all()


def test_the_real_methods_point_at_the_patch_and_the_random_map_at_chance(evaluation, data):
    summary, rows = evaluation.summary, evaluation.result.rows
    for method in REAL_METHODS:
        # ReLU(R − G − THRESHOLD) is off on grey and white pixels: both maps are zero off the patch, so all of their
        # positive relevance is on it and their peak too, on every image.
        assert summary.overall[method]["pointing_game"].mean == 1.0, method
        assert summary.overall[method]["relevance_mass"].mean == pytest.approx(1.0, abs=1e-6), method

    # A uniform random map's peak is one pixel drawn uniformly: it hits the mask with probability its area share,
    # and its relevance splits in proportion to area. The share, from the masks themselves:
    share = float(np.mean([mask.mean() for mask in data.object_masks.values()]))
    assert share == pytest.approx(PATCH**2 / SIZE**2)
    images = len(data.pixels)
    pointing = summary.overall["random_map"]["pointing_game"]
    # The mean of `images` Bernoulli(share) hits: its standard error is analytic. Three of them bound it (the
    # bootstrap interval's half-width is about two), and the interval itself must be that of a mean near chance.
    standard_error = np.sqrt(share * (1 - share) / images)
    assert abs(pointing.mean - share) <= 3 * standard_error, (pointing, share)
    assert pointing.low <= share + standard_error and pointing.high >= share - standard_error, (pointing, share)
    hits = rows.query("method == 'random_map' and metric == 'pointing_game'").value
    assert set(hits.unique()) <= {0.0, 1.0}

    mass = summary.overall["random_map"]["relevance_mass"]
    # Per image: Σ_mask U / Σ_all U over 2,304 uniform values, about share ± 0.004 (delta method); over 32 images
    # the mean's spread is under 0.001, so 0.01 is wide, and the bootstrap interval must hold the share.
    assert mass.mean == pytest.approx(share, abs=0.01)
    assert mass.low <= share <= mass.high, (mass, share)


def test_the_random_maps_localisation_values_are_its_seeded_noise_read_against_the_mask(evaluation, data):
    """Each value recomputed from the plugin's rule alone: the noise drawn from the image's content digest, its
    peak looked up in the mask, its share of the sum on the mask."""
    rows = evaluation.result.rows.query("method == 'random_map'").set_index(["image", "metric"]).value
    for relative, image in data.pixels.items():
        noise = np.random.default_rng(int(content_digest([image])[:8], 16)).random((SIZE, SIZE)).astype(np.float32)
        mask = data.object_masks[relative]
        peak = np.unravel_index(np.argmax(noise), noise.shape)
        assert rows[relative, "pointing_game"] == float(mask[peak]), relative
        assert rows[relative, "relevance_mass"] == pytest.approx(noise[mask].sum() / noise.sum(), rel=1e-6), relative


def test_the_random_map_ranks_last_on_every_faithfulness_and_localisation_metric(evaluation):
    summary = evaluation.summary
    for metric in FAITHFULNESS + LOCALISATION:
        ranking = summary.ranking[metric]
        assert sorted(ranking) == sorted(METHODS), (metric, ranking)
        assert ranking[-1] == "random_map", (metric, ranking, _means(summary, metric))
        # Last by a margin the intervals show: no real method's interval reaches the random map's.
        random = summary.overall["random_map"][metric]
        for method in REAL_METHODS:
            real = summary.overall[method][metric]
            apart = real.low > random.high if METRICS[metric].higher_is_better else real.high < random.low
            assert apart, (metric, method, real, random)


def test_the_ranking_follows_the_rows_and_the_intervals_hold_the_means(evaluation):
    summary, rows = evaluation.summary, evaluation.result.rows
    means = rows.groupby(["metric", "method"]).value.mean()
    for metric in evaluation.request.metric_names:
        for method in METHODS:
            estimate = summary.overall[method][metric]
            assert estimate.mean == pytest.approx(means[metric, method], abs=1e-9), (metric, method)
            # Exactly, also where every image has the same value (Saliency's sparseness here: 8/9 on every image),
            # where resampled means summed in another order would miss the mean by a rounding error.
            assert estimate.low <= estimate.mean <= estimate.high, (metric, method, estimate)
        if metric in FAITHFULNESS + LOCALISATION:  # no tie: the order by the plain means is the ranking
            by_mean = sorted(METHODS, key=lambda m: means[metric, m], reverse=METRICS[metric].higher_is_better)
            assert summary.ranking[metric][-1] == by_mean[-1] == "random_map", metric


def test_the_trust_folder_reopens_with_the_same_ranking(evaluation, plugin, tmp_path):
    out = tmp_path / "trust"
    write_trust(evaluation.result, evaluation.summary, out, per_class=None, seed=SEED)
    reopened, summary, described = open_trust(out)
    assert reopened.request == evaluation.request
    assert summary.ranking == evaluation.summary.ranking
    assert described["ranking"] == evaluation.summary.ranking
    assert summary.overall == evaluation.summary.overall
