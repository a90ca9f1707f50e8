"""What a model has learned: inputs that maximise a class's logit or a channel's mean activation.

Built on tf-keras-vis's ActivationMaximization (Erhan et al. 2009; Simonyan et al.
2013, arXiv:1312.6034), with its regularisers (total variation, norm) and input
modifiers (jitter, rotation). The optimisation runs in pixel space (0..255) through
the model's own preprocessing, so the result is a picture the model would be shown,
and it maximises logits, not probabilities: a probability can rise by pushing the
other classes down instead of making this one stronger.

Results are seeded (the start image, the jitter and the rotation) and cached like maps.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from explainers.errors import InputError
from explainers.methods.registry import Param, ParamSet, resolve_params
from explainers.models.loading import LoadedModel
from explainers.models.preprocessing import LUMA, PRESETS
from explainers.runtime import stopping
from explainers.runtime.cache import ResultCache
from explainers.runtime.lru import LruCache
from explainers.runtime.probe import build_probe

# Every setting of the optimisation, described once: the page's widgets, the link's keys, the CLI's options and
# the check of any value all come from these (the bounds are the page's). The defaults are what
# ``python -m explainers.bench --learned`` measures.
PARAMS: tuple[Param, ...] = (
    Param("steps", 100, "optimisation steps", 10, 300, 10, label="Steps"),
    Param("tv_weight", 1.0, "weight of total variation: smooth, picture-like inputs", 0.0, 3.0,
          presets=(0.0, 0.1, 0.3, 1.0, 3.0), label="Total variation"),
    Param("norm_weight", 0.3, "weight of the input's L1 norm: no saturated noise", 0.0, 1.0,
          presets=(0.0, 0.1, 0.3, 1.0), label="Norm"),
    # The one default that depends on the model: ``params_for`` makes it a fiftieth of the picture's side.
    Param("jitter", 4, "pixels of random shift per step, so features survive a shift; unless given, a fiftieth of "
                       "the picture's side (4 px at 224 px)", 0, 16, 1, label="Jitter (px)"),
    Param("rotation", 1.0, "degrees of random rotation per step", 0.0, 10.0, 0.5, label="Rotation (°)"),
    Param("learning_rate", 3.0, "RMSprop step size, in pixel levels (0..255)", 0.3, 10.0,
          presets=(0.3, 1.0, 3.0, 10.0), label="Step size"),
    Param("seed", 0, "seed of the grey start, the jitter and the rotation", 0, 2**31 - 1, label="Seed"),
)
_PARAMS_BY_NAME = {param.name: param for param in PARAMS}


OPTIMISATION = ParamSet("optimisation", "the optimisation", PARAMS)


def params_for(model: LoadedModel) -> ParamSet:
    """``OPTIMISATION`` with the defaults ``model`` gets: the jitter a fiftieth of its picture's side (4 px shift a
    28 px digit off its place), within the jitter's bounds."""
    jitter = _PARAMS_BY_NAME["jitter"]
    own = int(min(jitter.high or 0, max(jitter.low or 0, 0.02 * min(model.input_size))))
    params = tuple(dataclasses.replace(p, default=own) if p is jitter else p for p in PARAMS)
    return dataclasses.replace(OPTIMISATION, params=params)


def _default(name: str) -> Any:
    return field(default=_PARAMS_BY_NAME[name].default)


