"""The parameterisations of a visualisation against independent computations: NumPy's FFT for the spectra, the
colour statistics for the decorrelation, a rotation by NumPy for the views, the model's own logits for the result."""

import numpy as np
import pytest
import tensorflow as tf

import explainers as ex
from explainers import learned
from explainers import parameterisations as par
from explainers.runtime.probe import build_probe


def _frequency(height: int, width: int) -> np.ndarray:
    """Each rfft2 coefficient's frequency in cycles per pixel, computed here from the FFT's own index layout."""
    rows = np.array([i if i <= height // 2 else i - height for i in range(height)]) / height
    columns = np.arange(width // 2 + 1) / width
    return np.hypot(rows[:, None], columns[None, :])


@pytest.mark.parametrize("height, width", [(28, 28), (32, 48), (31, 20)])
def test_constant_fourier_parameters_give_a_picture_whose_spectrum_falls_as_built(height, width):
    parameters = np.zeros((1, 1, height, width // 2 + 1, 2), np.float32)
    parameters[..., 0] = 1.0  # every coefficient real and equal: the picture's spectrum is the scaling itself
    field = par.fourier_field(tf.constant(parameters), height, width).numpy()[0, ..., 0]
    amplitude = np.abs(np.fft.rfft2(field))
    # The amplitude times f^decay is one constant (the zero frequency counted at the lowest one).
    floor = np.maximum(_frequency(height, width), 1.0 / max(height, width))
    flat = amplitude * floor**par.SPECTRUM_DECAY
    np.testing.assert_allclose(flat, flat.mean(), rtol=2e-3)
    assert amplitude[0, 1] > 4 * amplitude[height // 4, width // 4]  # low frequencies carry most


def test_unit_parameters_give_a_field_of_unit_spread_and_the_decoder_is_the_field_through_a_sigmoid():
    rng = np.random.default_rng(0)
    parameters = rng.normal(0.0, 1.0, (400, 1, 28, 15, 2)).astype(np.float32)
    field = par.fourier_field(tf.constant(parameters), 28, 28).numpy()
    assert field.std() == pytest.approx(1.0, rel=0.03)  # Parseval, as spectrum_scale computes it
    pixels = np.asarray(par.decoder(par.FOURIER, 28, 28, 1)([parameters * 0.3]))
    np.testing.assert_allclose(pixels, 255 / (1 + np.exp(-0.3 * field)), atol=1e-3)  # grey has no colour matrix


def test_the_decorrelation_matrix_is_the_square_root_of_the_colour_covariance_with_orthogonal_columns():
    matrix, vectors = par.colour_matrix(), par.IMAGENET_COLOUR_EIGENVECTORS
    np.testing.assert_allclose(vectors @ vectors.T, np.eye(3), atol=2e-4)  # the principal axes: orthonormal
    gram = matrix.T @ matrix  # the columns: orthogonal, each of its own length (orthonormal up to scale)
    np.testing.assert_allclose(gram, np.diag(np.diag(gram)), atol=2e-4)
    np.testing.assert_allclose(matrix / np.linalg.norm(matrix, axis=0) @ (matrix / np.linalg.norm(matrix, axis=0)).T,
                               np.eye(3), atol=2e-4)
    covariance = vectors @ np.diag(par.IMAGENET_COLOUR_EIGENVALUES) @ vectors.T
    np.testing.assert_allclose(matrix @ matrix.T, covariance / covariance.max() * (matrix @ matrix.T).max(),
                               atol=2e-3)  # M Mᵀ is the covariance (over the largest column's length squared)
    assert np.linalg.norm(matrix, axis=0).max() == pytest.approx(1.0)
    decorrelated = np.random.default_rng(1).normal(size=(50, 3))
    np.testing.assert_allclose(par.to_decorrelated(decorrelated @ matrix.T), decorrelated, atol=1e-10)


def test_the_decorrelated_coordinates_of_the_bundled_photos_are_far_less_correlated_than_their_rgb():
    pixels = np.concatenate([ex.decode_image(path)[::4, ::4].reshape(-1, 3) for path in ex.sample_images().values()])
    rgb = pixels / 255.0 - (pixels / 255.0).mean(axis=0)

    def worst(values: np.ndarray) -> float:
        correlation = np.corrcoef(values.T)
        return float(np.abs(correlation[~np.eye(3, dtype=bool)]).max())

    # ImageNet's axes fit these seven photos only roughly: about half the correlation is left at worst.
    assert worst(rgb) > 0.85 and worst(par.to_decorrelated(rgb)) < 0.55, (worst(rgb), worst(par.to_decorrelated(rgb)))


def test_maco_keeps_the_magnitude_and_changes_only_the_phase():
    magnitude = par.natural_magnitude(32, 32, 3)
    rng = np.random.default_rng(2)
    fields = [par.phase_field(tf.constant(rng.normal(size=(1, 3, 32, 32)).astype(np.float32)),
                              tf.constant(magnitude)).numpy()[0] for _ in range(2)]
    spectra = [np.fft.rfft2(np.moveaxis(field, -1, 0)) for field in fields]
    for spectrum in spectra:
        np.testing.assert_allclose(np.abs(spectrum), magnitude, atol=1e-3 * magnitude.max())
    strong = magnitude > 0.1 * magnitude.max()
    assert np.abs(np.angle(spectra[0][strong]) - np.angle(spectra[1][strong])).mean() > 0.5  # the phases differ
    # The fixed magnitude fixes the spread: the brightness channel's is MACO_CONTRAST whatever the phase.
    assert [field[..., 0].std() for field in fields] == pytest.approx([par.MACO_CONTRAST] * 2, rel=1e-3)


def test_the_natural_magnitude_falls_with_frequency_like_a_photo():
    magnitude = par.natural_magnitude(64, 64, 1)[0]
    frequency = _frequency(64, 64)
    assert magnitude[0, 0] == 0.0  # no mean: the sigmoid's grey is the picture's mean
    inside = (frequency > 0.02) & (frequency < 0.45)
    slope = np.polyfit(np.log(frequency[inside]), np.log(magnitude[inside]), 1)[0]
    assert -2.5 < slope < -0.7, slope  # natural photos' amplitude falls as about 1/f


def test_a_view_of_a_quarter_turn_is_numpys_rotation():
    picture = np.random.default_rng(3).uniform(0, 255, (1, 9, 9, 1)).astype(np.float32)
    views = par.Views(degrees=90)

    def turn(shape, low, high):  # the generator's draw, here at its top: a quarter turn, nothing else
        return tf.fill(shape, tf.constant(float(high)))

    transforms = par.view_transforms(views, 9, 9, 1, turn)
    seen = tf.raw_ops.ImageProjectiveTransformV3(
        images=picture, transforms=transforms, output_shape=tf.constant([9, 9]), fill_value=tf.constant(0.0),
        interpolation="BILINEAR", fill_mode="CONSTANT").numpy()
    turned = [np.rot90(picture[0, ..., 0], k) for k in (1, 3)]
    assert min(np.abs(seen[0, ..., 0] - t).max() for t in turned) < 1e-3


def test_random_views_are_seeded_and_keep_the_picture_mostly_in_sight():
    view = par.RandomView(par.LUCID_VIEWS)
    picture = np.random.default_rng(4).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    view.reset(5)
    first = np.asarray(view(picture))
    view.reset(5)
    np.testing.assert_array_equal(np.asarray(view(picture)), first)
    assert not np.array_equal(np.asarray(view(picture)), first)  # the next call draws new views
    grey = np.isclose(first, 127.5).all(axis=-1).mean()
    assert grey < 0.2  # the padded border shows at the edges only


@pytest.fixture(scope="module")
def digits():
    return ex.load_model(ex.DIGITS_MODEL)


def _logits(model: ex.LoadedModel, pictures: np.ndarray) -> np.ndarray:
    """The model's pre-softmax scores, by a probe built here on the model's own preprocessing."""
    probe = build_probe(model.model, ())
    outputs = probe.model(model.preprocess(list(pictures)))
    return np.asarray(outputs[-1] if isinstance(outputs, (list, tuple)) else outputs)


@pytest.mark.parametrize("name", list(par.PARAMETERISATIONS))
def test_each_parameterisation_raises_the_class_logit_above_the_grey_start_on_the_grayscale_digits(digits, name):
    classes = [2, 7]
    run = learned.class_run(digits, classes, parameterisation=name, steps=30)
    assert run.pictures.shape == (2, 28, 28, 3) and (run.pictures[..., 0] == run.pictures[..., 1]).all()
    assert run.parameterisation == name and not run.unmoved.any()
    grey = np.full((2, 28, 28, 3), 128, np.uint8)
    made, start = _logits(digits, run.pictures), _logits(digits, grey)
    for row, target in enumerate(classes):
        assert made[row, target] > start[row, target] + 1.0, (name, target, made[row, target], start[row, target])


def test_the_cache_key_differs_by_parameterisation_and_ignores_what_does_not_apply(digits):
    keys = {name: learned.visualization_key("class", digits, (3,), learned.settings_for(digits, parameterisation=name))
            for name in par.PARAMETERISATIONS}
    assert len(set(keys.values())) == 3
    heavier = {"tv_weight": 3.0}  # a pixel-space setting: a new result in pixel space only
    assert learned.visualization_key("class", digits, (3,), learned.settings_for(
        digits, parameterisation="fourier", **heavier)) == keys["fourier"]
    assert learned.visualization_key("class", digits, (3,), learned.settings_for(
        digits, parameterisation="pixel", **heavier)) != keys["pixel"]
    fourier = learned.class_run(digits, [3], steps=10)
    assert learned.class_run(digits, [3], steps=10, tv_weight=3.0) is fourier  # the same result, from the cache
    assert learned.class_run(digits, [3], steps=10, parameterisation="maco") is not fourier


def _mean_correlation(pictures: np.ndarray) -> float:
    flat = pictures[..., 0].reshape(len(pictures), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return float((flat @ flat.T)[~np.eye(len(pictures), dtype=bool)].mean())


def test_variants_of_one_class_are_pushed_apart_and_still_read_as_the_class(digits, monkeypatch):
    run = learned.class_run(digits, [5], variants=3, steps=100)
    assert run.pictures.shape[0] == 3
    np.testing.assert_array_equal(digits.predict(list(run.pictures)).argmax(axis=1), [5, 5, 5])
    monkeypatch.setattr(learned, "DIVERSITY_WEIGHT", 0.0)  # the same run without the diversity term
    learned.VISUALIZATIONS.clear()
    alike = learned.class_run(digits, [5], variants=3, steps=100)
    assert _mean_correlation(run.pictures) < _mean_correlation(alike.pictures) - 0.3, (
        _mean_correlation(run.pictures), _mean_correlation(alike.pictures))
