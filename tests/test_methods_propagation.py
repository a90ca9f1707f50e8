"""DeepLIFT (Rescale), epsilon-LRP and DeconvNet against what each rule must give in closed form."""

import keras
import numpy as np
import pytest

import explainers as ex
import explainers.attribution
from explainers.methods.gradients import baseline_input
from explainers.methods.registry import Job
from explainers.runtime.passes import _CompiledProbe
from helpers import gap_dense_model, random_images, wrap

SIZE = 16


def _randomise_batchnorm(model: keras.Model, seed: int, centred: bool = True) -> None:
    """Give every BatchNormalization real statistics, so it is an affine map and not nearly the identity."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            weights = layer.get_weights()
            channels = weights[0].shape
            gamma, moving_var = rng.uniform(0.5, 1.5, channels), rng.uniform(0.5, 2.0, channels)
            moving_mean = rng.normal(0.0, 0.5, channels) if centred else np.zeros(channels)
            middle = [rng.normal(0.0, 0.5, channels)] if layer.center else []  # beta
            layer.set_weights([gamma, *middle, moving_mean, moving_var])


def residual_net(activation: str, seed: int, bias: bool = True) -> keras.Model:
    """A conv net with every way Keras writes an activation, BatchNorm, a residual add, then GAP + dense logits.

    ``activation`` is ``relu`` or ``relu6``. Inputs are pixels 0..255 scaled by 1/16,
    so ReLU6 units are often saturated (above 6) and often off (below 0). Give each
    net its own seed: the engine's caches key on the weights, and a ReLU and a ReLU6
    net with the same weights would share their maps.
    """
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    max_value = 6.0 if activation == "relu6" else None
    apply_op = keras.ops.relu6 if activation == "relu6" else keras.ops.relu
    inputs = keras.Input((SIZE, SIZE, 3))
    x = layers.Rescaling(1 / 16)(inputs)
    x = layers.Conv2D(8, 3, padding="same", activation=activation, use_bias=bias, name="conv_a")(x)  # fused
    y = layers.Conv2D(8, 3, padding="same", use_bias=bias, name="conv_b")(x)
    y = layers.BatchNormalization(center=bias, name="bn_b")(y)
    y = layers.ReLU(max_value=max_value, name="relu_b")(y)  # a ReLU layer
    y = layers.Conv2D(8, 3, padding="same", use_bias=bias, name="conv_c")(y)
    y = layers.BatchNormalization(center=bias, name="bn_c")(y)
    x = apply_op(layers.Add(name="add")([x, y]))  # keras.ops in a functional graph
    x = layers.Conv2D(16, 3, strides=2, padding="same", use_bias=bias, name="conv_d")(x)
    x = layers.BatchNormalization(center=bias, name="bn_d")(x)
    x = layers.Activation(activation, name="act_d")(x)  # an Activation layer
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(4, use_bias=bias, name="logits")(x)
    model = keras.Model(inputs, outputs, name=f"residual_{activation}")
    _randomise_batchnorm(model, seed, centred=bias)
    return model


def nested_transfer_net(seed: int = 4) -> keras.Model:
    """``Sequential([base, GAP, Dense(3, softmax)])`` with BatchNorm and ReLU6 inside the base."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 16)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", name="conv_b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    x = keras.layers.ReLU(6.0, name="relu_b")(x)
    base = keras.Model(inputs, x, name="base")
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base, keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(3, activation="softmax", name="head")], name="transfer")
    _randomise_batchnorm(model, seed)
    return model


def pre_activation_logits(model: keras.Model, x: np.ndarray, head: str = "head") -> np.ndarray:
    """``(N, classes)`` the head's scores before its softmax/sigmoid, computed outside the engine."""
    layer = model.get_layer(head)
    features = keras.Model(model.inputs[0], layer.input)(x).numpy()
    kernel, bias = layer.get_weights()
    return features @ kernel + bias


