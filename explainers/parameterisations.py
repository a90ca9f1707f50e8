"""How a visualisation's picture is made from what the optimisation changes: Keras models from parameters to pixels.

Each parameterisation is a model from its parameters to pixels in 0..255, placed in front of the pixel model
(``learned._pixel_model``: pixels -> preprocessing -> logits), so the optimiser moves the parameters and the model
still sees a picture it could be shown.

- ``fourier``: the picture's spectrum, each frequency scaled by 1/f, in a decorrelated colour space, squashed by a
  sigmoid (Olah et al. 2017, "Feature Visualization", Distill; Mordvintsev et al. 2018, "Differentiable Image
  Parameterizations", Distill). Natural pictures put most of their energy in low frequencies; with 1/f scaling an
  equal step on every parameter moves low frequencies most, so the optimiser draws shapes before texture. The
  colour basis is the principal axes of ImageNet's colour covariance: a step in one of its coordinates moves
  colours the way photos vary, so colours stay plausible instead of drifting into saturated noise.
- ``maco``: the magnitude of the spectrum fixed at the average spectrum of natural photos and only the phase
  optimised (Fel et al. 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained
  Optimization", NeurIPS). The phase carries where edges are; the magnitude, held at a photo's, keeps the picture's
  energy spread over frequencies as in a photo, whatever the optimiser does.
- ``pixel``: the pixels themselves (the parameterisation before this module; tf-keras-vis's own).

Robustness to small transformations (Olah et al. 2017): each step, each picture is seen through a random view (a
shift, a scale, a rotation, or a crop) so that what raises the class must survive them; the views are one
affine map per picture per step (``RandomView``), resampled bilinearly, so they cost one resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from explainers.models.preprocessing import LUMA

FOURIER, MACO, PIXEL = "fourier", "maco", "pixel"


class Parameterisation(NamedTuple):
    name: str
    label: str  # shown with each picture
    description: str  # one sentence: what the optimiser changes


PARAMETERISATIONS: dict[str, Parameterisation] = {p.name: p for p in (
    Parameterisation(FOURIER, "Fourier (1/f, decorrelated colour)",
                     "the picture's spectrum, scaled by 1/f, in ImageNet's decorrelated colours (Olah et al. 2017)"),
    Parameterisation(MACO, "MaCo (phase only)",
                     "only the spectrum's phase, its magnitude held at the average photo's (Fel et al. 2023)"),
    Parameterisation(PIXEL, "Pixel space",
                     "the pixels themselves, with total variation and norm regularisers (tf-keras-vis)"),
)}

# ImageNet's colour covariance, on pixel values in 0..1, as its principal components: the eigenvalues and the
# eigenvectors (columns) Krizhevsky et al. 2012 report for their PCA colour augmentation. Stated here rather than
# measured, since no ImageNet is at hand; the first axis is brightness, the second red against blue, the third
# green against magenta. The sign of each axis is arbitrary: the first is taken positive, so that raising it
# brightens.
IMAGENET_COLOUR_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])
IMAGENET_COLOUR_EIGENVECTORS = np.array([[0.5675, 0.7192, 0.4009],
                                         [0.5808, -0.0045, -0.8140],
                                         [0.5836, -0.6948, 0.4203]])


def colour_matrix() -> np.ndarray:
    """``(3, 3)``: decorrelated colour -> RGB, ``rgb = M @ d``; the SVD square root of ImageNet's colour covariance
    (eigenvectors times the square roots of the eigenvalues), divided by its largest column's norm so the
    brightness axis keeps unit scale. ``M @ M.T`` is the covariance over that norm squared; ``M.T @ M`` is
    diagonal: the columns are orthogonal, orthonormal up to each one's scale."""
    root = IMAGENET_COLOUR_EIGENVECTORS * np.sqrt(IMAGENET_COLOUR_EIGENVALUES)[None, :]
    return root / np.linalg.norm(root, axis=0).max()


