"""Rebuild a classifier so one forward pass returns chosen layer activations and the pre-softmax scores.

Keras cannot return an inner layer of a nested model (a base network inside a
wrapper) from the outer model: the tensors belong to different graphs. We
therefore replay the model's graph layer by layer on a fresh input, descending
into nested models, which yields one flat graph where every layer's output is
reachable. The same replay swaps the final softmax/sigmoid for the identity
(scores are taken on logits) and, for Guided Backprop, puts a gradient gate
after every ReLU. The original model is never modified, so predictions in other
sessions are unaffected.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf

from .layers import PATH_SEPARATOR

# How the model's final layer turns scores into its output; decides how a class is scored.
SOFTMAX, SIGMOID, LINEAR = "softmax", "sigmoid", "linear"
_RELU_NAMES = {"relu", "relu6"}
# How each final activation turns scores into outputs. Log-softmax is a softmax for this
# purpose: with it removed, the scores are the logits and softmax gives the probabilities.
_HEAD_KINDS = {"softmax": SOFTMAX, "log_softmax": SOFTMAX, "sigmoid": SIGMOID}
# Operations that are nothing but an activation: the Softmax layer and, in a functional
# graph, keras.ops.softmax / log_softmax / sigmoid. They carry no ``activation`` argument.
_ACTIVATION_OPERATIONS = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}


def _activation_name(op) -> str | None:
    activation = getattr(op, "activation", None)
    if activation is None:
        return None
    return getattr(activation, "__name__", str(activation)).lower()


def _graph_of(model: keras.Model):
    """The Functional graph behind a model (Sequential keeps one once built)."""
    return model._functional if isinstance(model, keras.Sequential) else model


def final_operation(model: keras.Model):
    """The layer producing the model's (first) output, looking through nested models."""
    op = model.outputs[0]._keras_history.operation
    return final_operation(op) if isinstance(op, keras.Model) else op


def _is_activation_only(op) -> bool:
    """An operation that only applies an activation (Activation, Softmax, keras.ops.softmax...)."""
    return isinstance(op, keras.layers.Activation) or type(op).__name__ in _ACTIVATION_OPERATIONS


def _head_activation(op) -> str | None:
    """The activation ``op`` applies last: its ``activation`` argument, or itself when it is one."""
    name = _activation_name(op)
    if name is None and type(op).__name__ in _ACTIVATION_OPERATIONS:
        axis = getattr(op, "axis", -1)
        # A softmax over another axis than the classes' does not make probabilities per class.
        if axis in (-1, len(op.output.shape) - 1):
            name = _ACTIVATION_OPERATIONS[type(op).__name__]
    return name


def output_kind(model: keras.Model) -> str:
    """``softmax``, ``sigmoid`` or ``linear``: what the final layer applies to its scores.

    Every way Keras writes a classifier head counts: ``Dense(activation=...)``, a
    ``Softmax`` or ``Activation`` layer after it, and ``keras.ops.softmax`` in a
    functional graph.
    """
    return _HEAD_KINDS.get(_head_activation(final_operation(model)), LINEAR)


@tf.custom_gradient
def _positive_gradients_only(x):
    # Guided Backprop's rule at a ReLU is grad * (grad > 0) * (input > 0). Placed after
    # a ReLU, this gate supplies the (grad > 0) factor and the ReLU's own gradient the
    # other, so the layers themselves need no change.
    return tf.identity(x), lambda upstream: tf.nn.relu(upstream)


class _GradientGate(keras.layers.Layer):
    def call(self, x):
        return _positive_gradients_only(x)


def _is_relu(op) -> bool:
    if isinstance(op, keras.layers.ReLU):
        return True
    return _activation_name(op) in _RELU_NAMES


def _without_activation(op):
    """A twin of ``op`` that skips its final activation, sharing no state with it."""
    if _is_activation_only(op):
        return lambda x, *_, **__: x
    config = dict(op.get_config(), activation="linear", name=f"{op.name}_logits")
    twin = type(op).from_config(config)
    twin.build(op.input.shape)
    twin.set_weights(op.get_weights())
    return twin


@dataclass
class Probe:
    """A flat model: ``model(x) -> [activation per layer path..., scores]``, scores pre-activation."""

    model: keras.Model
    layer_paths: tuple[str, ...]
    output_kind: str


def build_probe(model: keras.Model, layer_paths: tuple[str, ...] = (), guided: bool = False) -> Probe:
    """Replay ``model`` into a flat graph exposing ``layer_paths`` and the logits.

    Raises KeyError naming the first path that is not a layer of the model.
    """
    final = final_operation(model)
    kind = output_kind(model)
    head = _without_activation(final) if kind != LINEAR else final
    captured: dict[str, keras.KerasTensor] = {}
    gate = _GradientGate(name="guided_gate") if guided else None

    def replay(graph_model: keras.Model, inputs, prefix: str):
        def operation_fn(op):
            if isinstance(op, keras.Model):
                return lambda x, *args, **kwargs: replay(op, x, f"{prefix}{op.name}{PATH_SEPARATOR}")
            target = head if op is final else op

            def record(*args, **kwargs):
                out = target(*args, **kwargs)
                if gate is not None and _is_relu(op):
                    out = gate(out)
                captured[f"{prefix}{op.name}"] = out
                return out

            return record

        return _graph_of(graph_model)._run_through_graph(inputs, operation_fn=operation_fn)

    inputs = keras.Input(model.inputs[0].shape[1:], name="probe_input")
    outputs = keras.tree.flatten(replay(model, inputs, ""))
    missing = [p for p in layer_paths if p not in captured]
    if missing:
        raise KeyError(f"the model has no layer '{missing[0]}'")
    flat = keras.Model(inputs, [captured[p] for p in layer_paths] + [outputs[0]], name=f"{model.name}_probe")
    return Probe(flat, tuple(layer_paths), kind)


def cam_head(model: keras.Model) -> tuple[str, keras.layers.Dense] | None:
    """For a model ending in global average pooling then dense, the pooled layer's path and the dense layer.

    That ending is what CAM (Zhou et al. 2016) needs; dropout in between is
    allowed. Returns None for any other ending.
    """
    dense = final_operation(model)
    if _is_activation_only(dense):  # Dense followed by a Softmax layer
        dense = _producer(dense)
    if not isinstance(dense, keras.layers.Dense):
        return None
    op = _producer(dense)
    while isinstance(op, keras.layers.Dropout):
        op = _producer(op)
    if not isinstance(op, keras.layers.GlobalAveragePooling2D):
        return None
    pooled = _producer(op)
    path = _path_of(model, pooled)
    return (path, dense) if path else None


def _producer(op):
    """The operation producing ``op``'s (first) input, looking into a nested model's final layer."""
    tensor = op._inbound_nodes[0].input_tensors[0]
    producer = tensor._keras_history.operation
    return final_operation(producer) if isinstance(producer, keras.Model) else producer


def _path_of(model: keras.Model, target, prefix: str = "") -> str | None:
    for layer in model.layers:
        if layer is target:
            return f"{prefix}{layer.name}"
        if isinstance(layer, keras.Model):
            found = _path_of(layer, target, f"{prefix}{layer.name}{PATH_SEPARATOR}")
            if found:
                return found
    return None