def baselines_for(m: ex.LoadedModel, images: list[np.ndarray], kind: str) -> np.ndarray:
    """The baseline inputs DeepLIFT uses, built as Integrated Gradients builds them."""
    pixels = m.resize(images)
    job = Job(m.runtime, m.to_input(pixels), pixels, m.to_input, np.zeros(len(images), np.int32), None,
              [0] * len(images), 16)
    return baseline_input(job, kind, 20.0)


def assert_complete(sums: np.ndarray, differences: np.ndarray) -> None:
    # 1e-4 relative, with a floor at 1e-4 of the largest difference for a class whose change is nearly 0.
    np.testing.assert_allclose(sums, differences, rtol=1e-4, atol=1e-4 * np.abs(differences).max())


# ---- DeepLIFT -----------------------------------------------------------------------------


@pytest.mark.parametrize("baseline", ["black", "blurred"])
@pytest.mark.parametrize("activation", ["relu", "relu6"])
def test_deeplift_contributions_sum_to_the_change_of_the_logit(activation, baseline):
    model = residual_net(activation, seed={"relu": 10, "relu6": 11}[activation])
    m = wrap(model)
    images = random_images(3, SIZE, seed=21)
    x = np.stack(images).astype(np.float32)
    if activation == "relu6":  # the premise: the rule also meets saturated units, not only off and linear ones
        out = keras.Model(model.inputs[0], model.get_layer("conv_a").output)(x).numpy()
        assert min((out == 6).mean(), ((out > 0) & (out < 6)).mean(), (out == 0).mean()) > 0.05
    result = ex.attribute(m, images, "deeplift", targets=[0, 2, None], baseline=baseline)
    logits = model.predict(np.concatenate([x, baselines_for(m, images, baseline)]), verbose=0)
    assert result.classes[2] == logits[2].argmax()  # TOP1 resolved on the image, not on its baseline
    rows = np.arange(3)
    assert_complete(result.raw.sum(axis=(1, 2)), logits[rows, result.classes] - logits[3 + rows, result.classes])


def test_deeplift_is_complete_on_a_nested_transfer_model():
    model = nested_transfer_net()
    m = wrap(model)
    images = random_images(2, SIZE, seed=22)
    result = ex.attribute(m, images, "deeplift", baseline="blurred")
    base = baselines_for(m, images, "blurred")
    logits = pre_activation_logits(model, np.concatenate([np.stack(images).astype(np.float32), base]))
    np.testing.assert_array_equal(result.classes, logits[:2].argmax(axis=1))
    assert_complete(result.raw.sum(axis=(1, 2)), logits[[0, 1], result.classes] - logits[[2, 3], result.classes])


def test_deeplift_is_complete_on_the_embedded_model(embedded_model, sample):
    # EfficientNet-Lite0 is convolutions, BatchNorm, ReLU6 layers, residual adds and average
    # pooling: nothing but linear operations and elementwise activations.
    images = [sample("coffee")]
    result = ex.attribute(embedded_model, images, "deeplift", targets=967)
    x = embedded_model.preprocess(images)
    black = ex.models.preprocessing.preprocess(np.zeros((1, 224, 224, 3), np.uint8), "efficientnet_lite")
    logits = ex.runtime.probe.build_probe(embedded_model.model).model(np.concatenate([x, black])).numpy()[:, 967]
    assert_complete(result.raw.sum(axis=(1, 2)), logits[:1] - logits[1:])


def test_deeplift_on_a_single_sigmoid_unit_explains_class_zero_by_the_negated_logit():
    model = gap_dense_model(size=SIZE, activation="sigmoid", classes=1)
    m = wrap(model, classes=1)
    images = random_images(2, SIZE, seed=23)
    # The blurred baseline: with a black one and this untrained net's zero biases, a ReLU net is homogeneous, so
    # plain gradient x input would be complete too.
    logits = pre_activation_logits(model, np.concatenate([np.stack(images).astype(np.float32),
                                                          baselines_for(m, images, "blurred")]))[:, 0]
    difference = logits[:2] - logits[2:]
    one = ex.attribute(m, images, "deeplift", targets=1, baseline="blurred").raw.sum(axis=(1, 2))
    zero = ex.attribute(m, images, "deeplift", targets=0, baseline="blurred").raw.sum(axis=(1, 2))
    assert_complete(one, difference)
    assert_complete(zero, -difference)


