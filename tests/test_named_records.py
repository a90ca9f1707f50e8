"""Records instead of positional tuples: a field given in the wrong order fails at once, and the one
gradient-CAM pass (``cams.gradient_cams``) gives what a plain NumPy Grad-CAM gives."""

import copy
import pickle

import numpy as np
import pytest

import explainers as ex
from explainers.attribution import CachedMap, ModelInput
from explainers.datasets import scoring as R
from explainers.datasets import storage
from explainers.methods.cams import gradcam_weights, gradient_cams, layercam_weights
from explainers.methods.registry import REGISTRY, Method, PassGroup, in_batches
from explainers.runtime.targets import TOP1
from explainers.scores.faithfulness import curve_passes
from explainers.trust.registry import METRICS, CostContext
from helpers import gap_dense_model, random_images, wrap


def test_a_pass_group_is_built_by_keyword_and_reads_as_a_tuple():
    group = PassGroup(backward=True, images_per_pass=16, passes=3)
    backward, images_per_pass, passes = group
    assert (backward, images_per_pass, passes) == (True, 16, 3) == group
    assert copy.deepcopy(group) == group and pickle.loads(pickle.dumps(group)) == group
    assert type(pickle.loads(pickle.dumps(group))) is PassGroup


@pytest.mark.parametrize("build", [
    lambda: PassGroup(True, 16, 3),  # by position: the order is what went wrong before
    lambda: PassGroup(backward=16, images_per_pass=True, passes=3),  # a count where the kind of pass goes
    lambda: PassGroup(backward=True, images_per_pass=False, passes=3),
    lambda: PassGroup(backward=True, images_per_pass=2.5, passes=3),
])
def test_a_pass_group_built_wrongly_is_refused(build):
    with pytest.raises(TypeError):
        build()


def test_a_pass_group_of_negative_passes_is_refused():
    with pytest.raises(ValueError, match="passes"):
        PassGroup(backward=False, images_per_pass=4, passes=-1)


def test_every_cost_states_pass_groups_not_bare_tuples():
    for name, method in REGISTRY.items():
        groups = method.cost(method.defaults, 5, 4, (16, 16))
        assert groups and all(type(g) is PassGroup for g in groups), name
    context = CostContext(maps=6, size=(16, 16), batch_size=4, method_passes=lambda n: in_batches(True, n, 4))
    for name, metric in METRICS.items():
        assert all(type(g) is PassGroup for g in metric.cost(metric.defaults, context)), name
    assert all(type(g) is PassGroup for g in curve_passes(3, 4))


def test_in_batches_counts_full_and_partial_batches():
    # 10 inputs in batches of 4, twice: two full batches and one of 2 each time.
    assert in_batches(False, 10, 4, repeat=2) == [(False, 4, 4), (False, 2, 2)]
    assert in_batches(True, 8, 4) == [(True, 4, 2)]
    assert in_batches(True, 0, 4) == []


def test_a_method_cannot_be_described_by_position():
    def run(job, params):
        raise AssertionError("not run")

    with pytest.raises(TypeError):
        Method("edges", "Edge detector", "none", run)
    method = Method(name="edges", label="Edge detector", reference="none", run=run)
    assert (method.label, method.needs_layer, method.params) == ("Edge detector", False, ())


@pytest.mark.parametrize("record, fields", [
    (CachedMap, (np.zeros((2, 2), np.float32), 1, 0.5, None)),
    (ModelInput, (np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2, 3), np.float32))),
    (R.ScoredRow, ([1, 0], [0.75, 0.25], 0.75, 0, 0.25, b"")),
])
def test_cached_records_are_built_by_keyword_and_not_read_by_position(record, fields):
    with pytest.raises(TypeError):
        record(*fields)
    built = record(**dict(zip(record.__dataclass_fields__, fields)))
    with pytest.raises(TypeError):
        built[0]  # the positional reads of the old tuples fail instead of reading another field


