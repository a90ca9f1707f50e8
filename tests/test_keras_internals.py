"""The canary for Keras's private graph API: every function of ``runtime.keras_internals`` against the public API.

The probe and the model-file reader reach Keras's internals only through that module. When a Keras upgrade moves
or changes one of them, a test here fails, naming the function, before any method or page does.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from explainers.runtime.keras_internals import (
    call_replaced,
    first_input,
    functional_graph,
    held_layers,
    producing_operation,
    run_through_graph,
)

SIZE = 8
CHANGED = f"Keras {keras.__version__} changed its private graph API:"


class Built:
    """A small functional model and the tensors it was written with, so each operation's inputs are known."""

    def __init__(self) -> None:
        keras.utils.set_random_seed(5)
        self.inputs = keras.Input((SIZE, SIZE, 3), name="image")
        self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
        self.features = self.conv(self.inputs)
        self.skip = keras.layers.Conv2D(4, 1, name="skip")
        self.skipped = self.skip(self.inputs)
        self.add = keras.layers.Add(name="add")
        self.summed = self.add([self.features, self.skipped])  # a layer of two inputs: the first is ``features``
        self.pool = keras.layers.GlobalAveragePooling2D(name="pool")
        self.pooled = self.pool(self.summed)
        self.dense = keras.layers.Dense(3, name="logits")
        self.logits = self.dense(self.pooled)
        self.probabilities = keras.ops.softmax(self.logits)  # a keras.ops call: an operation, not a layer
        self.model = keras.Model(self.inputs, self.probabilities, name="functional")


def _sequential() -> keras.Sequential:
    keras.utils.set_random_seed(6)
    return keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
                             keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(3, name="logits")],
                            name="sequential")


def _nested() -> tuple[keras.Model, keras.Model, keras.KerasTensor]:
    """(a model with a base model called as one of its layers, the base, the base's output in the outer graph)."""
    keras.utils.set_random_seed(7)
    base_input = keras.Input((SIZE, SIZE, 3))
    base = keras.Model(base_input, keras.layers.Conv2D(4, 3, activation="relu", name="conv")(base_input), name="base")
    inputs = keras.Input((SIZE, SIZE, 3))
    features = base(inputs)
    outputs = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(features))
    return keras.Model(inputs, outputs, name="outer"), base, features


def _images(count: int = 2) -> tf.Tensor:
    return tf.constant(np.random.default_rng(0).uniform(-1, 1, (count, SIZE, SIZE, 3)), tf.float32)


def _operations(model: keras.Model) -> list[keras.Operation]:
    """The model's operations as the public API lists them, its input placeholders left out."""
    return [op for op in model.operations if not isinstance(op, keras.layers.InputLayer)]


# functional_graph


def test_a_functional_model_is_its_own_graph():
    built = Built()
    assert functional_graph(built.model) is built.model
    nested, _, _ = _nested()
    assert functional_graph(nested) is nested


def test_a_sequential_models_graph_has_its_inputs_outputs_layers_and_predictions():
    model = _sequential()
    graph = functional_graph(model)
    assert isinstance(graph, keras.Model) and not isinstance(graph, keras.Sequential), \
        f"{CHANGED} functional_graph(Sequential) is {type(graph).__name__}, not the Functional graph behind it"
    assert graph.inputs == model.inputs and graph.outputs == model.outputs, \
        f"{CHANGED} the Sequential's graph has other inputs or outputs than the Sequential says it has"
    assert _operations(graph) == model.layers, f"{CHANGED} the Sequential's graph runs other layers than it lists"
    x = _images()
    np.testing.assert_allclose(graph(x), model(x), rtol=1e-6, atol=1e-6)


def test_a_sequential_without_a_graph_yet_is_refused_in_one_sentence():
    unbuilt = keras.Sequential([keras.layers.Dense(2)], name="unbuilt")
    with pytest.raises(ValueError, match="'unbuilt' has no graph yet"):
        functional_graph(unbuilt)


# producing_operation


def test_every_layers_output_is_produced_by_that_layer():
    built = Built()
    for op in _operations(built.model):
        assert producing_operation(op.output) is op, \
            f"{CHANGED} producing_operation({op.name}.output) is not {op.name}"


def test_the_models_output_is_produced_by_its_last_operation_a_keras_ops_call_included():
    built = Built()
    final = producing_operation(built.model.outputs[0])
    assert final is _operations(built.model)[-1], f"{CHANGED} producing_operation(model.outputs[0]) is not the last op"
    assert type(final).__name__ == "Softmax" and not isinstance(final, keras.layers.Layer)
    assert producing_operation(built.logits) is built.dense


def test_a_sequential_models_output_is_produced_by_its_last_layer():
    model = _sequential()
    assert producing_operation(model.outputs[0]) is model.layers[-1], \
        f"{CHANGED} producing_operation(Sequential.outputs[0]) is not its last layer"


def test_a_nested_models_output_in_the_outer_graph_is_produced_by_the_nested_model():
    outer, base, features = _nested()
    assert producing_operation(features) is base, f"{CHANGED} a nested model's output is not produced by the model"
    assert producing_operation(base.outputs[0]) is base.layers[-1]  # inside the base: its own last layer
    assert producing_operation(outer.outputs[0]) is outer.layers[-1]


