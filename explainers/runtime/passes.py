"""Compiled forward and backward passes over a model's probes, batched: the engine's only way to run a model."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from explainers.runtime import stopping
from explainers.runtime.lru import LruCache
from explainers.runtime.probe import GUIDED, LRP_EPSILON, RESCALE, Probe, build_probe, output_kind
from explainers.runtime.targets import TOP1, choose_classes, class_scores, probabilities_from_logits

DEFAULT_BATCH_SIZE = 16
PROBE_IMAGES = 8  # images in the timed passes that price one forward and one backward image
PROBE_REPEATS = 3  # timed runs of each; the fastest counts, as the others met other work on the cores
# A pass's cost is a fixed part plus a part per image, so the passes are also timed at 1 image and, where that is
# cheap, at a large batch: on the digits CNN a backward pass of 64 costs about 6 passes of 1, not 64 (priced per
# image from a pass of 8, the trust evaluation of its 1,000 demo digits was estimated at 2.3 times what it took).
LARGE_PROBE_IMAGES = 64
LARGE_PROBE_SECONDS = 0.25  # the large batch is timed when its timed runs should take no longer than this in all
QUICK_PROBE_SECONDS = 0.05  # quick passes are timed again until their timings add up to this,
QUICK_PROBE_REPEATS = 20  # or this many
MAX_COMPILED_PROBES = 24  # per model: a probe and its traced passes hold graphs worth a few MB each


@dataclass
class PassResult:
    """One pass's results for a batch, as NumPy arrays; a forward pass leaves the gradients empty."""

    # per layer (N, h, w, K): a block's tokens laid on their patch grid; an attention layer's scores (N, heads, T, T)
    activations: list[np.ndarray]
    layer_gradients: list[np.ndarray]  # per layer, like the activations: d score / d activation
    input_gradients: np.ndarray | None  # (N, H, W, C) d score / d input (with a rule: the modified gradient)
    logits: np.ndarray  # (N, classes)
    classes: np.ndarray  # (N,) the explained class of each image (TOP1 resolved)
    # (N, classes) the baselines' logits, which the rescale rule's paired pass computes anyway; None for other rules.
    baseline_logits: np.ndarray | None = None

    def gradients_at_input(self) -> np.ndarray:
        """``input_gradients`` of a pass that took them (``wrt_input=True``): any other pass is the caller's mistake."""
        if self.input_gradients is None:
            raise ValueError("this pass took no gradients at the input; run it with wrt_input=True")
        return self.input_gradients


def _concat(parts: list[PassResult]) -> PassResult:
    def cat(arrays):
        return np.concatenate(arrays) if arrays else arrays

    return PassResult(
        [cat(list(per_layer)) for per_layer in zip(*(p.activations for p in parts))],
        [cat(list(per_layer)) for per_layer in zip(*(p.layer_gradients for p in parts))],
        None if parts[0].input_gradients is None else cat([p.input_gradients for p in parts]),
        cat([p.logits for p in parts]),
        cat([p.classes for p in parts]),
        None if parts[0].baseline_logits is None else cat([p.baseline_logits for p in parts]),
    )


