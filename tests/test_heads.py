"""Every way Keras writes a classifier head: the model's own probabilities, and gradients taken on the logit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import explainers as ex
from explainers.runtime.probe import SIGMOID, SOFTMAX, output_kind
from helpers import random_images, small_base, wrap

SIZE, CLASSES = 16, 4


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# name: (units, how the head is written after the logits, the probabilities the logits give, expected kind)
HEADS = {
    "dense_softmax": (CLASSES, None, _softmax, SOFTMAX),
    "softmax_layer": (CLASSES, lambda x: keras.layers.Softmax()(x), _softmax, SOFTMAX),
    "activation_softmax": (CLASSES, lambda x: keras.layers.Activation("softmax")(x), _softmax, SOFTMAX),
    "ops_softmax": (CLASSES, lambda x: keras.ops.softmax(x), _softmax, SOFTMAX),
    "log_softmax": (CLASSES, lambda x: keras.layers.Activation("log_softmax")(x), _softmax, SOFTMAX),
    "raw_logits": (CLASSES, lambda x: x, _softmax, "linear"),
    "one_sigmoid_unit": (1, None, lambda z: np.concatenate([1 - _sigmoid(z), _sigmoid(z)], axis=-1), SIGMOID),
    "multi_label_sigmoid": (CLASSES, None, _sigmoid, SIGMOID),
    "sigmoid_layer": (CLASSES, lambda x: keras.layers.Activation("sigmoid")(x), _sigmoid, SIGMOID),
}


def _head_model(name: str, nested: bool) -> tuple[keras.Model, keras.Model]:
    """(the classifier as written, a model of the same weights returning its logits)."""
    units, head, _, _ = HEADS[name]
    keras.utils.set_random_seed(7)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = small_base(SIZE)(inputs) if nested else keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    built_in = {"dense_softmax": "softmax", "one_sigmoid_unit": "sigmoid", "multi_label_sigmoid": "sigmoid"}.get(name)
    dense = keras.layers.Dense(units, activation=built_in, name="head")
    outputs = dense(pooled) if head is None else head(dense(pooled))
    model = keras.Model(inputs, outputs)
    logits = keras.Model(inputs, dense.__class__.from_config({**dense.get_config(), "activation": "linear"})(pooled))
    logits.layers[-1].set_weights(dense.get_weights())
    return model, logits


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
@pytest.mark.parametrize("name", list(HEADS))
def test_head_gives_the_models_probabilities_and_gradients_on_the_logit(name, nested):
    model, logits_model = _head_model(name, nested)
    loaded = wrap(model, classes=max(HEADS[name][0], 2))
    images = random_images(3, SIZE, seed=4)
    x = loaded.preprocess(images)
    logits = logits_model(x).numpy()
    expected_probabilities = HEADS[name][2](logits.astype(np.float64))

    assert output_kind(model) == HEADS[name][3]
    np.testing.assert_allclose(loaded.predict(images), expected_probabilities, atol=1e-5)

    # The engine's score for class c is the logit (binary head: +-logit), never a probability.
    targets = np.array([0, 1, 1], np.int32)
    result = loaded.runtime.gradients(x, targets, wrt_input=True)
    np.testing.assert_allclose(result.logits, logits, atol=1e-5)
    x_tensor = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x_tensor)
        z = logits_model(x_tensor)
        score = (tf.where(targets == 1, z[:, 0], -z[:, 0]) if z.shape[-1] == 1
                 else tf.gather(z, targets, axis=1, batch_dims=1))
    reference = tape.gradient(score, x_tensor).numpy()
    np.testing.assert_allclose(result.input_gradients, reference, rtol=1e-4, atol=1e-6)


def test_a_softmax_layer_is_not_applied_twice():
    # Before the fix a Softmax layer read as a logits head: 0.293 came out as 0.261.
    model, _ = _head_model("softmax_layer", nested=False)
    images = random_images(2, SIZE, seed=5)
    loaded = wrap(model)
    np.testing.assert_allclose(loaded.predict(images), model(loaded.preprocess(images)).numpy(), atol=1e-6)


def test_cam_finds_the_dense_layer_before_a_softmax_layer():
    model, _ = _head_model("softmax_layer", nested=False)
    maps = ex.explain(wrap(model), random_images(2, SIZE, seed=6), "cam")
    assert maps.shape == (2, SIZE, SIZE) and np.isfinite(maps).all() and maps.max() > 0



@pytest.mark.parametrize("name", ["softmax_layer", "ops_softmax", "activation_softmax"])
def test_a_saved_head_loads_with_the_same_probabilities(name, tmp_path):
    model, _ = _head_model(name, nested=True)
    model.save(tmp_path / "head.keras")
    loaded = ex.load_model(str(tmp_path / "head.keras"), preprocessing="none")
    images = random_images(2, SIZE, seed=8)
    np.testing.assert_allclose(loaded.predict(images), model(loaded.preprocess(images)).numpy(), atol=1e-5)
