"""The trust evaluation over a dataset: per-class samples, values equal to the engine's own computations, caching
per method and metric (adding a method computes only it; a stopped run resumes), and a trust folder that reopens."""

from __future__ import annotations

import numpy as np
import pytest

import explainers as ex
from explainers.datasets.sources import Listing, list_images
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.trust.evaluate import IMAGES_PER_STEP, TrustResult, evaluate_trust, evaluate_trust_iter, sample_listing
from explainers.trust.scoring import VALUES, score_images, trust_request
from explainers.trust.storage import open_trust, write_trust
from explainers.trust.summary import summarise


@pytest.fixture(scope="module")
def digits():
    model = ex.load_model(ex.DIGITS_MODEL)
    return model, list_images(DIGITS_TEST_FOLDER, model)


def _listing(classes: list[int]) -> Listing:
    paths = [f"{c}/{i}.png" for i, c in enumerate(classes)]
    return Listing("/data", False, paths, paths, classes, None)


def test_a_sample_takes_up_to_n_per_class_by_seed_and_mixes_the_classes():
    listing = _listing([0] * 10 + [1] * 10 + [2] * 3)
    sample = sample_listing(listing, 4, seed=1)
    assert sorted(np.bincount(sample.true).tolist()) == [3, 4, 4]
    assert sample.classes_short == [2]
    assert sample_listing(listing, 4, seed=1) == sample
    assert sample_listing(listing, 4, seed=2).paths != sample.paths
    assert len(set(sample.true[:6])) > 1  # shuffled across classes: a stopped run has scored several
    assert len(sample_listing(listing, None).paths) == 23
    with pytest.raises(ex.InputError, match="at least 1 image per class"):
        sample_listing(listing, 0)


def _gini(values: np.ndarray) -> float:
    """The Gini index by its pairwise definition, sum |x_i - x_j| / (2 n^2 mean): written unlike the engine's."""
    values = np.abs(values.ravel()).astype(np.float64)
    return float(np.abs(values[:, None] - values[None, :]).sum() / (2 * len(values) ** 2 * values.mean()))


def test_values_are_the_engines_maps_scored_and_each_class_is_sampled(digits):
    model, listing = digits
    request = trust_request(model, ["gradcam", "saliency"], ["sparseness"], has_masks=False)
    result = evaluate_trust(model, listing, request, per_class=2, seed=0)
    assert isinstance(result, TrustResult) and result.complete
    assert len(result.images) == 20 and len(result.rows) == 20 * 2
    assert sorted(np.bincount(result.images.true_class).tolist()) == [2] * 10
    first = result.images.iloc[0]
    image = ex.decode_image(DIGITS_TEST_FOLDER / first.image)
    for method in ("gradcam", "saliency"):
        raw = ex.attribute(model, [image], method, targets=[int(first.true_class)]).raw[0]
        value = result.rows.query("image == @first.image and method == @method").value.item()
        assert value == pytest.approx(_gini(raw), rel=1e-6)
    assert first.p_explained == pytest.approx(model.predict([image])[0, first.true_class], rel=1e-5)


def test_adding_a_method_computes_only_that_method(digits):
    model, listing = digits
    images = [ex.decode_image(DIGITS_TEST_FOLDER / p) for p in listing.paths[:6]]
    paths, trues = listing.paths[:6], listing.true[:6]
    two = trust_request(model, ["gradcam", "saliency"], ["sparseness"], has_masks=False)
    three = trust_request(model, ["gradcam", "saliency", "gradient_x_input"], ["sparseness"], has_masks=False)
    VALUES.clear()
    score_images(model, two, paths, trues, images, [None] * 6)
    again = score_images(model, three, paths, trues, images, [None] * 6)
    assert again.computed == 6  # the new method's six values; the other twelve came from the cache
    assert len(again.rows) == 18


def test_a_localisation_value_is_cached_with_its_mask_and_another_mask_is_another_value(digits):
    model, listing = digits
    images = [ex.decode_image(DIGITS_TEST_FOLDER / p) for p in listing.paths[:4]]
    paths, trues = listing.paths[:4], listing.true[:4]
    request = trust_request(model, ["saliency"], ["relevance_mass", "sparseness"], has_masks=True)
    top, bottom = np.zeros((28, 28), bool), np.zeros((28, 28), bool)
    top[:14], bottom[14:] = True, True
    VALUES.clear()
    on_top = score_images(model, request, paths, trues, images, [top] * 4)
    on_bottom = score_images(model, request, paths, trues, images, [bottom] * 4)
    assert on_bottom.computed == 4  # relevance mass again for the new mask; sparseness, which reads none, cached
    mass = {name: np.array([r.value for r in scored.rows if r.metric == "relevance_mass"])
            for name, scored in (("top", on_top), ("bottom", on_bottom))}
    np.testing.assert_allclose(mass["top"] + mass["bottom"], 1.0, atol=1e-6)  # the two halves share all relevance
    assert score_images(model, request, paths, trues, images, [top] * 4).computed == 0


def test_a_stopped_run_keeps_its_work_and_the_rerun_resumes(digits):
    model, listing = digits
    request = trust_request(model, ["gradcam"], ["sparseness"], has_masks=False, target="predicted")
    VALUES.clear()  # what earlier tests scored of the same digits would count as this run's
    steps = evaluate_trust_iter(model, listing, request, per_class=5, seed=7)
    first = next(steps)
    steps.close()  # the visitor pressed Stop after the first step
    assert first.done == IMAGES_PER_STEP
    result = evaluate_trust(model, listing, request, per_class=5, seed=7)
    assert result.computed == 50 - IMAGES_PER_STEP
    assert (result.images.explained_class == result.images.predicted_class).all()


def test_a_trust_folder_reopens_with_the_same_answer(digits, tmp_path):
    model, listing = digits
    request = trust_request(model, ["gradcam", "saliency"], ["sparseness"], has_masks=False)
    result = evaluate_trust(model, listing, request, per_class=3, seed=0)
    summary = summarise(result.rows, request.method_names, request.metric_names, seed=0)
    write_trust(result, summary, tmp_path / "out", per_class=3, seed=0)
    reopened, again, described = open_trust(tmp_path / "out")
    assert again.ranking == summary.ranking
    assert again.overall == summary.overall
    assert described["methods"]["gradcam"]["sparseness"]["mean"] == pytest.approx(
        summary.overall["gradcam"]["sparseness"].mean, abs=1e-6)
    assert reopened.request == request
    with pytest.raises(ex.InputError, match="is not a trust results folder"):
        open_trust(tmp_path)


def test_requests_refuse_what_cannot_run_in_one_sentence(digits):
    model, _ = digits
    with pytest.raises(ex.InputError, match="not a metric"):
        trust_request(model, ["gradcam"], ["no_such_metric"], has_masks=False)
    with pytest.raises(ex.InputError, match="not a parameter of"):
        trust_request(model, {"gradcam": (None, {"steps": 3})}, ["sparseness"], has_masks=False)
    with pytest.raises(ex.InputError, match="at least one metric"):
        trust_request(model, ["gradcam"], [], has_masks=False)