class _Traces:
    """Passes being traced now, and traces started so far, over every model: a pass timed beside a trace took
    about twice as long on the development machine (the warm-up traces while the first visitor's page estimates),
    so ``Runtime.pass_cost`` times only between traces."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.running = 0
        self.started = 0

    @contextlib.contextmanager
    def tracing(self):
        with self._changed:
            self.running += 1
            self.started += 1
        try:
            yield
        finally:
            with self._changed:
                self.running -= 1
                self._changed.notify_all()

    def none_running(self, timeout: float) -> int:
        """Wait until no pass is being traced (at most ``timeout`` s); the number of traces started so far."""
        with self._changed:
            self._changed.wait_for(lambda: self.running == 0, timeout)
            return self.started


_TRACES = _Traces()


class _CompiledProbe:
    """A probe's passes as TensorFlow functions, one per kind of pass, traced once each.

    A trace costs seconds on a deep model while a compiled pass runs about five
    times faster than eager execution, so every function is traced for any batch
    size (``None`` in the signature) and kept for the life of the model.
    """

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self._signature = [
            tf.TensorSpec((None, *probe.model.inputs[0].shape[1:]), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ]
        self._passes: dict[tuple[bool, bool], tf.types.experimental.GenericFunction] = {}
        self._lock = threading.Lock()

    def run(self, x, targets, backward: bool, wrt_input: bool):
        key = (backward, wrt_input)
        with self._lock:  # two sessions (or the warm-up) must not trace the same pass twice
            if key not in self._passes:
                with _TRACES.tracing():
                    # No autograph: these functions branch only on Python values, and it saves
                    # about a third of every trace.
                    self._passes[key] = tf.function(
                        functools.partial(self._run, backward=backward, wrt_input=wrt_input),
                        input_signature=self._signature,
                        autograph=False,
                    )
                    # Trace now, under the lock: a concurrent first call would otherwise trace again.
                    self._passes[key].get_concrete_function()
        return self._passes[key](x, targets)

    def _outputs(self, x):
        return self.probe.run(x)

    def _run(self, x, targets, backward: bool, wrt_input: bool):
        # The Rescale rule's batch is [inputs; baselines] with one target per input: every
        # result is the inputs' half, and the score is taken on the inputs alone.
        paired = self.probe.rule == RESCALE
        n = tf.shape(targets)[0]

        def inputs_half(tensors):
            return [t[:n] for t in tensors] if paired else tensors

        # Every row's logits are returned (with the rule, the baselines' follow the inputs'): they cost nothing more.
        if not backward:
            activations, every_logit = self._outputs(x)
            logits = every_logit[:n] if paired else every_logit
            return self._laid_out(inputs_half(activations)), [], x[:0], every_logit, choose_classes(logits, targets)
        with tf.GradientTape() as tape:
            tape.watch(x)
            activations, every_logit = self._outputs(x)
            logits = every_logit[:n] if paired else every_logit
            classes = choose_classes(logits, targets)
            scores = class_scores(logits, classes)
        # Each image's score depends only on its own input (inference mode), so the
        # gradient of the batch sum gives every image its own gradient in one pass.
        # (The Rescale rule pairs row i with row n + i, and zeroes the baselines' rows.)
        sources = activations + ([x] if wrt_input else [])
        grads = inputs_half(tape.gradient(scores, sources))
        input_grads = grads[-1] if wrt_input else x[:0]
        return (self._laid_out(inputs_half(activations)), self._laid_out(grads[: len(activations)]), input_grads,
                every_logit, classes)

    def _laid_out(self, tensors: list) -> list:
        """Token tensors (and their gradients) on their patch grids (``Probe.grids``); other tensors as they are."""
        grids = self.probe.grids or (None,) * len(tensors)
        return [t if grid is None else grid.lay_out(t) for t, grid in zip(tensors, grids, strict=True)]


class Runtime:
    """Per-model probes and their compiled passes, built on first use and kept, and what a pass costs.

    ``passes_run`` counts batches sent through the model, so tests and the
    benchmark can see when a cache spared a computation. ``fingerprint`` is the
    network's (``LoadedModel.network_fingerprint``): pass timings are kept by it
    (``PASS_COSTS``), so a network loaded again is not timed again.
    """

    def __init__(self, model: keras.Model, kind: str | None = None, fingerprint: str | None = None) -> None:
        self.model = model
        # An opaque model's graph may end in scores recovered from probabilities,
        # so the caller can say what its output was; otherwise the graph tells.
        self.output_kind = kind or output_kind(model)
        self.fingerprint = fingerprint
        self.passes_run = 0
        # Visitors choose layer sets and epsilons freely: the most recently used graphs only, each built once even
        # when concurrent sessions ask for it together.
        self._compiled: LruCache[_CompiledProbe] = LruCache(MAX_COMPILED_PROBES)
        self._lock = threading.Lock()
        self._own_pass_cost: PassCost | None = None  # a runtime without a fingerprint keeps its timing itself

    def _probe(self, layers: tuple[str, ...], rule: str | None, epsilon: float | None) -> _CompiledProbe:
        key = (layers, rule, epsilon)  # each rule (and each epsilon) is its own graph, traced once
        return self._compiled.get_or_make(key, lambda: _CompiledProbe(build_probe(self.model, layers, rule, epsilon)))

    def gradients(
        self,
        x: np.ndarray,
        targets: np.ndarray,
        layers: tuple[str, ...] = (),
        *,
        wrt_input: bool = False,
        backward: bool = True,
        guided: bool = False,
        rule: str | None = None,
        epsilon: float | None = None,
        baselines: np.ndarray | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> PassResult:
        """Activations of ``layers``, gradients of each image's class score, logits, in batches.

        ``x`` is ``(N, H, W, C)``, ``targets`` ``(N,)`` (TOP1 resolved in the pass).
        ``rule`` replaces the gradient at the nonlinearities (``probe.RULES``;
        ``guided=True`` is short for ``rule="guided"``), ``epsilon`` is
        ``lrp_epsilon``'s. ``rule="rescale"`` needs ``baselines`` like ``x``: each
        image runs beside its baseline in the same pass, so a pass holds
        ``max(1, batch_size // 2)`` images (``2 *`` that many rows), and the input
        gradients are DeepLIFT's multipliers. Every result is the images' own.
        """
        rule = GUIDED if guided else rule
        paired = rule == RESCALE
        if paired != (baselines is not None):
            raise ValueError("baselines go with the rescale rule, and only with it")
        compiled = self._probe(tuple(layers), rule, epsilon if rule == LRP_EPSILON else None)
        per_pass = max(1, batch_size // 2) if paired else batch_size
        parts = []
        for start in range(0, len(x), per_pass):
            stopping.check()  # between batches: work whose caller has gone ends here (``stopping.stop_when``)
            with self._lock:  # sessions run passes from several threads at once
                self.passes_run += 1
            batch = x[start : start + per_pass]
            if baselines is not None:  # the rescale rule's pairs (checked above)
                batch = np.concatenate([batch, baselines[start : start + per_pass]])
            acts, grads, input_grads, logits, classes = compiled.run(
                tf.convert_to_tensor(batch, tf.float32),
                tf.convert_to_tensor(targets[start : start + per_pass], tf.int32),
                backward,
                wrt_input,
            )
            logits = logits.numpy()
            images = len(classes)
            parts.append(
                PassResult(
                    [a.numpy() for a in acts],
                    [g.numpy() for g in grads],
                    input_grads.numpy() if wrt_input else None,
                    logits[:images],
                    classes.numpy(),
                    logits[images:] if paired else None,
                )
            )
        return _concat(parts)

    def forward(self, x: np.ndarray, targets: np.ndarray, layers: tuple[str, ...] = (), **kwargs) -> PassResult:
        """Activations, logits and classes without a backward pass."""
        return self.gradients(x, targets, layers, backward=False, **kwargs)

    def class_probabilities(self, x: np.ndarray, classes: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """``(N,)`` the model's probability of ``classes[i]`` for input ``x[i]``, in batches.

        Served by the plain forward pass, whose trace the other callers share.
        """
        result = self.forward(x, classes.astype(np.int32), batch_size=batch_size)
        return probabilities_from_logits(result.logits, self.output_kind)[np.arange(len(x)), result.classes]

    def warm_up(self, layer: str | None) -> None:
        """Trace the passes the pages use first (forward, input gradients, a CAM layer) on a dummy batch.

        The forward pass first: the sidebar's predictions wait for it.
        """
        x = np.zeros((1, *self.model.inputs[0].shape[1:]), np.float32)
        targets = np.full(1, -1, np.int32)
        self.forward(x, targets)
        self.gradients(x, targets, wrt_input=True)
        if layer is not None:
            self.gradients(x, targets, (layer,))
            self.forward(x, targets, (layer,))

    def pass_cost(self) -> PassCost:
        """Measured seconds of a backward and a forward pass at 1 image, ``PROBE_IMAGES`` and, when the model is
        small enough for it to be quick, ``LARGE_PROBE_IMAGES``.

        Timed once per network (preprocessing changes no pass's cost) on blank inputs through the passes the pages
        trace first (about a second on the embedded model), after one untimed call so that no trace is counted: the
        fastest of ``PROBE_REPEATS`` runs made while no pass was being traced (``_Traces``).
        """
        known = self._known_pass_cost()
        if known is not None:
            return known
        with _TIMING:  # one network timed at a time: two timings side by side would each slow the other down
            known = self._known_pass_cost()  # timed by another session while this one waited
            if known is None:
                known = self._time_passes()
                if self.fingerprint:
                    PASS_COSTS[self.fingerprint] = known
                else:
                    self._own_pass_cost = known
            return known

    def pass_seconds(self) -> tuple[float, float]:
        """Measured seconds per image of a backward and of a forward pass: ``(backward, forward)``, each a pass of
        ``PROBE_IMAGES`` images over their number (``pass_cost``)."""
        cost = self.pass_cost()
        at = cost.sizes.index(PROBE_IMAGES)
        return cost.backward[at] / PROBE_IMAGES, cost.forward[at] / PROBE_IMAGES

    def _known_pass_cost(self) -> PassCost | None:
        return PASS_COSTS.get(self.fingerprint) if self.fingerprint else self._own_pass_cost

    def _time_passes(self) -> PassCost:
        shape = tuple(self.model.inputs[0].shape[1:])
        timings: dict[bool, list[float]] = {}
        sizes = [1, PROBE_IMAGES]
        for backward in (True, False):
            self.gradients(np.zeros((1, *shape), np.float32), np.full(1, TOP1, np.int32), wrt_input=backward,
                           backward=backward)
            timings[backward] = [self._fastest_pass(backward, images, shape) for images in sizes]
        # The large batch, as both kinds of pass, when the probe's runs at that size should be quick.
        projected = PROBE_REPEATS * (timings[True][-1] + timings[False][-1]) * LARGE_PROBE_IMAGES / PROBE_IMAGES
        if projected <= LARGE_PROBE_SECONDS:
            sizes.append(LARGE_PROBE_IMAGES)
            for backward in (True, False):
                timings[backward].append(self._fastest_pass(backward, LARGE_PROBE_IMAGES, shape))
        return PassCost(tuple(sizes), tuple(timings[True]), tuple(timings[False]))

    def _fastest_pass(self, backward: bool, images: int, shape: tuple) -> float:
        """The fastest of ``PROBE_REPEATS`` timed passes of ``images`` blank inputs, each timed between traces, or
        of more while they add up to less than ``QUICK_PROBE_SECONDS``: a pass of a few milliseconds varies by a
        tenth or more from one to the next."""
        x = np.zeros((images, *shape), np.float32)
        targets = np.full(images, TOP1, np.int32)
        timings: list[float] = []
        while len(timings) < PROBE_REPEATS or (sum(timings) < QUICK_PROBE_SECONDS and len(timings) < QUICK_PROBE_REPEATS):
            timings.append(_seconds_between_traces(
                lambda: self.gradients(x, targets, wrt_input=backward, backward=backward, batch_size=images)))
        return min(timings)


@dataclass(frozen=True)
class PassCost:
    """The measured seconds of one backward and one forward pass at the batch sizes timed (ascending)."""

    sizes: tuple[int, ...]  # images per pass
    backward: tuple[float, ...]  # seconds per pass, one per size
    forward: tuple[float, ...]

    def seconds(self, backward: bool, images: int) -> float:
        """Seconds one pass of ``images`` images takes: interpolated linearly between the sizes timed, and beyond
        the largest extended by the cost of an image there (the last two sizes' difference per image)."""
        if images <= 0:
            return 0.0
        times = self.backward if backward else self.forward
        if images <= self.sizes[-1]:
            return float(np.interp(images, self.sizes, times))
        per_image = max(0.0, (times[-1] - times[-2]) / (self.sizes[-1] - self.sizes[-2]))
        return times[-1] + (images - self.sizes[-1]) * per_image


# Each network's measured pass costs, by its fingerprint (``Runtime.pass_cost``): one small record per network.
PASS_COSTS: dict[str, PassCost] = {}
_TIMING = threading.Lock()


def _seconds_between_traces(run: Callable[[], object], patience: float = 10.0) -> float:
    """Seconds ``run()`` takes, timed once no pass is being traced, and again while one started or ran meanwhile;
    after ``patience`` seconds the last timing counts (one beside a trace beats none)."""
    deadline = time.monotonic() + patience
    while True:
        started = _TRACES.none_running(max(0.0, deadline - time.monotonic()))
        start = time.perf_counter()
        run()
        took = time.perf_counter() - start
        if (_TRACES.started == started and _TRACES.running == 0) or time.monotonic() > deadline:
            return took
