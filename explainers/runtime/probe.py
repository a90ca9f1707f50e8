"""Rebuild a classifier so one forward pass returns chosen layer activations and the pre-softmax scores.

Keras cannot return an inner layer of a nested model (a base network inside a
wrapper) from the outer model: the tensors belong to different graphs. We
therefore replay the model's graph layer by layer on a fresh input, descending
into nested models, which yields one flat graph where every layer's output is
reachable. The same replay swaps the final softmax/sigmoid for the identity
(scores are taken on logits) and can apply a backward *rule* at the network's
nonlinearities (``RULES``): the forward values stay exactly the model's, only
the gradient flowing back through each activation is replaced.

- ``guided``: Guided Backprop, a gate after every ReLU that passes positive gradients only.
- ``deconvnet``: DeconvNet, relu(upstream gradient) at every ReLU, whatever the sign of its input.
- ``lrp_epsilon``: epsilon-LRP in the gradient formulation of Ancona et al. 2018 (DeepExplain):
  upstream * f(z) / (z + epsilon * sign(z)) at every elementwise activation y = f(z).
- ``rescale``: DeepLIFT's Rescale rule; the batch is [inputs; baselines] and the input half's
  multiplier is (f(z) - f(z0)) / (z - z0).

Linear operations (convolutions, dense layers, BatchNorm in inference, adds, average
pooling) keep their gradient. The ratio rules therefore implement their rule for the whole
affine chain before each activation: a BatchNorm is handled as folded into the convolution
before it. Other nonlinear operations (max pooling, the product of a squeeze-excite gate)
keep their ordinary gradient, so DeepLIFT's completeness is exact only for networks whose
nonlinearities are all elementwise activations. The original model is never modified, so
predictions in other sessions are unaffected.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import keras
import tensorflow as tf

from explainers.models.transformers import (
    ATTENTION_SCORES,
    PATH_SEPARATOR,
    AttentionSite,
    TokenGrid,
    addressed_part,
    attention_sites,
    input_size,
)
from explainers.runtime.keras_internals import call_replaced, first_input, producing_operation, run_through_graph

# How the model's final layer turns scores into its output; decides how a class is scored.
SOFTMAX, SIGMOID, LINEAR = "softmax", "sigmoid", "linear"
_RELU_NAMES = {"relu", "relu6"}
# The backward rules a probe can apply at nonlinearities; None is the plain gradient.
GUIDED, DECONVNET, LRP_EPSILON, RESCALE = "guided", "deconvnet", "lrp_epsilon", "rescale"
RULES = (GUIDED, DECONVNET, LRP_EPSILON, RESCALE)
# Activations that act on each element alone, written without underscores so that Keras's
# activation names ("hard_silu") and its operation classes (HardSilu) compare equal. Only
# these get the ratio rules: f(z) / z is meaningless for softmax, glu or sparsemax, which
# mix elements, and a custom callable may do anything, so both keep their gradient.
_ELEMENTWISE = {
    "relu", "relu6", "leakyrelu", "elu", "selu", "celu", "gelu", "sigmoid", "hardsigmoid", "sparsesigmoid",
    "logsigmoid", "tanh", "hardtanh", "tanhshrink", "softshrink", "hardshrink", "silu", "swish", "hardsilu",
    "hardswish", "mish", "softplus", "softsign", "sparseplus", "squareplus", "exponential", "threshold",
}
# Layers that are nothing but an elementwise activation of their one input.
_ACTIVATION_LAYERS = (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU, keras.layers.PReLU)
# Layers whose ``call`` is a linear map followed by ``if self.activation is not None:
# self.activation(x)``: exactly these can be split into their linear part and the activation.
# Exact types, since a subclass may override ``call``.
_FUSED_LAYERS = (
    keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose,
    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D,
    keras.layers.SeparableConv2D,
)
# Below this |z - z0|, DeepLIFT's ratio (f(z) - f(z0)) / (z - z0) carries a rounding error
# above about 10% at |z| ~ 1 (float32 values there are 1.2e-7 apart), so the derivative, its
# limit, is used instead. Captum's 1e-10 only catches z == z0 in float32. The fallback costs
# completeness at most |z - z0| < 1e-6 times the unit's multiplier, at a kink.
_RESCALE_TOLERANCE = 1e-6
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


def final_operation(model: keras.Model):
    """The layer producing the model's (first) output, looking through nested models."""
    op = producing_operation(model.outputs[0])
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
    activation = _head_activation(final_operation(model))
    return LINEAR if activation is None else _HEAD_KINDS.get(activation, LINEAR)


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