def test_each_output_of_a_two_output_model_is_produced_by_its_own_head():
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    heads = [keras.layers.Dense(2, name="species")(pooled), keras.layers.Dense(1, name="healthy")(pooled)]
    model = keras.Model(inputs, heads)
    assert [producing_operation(t).name for t in model.outputs] == ["species", "healthy"] == model.output_names


# run_through_graph


@pytest.mark.parametrize("which", ["functional", "sequential", "nested"])
def test_running_the_graph_with_every_operation_as_it_is_reproduces_the_model(which):
    model = {"functional": lambda: Built().model, "sequential": _sequential, "nested": lambda: _nested()[0]}[which]()
    x = _images(3)
    replayed = run_through_graph(model, x, lambda op: op)
    replayed = replayed[0] if isinstance(replayed, (list, tuple)) else replayed
    np.testing.assert_allclose(replayed, model(x), rtol=1e-6, atol=1e-6,
                               err_msg=f"{CHANGED} run_through_graph(identity) no longer reproduces model(x)")


@pytest.mark.parametrize("which", ["functional", "sequential", "nested"])
def test_running_the_graph_visits_every_operation_once_after_those_it_reads(which):
    model = {"functional": lambda: Built().model, "sequential": _sequential, "nested": lambda: _nested()[0]}[which]()
    visited: list[keras.Operation] = []

    def record(op):
        visited.append(op)
        return op

    run_through_graph(model, _images(), record)
    expected = _operations(functional_graph(model))
    assert sorted(map(id, visited)) == sorted(map(id, expected)), \
        f"{CHANGED} run_through_graph visits {[op.name for op in visited]}, the model has {[op.name for op in expected]}"
    position = {id(op): k for k, op in enumerate(visited)}
    for op in visited:  # every operation's producers ran before it (a nested model is one operation)
        for tensor in keras.tree.flatten(op.input):
            producer = producing_operation(tensor)
            if not isinstance(producer, keras.layers.InputLayer):
                assert position[id(producer)] < position[id(op)], f"{op.name} ran before {producer.name}"


def test_what_operation_fn_returns_is_what_runs_and_symbolic_inputs_give_a_new_model():
    built = Built()
    # The probe's use: replace one operation (the head's softmax) and take the rest as they are, on a fresh input.
    fresh = keras.Input((SIZE, SIZE, 3))
    final = producing_operation(built.model.outputs[0])
    logits = run_through_graph(built.model, fresh, lambda op: (lambda x: x) if op is final else op)
    logits = logits[0] if isinstance(logits, (list, tuple)) else logits
    x = _images(3)
    expected = keras.Model(built.inputs, built.logits)(x)
    np.testing.assert_allclose(keras.Model(fresh, logits)(x), expected, rtol=1e-6, atol=1e-6,
                               err_msg=f"{CHANGED} run_through_graph does not run what operation_fn returns")


# first_input


def test_an_operations_first_input_is_the_tensor_it_was_first_called_on():
    built = Built()
    called_on = {built.conv: built.inputs, built.skip: built.inputs, built.add: built.features,
                 built.pool: built.summed, built.dense: built.pooled}
    for op, tensor in called_on.items():
        assert first_input(op) is tensor, f"{CHANGED} first_input({op.name}) is not the tensor it was called on"
        public = op.input
        assert first_input(op) is (public[0] if isinstance(public, (list, tuple)) else public)
    assert first_input(producing_operation(built.model.outputs[0])) is built.logits  # a keras.ops call's input


def test_a_shared_layers_first_input_is_that_of_its_first_call():
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    once = shared(inputs)
    shared(once)
    assert first_input(shared) is inputs, f"{CHANGED} first_input of a shared layer is not its first call's input"


def test_the_layer_a_nested_model_feeds_reads_the_nested_models_output():
    outer, base, features = _nested()
    pool = outer.get_layer("pool")
    assert first_input(pool) is features and producing_operation(first_input(pool)) is base


class _Holder(keras.layers.Layer):
    """A layer whose call is Python code over layers it holds, as keras-hub's ViT encoder is."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.blocks = [keras.layers.Dense(4, name="first"), keras.layers.Dense(4, name="second")]
        self.norm = keras.layers.LayerNormalization(name="norm")

    def call(self, x):
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def test_held_layers_are_the_layers_a_layer_assigned_in_order():
    holder = _Holder()
    holder(np.zeros((1, 3), np.float32))
    assert [layer.name for layer in held_layers(holder)] == ["first", "second", "norm"], CHANGED


def test_a_replaced_call_runs_inside_keras_s_call_and_the_own_call_returns_after():
    holder = _Holder()
    x = np.ones((2, 3), np.float32)
    plain = np.asarray(holder(x))
    second = holder.blocks[1]
    seen = []

    def doubled(inputs):
        seen.append(inputs.shape)
        return type(second).call(second, inputs) * 0.0

    with call_replaced(second, doubled):
        zeroed = np.asarray(holder(x))
    assert seen == [(2, 4)], CHANGED
    assert not np.allclose(zeroed, plain)
    np.testing.assert_allclose(np.asarray(holder(x)), plain)  # the layer's own call is back
