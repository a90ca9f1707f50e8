"""What a model has learned: inputs that maximise a class's logit or a channel's mean activation.

Built on tf-keras-vis's ActivationMaximization (Erhan et al. 2009; Simonyan et al. 2013, arXiv:1312.6034), whose
loop moves the inputs of a model to raise a score. What it moves is the picture's parameterisation
(``explainers.parameterisations``): by default the picture's spectrum in decorrelated colours (Fourier), seen
through random views each step, so the picture holds shapes a person can read; or only the spectrum's phase
(MaCo); or the pixels themselves with tf-keras-vis's regularisers and input modifiers (the pixel space, kept for
comparison: what survives there is mostly what a person cannot see). The parameterisation is a model from its
parameters to pixels (0..255), placed in front of the model's own preprocessing, so the result is a picture the
model would be shown; it maximises logits, not probabilities: a probability can rise by pushing the other classes
down instead of making this one stronger.

tf-keras-vis's loop serves every parameterisation: its seed input is the parameters, its model the
parameterisation in front of the pixel model. Its input modifiers and regularisers act on that input, so they
serve pixel space only; the spectral parameterisations' random views are a layer inside the model
(``parameterisations.RandomView``), and their pixels come back through its activation modifier.

Several pictures of one target (``variants``) are pushed apart by a diversity term (after Olah et al. 2017's): the
similarity of their activations at a middle layer is subtracted from the score.

Results are seeded (the start, the views, the jitter and the rotation) and cached like maps.
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

from explainers import parameterisations
from explainers.errors import InputError
from explainers.methods.registry import Param, ParamSet, resolve_params
from explainers.models.loading import LoadedModel
from explainers.models.preprocessing import LUMA, PRESETS
from explainers.parameterisations import FOURIER, PARAMETERISATIONS, PIXEL
from explainers.runtime import stopping
from explainers.runtime.cache import ResultCache
from explainers.runtime.lru import LruCache
from explainers.runtime.probe import build_probe

# Every setting of the optimisation, described once: the page's widgets, the link's keys, the CLI's options and
# the check of any value all come from these (the bounds are the page's). The defaults are what
# ``python -m explainers.bench --learned`` measures.
PARAMS: tuple[Param, ...] = (
    Param("parameterisation", FOURIER, "what the optimiser changes: fourier (the spectrum, scaled by 1/f, in "
                                       "decorrelated colours: pictures a person can read), maco (only the spectrum's "
                                       "phase, its magnitude a photo's) or pixel (the pixels: what the model reads)",
          choices=tuple(PARAMETERISATIONS), label="Parameterisation"),
    Param("steps", 200, "optimisation steps", 10, 500, 10, label="Steps"),
    Param("variants", 1, "pictures of each class or channel, pushed apart from each other by a diversity term",
          1, 4, 1, label="Pictures each"),
    Param("tv_weight", 1.0, "pixel space only: weight of total variation, for smooth, picture-like inputs", 0.0, 3.0,
          presets=(0.0, 0.1, 0.3, 1.0, 3.0), label="Total variation"),
    Param("norm_weight", 0.3, "pixel space only: weight of the input's L1 norm, against saturated noise", 0.0, 1.0,
          presets=(0.0, 0.1, 0.3, 1.0), label="Norm"),
    # The one default that depends on the model: ``params_for`` makes it a fiftieth of the picture's side.
    Param("jitter", 4, "pixel space only: pixels of random shift per step, so features survive a shift; unless "
                       "given, a fiftieth of the picture's side (4 px at 224 px)", 0, 16, 1, label="Jitter (px)"),
    Param("rotation", 1.0, "pixel space only: degrees of random rotation per step", 0.0, 10.0, 0.5,
          label="Rotation (°)"),
    Param("learning_rate", 3.0, "pixel space only: RMSprop step size, in pixel levels (0..255)", 0.3, 10.0,
          presets=(0.3, 1.0, 3.0, 10.0), label="Step size"),
    Param("seed", 0, "seed of the start, the random views, the jitter and the rotation", 0, 2**31 - 1, label="Seed"),
)
# The settings that shape only the pixel parameterisation: the others bring their own smoothness (the spectrum's
# scaling, the fixed magnitude) and their own random views (``parameterisations.VIEWS``).
PIXEL_ONLY = ("tv_weight", "norm_weight", "jitter", "rotation", "learning_rate")
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

    parameterisation: str = _default("parameterisation")
    steps: int = _default("steps")
    variants: int = _default("variants")
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

    def applies(self, name: str) -> bool:
        """Whether setting ``name`` shapes this parameterisation's pictures (``PIXEL_ONLY`` ones only pixel space)."""
        return self.parameterisation == PIXEL or name not in PIXEL_ONLY

    def key(self) -> tuple:
        """What decides the pictures: the settings that apply, by name. A pixel-only setting changed while another
        parameterisation is chosen changes nothing, so it makes no new result."""
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if self.applies(f.name))


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