def _plain(name: str) -> str:
    return name.replace("_", "").lower()


def _activation_site(op) -> tuple[str, str] | None:
    """``(where, name)`` when ``op`` ends in an elementwise activation a rule can replace, else None.

    ``where`` is ``"alone"`` for an operation that only applies the activation to its
    first argument (ReLU or Activation layers, ``keras.ops.relu`` in a functional graph)
    and ``"fused"`` for a conv or dense layer with an ``activation`` argument.
    """
    if isinstance(op, _ACTIVATION_LAYERS):
        return "alone", _plain(type(op).__name__)
    name = _activation_name(op)
    if name is not None:
        if _plain(name) not in _ELEMENTWISE:
            return None
        if isinstance(op, keras.layers.Activation):
            return "alone", _plain(name)
        return ("fused", _plain(name)) if type(op) in _FUSED_LAYERS else None
    # keras.ops.relu(x) and friends in a functional graph: Keras operations, not layers, named by their class.
    if isinstance(op, keras.layers.Layer) or not type(op).__module__.startswith("keras."):
        return None
    name = _plain(type(op).__name__)
    return ("alone", name) if name in _ELEMENTWISE else None


def _rule_site(op, rule: str | None) -> str | None:
    """Where ``rule`` replaces ``op``'s activation gradient (``"alone"``/``"fused"``), or None to keep it."""
    if rule in (None, GUIDED):  # Guided Backprop keeps the ReLU's gradient and adds a gate after it
        return None
    site = _activation_site(op)
    if site is None:
        return None
    where, name = site
    if rule == DECONVNET and not (_is_relu(op) or name in _RELU_NAMES):
        return None  # DeconvNet only changes ReLUs; a sigmoid or tanh keeps its gradient
    return where


def _rule_gradient(rule: str, epsilon: float | None):
    """``(z, y) -> y`` forward, where y = f(z); backward, the rule's gradient for z instead of f'(z).

    The activation itself computed y, so every rule gets f from the op. The gradient
    returned for y flows back through f's own derivative: the Rescale rule uses that
    as its fallback where z is too close to its baseline for the ratio.
    """

    @tf.custom_gradient
    def override(z, y):
        def backward(upstream):
            if rule == DECONVNET:
                return tf.nn.relu(upstream), None
            if rule == LRP_EPSILON:
                sign = tf.where(z >= 0, tf.ones_like(z), -tf.ones_like(z))  # sign(0) = +1, as in DeepExplain
                return upstream * y / (z + epsilon * sign), None
            # Rescale: rows [:n] are the inputs, rows [n:] their baselines.
            n = tf.shape(z)[0] // 2
            dz, dy, up = z[:n] - z[n:], y[:n] - y[n:], upstream[:n]
            near = tf.abs(dz) < _RESCALE_TOLERANCE
            ratio = dy / tf.where(near, tf.ones_like(dz), dz)
            zeros = tf.zeros_like(up)  # the baselines' own multipliers are not wanted: zero
            through_ratio = tf.concat([tf.where(near, zeros, up * ratio), zeros], axis=0)
            through_derivative = tf.concat([tf.where(near, up, zeros), zeros], axis=0)
            return through_ratio, through_derivative

        return tf.identity(y), backward

    return override