def test_result_columns_follow_the_scored_row():
    assert R.RESULT_COLUMNS == ("top_classes", "top_probabilities", "p_true", "least_class", "least_probability", "cam")
    assert set(R.RESULT_COLUMNS) < set(storage.SCHEMA.names)


@pytest.fixture(scope="module")
def tiny() -> ex.LoadedModel:
    return wrap(gap_dense_model())


def _by_hand(acts: np.ndarray, grads: np.ndarray) -> np.ndarray:
    """Grad-CAM in plain NumPy, one image and one channel at a time: relu(sum_k mean(dS/dA_k) A_k)."""
    n, h, w, k = acts.shape
    cams = np.zeros((n, h, w), np.float64)
    for i in range(n):
        for channel in range(k):
            cams[i] += grads[i, :, :, channel].mean() * acts[i, :, :, channel]
    return np.maximum(cams, 0.0)


def test_the_gradient_cam_pass_matches_numpy_at_every_layer_from_one_pass(tiny):
    x = tiny.to_input(tiny.resize(random_images(3, seed=11)))
    targets = np.array([0, 2, TOP1], np.int32)
    before = tiny.runtime.passes_run
    cams = gradient_cams(tiny.runtime, x, targets, ("conv_a", "conv_b"), gradcam_weights, batch_size=8)
    assert tiny.runtime.passes_run == before + 1  # both layers from one pass
    reference = tiny.runtime.gradients(x, targets, ("conv_a", "conv_b"), batch_size=8)
    np.testing.assert_array_equal(cams.classes, reference.classes)
    np.testing.assert_allclose(cams.logits, reference.logits, rtol=1e-6)
    assert cams.classes[:2].tolist() == [0, 2]
    for index, shape in enumerate([(16, 16), (8, 8)]):  # each layer at its own resolution when no size is asked
        assert cams.maps[index].shape == (3, *shape) and cams.maps[index].dtype == np.float32
        by_hand = _by_hand(reference.activations[index], reference.layer_gradients[index])
        np.testing.assert_allclose(cams.maps[index], by_hand, rtol=1e-4, atol=1e-6 * by_hand.max())


def test_peak_normalised_cams_are_the_maps_over_their_peaks(tiny):
    x = tiny.to_input(tiny.resize(random_images(3, seed=12)))
    targets = np.full(3, TOP1, np.int32)
    plain = gradient_cams(tiny.runtime, x, targets, ("conv_b",), gradcam_weights, batch_size=8).maps[0]
    scaled = gradient_cams(tiny.runtime, x, targets, ("conv_b",), gradcam_weights, batch_size=8,
                           peak_normalised=True).maps[0]
    for raw, peaked in zip(plain, scaled):
        expected = raw / raw.max() if raw.max() > 0 else np.zeros_like(raw)
        np.testing.assert_allclose(peaked, expected, rtol=1e-6)
    # The dataset rows' Grad-CAM is this pass, at the layer's resolution.
    np.testing.assert_array_equal(R._scores(tiny, [np.asarray(i) for i in random_images(3, seed=12)], "conv_b")[1],
                                  scaled)


def test_a_method_a_grid_cell_and_the_pass_agree(tiny):
    images = random_images(2, seed=13)
    ex.RESULTS.clear()
    single = ex.attribute(tiny, images, "layercam", targets=[1, 3], layer="conv_a").raw
    x = tiny.to_input(tiny.resize(images))
    cams = gradient_cams(tiny.runtime, x, np.array([1, 3], np.int32), ("conv_a", "conv_b"), layercam_weights,
                         batch_size=8, size=(16, 16))
    np.testing.assert_array_equal(single, cams.maps[0])
    ex.RESULTS.clear()
    ex.layer_grid(tiny, images, ["conv_a", "conv_b"], [1, 3], method="layercam")
    # The grid cached its cells under the single-layer key: asking for the method now computes nothing.
    again = ex.attribute(tiny, images, "layercam", targets=[1, 3], layer="conv_b")
    assert again.cached == 2
    np.testing.assert_array_equal(again.raw, cams.maps[1])
