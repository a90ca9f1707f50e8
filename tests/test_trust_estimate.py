"""The trust evaluation's floor and estimate: the passes ``request_passes`` counts are the passes an evaluation
runs, batch by batch, counted by spying on the runtime (every runtime: the randomised copy's too), so the floor
the benchmark and the estimate are made of cannot drift from what the engine does."""

from collections import Counter

import numpy as np
import pytest
from PIL import Image

import explainers as ex
from explainers.datasets.sources import list_images
from explainers.methods.registry import in_batches
from explainers.runtime.passes import PassCost, Runtime
from explainers.trust import faithfulness
from explainers.trust.evaluate import IMAGES_PER_STEP, evaluate_trust, request_passes, trust_seconds
from explainers.trust.masks import masks_from_strokes
from explainers.trust.registry import metric_names
from explainers.trust.scoring import VALUES, trust_request
from helpers import two_conv_model

SIZE = 12
CHANNELS = 8  # conv_b's: Score-CAM's max_n set to it, as a cost cannot see a layer's width
IMAGES = IMAGES_PER_STEP + 3  # two steps: a full one and a short one
SENSITIVITY_SAMPLES = 2
PARAMS = {"saliency": {}, "integrated_gradients": {"steps": 3}, "gradcam": {}, "scorecam": {"max_n": CHANNELS},
          "smoothgrad": {"samples": 3}}


@pytest.fixture(scope="module")
def tiny() -> ex.LoadedModel:
    return two_conv_model(SIZE, CHANNELS, seed=7, name="trust estimate tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny):
    """IMAGES noise pictures in three class folders (bright enough for stroke masks), listed for the model."""
    root = tmp_path_factory.mktemp("trust_estimate")
    rng = np.random.default_rng(3)
    for i in range(IMAGES):
        (root / "abc"[i % 3]).mkdir(exist_ok=True)
        Image.fromarray(rng.integers(20, 236, (SIZE, SIZE, 3), dtype=np.uint8)).save(root / "abc"[i % 3] / f"{i}.png")
    return list_images(root, tiny, "by position")


def _request(model, methods: list[str]):
    metrics = {name: {} for name in metric_names(has_masks=True)}
    metrics["max_sensitivity"] = {"samples": SENSITIVITY_SAMPLES}
    return trust_request(model, {name: (None, PARAMS[name]) for name in methods}, metrics, has_masks=True)


def _passes_run(model, listing, request) -> Counter:
    """(backward, images) -> batches sent through any runtime during a whole evaluation with nothing cached."""
    sent: Counter = Counter()
    original = Runtime.gradients

    def spy(runtime, x, targets, layers=(), *, backward=True, batch_size=16, **kwargs):
        assert kwargs.get("baselines") is None  # no default method pairs images with baselines
        for start in range(0, len(x), batch_size):
            sent[(backward, min(batch_size, len(x) - start))] += 1
        return original(runtime, x, targets, layers, backward=backward, batch_size=batch_size, **kwargs)

    VALUES.clear()
    ex.RESULTS.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Runtime, "gradients", spy)
        result = evaluate_trust(model, listing, request, masks=masks_from_strokes())
    assert len(result.images) == IMAGES and result.computed == len(result.rows) == IMAGES * len(request.methods) * 9
    return sent


def _registered(model, request) -> Counter:
    counts: Counter = Counter()
    for part in request_passes(model, request, IMAGES):
        for backward, size, count in part.passes:
            counts[(backward, size)] += count
    return counts


def test_the_registered_passes_are_the_passes_an_evaluation_runs(tiny, folder):
    request = _request(tiny, ["saliency", "integrated_gradients", "gradcam", "scorecam"])
    run = _passes_run(tiny, folder, request)
    assert sum(run.values()) > 100 and {b for b, _ in run} == {True, False}
    assert _registered(tiny, request) == run


def test_smoothgrad_is_counted_with_the_pass_that_finds_top_classes_which_named_classes_skip(tiny, folder):
    """SmoothGrad's cost counts a forward pass over its images to resolve the top class; the evaluation names every
    class, so that pass is the floor's only surplus: over its maps, their remaking for the randomisation check and
    for each noisy copy, in each step."""
    request = _request(tiny, ["smoothgrad"])
    run = _passes_run(tiny, folder, request)
    surplus = Counter()
    for step in (IMAGES_PER_STEP, IMAGES - IMAGES_PER_STEP):
        for images in (step, step, step * SENSITIVITY_SAMPLES):
            surplus.update({(b, n): c for b, n, c in in_batches(False, images, 64)})
    assert _registered(tiny, request) == run + surplus


def test_a_pass_is_priced_at_its_size_between_the_sizes_timed():
    cost = PassCost(sizes=(1, 8, 64), backward=(0.002, 0.003, 0.010), forward=(0.001, 0.0015, 0.0043))
    assert cost.seconds(True, 1) == pytest.approx(0.002)
    assert cost.seconds(True, 4) == pytest.approx(0.002 + 3 / 7 * 0.001)
    assert cost.seconds(False, 36) == pytest.approx(0.0015 + 28 / 56 * 0.0028)
    assert cost.seconds(True, 128) == pytest.approx(0.010 + 64 * 0.007 / 56)  # the last step's cost per image
    assert cost.seconds(False, 0) == 0


def test_the_estimate_is_its_parts_priced_and_cached_images_cost_nothing(tiny, monkeypatch):
    request = _request(tiny, ["saliency", "gradcam"])
    monkeypatch.setattr(Runtime, "pass_cost", lambda runtime: PassCost((1, 64), (0.001, 0.0075), (0.0005, 0.0037)))
    monkeypatch.setattr(faithfulness, "ROAD_MAP_SECONDS", {(SIZE, SIZE): 0.002})
    parts = request_passes(tiny, request, IMAGES)
    # Each pass: a fixed part (the cost at 1 image) and the rest per image, as the two sizes timed put it.
    by_hand = sum(count * ((0.001 + (size - 1) * 0.0065 / 63) if backward else (0.0005 + (size - 1) * 0.0032 / 63))
                  for part in parts for backward, size, count in part.passes)
    road = 2 * IMAGES * 2 * 0.002  # two ROAD metrics, each imputing every map (2 methods) at 5 fractions
    assert sum(part.work_seconds for part in parts) == pytest.approx(road)
    assert trust_seconds(tiny, request, IMAGES) == pytest.approx(by_hand + road)
    assert trust_seconds(tiny, request, IMAGES, scored=IMAGES_PER_STEP) == pytest.approx(
        trust_seconds(tiny, request, IMAGES - IMAGES_PER_STEP))
    assert trust_seconds(tiny, request, IMAGES, scored=IMAGES) == 0
