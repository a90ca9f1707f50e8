"""The sanity check costs what it says: few stages, one randomised copy per model traced once, cached stages free."""



import numpy as np
import pytest

import explainers as ex
from explainers.runtime.lru import LruCache
from explainers.scores import sanity

IMAGE = "coffee"


@pytest.fixture
def fresh(monkeypatch):
    """No randomised copy and no cached map yet: what a server sees on its first check."""
    monkeypatch.setattr(sanity, "COPIES", LruCache(sanity.MAX_COPIES))
    ex.RESULTS.clear()


def test_several_methods_share_one_copy_traced_once_and_a_repeat_computes_nothing(fresh, embedded_model, sample):
    images = [sample(IMAGE)]
    methods = {"saliency": (None, {}), "gradcam": (None, {})}
    originals = {name: ex.attribute(embedded_model, images, name) for name in methods}
    before = sanity.estimate_seconds(embedded_model, images, methods, originals)
    assert before >= 2 * sanity.TRACE_ALLOWANCE_SECONDS  # neither method has run on a copy yet

    checks = sanity.sanity_checks(embedded_model, images, methods)
    copy = sanity.COPIES.get(embedded_model.network_fingerprint)
    stages = len(sanity.DEFAULT_STAGES)
    assert stages <= 3 and all(c.layers_randomized == list(sanity.DEFAULT_STAGES) for c in checks.values())
    assert copy.runtime.passes_run == stages * 2  # one pass per stage and method: both images of a stage in it
    assert all(c.seconds > 0 for c in checks.values())
    traced = {key: set(probe._passes) for key, probe in copy.runtime._compiled.items()}

    other_class = int(originals["saliency"].classes[0]) + 1
    sanity.sanity_checks(embedded_model, images, methods, targets=[other_class])
    assert sanity.COPIES.get(embedded_model.network_fingerprint) is copy
    assert {key: set(probe._passes) for key, probe in copy.runtime._compiled.items()} == traced  # nothing retraced
    assert copy.runtime.passes_run == 2 * stages * 2

    assert sanity.estimate_seconds(embedded_model, images, methods, originals) == 0  # every stage's maps are cached
    again = sanity.sanity_checks(embedded_model, images, methods)
    assert copy.runtime.passes_run == 2 * stages * 2
    np.testing.assert_array_equal(again["gradcam"].correlations, checks["gradcam"].correlations)


def test_a_stage_is_the_same_model_whichever_stages_came_before(fresh, embedded_model, sample):
    images = [sample(IMAGE)]
    direct = sanity.sanity_check(embedded_model, images, "saliency", stages=(8,))
    copy = sanity.COPIES.get(embedded_model.network_fingerprint)
    ex.RESULTS.clear()  # compute the stage again, through another cascade
    cascade = sanity.sanity_check(embedded_model, images, "saliency", stages=(1, 8))
    np.testing.assert_allclose(cascade.correlations[-1], direct.correlations[0], atol=1e-6)
    reference = sanity.randomize_top_layers(embedded_model, 8).model.get_weights()
    for ours, theirs in zip(copy.clone.get_weights(), reference):
        np.testing.assert_array_equal(ours, theirs)


def test_the_estimate_prices_each_missing_map_with_the_methods_registered_passes(fresh, embedded_model, sample):
    images = [sample(IMAGE), sample("cat_chelsea")]
    originals = {"smoothgrad": ex.attribute(embedded_model, images, "smoothgrad", samples=8)}
    backward, forward = embedded_model.runtime.pass_seconds()
    assert backward > 0 and forward > 0
    few = sanity.estimate_seconds(embedded_model, images, {"smoothgrad": (None, {"samples": 8})}, originals)
    originals["smoothgrad"] = ex.attribute(embedded_model, images, "smoothgrad", samples=16)
    many = sanity.estimate_seconds(embedded_model, images, {"smoothgrad": (None, {"samples": 16})}, originals)
    stages = len(sanity.DEFAULT_STAGES)
    # Twice the samples: 8 more backward images per map, for each of the two images at each stage.
    assert many - few == pytest.approx(stages * 2 * 8 * backward, rel=1e-6)


def test_a_model_with_few_weighted_layers_runs_and_describes_only_the_stages_it_has(fresh):
    from helpers import random_images, transfer_model, wrap
    from ui import charts

    model = wrap(transfer_model(size=32))  # three weighted layers: conv_a, conv_b and the head
    assert sanity.stage_counts(model) == [1, 3]  # (1, 8, 32) asked: 8 and 32 are both every layer
    text = sanity.describe_stages(model, methods=2, images=3)
    assert "top 1 and 3 of 3 weighted layers" in text and "(2 stages × 2 methods × 3 images = 12 maps)" in text
    assert not {"8", "32"} & set(text.replace("(", " ").replace(",", " ").split())  # no stage it does not run

    checks = sanity.sanity_checks(model, random_images(3, 32), {"saliency": (None, {}), "gradcam": (None, {})})
    for check in checks.values():
        assert check.layers_randomized == [1, 3] and check.correlations.shape == (2, 3)
        assert check.stage_labels == ["top 1", "top 3 (all)"]
    x = charts.sanity_chart(checks).to_dict()["layer"][0]["encoding"]["x"]
    assert x["type"] == "ordinal" and x["sort"] == ["top 1", "top 3 (all)"]  # one category per stage that ran
