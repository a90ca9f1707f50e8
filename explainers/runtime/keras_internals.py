"""Keras's private graph API, reached from here only: the one module that reads a private Keras attribute.

The probe replays a model's graph operation by operation (``runtime.probe``), and a model file's outputs are named by
the layers producing them (``models.files``). A layer whose ``call`` is Python code (keras-hub's ViT encoder, say) has
no graph to replay, so the probe finds the layers it holds and observes their calls during a pass. Keras 3 has no
public way to do any of this, so each private access sits
behind one named function below. ``tests/test_keras_internals.py`` checks every function against what the public
API says on small models (Functional, Sequential, a model nested as a layer), so a Keras upgrade that changes these
internals fails there, in one place, by name; ``tests/test_architecture.py`` keeps every other module off them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras


def functional_graph(model: keras.Model) -> keras.Model:
    """The Functional graph behind ``model``: a built Sequential keeps one (private), any other model is its own.

    Raises ValueError for a Sequential that has no graph yet (built without a known input shape).
    """
    if not isinstance(model, keras.Sequential):
        return model
    graph = model._functional
    if graph is None:
        raise ValueError(f"the Sequential model '{model.name}' has no graph yet: build it on an input shape first")
    return graph


def producing_operation(tensor: keras.KerasTensor) -> keras.Operation:
    """The operation (layer, nested model or ``keras.ops`` call) whose output ``tensor`` is, in its graph."""
    return tensor._keras_history.operation


def run_through_graph(graph_model: keras.Model, inputs: Any,
                      operation_fn: Callable[[keras.Operation], Callable[..., Any]]) -> Any:
    """Run ``graph_model``'s graph on ``inputs``, each operation ``op`` called as ``operation_fn(op)(*args, **kwargs)``.

    An ``operation_fn`` returning ``op`` itself runs the model as it is; one returning a replacement rewrites the
    graph on the fly (a nested model is one operation: descend into it by returning a function that replays it).
    """
    return functional_graph(graph_model)._run_through_graph(inputs, operation_fn=operation_fn)


def first_input(operation: keras.Operation) -> keras.KerasTensor:
    """The (first) tensor ``operation`` was first called on, in the graph it was first called in."""
    return operation._inbound_nodes[0].input_tensors[0]


def held_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers ``layer`` holds directly (as attributes, or in lists of them), in the order it assigned them."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


@contextlib.contextmanager
def call_replaced(layer: keras.layers.Layer, replacement: Callable[..., Any]) -> Iterator[None]:
    """While inside, ``layer(...)`` runs ``replacement(*args, **kwargs)`` instead of the layer's own ``call`` (which
    ``replacement`` may still call as ``type(layer).call(layer, ...)``); Keras's ``__call__`` around it is unchanged.
    """
    object.__setattr__(layer, "call", replacement)  # an instance attribute, past Keras's attribute tracking
    try:
        yield
    finally:
        object.__delattr__(layer, "call")