def _pixel_model(model: LoadedModel, layer: str | None, style_layer: str | None = None) -> keras.Model:
    """Pixels in 0..255 -> the model's logits, or the activation of ``layer``; and, with ``style_layer``, that
    layer's activation as a second output (the diversity term's).

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
    inner = tuple(dict.fromkeys(name for name in (layer, style_layer) if name))
    try:
        probe = build_probe(model.model, inner)
        outputs = probe.model(x)
    except (ValueError, TypeError, NotImplementedError) as error:
        raise InputError(f"{model.display_name} cannot be visualised: its graph could not be rebuilt from pixels "
                         f"({type(error).__name__}: {error}).") from error
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    by_layer = dict(zip(inner, outputs))
    target = by_layer[layer] if layer else outputs[-1]
    if style_layer is None:
        # A list of one input, as tf-keras-vis calls it, so Keras finds the structure it expects.
        return keras.Model([pixels], target)
    style = by_layer[style_layer] if style_layer != _PIXELS else pixels
    return keras.Model([pixels], [target, style])


class _Traced:
    """A model with its call traced once: tf-keras-vis calls the model eagerly at every step, and eager dispatch of a
    few hundred small ops cost four times the traced pass on this CPU."""

    def __init__(self, model: keras.Model) -> None:
        import tensorflow as tf

        self._model = model
        self._call = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def __call__(self, inputs, training: bool = False):
        return self._call(inputs)


@dataclass(frozen=True)
class _Optimised:
    """What the optimisation moves for one parameterisation: parameters -> picture -> random view -> the model's
    score (and the diversity term's activations), traced; the parameters' picture alone, traced; the view, whose
    generator each run reseeds."""

    model: _Traced
    picture: _Traced
    view: parameterisations.RandomView


# The most recently used traced models: each holds a rebuilt graph and its traced gradient.
MAX_TRACED = 8
TRACED: LruCache[_Traced | _Optimised] = LruCache(MAX_TRACED)
_PIXELS = "pixels"  # the style "layer" of a model with no spatial layer: the picture itself


def _traced_pixel_model(model: LoadedModel, layer: str | None, style_layer: str | None = None) -> _Traced:
    """One traced pixel model per model, layer and diversity layer: tracing it and its gradient costs about a
    second."""
    key = (model.fingerprint, model.preprocessing, model.channels, layer) + ((style_layer,) if style_layer else ())
    made = TRACED.get_or_make(key, lambda: _Traced(_pixel_model(model, layer, style_layer)))
    assert isinstance(made, _Traced)
    return made


def _optimised_model(model: LoadedModel, layer: str | None, name: str, style_layer: str | None) -> _Optimised:
    """One traced parameterised model per model, layer, parameterisation and diversity layer."""

    def make() -> _Optimised:
        height, width = model.input_size
        picture = parameterisations.decoder(name, height, width, model.channels)
        view = parameterisations.RandomView(parameterisations.VIEWS[name], name="random_view")
        parameters = keras.Input(picture.inputs[0].shape[1:], name="parameters")
        scored = _pixel_model(model, layer, style_layer)(view(picture(parameters)))
        return _Optimised(_Traced(keras.Model([parameters], scored)), _Traced(picture), view)

    made = TRACED.get_or_make((model.fingerprint, model.preprocessing, model.channels, layer, name, style_layer), make)
    assert isinstance(made, _Optimised)
    return made


# Adam's step on the spectrum's parameters, which are scaled so that unit parameters give a field of unit spread
# (``parameterisations.spectrum_scale``). Measured on the embedded model (10 classes, 200 steps): 0.1 and 0.2 both
# left 9 of 10 classes recognised after a blur and a half-size round trip, 0.2 with stronger colours and shapes.
FOURIER_LEARNING_RATE = 0.2
# On MaCo's free fields (unit spread) whose phase is taken. On the embedded model (10 classes, 200 steps) 0.1, 0.3
# and 1.0 gave alike pictures and alike counts (1 in 10 recognised after a blur and a half-size round trip).
MACO_LEARNING_RATE = 0.3
# How much the diversity term weighs, in logits: it subtracts this times the mean cosine similarity of a picture's
# activations at the style layer to those of the other pictures of its target. Lucid compares Gram matrices (the
# pictures' style); on the digits CNN that barely parted them (pixel correlation of three 3s 0.87 without, 0.87
# at weight 5), where comparing the activations themselves did (0.47 at 10, each still read as a 3).
DIVERSITY_WEIGHT = 10.0


def _style_layer(model: LoadedModel, layer: str | None) -> str:
    """The layer whose activations the diversity term compares: a channel's own layer, or for a class the middle
    spatial layer (parts and textures), or the picture itself for a model with none."""
    if layer:
        return layer
    return model.conv_layers[len(model.conv_layers) // 2] if model.conv_layers else _PIXELS


def _diversity(groups: np.ndarray):
    """The diversity score: for each picture, minus ``DIVERSITY_WEIGHT`` times the mean cosine similarity of its
    activations (each picture's mean removed) to those of the other pictures of its target (``groups``: the
    target of each picture)."""
    import tensorflow as tf

    same = (groups[:, None] == groups[None, :]) & ~np.eye(len(groups), dtype=bool)
    others = np.maximum(same.sum(axis=1), 1).astype(np.float32)
    mask = tf.constant(same.astype(np.float32))

    def score(activations):
        flat = tf.reshape(activations, (tf.shape(activations)[0], -1))
        unit = tf.math.l2_normalize(flat - tf.reduce_mean(flat, axis=1, keepdims=True), axis=1)
        similarity = tf.matmul(unit, unit, transpose_b=True)
        return -DIVERSITY_WEIGHT * tf.reduce_sum(similarity * mask, axis=1) / others

    return score


def _optimise(model: LoadedModel, layer: str | None, score, targets: int, settings: Settings,
              progress: OnStep | None) -> Visualization:
    """``settings.variants`` pictures for each of ``targets`` targets (``score`` scores them in that order)."""
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
    count = targets * settings.variants
    rng = np.random.default_rng(settings.seed)
    start = parameterisations.start_parameters(settings.parameterisation, count, height, width, model.channels, rng)
    pixel_model = _traced_pixel_model(model, layer)
    scores = [score]
    style_layer = None
    if settings.variants > 1:
        style_layer = _style_layer(model, layer)
        scores.append(_diversity(np.repeat(np.arange(targets), settings.variants)))
    if settings.parameterisation == PIXEL:
        modifiers = []
        if settings.jitter:
            modifiers.append(Jitter(jitter=settings.jitter))
        if settings.rotation:
            rotate = Rotate2D(degree=settings.rotation)
            rotate.random_generator = np.random.default_rng([settings.seed, 1])
            modifiers.append(rotate)
        optimised = pixel_model if style_layer is None else _traced_pixel_model(model, layer, style_layer)
        options = dict(input_range=(0, 255), input_modifiers=modifiers,
                       regularizers=[TotalVariation2D(weight=settings.tv_weight),
                                     Norm(weight=settings.norm_weight, p=1)],
                       optimizer=keras.optimizers.RMSprop(settings.learning_rate, 0.999))
        start_pixels, view = start, None
    else:
        built = _optimised_model(model, layer, settings.parameterisation, style_layer)
        optimised, picture, view = built.model, built.picture, built.view
        rate = FOURIER_LEARNING_RATE if settings.parameterisation == FOURIER else MACO_LEARNING_RATE
        # No clipping of the parameters (the sigmoid keeps the pixels in range) and no regularisers on them (the
        # parameterisation is the regulariser); the picture each step reports, and the result, are the pixels.
        options = dict(input_range=(None, None), input_modifiers=[], regularizers=[],
                       optimizer=keras.optimizers.Adam(rate), activation_modifiers=lambda values: picture([values]))
        start_pixels = np.asarray(picture([start]))
    visualizer = ActivationMaximization(optimised, clone=False)
    with _TF_KERAS_VIS:
        np.random.seed(settings.seed)
        if view is not None:
            view.reset(settings.seed)  # the views of this run, drawn anew whatever ran before
        result = visualizer(scores if len(scores) > 1 else score, seed_input=start, steps=settings.steps,
                            callbacks=[_Report()], **options)
    pictures = _as_pictures(result)
    return Visualization(pictures, np.stack(frames), _unmoved(pixel_model, score, start_pixels, result, pictures),
                         settings.parameterisation)


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
    pictures: np.ndarray  # (N, H, W, 3) uint8: each target's ``variants`` pictures, one target after another
    frames: np.ndarray  # (F, H, W, 3) uint8: the first target's picture as the optimisation went
    unmoved: np.ndarray  # (N,) bool: the optimisation did not move this picture (see UNMOVED_NOTE): no result
    parameterisation: str = PIXEL  # the ``PARAMETERISATIONS`` name the pictures were made in

    @property
    def label(self) -> str:
        """The parameterisation's name as shown with each picture."""
        return PARAMETERISATIONS[self.parameterisation].label


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
    """``(N, H, W, 3)`` uint8 inputs that maximise each class's logit (a class by index or by name); with
    ``variants`` above 1, that many pictures of each class, one class after another.

    ``params`` are settings named in ``PARAMS`` (parameterisation, steps, variants, tv_weight, norm_weight, jitter,
    rotation, learning_rate, seed); the rest keep the model's defaults (``settings_for``).
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


def visualization_key(kind: str, model: LoadedModel, targets: tuple, settings: Settings,
                      layer: str | None = None) -> tuple:
    """The cache key of a run: what it visualises, on which model, and the settings that apply (the
    parameterisation among them)."""
    return (kind, model.fingerprint, model.preprocessing, layer, targets, settings.key())


def _class_run(model: LoadedModel, classes: Sequence[int | str], progress: OnStep | None,
               params: dict) -> Visualization:
    from tf_keras_vis.utils.scores import CategoricalScore

    settings = settings_for(model, **params)
    indices = [class_index(model, c) for c in classes]
    score = CategoricalScore(np.repeat(indices, settings.variants).tolist())
    key = visualization_key("class", model, tuple(indices), settings)
    return _cached(key, lambda: _optimise(model, None, score, len(indices), settings, progress))


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
    each = np.repeat(wanted, settings.variants)

    def score(activations):
        # Each sample raises its own channel's activation summed over the positions: a mean would shrink the
        # gradient by the number of positions until the regularisers alone shaped the picture (a flat grey).
        spatial = tuple(range(1, len(activations.shape) - 1))
        sums = keras.ops.sum(activations, axis=spatial)
        return keras.ops.take_along_axis(sums, each[:, None], axis=1)[:, 0]

    key = visualization_key("channel", model, tuple(wanted.tolist()), settings, layer)
    return _cached(key, lambda: _optimise(model, layer, score, len(wanted), settings, progress))


# A step's work besides the model's passes (jitter, rotation, regularisers, the optimiser), at 224 x 224 px: its
# share measured on this 2-core CPU as one class taking 0.11 s a step and ten classes 0.66 s.
STEP_OVERHEAD_SECONDS = 0.05


def estimate_seconds(model: LoadedModel, targets: int, settings: Settings) -> float:
    """About how long visualising ``targets`` classes or channels takes: per step, a backward pass for each picture
    (``settings.variants`` a target) at the model's measured cost, plus the step's own work scaled by the picture's
    size. The parameterisations cost alike: a Fourier step's transforms and view take what pixel space's jitter,
    rotation and regularisers take (200 steps of ten classes: 8.0 s a class in Fourier, on quiet cores)."""
    backward, _ = model.runtime.pass_seconds()
    height, width = model.input_size
    pictures = targets * settings.variants
    return settings.steps * (pictures * backward + STEP_OVERHEAD_SECONDS * height * width / 224**2)


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
