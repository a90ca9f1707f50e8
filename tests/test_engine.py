"""The engine's contract: shapes and ranges, caching, determinism, one-pass grids, nested models, errors."""

import keras
import numpy as np
import pytest

import explainers as ex
from helpers import gap_dense_model, random_images, wrap


@pytest.fixture(autouse=True)
def empty_cache():
    ex.RESULTS.clear()


def test_every_registered_method_returns_maps_in_0_1_at_image_resolution(embedded_model, sample):
    images = [sample("cat_chelsea"), sample("coffee")]  # 451x300 and 600x400
    declined = ex.unavailable_methods(embedded_model)
    assert set(declined) == {"attention_rollout", "transformer_attribution"}  # a CNN has no attention to read
    for method in ex.method_names():
        if method in declined:
            continue
        params = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 4}, "scorecam": {"max_n": 8},
                  "rise": {"masks": 32}, "occlusion": {"patch": 64, "stride": 64}}.get(method, {})
        maps = ex.explain(embedded_model, images, method, **params)
        assert [m.shape for m in maps] == [(300, 451), (400, 600)], method
        for m in maps:
            assert m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1 and m.max() > 0.5, method


def test_same_size_images_give_one_array(embedded_model, sample):
    image = sample("coffee")
    maps = ex.explain(embedded_model, [image, image[:, ::-1]], "gradcam")
    assert isinstance(maps, np.ndarray) and maps.shape == (2, 400, 600)


def test_a_repeat_call_is_served_from_the_cache(embedded_model, sample):
    images = [sample("cat_chelsea"), sample("coffee")]
    first = ex.attribute(embedded_model, images, "gradcam")
    passes = embedded_model.runtime.passes_run
    again = ex.attribute(embedded_model, images, "gradcam")
    assert embedded_model.runtime.passes_run == passes
    assert again.cached == 2 and again.seconds == 0
    np.testing.assert_array_equal(first.raw, again.raw)


def test_naming_the_top_class_reuses_the_top1_map(embedded_model, sample):
    images = [sample("coffee")]
    top1 = ex.attribute(embedded_model, images, "gradcam")
    passes = embedded_model.runtime.passes_run
    named = ex.attribute(embedded_model, images, "gradcam", targets=int(top1.classes[0]))
    assert embedded_model.runtime.passes_run == passes and named.cached == 1


def test_adding_an_image_computes_only_the_new_one(embedded_model, sample):
    ex.attribute(embedded_model, [sample("coffee")], "saliency")
    grown = ex.attribute(embedded_model, [sample("coffee"), sample("rocket")], "saliency")
    assert grown.cached == 1


def test_cache_keys_on_params_target_layer_and_pixels(embedded_model, sample):
    image = sample("coffee")
    base = ex.attribute(embedded_model, [image], "smoothgrad", samples=3)
    assert ex.attribute(embedded_model, [image], "smoothgrad", samples=4).cached == 0
    assert ex.attribute(embedded_model, [image], "smoothgrad", samples=3, targets=1).cached == 0
    assert ex.attribute(embedded_model, [image], "gradcam", layer="block_9_expand").cached == 0
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert ex.attribute(embedded_model, [changed], "smoothgrad", samples=3).cached == 0
    assert ex.attribute(embedded_model, [image.copy()], "smoothgrad", samples=3).cached == 1  # a copy is the same content
    assert base.cached == 0


def test_smoothgrad_is_deterministic_per_seed_and_independent_of_the_batch(embedded_model, sample):
    a, b = sample("coffee"), sample("rocket")
    first = ex.attribute(embedded_model, [a, b], "smoothgrad", samples=5, seed=3).raw
    ex.RESULTS.clear()
    second = ex.attribute(embedded_model, [b, a], "smoothgrad", samples=5, seed=3).raw
    np.testing.assert_array_equal(first[0], second[1])
    np.testing.assert_array_equal(first[1], second[0])
    other_seed = ex.attribute(embedded_model, [a], "smoothgrad", samples=5, seed=4).raw
    assert not np.array_equal(first[0], other_seed[0])


def test_layer_grid_computes_all_layers_in_one_pass_and_matches_single_layer_calls(embedded_model, sample):
    images = [sample("cat_chelsea"), sample("coffee"), sample("rocket")]
    layers = ["block_2_expand", "block_5_expand", "block_9_expand", "head_conv"]
    passes = embedded_model.runtime.passes_run
    grid = ex.layer_grid(embedded_model, images, layers)
    assert embedded_model.runtime.passes_run == passes + 1
    assert [g.shape for g in grid] == [(4, 300, 451), (4, 400, 600), (4, 427, 640)]
    ex.RESULTS.clear()
    for index, layer in enumerate(layers):
        single = ex.explain(embedded_model, images, "gradcam", layer=layer)
        for g, s in zip(grid, single):
            np.testing.assert_allclose(g[index], s, atol=1e-5)


def test_layer_grid_fills_the_single_layer_cache(embedded_model, sample):
    ex.layer_grid(embedded_model, [sample("coffee")], ["block_9_expand", "head_conv"], method="layercam")
    assert ex.attribute(embedded_model, [sample("coffee")], "layercam", layer="head_conv").cached == 1


