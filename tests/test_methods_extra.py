"""Occlusion, RISE, HiResCAM, XGrad-CAM and Eigen-CAM, each against a plain computation of its own definition."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageFilter

import explainers as ex
from explainers.attribution import INPUTS
from explainers.methods.perturbation import rise_masks
from helpers import (
    gap_dense_model,
    pearson,
    random_images,
    record_gradient_batches,
    square_images,
    trained_binary_model,
    transfer_model,
    wrap,
)

NEW_METHODS = ["occlusion", "rise", "hirescam", "xgradcam", "eigencam"]
CAMS = ["hirescam", "xgradcam", "eigencam"]


@pytest.fixture(autouse=True)
def empty_cache():
    ex.RESULTS.clear()
    INPUTS.clear()


def _image_seed(image: np.ndarray) -> int:
    """The per-image seed the engine derives from the pixels (``Job.seeds``)."""
    return int(ex.content_digest([image])[:8], 16)


def _std_per_map(raw: np.ndarray) -> np.ndarray:
    return raw.reshape(len(raw), -1).std(axis=1)


# ---- Occlusion ---------------------------------------------------------------------------


def _fill_pixels(image: np.ndarray, fill: str, radius: float) -> np.ndarray:
    if fill == "black":
        return np.zeros(image.shape, np.float32)
    if fill == "mean":
        return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius)), np.float32)


@pytest.mark.parametrize("fill", ["black", "mean", "blurred"])
def test_occlusion_equals_a_plain_loop_over_the_patches(fill):
    model = gap_dense_model()  # softmax head: its output is the probabilities
    images, targets = random_images(2, seed=3), [0, 3]
    result = ex.attribute(wrap(model), images, "occlusion", targets=targets, patch=6, stride=4, fill=fill,
                          blur_radius=2.0, batch_size=5)
    starts = [0, 4, 8, 10]  # every 4 px, then one patch flush with the 16 px edge
    for image, target, raw in zip(images, targets, result.raw):
        pixels, replacement = image.astype(np.float32), _fill_pixels(image, fill, 2.0)
        unoccluded = model(pixels[None]).numpy()[0, target]
        total, covered = np.zeros((16, 16)), np.zeros((16, 16))
        for top in starts:
            for left in starts:
                occluded = pixels.copy()
                occluded[top : top + 6, left : left + 6] = replacement[top : top + 6, left : left + 6]
                total[top : top + 6, left : left + 6] += unoccluded - model(occluded[None]).numpy()[0, target]
                covered[top : top + 6, left : left + 6] += 1
        np.testing.assert_allclose(raw, total / covered, rtol=1e-3, atol=2e-6)
        assert np.abs(raw).max() > 1e-4
    assert result.classes.tolist() == targets


def test_occlusion_patch_larger_than_the_image_hides_all_of_it():
    model = gap_dense_model()
    image = random_images(1, seed=4)[0]
    result = ex.attribute(wrap(model), [image], "occlusion", patch=100, fill="black")
    probabilities = model(np.stack([image, np.zeros_like(image)]).astype(np.float32)).numpy()
    top = int(probabilities[0].argmax())
    assert result.classes.tolist() == [top]  # the model's own top class when no target is named
    np.testing.assert_allclose(result.raw[0], probabilities[0, top] - probabilities[1, top], rtol=1e-4)


# ---- RISE --------------------------------------------------------------------------------


def test_rise_masks_are_shifted_crops_of_bilinearly_upsampled_binary_grids():
    count, cell, keep, seed = 40, 5, 0.3, [4, 2]
    masks = rise_masks((16, 12), count, cell, keep, seed)
    # The paper's construction, drawn in the documented order: the shifts, then the grids
    # (ceil(side / cell) + 1 cells a side), upsampled to (cells * cell) and cropped at the shift.
    rng = np.random.default_rng(seed)
    shifts = rng.integers(0, cell, (count, 2))
    grids = (rng.random((count, 5, 4)) < keep).astype(np.float32)
    canvas = tf.image.resize(grids[..., None], (25, 20), method="bilinear").numpy()[..., 0]
    expected = np.stack([c[dy : dy + 16, dx : dx + 12] for c, (dy, dx) in zip(canvas, shifts)])
    np.testing.assert_allclose(masks, expected, atol=1e-6)
    assert masks.dtype == np.float32 and masks.min() >= 0 and masks.max() <= 1
    many = rise_masks((32, 32), 2000, 0, 0.5, 1)
    assert abs(many.mean() - 0.5) < 0.01  # each pixel shows the image with probability keep


@pytest.mark.parametrize("centred", [True, False])
def test_rise_equals_a_plain_weighted_sum_over_the_same_masks(centred):
    model = gap_dense_model()
    images, targets = random_images(2, seed=5), [1, 2]
    result = ex.attribute(wrap(model), images, "rise", targets=targets, masks=24, cell=5, keep=0.4, seed=9,
                          batch_size=7, centred=centred)
    for image, target, raw in zip(images, targets, result.raw):
        masks = rise_masks((16, 16), 24, 5, 0.4, [9, _image_seed(image)])
        # The mask multiplies the pixels; this model's preprocessing is the identity.
        scores = [model((image.astype(np.float32) * mask[..., None])[None]).numpy()[0, target] for mask in masks]
        centre = np.mean(scores) if centred else 0.0
        expected = sum((score - centre) * mask for score, mask in zip(scores, masks))
        np.testing.assert_allclose(raw, expected / (24 * 0.4), rtol=1e-4, atol=1e-6)
    assert result.classes.tolist() == targets


def _top_left_quadrant_model(size: int = 48) -> keras.Model:
    """Class 0's logit is the top-left quadrant's brightness; class 1's is 0: only that quadrant is evidence."""
    inputs = keras.Input((size, size, 3))
    quadrant = keras.layers.Cropping2D(((0, size // 2), (0, size // 2)))(inputs)
    head = keras.layers.Dense(2, activation="softmax", name="head")
    outputs = head(keras.layers.GlobalAveragePooling2D()(quadrant))
    # A modest effect (p(class 0) from 0.12 to about 0.5), as a real class's is: where plain RISE's noise shows.
    head.set_weights([np.array([[0.005, 0.0]] * 3, np.float32), np.array([-2.0, 0.0], np.float32)])
    return keras.Model(inputs, outputs)


def _share_in_quadrant(raw: np.ndarray, size: int = 48) -> float:
    """The share of a map's top 10% pixels that lie in the top-left quadrant."""
    top = raw.ravel() >= np.quantile(raw, 0.9)
    return float(top.reshape(size, size)[: size // 2, : size // 2].sum() / top.sum())


def test_centred_rise_at_its_default_masks_is_as_sharp_as_plain_rise_at_many():
    """A control variate, checked where the evidence is known: the default 400 masks, centred, find the quadrant
    as well as 4,000 plain masks do, while 400 plain masks spill out of it."""
    m = wrap(_top_left_quadrant_model())
    images = random_images(4, size=48, seed=31)
    centred = ex.attribute(m, images, "rise", targets=0).raw  # the defaults: 400 masks, centred
    plain = ex.attribute(m, images, "rise", targets=0, centred=False).raw
    reference = ex.attribute(m, images, "rise", targets=0, masks=4000, centred=False, seed=1).raw
    for raw_centred, raw_plain, raw_reference in zip(centred, plain, reference):
        assert _share_in_quadrant(raw_centred) == 1.0 and _share_in_quadrant(raw_reference) >= 0.98
        assert _share_in_quadrant(raw_plain) < 0.95
        assert pearson(raw_centred, raw_reference) > pearson(raw_plain, raw_reference)


def test_rise_is_deterministic_per_seed_and_independent_of_batch_and_order():
    m = wrap(gap_dense_model())
    a, b = random_images(2, seed=6)
    first = ex.attribute(m, [a, b], "rise", masks=20, seed=3, batch_size=16).raw
    ex.RESULTS.clear()
    second = ex.attribute(m, [b, a], "rise", masks=20, seed=3, batch_size=3).raw
    # Centred maps sit near 0, where the batches' order of summation shows: compared at the maps' scale.
    np.testing.assert_allclose(first, second[::-1], rtol=1e-5, atol=1e-4 * np.abs(first).max())
    other_seed = ex.attribute(m, [a], "rise", masks=20, seed=4).raw
    assert not np.allclose(first[0], other_seed[0])


# ---- CAM variants --------------------------------------------------------------------------


def _flatten_head_model() -> keras.Model:
    """A dense layer on the flattened map: gradients at conv_b vary over space, unlike under global pooling."""
    keras.utils.set_random_seed(4)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_c")(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="logits")(keras.layers.Flatten()(x)))


def _tape(model: keras.Model, images: list, layer: str, targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Activations at ``layer`` and the gradients of each image's target logit there, from a plain tape."""
    split = keras.Model(model.input, [model.get_layer(layer).output, model.output])
    with tf.GradientTape() as tape:
        activations, logits = split(np.stack(images).astype(np.float32))
        score = tf.gather(logits, targets, axis=1, batch_dims=1)
    return activations.numpy(), tape.gradient(score, activations).numpy()


def _svd_projection(activations: np.ndarray) -> np.ndarray:
    """``(h, w)``: the activations projected on their first right singular vector, rising with the channel sum."""
    h, w, k = activations.shape
    matrix = activations.reshape(h * w, k).astype(np.float64)
    projection = matrix @ np.linalg.svd(matrix)[2][0]
    if np.corrcoef(projection, matrix.sum(axis=1))[0, 1] < 0:
        projection = -projection
    return projection.reshape(h, w)


def _reference_cam(method: str, activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
    if method == "hirescam":  # element-wise gradient times activation, summed over channels
        summed = (grads * activations).sum(axis=-1)
    elif method == "xgradcam":  # w_k = sum(A_k * dS/dA_k) / sum(A_k)
        sums = activations.sum(axis=(1, 2))
        weights = np.where(sums != 0, (activations * grads).sum(axis=(1, 2)) / np.where(sums != 0, sums, 1), 0)
        summed = np.einsum("nijk,nk->nij", activations, weights)
    else:
        summed = np.stack([_svd_projection(a) for a in activations])
    return tf.image.resize(np.maximum(summed, 0)[..., None], (16, 16)).numpy()[..., 0]


@pytest.mark.parametrize("method", CAMS)
def test_cam_variant_equals_numpy_on_a_plain_gradient_tape(method):
    model = _flatten_head_model()
    images, targets = random_images(3, seed=12), [0, 3, 1]
    activations, grads = _tape(model, images, "conv_b", targets)
    assert np.abs(np.diff(grads, axis=1)).max() > 0  # gradients that vary over space tell the weights apart
    result = ex.attribute(wrap(model), images, method, layer="conv_b", targets=targets)
    expected = _reference_cam(method, activations, grads)
    np.testing.assert_allclose(result.raw, expected, rtol=1e-4, atol=1e-5 * expected.max())
    assert (_std_per_map(result.raw) > 0).all()


def test_hirescam_and_xgradcam_equal_gradcam_under_global_average_pooling():
    # With GAP then dense, dS/dA_kij = w_kc / (h w) everywhere: both papers' special case.
    m = wrap(gap_dense_model())
    images = random_images(2, seed=13)
    gradcam = ex.attribute(m, images, "gradcam", layer="conv_b", targets=[2, 0]).raw
    for method in ("hirescam", "xgradcam"):
        np.testing.assert_allclose(ex.attribute(m, images, method, layer="conv_b", targets=[2, 0]).raw, gradcam,
                                   rtol=1e-4, atol=1e-6 * gradcam.max(), err_msg=method)


def test_eigencam_is_class_agnostic_and_rises_with_the_activations():
    m = wrap(_flatten_head_model())
    images = random_images(2, seed=14)
    maps = [ex.attribute(m, images, "eigencam", layer="conv_b", targets=t).raw for t in (0, 3)]
    np.testing.assert_array_equal(maps[0], maps[1])
    activations, _ = _tape(m.model, images, "conv_b", [0, 0])
    channel_sum = tf.image.resize(activations.sum(axis=-1, keepdims=True), (16, 16)).numpy()[..., 0]
    for cam, total in zip(maps[0], channel_sum):
        assert np.corrcoef(cam.ravel(), total.ravel())[0, 1] > 0.5


# ---- other models: nested, binary ------------------------------------------------------------


def _flat_twin(nested: keras.Model) -> keras.Model:
    """The same layers as ``transfer_model``, in one graph."""
    base, gap, dense = nested.layers
    return keras.Model(base.input, dense(gap(base.output)))


def _unit(model: keras.Model, classes: int | None = None) -> ex.LoadedModel:
    """Wrapped with pixels scaled to 0..1, as the transfer models expect (raw pixels saturate their softmax)."""
    return wrap(model, classes).variant(preprocessing="unit")


@pytest.mark.parametrize("method", NEW_METHODS)
def test_new_method_runs_with_defaults_on_a_nested_transfer_model_like_its_flat_twin(method):
    nested = transfer_model()  # Sequential([base, GlobalAveragePooling2D, Dense]), 32 px, inputs in 0..1
    images = random_images(2, size=32, seed=8)
    result = ex.attribute(_unit(nested), images, method, targets=[0, 2])
    assert result.raw.shape == (2, 32, 32) and np.isfinite(result.raw).all()
    assert (_std_per_map(result.raw) > 0).all() and result.classes.tolist() == [0, 2]
    assert result.layer == ("base/conv_b" if method in CAMS else None)
    twin = ex.attribute(_unit(_flat_twin(nested)), images, method, targets=[0, 2], layer="conv_b" if method in CAMS else None)
    np.testing.assert_allclose(result.raw, twin.raw, rtol=1e-4, atol=1e-6 * np.abs(twin.raw).max())


@pytest.fixture(scope="module")
def binary() -> ex.LoadedModel:
    """One sigmoid unit, trained to tell a bright square on the left (class 0) from one on the right (class 1)."""
    return _unit(trained_binary_model(), classes=1)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_binary_head_explains_class_zero_and_class_one(binary, method):
    images, _ = square_images(3, seed=11)
    params = {"masks": 100} if method == "rise" else {}
    zero, one = (ex.attribute(binary, images, method, targets=t, **params) for t in (0, 1))
    assert zero.classes.tolist() == [0, 0, 0] and one.classes.tolist() == [1, 1, 1]
    for result in (zero, one):
        assert result.raw.shape == (3, 32, 32) and np.isfinite(result.raw).all()
        assert (_std_per_map(result.raw) > 0).all()
    if method == "occlusion":  # p(0) = 1 - p(1): a patch's drop for one class is its rise for the other
        np.testing.assert_allclose(zero.raw, -one.raw, atol=1e-6)
    elif method == "rise":  # p(0) + p(1) = 1: centred, what raises one class lowers the other as much
        np.testing.assert_allclose(zero.raw, -one.raw, atol=1e-5)
        plain = [ex.attribute(binary, images, method, targets=t, centred=False, **params).raw for t in (0, 1)]
        for image, a, b in zip(images, *plain):  # the paper's sums add up to the masks' own mean
            masks = rise_masks((32, 32), 100, 0, 0.5, [0, _image_seed(image)])
            np.testing.assert_allclose(a + b, masks.sum(axis=0) / (100 * 0.5), rtol=1e-5)
    elif method == "eigencam":  # class-agnostic by design
        np.testing.assert_array_equal(zero.raw, one.raw)
    else:  # class 0 is scored by the negated logit: evidence for and against differ
        assert not np.allclose(zero.raw, one.raw)


def test_occlusion_finds_the_square_that_makes_the_binary_model_say_class_zero(binary):
    # The model learned "a square on the left means class 0"; a right square is mere absence of that
    # (occluding it barely moves p), so only class-0 images have a patch to find.
    images, labels = square_images(8, seed=21)
    images = [image for image, label in zip(images, labels) if label == 0]
    result = ex.attribute(binary, images, "occlusion", targets=0)
    for raw, image in zip(result.raw, images):
        square = (image == 230).all(axis=-1)
        assert raw[square].mean() > 5 * abs(raw[~square].mean())


# ---- parameters and cost -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"method": "rise", "keep": 1.5}, r"^The keep of RISE must be a number from 0\.05 to 0\.95; got 1\.5\.$"),
        ({"method": "occlusion", "fill": "white"},
         r"^The fill of Occlusion must be black or mean or blurred; got 'white'\.$"),
    ],
)
def test_a_bad_parameter_is_one_sentence(params, message):
    with pytest.raises(ex.InputError, match=message):
        ex.attribute(wrap(gap_dense_model()), random_images(1), **params)


@pytest.mark.parametrize(
    ("method", "params", "images", "batch_size"),
    [
        ("occlusion", {"patch": 6, "stride": 4}, 3, 5),  # 16 copies an image: 3 full batches and 1 of 1
        ("occlusion", {"patch": 6, "stride": 4}, 7, 5),  # the unoccluded pass itself takes two batches
        ("occlusion", {}, 2, 16),  # defaults at 16 px: a 3 px patch every pixel, 196 copies
        ("rise", {"masks": 12}, 3, 5),
        ("rise", {"masks": 10}, 7, 5),
        *((method, {}, 3, 5) for method in CAMS),
    ],
)
def test_cost_counts_exactly_the_passes_run(method, params, images, batch_size, monkeypatch):
    m = wrap(gap_dense_model())
    runtime = m.runtime
    sent = record_gradient_batches(runtime, monkeypatch)
    before = runtime.passes_run
    result = ex.attribute(m, random_images(images, seed=15), method, batch_size=batch_size, **params)
    spec = ex.REGISTRY[method]
    groups = spec.cost(result.params, images, batch_size, m.input_size)  # occlusion's copies depend on the size
    assert runtime.passes_run - before == sum(count for _, _, count in groups)
    assert sorted(sent) == sorted(
        (backward, per_pass) for backward, per_pass, count in groups for _ in range(count))


def test_default_costs_at_224_px():
    occlusion, rise = ex.REGISTRY["occlusion"], ex.REGISTRY["rise"]
    # A 32 px patch every 16 px: 13 x 13 copies an image, after one pass over the image itself.
    assert occlusion.cost(occlusion.defaults, 1, 16, (224, 224)) == [(False, 1, 1), (False, 16, 10), (False, 9, 1)]
    assert rise.cost(rise.defaults, 2, 16, (224, 224)) == [(False, 2, 1), (False, 16, 50)]