def to_decorrelated(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB (centred, on the 0..1 scale) in the decorrelated colour coordinates: ``colour_matrix``'s
    inverse, so that ``to_decorrelated(d @ M.T) == d``."""
    return rgb @ np.linalg.inv(colour_matrix()).T


def frequencies(height: int, width: int) -> np.ndarray:
    """``(H, W // 2 + 1)``: each coefficient's frequency of a real picture's spectrum (``numpy.fft.rfft2``'s
    layout), in cycles per pixel."""
    return np.sqrt(np.fft.fftfreq(height)[:, None] ** 2 + np.fft.rfftfreq(width)[None, :] ** 2)


def _rfft_weights(height: int, width: int) -> np.ndarray:
    """How many coefficients of the full spectrum each rfft column stands for: 1 for the zero and (even widths)
    Nyquist columns, 2 for the others, whose mirror images the half spectrum leaves out."""
    weights = np.full(width // 2 + 1, 2.0)
    weights[0] = 1.0
    if width % 2 == 0:
        weights[-1] = 1.0
    return np.broadcast_to(weights, (height, width // 2 + 1))


# The power of 1/f in the Fourier parameterisation's scaling. 1 is the amplitude spectrum of natural photos (and
# Lucid's choice); 2 moves low frequencies still more than high ones per step. Measured on the embedded model
# (10 classes, 200 steps), the share of pictures still recognised after a blur of radius 2 and a half-size round
# trip went from 3 in 10 at 1 to 5 at 1.5 and 9 at 2: with 1, the class is carried by fine texture a person cannot
# make out, as in pixel space.
SPECTRUM_DECAY = 2.0


def spectrum_scale(height: int, width: int) -> np.ndarray:
    """``(H, W // 2 + 1)``: the 1/f scale of each coefficient (``SPECTRUM_DECAY``; the zero frequency as the lowest
    non-zero one), times the constant that gives a field of unit standard deviation from parameters of unit
    standard deviation. A coefficient of an inner column stands for itself and its mirror image, and both of its
    parts count: it adds 4 s^2 / (HW)^2 to the variance. In the zero and (even widths) Nyquist columns the inverse
    FFT keeps only the spectrum's Hermitian part, half of each coefficient's power: s^2 / (HW)^2."""
    inverse = 1.0 / np.maximum(frequencies(height, width), 1.0 / max(height, width)) ** SPECTRUM_DECAY
    counts = np.where(_rfft_weights(height, width) == 2.0, 4.0, 1.0)
    power = float((counts * inverse**2).sum()) / (height * width) ** 2
    return inverse / math.sqrt(power)


def fourier_field(parameters: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """``(N, C, H, W // 2 + 1, 2)`` parameters (real and imaginary parts) -> the ``(N, H, W, C)`` field before colour
    and sigmoid: the inverse real FFT of the parameters times ``spectrum_scale``."""
    scale = tf.constant(spectrum_scale(height, width), tf.float32)
    spectrum = tf.complex(parameters[..., 0] * scale, parameters[..., 1] * scale)
    return tf.transpose(tf.signal.irfft2d(spectrum, fft_length=[height, width]), [0, 2, 3, 1])


def _as_complex(real: tf.Tensor) -> tf.Tensor:
    """A real tensor as complex, through ``tf.complex`` rather than a cast: its gradient takes the real part
    without the warning a complex-to-real cast of the gradient prints."""
    return tf.complex(real, tf.zeros_like(real))


def phase_field(parameters: tf.Tensor, magnitude: tf.Tensor) -> tf.Tensor:
    """``(N, C, H, W)`` free real fields and a fixed ``(C, H, W // 2 + 1)`` magnitude -> the ``(N, H, W, C)`` field
    whose spectrum has that magnitude and the fields' phase. Taking the phase of a real field's spectrum (rather than
    free angles) keeps the spectrum that of a real picture, so the magnitude is exactly the one asked for."""
    height, width = parameters.shape[-2], parameters.shape[-1]
    free = tf.signal.rfft2d(parameters)
    # z / |z|: the phase as a unit complex number; the tiny floor only guards a coefficient that is exactly zero.
    unit = free / _as_complex(tf.maximum(tf.abs(free), 1e-12))
    spectrum = unit * _as_complex(magnitude)
    return tf.transpose(tf.signal.irfft2d(spectrum, fft_length=[height, width]), [0, 2, 3, 1])


def _colour_and_squash(field: tf.Tensor, channels: int) -> tf.Tensor:
    """Field -> pixels in 0..255: decorrelated colour to RGB (colour models), then a sigmoid (0 -> mid grey)."""
    if channels == 3:
        field = tf.tensordot(field, tf.constant(colour_matrix().T, tf.float32), axes=1)
    return tf.sigmoid(field) * 255.0


class FourierPixels(keras.layers.Layer):
    """Fourier parameters -> pixels (``fourier_field``, colour, sigmoid)."""

    def __init__(self, height: int, width: int, channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.height, self.width, self.channels = height, width, channels

    def call(self, parameters):
        return _colour_and_squash(fourier_field(parameters, self.height, self.width), self.channels)


class PhasePixels(keras.layers.Layer):
    """MaCo's phase parameters -> pixels (``phase_field`` at the fixed magnitude, colour, sigmoid)."""

    def __init__(self, magnitude: np.ndarray, channels: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.magnitude = tf.constant(magnitude, tf.float32)
        self.channels = channels

    def call(self, parameters):
        return _colour_and_squash(phase_field(parameters, self.magnitude), self.channels)


# The spread of the field's brightness channel under MaCo, in the sigmoid's units: with the magnitude fixed, the
# field's spread is fixed too (Parseval), so this sets the pictures' contrast. At 1.5 the photos' strong colours
# came out as saturated blue and orange noise; 1 keeps most pixels off the ends of 0..255.
MACO_CONTRAST = 1.0
PHOTO_CROPS = 8  # random crops of each bundled photo averaged into the natural spectrum


def natural_magnitude(height: int, width: int, channels: int, seed: int = 0) -> np.ndarray:
    """``(C, H, W // 2 + 1)``: the average amplitude spectrum of natural photos, measured on random crops of the
    bundled sample photos resized to ``(height, width)``, in the decorrelated colours (or luma for one channel),
    each photo's mean removed (no zero frequency: the sigmoid's grey is the picture's mean). Scaled so that the
    brightness channel's field has a spread of ``MACO_CONTRAST``."""
    from PIL import Image

    from explainers.inputs.images import decode_image
    from explainers.inputs.samples import sample_images

    rng = np.random.default_rng(seed)
    window = np.outer(np.hanning(height), np.hanning(width))[..., None]
    spectra = []
    for path in sample_images().values():
        photo = Image.fromarray(decode_image(path))
        side = min(photo.size)
        for _ in range(PHOTO_CROPS):
            crop = int(side * rng.uniform(0.5, 1.0))
            left, top = int(rng.integers(0, photo.size[0] - crop + 1)), int(rng.integers(0, photo.size[1] - crop + 1))
            pixels = np.asarray(photo.crop((left, top, left + crop, top + crop)).resize(
                (width, height), Image.Resampling.BILINEAR), np.float64) / 255.0
            values = to_decorrelated(pixels) if channels == 3 else (pixels @ LUMA)[..., None]
            # A Hann window first: a crop's opposite edges differ, and the FFT, which wraps around, would read
            # that jump as strong horizontal and vertical frequencies no photo has (a cross in the spectrum,
            # a grid in the pictures).
            values = (values - values.mean(axis=(0, 1))) * window
            spectra.append(np.abs(np.fft.rfft2(np.moveaxis(values, -1, 0))))
    magnitude = np.mean(spectra, axis=0)
    magnitude[:, 0, 0] = 0.0
    spread = math.sqrt(float((_rfft_weights(height, width) * magnitude[0] ** 2).sum())) / (height * width)
    return (magnitude * MACO_CONTRAST / spread).astype(np.float32)


@dataclass(frozen=True)
class Views:
    """The random view of each picture at each step, in pixels of a 224 px picture (scaled to the picture's side).

    Lucid's transformation robustness is pad, jitter, scale, rotate, jitter; with a model of fixed input size the
    padded, jittered picture is shown whole, shrunk into the input: a view of side (side + 2 pad - jitters)."""

    pad: float = 0.0
    jitters: tuple[float, ...] = ()
    scales: tuple[float, float] = (1.0, 1.0)
    degrees: float = 0.0
    crops: tuple[float, float] = (1.0, 1.0)  # the share of the picture's side a view crops (MaCo's random crops)


MACO_CROPS = (0.6, 1.0)
LUCID_VIEWS = Views(pad=12, jitters=(8, 4), scales=(0.9, 1.1), degrees=10)
CROP_VIEWS = Views(jitters=(4,), degrees=5, crops=MACO_CROPS)
VIEWS = {FOURIER: LUCID_VIEWS, MACO: CROP_VIEWS}
REFERENCE_SIDE = 224  # the side the views' pixels are given at


def view_transforms(views: Views, height: int, width: int, count: int, draw) -> tf.Tensor:
    """``(count, 8)``: one random projective transform per picture (``ImageProjectiveTransformV3``'s layout: output
    pixel (x, y) reads input pixel (a0 x + a1 y + a2, b0 x + b1 y + b2)). ``draw(shape, low, high)`` draws
    uniform numbers (the layer's seeded generator)."""
    size = min(height, width) / REFERENCE_SIDE
    pad, jitters = views.pad * size, [j * size for j in views.jitters]
    # The shown window, in picture pixels: the padded picture less the jitters' crops, shrunk into the input.
    grow = (min(height, width) + 2 * pad - sum(jitters)) / min(height, width)
    crop = draw((count,), *views.crops)
    zoom = draw((count,), *views.scales)
    angle = draw((count,), -views.degrees, views.degrees) * (math.pi / 180)
    # Each jitter crops at an offset in 0..jitter: centred, a shift of -jitter / 2 .. jitter / 2.
    shift_x = sum(draw((count,), -j / 2, j / 2) for j in jitters) if jitters else tf.zeros((count,))
    shift_y = sum(draw((count,), -j / 2, j / 2) for j in jitters) if jitters else tf.zeros((count,))
    # A crop of share c sits anywhere inside the picture: its centre within (1 - c) / 2 of the middle.
    room_x, room_y = (1.0 - crop) * width / 2, (1.0 - crop) * height / 2
    shift_x += draw((count,), -1.0, 1.0) * room_x
    shift_y += draw((count,), -1.0, 1.0) * room_y
    # Output pixel p reads the picture at centre + R(-angle) (p - centre) * grow * crop / zoom + shift.
    factor = grow * crop / zoom
    cos, sin = tf.cos(angle) * factor, tf.sin(angle) * factor
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = centre_x - a0 * centre_x - a1 * centre_y + shift_x
    b2 = centre_y - b0 * centre_x - b1 * centre_y + shift_y
    zeros = tf.zeros((count,))
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


class RandomView(keras.layers.Layer):
    """Pixels -> each picture seen through a random view (``Views``), the uncovered border mid grey. Random at every
    call, training or not (the optimisation calls the model in inference mode); ``reset(seed)`` replays a run."""

    def __init__(self, views: Views, **kwargs) -> None:
        super().__init__(**kwargs)
        self.views = views
        self.generator = keras.random.SeedGenerator(0)

    def reset(self, seed: int) -> None:
        self.generator.state.assign(np.array([seed, 0], self.generator.state.dtype))

    def call(self, pixels):
        height, width = pixels.shape[1], pixels.shape[2]
        count = tf.shape(pixels)[0]

        def draw(shape, low, high):
            if low == high:
                return tf.fill((count,), tf.constant(float(low)))
            return keras.random.uniform((count,), float(low), float(high), seed=self.generator)

        transforms = view_transforms(self.views, height, width, count, draw)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=pixels, transforms=transforms, output_shape=tf.constant([height, width], tf.int32),
            fill_value=tf.constant(127.5), interpolation="BILINEAR", fill_mode="CONSTANT")


def parameter_shape(name: str, height: int, width: int, channels: int) -> tuple[int, ...]:
    """The shape of one picture's parameters."""
    if name == FOURIER:
        return (channels, height, width // 2 + 1, 2)
    if name == MACO:
        return (channels, height, width)
    return (height, width, channels)


def start_parameters(name: str, count: int, height: int, width: int, channels: int,
                     rng: np.random.Generator) -> np.ndarray:
    """``count`` pictures' starting parameters, each picture near mid grey: small random spectra (``fourier``),
    random phases (``maco``: its magnitude is fixed, so it starts as a photo-like texture of random phase), or
    grey with a little noise (``pixel``, as tf-keras-vis's own default)."""
    shape = (count, *parameter_shape(name, height, width, channels))
    if name == FOURIER:
        return rng.normal(0.0, 0.01, shape).astype(np.float32)
    if name == MACO:
        return rng.normal(0.0, 1.0, shape).astype(np.float32)
    return rng.uniform(96.0, 160.0, shape).astype(np.float32)


def decoder(name: str, height: int, width: int, channels: int) -> keras.Model:
    """The parameterisation as a model: parameters -> ``(N, H, W, C)`` pixels in 0..255."""
    parameters = keras.Input(parameter_shape(name, height, width, channels), name=f"{name}_parameters")
    if name == FOURIER:
        pixels = FourierPixels(height, width, channels, name="fourier_pixels")(parameters)
    elif name == MACO:
        pixels = PhasePixels(natural_magnitude(height, width, channels), channels, name="phase_pixels")(parameters)
    else:
        pixels = parameters
    return keras.Model([parameters], pixels, name=f"{name}_picture")  # a list of one input, as tf-keras-vis calls it