class _RuleGradient(keras.layers.Layer):
    """Applies a backward rule at one activation: ``[z, f(z)] -> f(z)``. Weightless, so one instance serves every site."""

    def __init__(self, rule: str, epsilon: float | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._override = _rule_gradient(rule, epsilon)

    def call(self, inputs):
        z, y = inputs
        return self._override(z, y)


class _NoActivation:
    """Reads every attribute of a layer except ``activation``, which it reports as absent."""

    activation = None

    def __init__(self, layer) -> None:
        self._layer = layer

    def __getattr__(self, name: str):
        return getattr(self._layer, name)


class _SplitActivation(keras.layers.Layer):
    """A fused conv/dense layer as ``x -> [z, f(z)]``: its linear part and its activation.

    The linear part runs the layer's own ``call`` with the activation hidden, on the
    layer's own variables: a copy such as ``_without_activation`` makes would double
    the memory of VGG16's dense layers (480 MB) for every rule.
    """

    def __init__(self, layer, **kwargs) -> None:
        # The layer's own dtype policy: inputs are cast, and its variables read, as the layer itself does.
        super().__init__(name=f"{layer.name}_split", dtype=layer.dtype_policy, **kwargs)
        self._layer = layer
        self.built = True

    def call(self, inputs):
        z = type(self._layer).call(_NoActivation(self._layer), inputs)
        return [z, self._layer.activation(z)]


def _without_activation(op):
    """A twin of ``op`` that skips its final activation, sharing no state with it."""
    if _is_activation_only(op):
        return lambda x, *_, **__: x
    config = dict(op.get_config(), activation="linear", name=f"{op.name}_logits")
    twin = type(op).from_config(config)
    twin.build(op.input.shape)
    twin.set_weights(op.get_weights())
    return twin


@dataclass(frozen=True)
class Observed:
    """A path a pass reads by observing an attention layer's call: its scores, or its query tokens."""

    site: AttentionSite
    part: str  # ATTENTION_SCORES or QUERY_TOKENS


@dataclass
class Probe:
    """A flat model: ``model(x) -> [activation per graph path..., scores]``, scores pre-activation; ``run(x)`` adds
    what the pass observes (``observed``) and gives every path's tensor in ``layer_paths`` order.

    A path may name a transformer block's tokens, ``(N, T, D)``: ``grids`` says, per path, how the pass lays them (and
    their gradients) out as ``(N, rows, cols, D)``. The tensors themselves are returned, since a gradient is taken
    with respect to a tensor on the way to the scores, and a reshaped copy is not on it.
    """

    model: keras.Model
    layer_paths: tuple[str, ...]
    output_kind: str
    rule: str | None = None  # RESCALE: the model's batch is [inputs; baselines]
    grids: tuple[TokenGrid | None, ...] = ()
    observed: dict[str, Observed] = field(default_factory=dict)  # by path; every other path is a graph output

    def run(self, x) -> tuple[list, object]:
        """``([tensor per layer path], scores)`` for a batch; call it where the gradients are taped."""
        with _observing({o.site.layer for o in self.observed.values()}) as seen:
            outputs = self.model(x, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        from_graph = iter(outputs[:-1])
        tensors = []
        for path in self.layer_paths:
            observed = self.observed.get(path)
            if observed is None:
                tensors.append(next(from_graph))
                continue
            query, scores = seen[id(observed.site.layer)]
            tensors.append(scores if observed.part == ATTENTION_SCORES else query)
        return tensors, outputs[-1]


@contextlib.contextmanager
def _observing(layers: set) -> Iterator[dict[int, tuple]]:
    """While inside, each attention layer of ``layers`` called by this thread also computes its scores, and its first
    call's ``(query, scores)`` is kept by ``id(layer)``; other threads' calls run as usual."""
    seen: dict[int, tuple] = {}
    owner = threading.get_ident()

    def observer(layer):
        def call(*args, **kwargs):
            if threading.get_ident() != owner:
                return type(layer).call(layer, *args, **kwargs)
            wanted = kwargs.get("return_attention_scores", False)
            output, scores = type(layer).call(layer, *args, **dict(kwargs, return_attention_scores=True))
            seen.setdefault(id(layer), (args[0] if args else kwargs["query"], scores))
            return (output, scores) if wanted else output

        return call

    with contextlib.ExitStack() as stack:
        for layer in layers:
            stack.enter_context(call_replaced(layer, observer(layer)))
        yield seen


def _grid_of(path: str, shape: tuple, size: tuple[int, int] | None) -> TokenGrid | None:
    """The patch grid of a token tensor of ``shape``; None for a spatial one or attention scores. KeyError (the
    probe's one error for a layer it cannot expose) naming the path when a 3-D output lies on no patch grid."""
    part = addressed_part(path)
    if (part is not None and part[1] == ATTENTION_SCORES) or len(shape) != 3:
        return None
    grid = TokenGrid.of(shape[1], size) if size and shape[1] else None
    if grid is None:
        raise KeyError(f"the tokens of layer '{path}' ({shape[1]} of them) lie on no patch grid of the input picture, "
                       f"so no map can be drawn from them")
    return grid


def build_probe(model: keras.Model, layer_paths: tuple[str, ...] = (), rule: str | None = None,
                epsilon: float | None = None) -> Probe:
    """Replay ``model`` into a flat graph exposing ``layer_paths`` and the logits, with ``rule``'s backward pass.

    ``rule`` is None (the plain gradient) or one of ``RULES``; ``epsilon`` (> 0) is
    the stabiliser of ``lrp_epsilon``. With ``rescale``, the flat model expects a
    batch ``(2n, H, W, C)`` of n inputs followed by their n baselines, and only the
    inputs' rows get (nonzero) multipliers. The head's removed softmax/sigmoid gets
    no rule: scores are logits. Raises KeyError naming the first path that is not a
    layer of the model, ValueError for an unknown rule or a missing epsilon.
    """
    if rule is not None and rule not in RULES:
        raise ValueError(f"unknown backward rule {rule!r}; use one of {', '.join(RULES)}")
    if rule == LRP_EPSILON and not (epsilon is not None and epsilon > 0):
        raise ValueError(f"lrp_epsilon needs an epsilon > 0, got {epsilon!r}")
    final = final_operation(model)
    kind = output_kind(model)
    head = _without_activation(final) if kind != LINEAR else final
    captured: dict[str, keras.KerasTensor] = {}
    gate = _GradientGate(name="guided_gate") if rule == GUIDED else None
    # One instance each, called at every site: auto-named layers could clash with the model's own names.
    rule_gradient = _RuleGradient(rule, epsilon, name=f"probe_{rule}") if rule not in (None, GUIDED) else None
    splits: dict[int, _SplitActivation] = {}  # per fused layer, so a shared layer is split once
    sites = {site.path: site for site in attention_sites(model)} if any(map(addressed_part, layer_paths)) else {}
    observed = {p: Observed(sites[part[0]], part[1]) for p in layer_paths
                if (part := addressed_part(p)) is not None and part[0] in sites}

    def with_rule(op, args, kwargs):
        site = _rule_site(op, rule)
        if site is None or rule_gradient is None:  # no rule at this operation (none at all without a rule)
            return op(*args, **kwargs)
        if site == "fused":
            if id(op) not in splits:
                splits[id(op)] = _SplitActivation(op)
            z, y = splits[id(op)](args[0])
        else:  # "alone"
            z, y = args[0], op(*args, **kwargs)
        return rule_gradient([z, y])

    def replay(graph_model: keras.Model, inputs, prefix: str):
        def operation_fn(op):
            if isinstance(op, keras.Model):
                return lambda x, *args, **kwargs: replay(op, x, f"{prefix}{op.name}{PATH_SEPARATOR}")

            def record(*args, **kwargs):
                path = f"{prefix}{op.name}"
                if op is final and kind != LINEAR:
                    out = head(*args, **kwargs)  # the logits: no activation left for a rule to change
                else:
                    out = with_rule(op, args, kwargs)
                if gate is not None and _is_relu(op):
                    out = gate(out)
                captured[path] = out
                return out

            return record

        return run_through_graph(graph_model, inputs, operation_fn)

    inputs = keras.Input(model.inputs[0].shape[1:], name="probe_input")
    outputs = keras.tree.flatten(replay(model, inputs, ""))
    missing = [p for p in layer_paths if p not in captured and p not in observed]
    if missing:
        raise KeyError(f"the model has no layer '{missing[0]}'")
    graph_paths = [p for p in layer_paths if p not in observed]
    flat = keras.Model(inputs, [captured[p] for p in graph_paths] + [outputs[0]], name=f"{model.name}_probe")
    probe = Probe(flat, tuple(layer_paths), kind, rule, observed=observed)
    if observed:  # their shapes are known only from a call: one symbolic run of the flat model
        shapes = [tuple(t.shape) for t in keras.tree.flatten(_symbolic_run(probe))]
    else:
        shapes = [tuple(captured[p].shape) for p in layer_paths]
    size = input_size(model)
    probe.grids = tuple(_grid_of(p, shape, size) for p, shape in zip(layer_paths, shapes, strict=True))
    return probe


def _symbolic_run(probe: Probe) -> list:
    """The tensors ``probe.run`` gives, traced once on a one-picture batch in a throwaway graph."""
    spec = tf.TensorSpec((1, *probe.model.inputs[0].shape[1:]), tf.float32)
    return tf.function(lambda x: probe.run(x)[0], autograph=False).get_concrete_function(spec).structured_outputs


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
    producer = producing_operation(first_input(op))
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