# ---- epsilon-LRP --------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_lrp_epsilon_near_zero_is_gradient_times_input_on_a_relu_network(bias):
    # At a ReLU, relu(z) / z is 1 or 0: the ReLU's own derivative, whatever the biases
    # (use_bias=False is Ancona et al.'s condition; with biases the maps still agree).
    m = wrap(residual_net("relu", seed=12, bias=bias))
    images = random_images(2, SIZE, seed=24)
    lrp = ex.attribute(m, images, "lrp_epsilon", targets=[1, 3], epsilon=1e-9).raw
    gradient_x_input = ex.attribute(m, images, "gradient_x_input", targets=[1, 3]).raw
    np.testing.assert_allclose(lrp, gradient_x_input, rtol=1e-4, atol=1e-6 * np.abs(gradient_x_input).max())


def test_lrp_epsilon_differs_from_gradient_times_input_where_relu6_saturates():
    # A saturated ReLU6 has derivative 0 but ratio 6 / z: epsilon-LRP still passes relevance back.
    m = wrap(residual_net("relu6", seed=13))
    images = random_images(2, SIZE, seed=24)
    lrp = ex.attribute(m, images, "lrp_epsilon", targets=[1, 3], epsilon=1e-9).raw
    gradient_x_input = ex.attribute(m, images, "gradient_x_input", targets=[1, 3]).raw
    assert np.abs(lrp - gradient_x_input).max() > 0.1 * np.abs(gradient_x_input).max()