def test_nested_model_gives_the_same_maps_as_its_flat_twin():
    keras.utils.set_random_seed(2)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv_b")(x)
    base = keras.Model(inputs, x, name="base")
    gap, dense = keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")
    nested = keras.Sequential([keras.Input((16, 16, 3)), base, gap, dense])
    flat = keras.Model(base.input, dense(gap(base.output)))  # the same layers, one graph
    images = random_images(2, seed=9)
    for method in ("gradcam", "gradcam_plus_plus", "layercam", "scorecam", "guided_gradcam"):
        ours = ex.attribute(wrap(nested), images, method, layer="base/conv_b", targets=[0, 2]).raw
        twin = ex.attribute(wrap(flat), images, method, layer="conv_b", targets=[0, 2]).raw
        np.testing.assert_allclose(ours, twin, rtol=1e-4, atol=1e-6, err_msg=method)
    assert ex.attribute(wrap(nested), images, "cam").raw.shape == (2, 16, 16)


def test_scorecam_never_sends_more_than_a_batch_of_masked_inputs(embedded_model, sample, monkeypatch):
    sizes = []
    original = embedded_model.runtime.class_probabilities

    def spy(x, classes, batch_size=16):
        sizes.append(len(x))
        return original(x, classes, batch_size)

    monkeypatch.setattr(embedded_model.runtime, "class_probabilities", spy)
    ex.attribute(embedded_model, [sample("coffee"), sample("rocket")], "scorecam", max_n=20, batch_size=8)
    assert max(sizes) <= 8 and sum(sizes) == 40  # 20 channels per image, in chunks


def test_default_layer_is_the_last_spatial_non_pooling_layer(embedded_model):
    assert embedded_model.default_cam_layer == "head_conv_relu"
    assert ex.attribute(embedded_model, [np.zeros((50, 50, 3), np.uint8)], "gradcam").layer == "head_conv_relu"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "magic"}, "'magic' is not an attribution method"),
        ({"method": "smoothgrad", "steps": 3}, "'steps' is not a parameter of smoothgrad; it takes samples, noise, seed"),
        ({"method": "gradcam", "layer": "nope"}, "'nope' is not a layer with a spatial output"),
        ({"method": "gradcam", "targets": 1000}, "Target class 1000 is outside the model's 1000 classes"),
        ({"method": "gradcam", "targets": [1, 2, 3]}, "Got 3 targets for 1 images"),
        ({"method": "gradcam", "targets": "unicorn"}, "'unicorn' is not one of the model's class names"),
        ({"method": "integrated_gradients", "baseline": "white"},
         "The baseline of Integrated Gradients must be black or blurred; got 'white'"),
        ({"method": "smoothgrad", "samples": 2.5}, "The samples of SmoothGrad must be an integer from 1 to 200; got 2.5"),
        ({"method": "smoothgrad", "samples": 0}, "The samples of SmoothGrad must be an integer from 1 to 200; got 0"),
        ({"method": "smoothgrad", "noise": "loud"}, "The noise of SmoothGrad must be a number from 0 to 1; got 'loud'"),
    ],
)
def test_user_errors_are_one_sentence(embedded_model, kwargs, message):
    with pytest.raises(ex.InputError, match=message):
        ex.attribute(embedded_model, [np.zeros((30, 30, 3), np.uint8)], **kwargs)


def test_class_names_work_as_targets(embedded_model, sample):
    by_name = ex.attribute(embedded_model, [sample("coffee")], "gradcam", targets="espresso")
    assert by_name.classes.tolist() == [967]


def test_layer_grid_refuses_methods_that_need_a_pass_per_layer(embedded_model):
    with pytest.raises(ex.InputError, match="A layer grid takes a gradient CAM \\(Grad-CAM, Grad-CAM\\+\\+, Layer-CAM, HiResCAM"):
        ex.layer_grid(embedded_model, [np.zeros((30, 30, 3), np.uint8)], ["head_conv"], method="scorecam")


def test_no_images_is_a_clear_error(embedded_model):
    with pytest.raises(ex.InputError, match="No images to explain"):
        ex.explain(embedded_model, [], "gradcam")


def test_maps_from_a_gap_dense_model_are_class_specific():
    m = wrap(gap_dense_model(classes=3))
    images = random_images(1, seed=5)
    maps = [ex.attribute(m, images, "cam", targets=t).raw[0] for t in range(3)]
    assert not np.allclose(maps[0], maps[1]) and not np.allclose(maps[1], maps[2])


def test_sessions_asking_for_the_same_maps_at_once_compute_them_once(embedded_model, sample):
    import threading

    images = [sample("grace_hopper")]
    ex.RESULTS.clear()
    before = embedded_model.runtime.passes_run
    ex.attribute(embedded_model, images, "smoothgrad", samples=8)
    alone = embedded_model.runtime.passes_run - before
    ex.RESULTS.clear()
    before = embedded_model.runtime.passes_run
    sessions = [threading.Thread(target=ex.attribute, args=(embedded_model, images, "smoothgrad"), kwargs={"samples": 8})
                for _ in range(4)]
    for session in sessions:
        session.start()
    for session in sessions:
        session.join()
    assert embedded_model.runtime.passes_run - before == alone
