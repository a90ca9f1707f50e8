"""Each method against a case whose answer is known in closed form."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import explainers as ex
from helpers import gap_dense_model, random_images, wrap


def test_saliency_of_a_linear_model_is_the_absolute_weights():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    kernel = model.layers[-1].get_weights()[0]  # (108, 3)
    result = ex.attribute(wrap(model), random_images(2, size=6), "saliency", targets=[0, 2])
    for map_, target in zip(result.raw, (0, 2)):
        expected = np.abs(kernel[:, target]).reshape(6, 6, 3).max(axis=-1)
        np.testing.assert_allclose(map_, expected, rtol=1e-5)


def test_gradient_x_input_of_a_linear_model_is_weights_times_input():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    kernel = model.layers[-1].get_weights()[0]
    image = random_images(1, size=6)[0]
    result = ex.attribute(wrap(model), [image], "gradient_x_input", targets=1)
    expected = (kernel[:, 1].reshape(6, 6, 3) * image).sum(axis=-1)
    np.testing.assert_allclose(result.raw[0], expected, rtol=1e-4, atol=1e-3)


def test_gradcam_equals_cam_up_to_scale_on_a_gap_dense_model():
    m = wrap(gap_dense_model())
    images = random_images(3)
    gradcam = ex.attribute(m, images, "gradcam", layer="conv_b", targets=[0, 1, 3])
    cam = ex.attribute(m, images, "cam", targets=[0, 1, 3])
    for a, b in zip(gradcam.raw, cam.raw):
        ratio = b[a > 1e-6] / a[a > 1e-6]
        np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-3)  # one positive scale per map


def test_cam_refuses_a_model_without_gap_and_dense():
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ex.InputError, match="CAM needs a model ending in global average pooling"):
        ex.attribute(wrap(model), random_images(1, size=6), "cam")


def test_guided_backprop_matches_the_rule_on_a_one_hidden_layer_relu_net():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(20, activation="relu"), keras.layers.Dense(2),
    ])
    (w1, b1), (w2, _) = model.layers[1].get_weights(), model.layers[2].get_weights()
    image = random_images(1, size=4, seed=5)[0]
    x = image.astype(np.float32).reshape(-1)
    pre = x @ w1 + b1
    upstream = w2[:, 1]
    # Guided Backprop: pass a gradient through a ReLU only where both it and the input are positive.
    gated = upstream * (upstream > 0) * (pre > 0)
    expected = np.abs((w1 @ gated).reshape(4, 4, 3)).max(axis=-1)
    result = ex.attribute(wrap(model), [image], "guided_backprop", targets=1)
    np.testing.assert_allclose(result.raw[0], expected, rtol=1e-4, atol=1e-6)
    plain = ex.attribute(wrap(model), [image], "saliency", targets=1)
    assert not np.allclose(plain.raw[0], expected)  # the gate made a difference here


@pytest.mark.parametrize("baseline", ["black", "blurred"])
def test_integrated_gradients_is_complete_on_a_nonlinear_model(baseline):
    m = wrap(gap_dense_model(activation="linear"))
    image = random_images(1, seed=7)[0]
    result = ex.attribute(m, [image], "integrated_gradients", targets=2, steps=64, baseline=baseline)
    job_pixels = m.resize([image])
    from explainers.methods.gradients import baseline_input
    from explainers.methods.registry import Job

    job = Job(m.runtime, job_pixels.astype(np.float32), job_pixels, m.to_input, np.array([2], np.int32), None, [0], 16)
    base = baseline_input(job, baseline, 20.0)
    logits = m.model.predict(np.concatenate([job.x, base]), verbose=0)[:, 2]
    difference = logits[0] - logits[1]
    assert abs(result.raw.sum() - difference) <= 0.01 * abs(difference)


def test_integrated_gradients_is_nearly_complete_on_the_embedded_model(embedded_model, sample):
    # ReLU6 kinks make this path integrand rough: measured errors are 5% at 64 steps, 2.6% at 128.
    result = ex.attribute(embedded_model, [sample("coffee")], "integrated_gradients", targets=967, steps=128)
    x = embedded_model.preprocess([sample("coffee")])
    black = ex.models.preprocessing.preprocess(np.zeros((1, 224, 224, 3), np.uint8), "efficientnet_lite")
    probe = ex.runtime.probe.build_probe(embedded_model.model)
    logits = probe.model(np.concatenate([x, black])).numpy()[:, 967]
    difference = logits[0] - logits[1]
    assert abs(result.raw.sum() - difference) <= 0.05 * abs(difference)


def test_scorecam_on_a_sigmoid_unit_weights_channels_by_the_class_probability():
    m = wrap(gap_dense_model(activation="sigmoid", classes=1), classes=1)
    image = random_images(1, seed=11)[0]
    acts_model = keras.Model(m.model.inputs, [m.model.get_layer("conv_b").output, m.model.get_layer("head").input])
    acts, pooled = (t.numpy() for t in acts_model(image[None].astype(np.float32)))
    kernel, bias = m.model.get_layer("head").get_weights()
    for target, sign in ((1, 1.0), (0, -1.0)):
        # Independent Score-CAM: each channel, upsampled and scaled to [0, 1], masks the input;
        # its weight is the probability of the target class (sigmoid of +/- the logit).
        masks = tf.image.resize(acts[0][None].transpose(3, 1, 2, 0), (16, 16)).numpy()[..., 0]
        low, high = masks.min(axis=(1, 2), keepdims=True), masks.max(axis=(1, 2), keepdims=True)
        masks = np.where(high > low, (masks - low) / np.where(high > low, high - low, 1), 0)
        masked_pooled = acts_model(image[None].astype(np.float32) * masks[..., None])[1].numpy()
        weights = 1 / (1 + np.exp(-sign * (masked_pooled @ kernel[:, 0] + bias[0])))
        expected = tf.image.resize(np.maximum((acts[0] * weights).sum(-1), 0)[None, ..., None], (16, 16)).numpy()[0, ..., 0]
        result = ex.attribute(m, [image], "scorecam", targets=target, layer="conv_b", max_n=0)
        np.testing.assert_allclose(result.raw[0], expected, rtol=1e-4, atol=1e-6)
        assert weights.std() > 0  # not the constant weights a softmax over one unit gives


def test_binary_head_explains_class_zero_with_the_negated_logit():
    m = wrap(gap_dense_model(activation="sigmoid", classes=1), classes=1)
    images = random_images(2, seed=4)
    one = ex.attribute(m, images, "saliency", targets=1).raw
    zero = ex.attribute(m, images, "saliency", targets=0).raw
    np.testing.assert_allclose(one, zero, rtol=1e-5)  # |d(-z)/dx| = |dz/dx|
    cam_one = ex.attribute(m, images, "gradcam", targets=1, layer="conv_b").raw
    cam_zero = ex.attribute(m, images, "gradcam", targets=0, layer="conv_b").raw
    assert not np.allclose(cam_one, cam_zero)  # evidence for and against differ