@dataclass(frozen=True)
class Settings:
    """How a visualisation is optimised: one value per ``PARAMS`` entry, each checked (and converted to its type)
    by it. ``settings_for(model, ...)`` gives the model's own defaults; ``Settings()`` those of a 224 px picture."""

    steps: int = _default("steps")
    tv_weight: float = _default("tv_weight")
    norm_weight: float = _default("norm_weight")
    jitter: int = _default("jitter")
    rotation: float = _default("rotation")
    learning_rate: float = _default("learning_rate")
    seed: int = _default("seed")

    def __post_init__(self) -> None:
        checked = resolve_params(OPTIMISATION, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # 1 given for a float setting is kept as 1.0: one cache key


def settings_for(model: LoadedModel, **values: Any) -> Settings:
    """The settings ``values`` give on ``model``, its own defaults for the rest (``params_for``); InputError with one
    sentence for a name that is no setting or a value outside its bounds."""
    return Settings(**resolve_params(params_for(model), values))


OnStep = Callable[[int, int], None]  # called after each step with (steps done, steps in all)
FRAMES = 25  # pictures kept of the first target's optimisation, for its animation
# A picture whose pixels spread less than this (standard deviation, in 0..255 levels) is flat: with nothing to
# raise, the regularisers alone shape it, down to one colour (often black: the norm pulls every pixel to 0).
FLAT_LEVELS = 2.0
UNMOVED_NOTE = ("The optimisation did not move this picture: its {target}'s score did not rise from the grey start, "
                "or the picture came out flat. It shows nothing the {target} responds to, so what the model sees in "
                "it means nothing.")
VISUALIZATIONS = ResultCache(max_bytes=128 << 20)
_TF_KERAS_VIS = threading.Lock()  # its jitter draws from NumPy's global generator: one run at a time, seeded


def _pixel_model(model: LoadedModel, layer: str | None) -> keras.Model:
    """Pixels in 0..255 -> the model's logits, or the activation of ``layer``.

    The pixels are ``(H, W, 3)`` for a colour model and ``(H, W, 1)`` for a grayscale one: a grayscale model sees
    only luma, so colour would be left to the regularisers alone and come out as noise.
    """
    height, width = model.input_size
    pixels = keras.Input((height, width, model.channels), name="pixels")
    x = pixels if model.channels == 3 else keras.ops.repeat(pixels, 3, axis=-1)
    x = PRESETS[model.preprocessing].apply(x)
    if model.channels == 1:
        luma = LUMA[::-1] if model.preprocessing == "caffe" else LUMA
        x = keras.ops.expand_dims(keras.ops.tensordot(x, luma, axes=1), -1)
    try:
        probe = build_probe(model.model, (layer,) if layer else ())
        outputs = probe.model(x)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise InputError(f"{model.display_name} cannot be visualised: its graph could not be rebuilt from pixels "
                         f"({type(error).__name__}: {error}).") from error
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    # A list of one input, as tf-keras-vis calls it, so Keras finds the structure it expects.
    return keras.Model([pixels], outputs[0] if layer else outputs[-1])


class _Traced:
    """The pixel model with its call traced once: tf-keras-vis calls the model eagerly at every step, and eager
    dispatch of a few hundred small ops cost four times the traced pass on this CPU."""

    def __init__(self, model: keras.Model) -> None:
        import tensorflow as tf

        self._model = model
        self._call = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def __call__(self, inputs, training: bool = False):
        return self._call(inputs)


# The most recently used traced pixel models: each holds a rebuilt graph and its traced gradient.
MAX_TRACED = 8
TRACED: LruCache[_Traced] = LruCache(MAX_TRACED)


def _traced_pixel_model(model: LoadedModel, layer: str | None) -> _Traced:
    """One traced pixel model per model and layer: tracing it and its gradient costs about a second."""
    key = (model.fingerprint, model.preprocessing, model.channels, layer)
    return TRACED.get_or_make(key, lambda: _Traced(_pixel_model(model, layer)))


def _optimise(model: LoadedModel, layer: str | None, score, count: int, settings: Settings,
              progress: OnStep | None) -> Visualization:
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.callbacks import Callback
    from tf_keras_vis.activation_maximization.input_modifiers import Jitter, Rotate2D
    from tf_keras_vis.activation_maximization.regularizers import Norm, TotalVariation2D

    every = max(1, settings.steps // FRAMES)
    frames: list[np.ndarray] = []

    class _Report(Callback):
        def __call__(self, i, values, *args, **kwargs) -> None:
            stopping.check()  # each step is a batch of passes: a run nobody waits for ends here
            if i % every == 0 or i + 1 == settings.steps:  # the first target's picture, for the animation
                frames.append(_as_pictures(values[0][:1])[0])
            if progress is not None:
                progress(i + 1, settings.steps)

    height, width = model.input_size
    rng = np.random.default_rng(settings.seed)
    # A dim grey start with a little noise, as tf-keras-vis's own default, but seeded.
    start = rng.uniform(96.0, 160.0, (count, height, width, model.channels)).astype(np.float32)
    modifiers = []
    if settings.jitter:
        modifiers.append(Jitter(jitter=settings.jitter))
    if settings.rotation:
        rotate = Rotate2D(degree=settings.rotation)
        rotate.random_generator = np.random.default_rng([settings.seed, 1])
        modifiers.append(rotate)
    regularizers = [TotalVariation2D(weight=settings.tv_weight), Norm(weight=settings.norm_weight, p=1)]
    pixel_model = _traced_pixel_model(model, layer)
    visualizer = ActivationMaximization(pixel_model, clone=False)
    with _TF_KERAS_VIS:
        np.random.seed(settings.seed)
        result = visualizer(score, seed_input=start, input_range=(0, 255), input_modifiers=modifiers,
                            regularizers=regularizers, steps=settings.steps,
                            optimizer=keras.optimizers.RMSprop(settings.learning_rate, 0.999), callbacks=[_Report()])
    pictures = _as_pictures(result)
    return Visualization(pictures, np.stack(frames), _unmoved(pixel_model, score, start, result, pictures))


def _unmoved(pixel_model, score, start: np.ndarray, end, pictures: np.ndarray) -> np.ndarray:
    """``(N,)`` True where the optimisation did not move a picture: its target's score at the end is no higher than
    at the start (a dead channel, a zero gradient), or the picture came out flat (``FLAT_LEVELS``)."""
    before, after = (np.asarray(score(pixel_model([np.asarray(x, np.float32)])), np.float64) for x in (start, end))
    rose = after - before > 1e-6 * np.maximum(1.0, np.abs(before))
    flat = pictures.reshape(len(pictures), -1).std(axis=1) < FLAT_LEVELS
    return ~rose | flat


def _as_pictures(values) -> np.ndarray:
    """Optimised inputs as ``(N, H, W, 3)`` uint8 pictures; a grayscale model's grey repeated in each channel."""
    pictures = np.clip(np.asarray(values), 0, 255).round().astype(np.uint8)
    return np.repeat(pictures, 3, axis=-1) if pictures.shape[-1] == 1 else pictures


@dataclass(frozen=True)
class Visualization:
    pictures: np.ndarray  # (N, H, W, 3) uint8
    frames: np.ndarray  # (F, H, W, 3) uint8: the first target's picture as the optimisation went
    unmoved: np.ndarray  # (N,) bool: the optimisation did not move this picture (see UNMOVED_NOTE): no result


def _cached(key: tuple, compute: Callable[[], Visualization]) -> Visualization:
    hit = VISUALIZATIONS.get(key)
    if hit is None:
        hit = compute()
        VISUALIZATIONS.put(key, hit, hit.pictures)
    return hit


def animation_gif(frames: np.ndarray, seconds: float = 4.0) -> bytes:
    """``(F, H, W, 3)`` uint8 frames as a looping GIF of about ``seconds``, the last frame held longer."""
    from PIL import Image

    pictures = [Image.fromarray(frame) for frame in frames]
    durations = [max(20, round(seconds * 1000 / len(pictures)))] * len(pictures)
    durations[-1] = 1500
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=durations, loop=0)
    return buffer.getvalue()


def class_visualization(model: LoadedModel, classes: Sequence[int | str], progress: OnStep | None = None,
                        **params) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 inputs that maximise each class's logit (a class by index or by name).

    ``params`` are settings named in ``PARAMS`` (steps, tv_weight, norm_weight, jitter, rotation, learning_rate,
    seed); the rest keep the model's defaults (``settings_for``).
    """
    return _class_run(model, classes, progress, params).pictures


def class_animation(model: LoadedModel, classes: Sequence[int | str], progress: OnStep | None = None,
                    **params) -> np.ndarray:
    """``(F, H, W, 3)`` uint8: the first class's picture as ``class_visualization`` optimised it (the same run)."""
    return _class_run(model, classes, progress, params).frames


def channel_visualization(model: LoadedModel, layer: str, channels: Sequence[int], progress: OnStep | None = None,
                          **params) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 inputs that maximise the activation of each channel of ``layer`` (summed over positions)."""
    return _channel_run(model, layer, channels, progress, params).pictures


def channel_animation(model: LoadedModel, layer: str, channels: Sequence[int], progress: OnStep | None = None,
                      **params) -> np.ndarray:
    """``(F, H, W, 3)`` uint8: the first channel's picture as ``channel_visualization`` optimised it."""
    return _channel_run(model, layer, channels, progress, params).frames


def class_run(model: LoadedModel, classes: Sequence[int | str], progress: OnStep | None = None,
              **params) -> Visualization:
    """The whole of ``class_visualization``'s run: the pictures, the first one's frames, which did not move."""
    return _class_run(model, classes, progress, params)


def channel_run(model: LoadedModel, layer: str, channels: Sequence[int], progress: OnStep | None = None,
                **params) -> Visualization:
    """The whole of ``channel_visualization``'s run: the pictures, the first one's frames, which did not move."""
    return _channel_run(model, layer, channels, progress, params)


def _class_run(model: LoadedModel, classes: Sequence[int | str], progress: OnStep | None,
               params: dict) -> Visualization:
    from tf_keras_vis.utils.scores import CategoricalScore

    settings = settings_for(model, **params)
    indices = [class_index(model, c) for c in classes]
    key = ("class", model.fingerprint, model.preprocessing, tuple(indices), settings)
    return _cached(key, lambda: _optimise(model, None, CategoricalScore(indices), len(indices), settings, progress))


def _channel_run(model: LoadedModel, layer: str, channels: Sequence[int], progress: OnStep | None,
                 params: dict) -> Visualization:
    settings = settings_for(model, **params)
    if channels_unavailable(model):
        raise InputError(channels_unavailable(model))
    info = {i.path: i for i in model.layers}.get(layer)
    if info is None:
        raise InputError(f"'{layer}' is not a layer of {model.display_name}.")
    depth = int(info.channels or 0)
    wrong = [c for c in channels if not 0 <= int(c) < depth]
    if wrong:
        raise InputError(f"Channel {wrong[0]} is outside 0 to {depth - 1}, the channels of {layer}.")
    wanted = np.array([int(c) for c in channels])

    def score(activations):
        # Each sample raises its own channel's activation summed over the positions: a mean would shrink the
        # gradient by the number of positions until the regularisers alone shaped the picture (a flat grey).
        spatial = tuple(range(1, len(activations.shape) - 1))
        sums = keras.ops.sum(activations, axis=spatial)
        return keras.ops.take_along_axis(sums, wanted[:, None], axis=1)[:, 0]

    key = ("channel", model.fingerprint, model.preprocessing, layer, tuple(wanted.tolist()), settings)
    return _cached(key, lambda: _optimise(model, layer, score, len(wanted), settings, progress))


# A step's work besides the model's passes (jitter, rotation, regularisers, the optimiser), at 224 x 224 px: its
# share measured on this 2-core CPU as one class taking 0.11 s a step and ten classes 0.66 s.
STEP_OVERHEAD_SECONDS = 0.05


def estimate_seconds(model: LoadedModel, targets: int, settings: Settings) -> float:
    """About how long visualising ``targets`` classes or channels takes: per step, a backward pass for each target
    at the model's measured cost, plus the step's own work scaled by the picture's size."""
    backward, _ = model.runtime.pass_seconds()
    height, width = model.input_size
    return settings.steps * (targets * backward + STEP_OVERHEAD_SECONDS * height * width / 224**2)


# How much longer a visualisation takes when other work shares the cores (the browser drawing the page's progress,
# another job): each step is many small operations split over the cores, so it loses more than its share.
# ``python -m explainers.bench --learned`` measures it: on this 2-core CPU, 1.8 to 2.4 times the quiet estimate
# with about one core taken by other work, 2.8 to 3.6 with one and a half (the estimate alone was 13 s for a
# run that took 31 s with a browser beside it).
BUSY_FACTOR = 3.0


def estimate_range(model: LoadedModel, targets: int, settings: Settings) -> tuple[float, float]:
    """``(low, high)`` seconds for visualising ``targets`` classes or channels: ``estimate_seconds`` on cores of its
    own, and ``BUSY_FACTOR`` times that on cores shared with other work. One figure cannot be right for both."""
    low = estimate_seconds(model, targets, settings)
    return low, low * BUSY_FACTOR


def describe_range(low: float, high: float) -> str:
    """``estimate_range`` in words for a button: ``about 12–36 s``, ``about 50 s to 3 min``, ``under 2 s``."""
    from explainers.estimates import describe, duration

    if low < 1 or round(low) == round(high):
        return f"under {duration(high)}" if low < 1 <= high else describe(high)
    if high < 90:  # both in seconds
        return f"about {low:.0f}–{high:.0f} s"
    return f"about {duration(low)} to {duration(high)}"


def channels_unavailable(model: LoadedModel) -> str | None:
    """Why no channel of the model can be visualised, or None when they can."""
    if model.format == "SavedModel":
        return (f"{model.display_name} is a SavedModel, which exposes no inner layers: to visualise channels, save "
                "the model as .keras or .h5.")
    if not model.conv_layers:
        return f"{model.display_name} has no layer with a spatial output, so it has no channels to visualise."
    return None


def class_index(model: LoadedModel, target: int | str) -> int:
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in model.class_names:
            raise InputError(f"'{target}' is not a class of {model.display_name}.")
        return model.class_names.index(target)
    index = int(target)
    if not 0 <= index < len(model.class_names):
        raise InputError(f"Class {index} is outside 0 to {len(model.class_names) - 1}.")
    return index