def _dense_net(hidden: keras.layers.Layer | None, activation: str | None, seed: int) -> keras.Model:
    """Input (4, 4, 3) -> Dense(20) with a fused activation or followed by ``hidden`` -> Dense(2), with biases."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(20, activation=activation)]
    model = keras.Sequential([*layers, *([hidden] if hidden is not None else []), keras.layers.Dense(2)])
    rng = np.random.default_rng(seed)
    first, last = model.layers[1], model.layers[-1]
    # Pre-activations of order 1 for 0..255 pixels, and biases of the same order: epsilon then matters.
    first.set_weights([rng.normal(0, 0.004, (48, 20)), rng.normal(0, 1.0, 20)])
    last.set_weights([rng.normal(0, 1.0, (20, 2)), rng.normal(0, 1.0, 2)])
    return model


ACTIVATIONS = {"relu": lambda z: np.maximum(z, 0.0), "tanh": np.tanh, "silu": lambda z: z / (1 + np.exp(-z))}


@pytest.mark.parametrize(
    ("name", "hidden", "fused", "seed"),
    [("relu", None, "relu", 6), ("relu", keras.layers.ReLU, None, 7), ("tanh", keras.layers.Activation, None, 8),
     ("silu", None, "swish", 9)],
)
def test_lrp_epsilon_equals_the_epsilon_rule_written_out_on_a_two_layer_net(name, hidden, fused, seed):
    layer = None if hidden is None else (hidden() if hidden is keras.layers.ReLU else hidden(name))
    model = _dense_net(layer, fused, seed)
    (w1, b1), (w2, _) = model.layers[1].get_weights(), model.layers[-1].get_weights()
    image = random_images(1, size=4, seed=8)[0]
    epsilon, target = 0.5, 1
    x = image.astype(np.float64).reshape(-1)
    z = x @ w1 + b1
    h = ACTIVATIONS[name](z)
    # The epsilon rule, layer by layer in relevance form (Bach et al. 2015): the logit's
    # relevance is the logit; the output layer shares it as h_j * w_jk (its z-rule, no
    # activation after it); the hidden layer shares R_j in proportion to x_i * w_ij over
    # its stabilised pre-activation. Biases absorb their share.
    relevance_hidden = h * w2[:, target]
    stabilised = z + epsilon * np.where(z >= 0, 1.0, -1.0)
    relevance_input = (x[:, None] * w1 / stabilised[None, :] * relevance_hidden[None, :]).sum(axis=1)
    expected = relevance_input.reshape(4, 4, 3).sum(axis=-1)
    m = wrap(model)
    result = ex.attribute(m, [image], "lrp_epsilon", targets=target, epsilon=epsilon)
    np.testing.assert_allclose(result.raw[0], expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    gradient_x_input = ex.attribute(m, [image], "gradient_x_input", targets=target).raw[0]
    assert not np.allclose(gradient_x_input, expected, rtol=1e-2)  # epsilon (and the ratio) made a difference


# ---- DeconvNet ----------------------------------------------------------------------------


def test_deconvnet_matches_the_rule_on_a_one_hidden_layer_relu_net():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(20, activation="relu"), keras.layers.Dense(2)])
    (w1, b1), (w2, _) = model.layers[1].get_weights(), model.layers[2].get_weights()
    image = random_images(1, size=4, seed=5)[0]
    pre = image.astype(np.float32).reshape(-1) @ w1 + b1
    upstream = w2[:, 1]
    # DeconvNet: a ReLU passes back relu(gradient), whatever the sign of its input.
    expected = np.abs((w1 @ np.maximum(upstream, 0)).reshape(4, 4, 3)).max(axis=-1)
    result = ex.attribute(wrap(model), [image], "deconvnet", targets=1)
    np.testing.assert_allclose(result.raw[0], expected, rtol=1e-4, atol=1e-6)
    assert ((pre < 0) & (upstream > 0)).any()  # a unit where Guided Backprop's gate and DeconvNet's differ
    guided = ex.attribute(wrap(model), [image], "guided_backprop", targets=1)
    assert not np.allclose(guided.raw[0], expected, rtol=1e-3)


def test_deconvnet_keeps_the_gradient_of_other_activations():
    model = _dense_net(None, "tanh", seed=7)
    image = random_images(1, size=4, seed=9)
    deconvnet = ex.attribute(wrap(model), image, "deconvnet", targets=0).raw
    saliency = ex.attribute(wrap(model), image, "saliency", targets=0).raw
    np.testing.assert_allclose(deconvnet, saliency, rtol=1e-5)


# ---- the engine's contract ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "images", "batch_size"),
    [("deeplift", 3, 4), ("deeplift", 5, 16), ("deeplift", 3, 1), ("lrp_epsilon", 5, 2), ("deconvnet", 3, 16)],
)
def test_cost_counts_exactly_the_passes_run(method, images, batch_size, monkeypatch):
    m = wrap(gap_dense_model(size=SIZE))
    ex.RESULTS.clear()
    explainers.attribution.INPUTS.clear()
    rows, original = [], _CompiledProbe.run

    def spy(self, x, targets, backward, wrt_input):
        rows.append((backward, int(x.shape[0])))
        return original(self, x, targets, backward, wrt_input)

    monkeypatch.setattr(_CompiledProbe, "run", spy)
    before = m.runtime.passes_run
    result = ex.attribute(m, random_images(images, SIZE, seed=25), method, batch_size=batch_size)  # TOP1 targets
    groups = ex.REGISTRY[method].cost(result.params, images, batch_size, m.input_size)
    assert m.runtime.passes_run - before == sum(count for _, _, count in groups) == len(rows)
    assert sorted(rows) == sorted((backward, per_pass) for backward, per_pass, count in groups for _ in range(count))


def test_epsilon_is_checked_and_each_value_is_its_own_map():
    m = wrap(residual_net("relu6", seed=14))
    image = random_images(1, SIZE, seed=26)
    with pytest.raises(ex.InputError, match=r"^The epsilon of ε-LRP must be a number from 1e-09 to 10; got 0\.0\.$"):
        ex.attribute(m, image, "lrp_epsilon", epsilon=0.0)
    small = ex.attribute(m, image, "lrp_epsilon", epsilon=1e-6).raw
    large = ex.attribute(m, image, "lrp_epsilon", epsilon=1.0).raw
    assert not np.allclose(small, large)
