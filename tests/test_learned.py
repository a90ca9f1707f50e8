"""Class and channel visualisation against cases whose answer is known."""

import keras
import numpy as np
import pytest
from PIL import Image

import explainers as ex
from explainers import learned
from helpers import transfer_model, wrap

SIZE = 16


def _smooth_filter(seed: int) -> np.ndarray:
    """A (16, 16, 3) filter of 4x4-pixel blocks of +1 and -1: what total variation lets an image follow."""
    rng = np.random.default_rng(seed)
    return np.kron(rng.choice([-1.0, 1.0], (4, 4, 3)), np.ones((4, 4, 1))).astype(np.float32)


def _linear_model() -> tuple[ex.LoadedModel, np.ndarray]:
    """Two classes whose logits are <x / 255, W> and <x / 255, -W>, behind a softmax head."""
    weights = _smooth_filter(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(keras.layers.Flatten()(inputs))
    head = keras.layers.Dense(2, use_bias=False, activation="softmax", name="head")
    outputs = head(x)
    head.set_weights([np.stack([weights.ravel(), -weights.ravel()], axis=1)])
    return wrap(keras.Model(inputs, outputs), name="linear filter"), weights


@pytest.mark.parametrize("index, sign", [(0, 1.0), (1, -1.0)])
def test_a_class_whose_score_is_a_linear_filter_is_visualised_as_that_filter(index, sign):
    model, weights = _linear_model()
    settings = dict(parameterisation="pixel", steps=60, jitter=0, rotation=0.0, norm_weight=0.0, tv_weight=0.1)
    picture = learned.class_visualization(model, [index], **settings)[0].astype(np.float64)
    correlation = np.corrcoef(picture.ravel(), sign * weights.ravel())[0, 1]
    assert correlation > 0.9, correlation


# The parameterisations that see the picture through random views (shifts, scales, rotations, crops) draw what
# survives them: the filter's blocks, blurred at their edges; MaCo's must also keep a photo's spectrum.
@pytest.mark.parametrize("parameterisation, least", [("fourier", 0.6), ("maco", 0.3)])
def test_the_spectral_parameterisations_draw_the_linear_filter_too(parameterisation, least):
    model, weights = _linear_model()
    picture = learned.class_visualization(model, [0], parameterisation=parameterisation, steps=60)[0]
    correlation = np.corrcoef(picture.astype(np.float64).ravel(), weights.ravel())[0, 1]
    assert correlation > least, correlation


def test_seeded_and_cached():
    model, _ = _linear_model()
    settings = dict(steps=10, seed=7)
    first = learned.class_visualization(model, ["class 0"], **settings)
    learned.VISUALIZATIONS.clear()
    again = learned.class_visualization(model, ["class 0"], **settings)
    np.testing.assert_array_equal(first, again)  # the same seed, recomputed: the same picture
    assert learned.class_visualization(model, [0], **settings) is learned.VISUALIZATIONS.get(
        learned.visualization_key("class", model, (0,), learned.settings_for(model, **settings))).pictures


def test_the_animation_is_the_same_run_ending_on_the_picture():
    from io import BytesIO

    from PIL import Image

    model, _ = _linear_model()
    pictures = learned.class_visualization(model, [1, 0], steps=50, seed=3)
    frames = learned.class_animation(model, [1, 0], steps=50, seed=3)  # from the cache: the same run
    assert 2 <= len(frames) <= learned.FRAMES + 1 and frames.shape[1:] == pictures.shape[1:]
    np.testing.assert_array_equal(frames[-1], pictures[0])
    assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 10  # it moved
    gif = Image.open(BytesIO(learned.animation_gif(frames)))
    changes = 1 + sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))  # GIF merges repeated frames
    assert gif.format == "GIF" and gif.n_frames == changes


# In pixel space any colour can be reached; the Fourier parameterisation moves colours along ImageNet's colour axes,
# whose red-against-blue axis is a tenth of brightness's, so its red is paler.
@pytest.mark.parametrize("settings, margin", [
    (dict(parameterisation="pixel", steps=40, jitter=0, rotation=0.0, tv_weight=0.1), 60),
    (dict(parameterisation="fourier", steps=40), 15)], ids=["pixel", "fourier"])
def test_a_channel_that_sums_one_colour_is_visualised_in_that_colour(settings, margin):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    # Channel 0 sees red only, channel 1 blue only, with the activation scale of a trained layer (tens).
    colours = keras.layers.Conv2D(2, 1, use_bias=False, name="colours")
    features = colours(x)
    colours.set_weights([100 * np.array([[[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]]], np.float32)])
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    model = wrap(keras.Model(inputs, outputs), name="colour channels")
    pictures = learned.channel_visualization(model, "colours", [0, 1], **settings)
    red, blue = pictures[0].mean(axis=(0, 1)), pictures[1].mean(axis=(0, 1))
    assert red[0] > red[2] + margin and blue[2] > blue[0] + margin, (red, blue)


def test_bad_requests_get_one_sentence():
    model, _ = _linear_model()
    with pytest.raises(ex.InputError, match="'zebra' is not a class"):
        learned.class_visualization(model, ["zebra"])
    with pytest.raises(ex.InputError, match="outside 0 to 1"):
        learned.class_visualization(model, [5])
    with pytest.raises(ex.InputError, match=r"^The steps of the optimisation must be an integer from 10 to 500; got 0\.$"):
        learned.class_visualization(model, [0], steps=0)
    with pytest.raises(ex.InputError, match=r"^'stepz' is not a parameter of optimisation; it takes parameterisation, steps, variants, tv_weight"):
        learned.class_visualization(model, [0], stepz=3)
    with pytest.raises(ex.InputError, match=r"^The parameterisation of the optimisation must be fourier or maco or "
                                            r"pixel; got 'lucid'\.$"):
        learned.class_visualization(model, [0], parameterisation="lucid")
    with pytest.raises(ex.InputError, match="Channel 4 is outside 0 to 1"):
        inner = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(2, 1, name="c"),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
        learned.channel_visualization(wrap(inner), "c", [4])


# Pixel space at 100 steps (the default before the Fourier parameterisation) reaches all ten; the Fourier default
# reaches nine (its 9 is read as an 8: a ring over a stroke, whose views blur the gap between them).
@pytest.mark.parametrize("settings, least", [(dict(parameterisation="pixel", steps=100), 10), ({}, 9)],
                         ids=["pixel", "fourier (the defaults)"])
def test_the_digits_cnn_recognises_its_classes_in_grey_pictures(settings, least):
    digits = ex.load_model(ex.DIGITS_MODEL)
    pictures = learned.class_visualization(digits, list(range(10)), **settings)
    assert pictures.shape == (10, 28, 28, 3) and (pictures[..., 0] == pictures[..., 2]).all()  # it sees luma only
    assert (digits.predict(list(pictures)).argmax(axis=1) == np.arange(10)).sum() >= least


def test_the_jitter_default_follows_the_picture_size():
    digits = ex.load_model(ex.DIGITS_MODEL)
    assert learned.settings_for(digits).jitter == 0  # 4 px would shift a 28 px digit off its place
    assert learned.settings_for(digits, jitter=2).jitter == 2
    assert learned.settings_for(digits, jitter=4).jitter == 4  # given, it is kept, even where it is the 224 px default
    assert learned.settings_for(wrap(transfer_model(size=224))).jitter == 4
    assert learned.params_for(digits).params != learned.PARAMS  # the widgets' default follows the model too
    assert {p.name: p.default for p in learned.params_for(digits).params}["jitter"] == 0


@pytest.mark.parametrize("kind", ["nested", "grayscale 40 px", "SavedModel"])
def test_own_models_of_other_kinds_are_visualised(tmp_path, kind):
    if kind == "SavedModel":
        transfer_model().export(tmp_path / "saved", verbose=False)
        model = ex.load_model(str(tmp_path / "saved"))
    else:
        (transfer_model(size=40, channels=1) if kind.startswith("grayscale") else transfer_model()).save(
            tmp_path / "own.keras")
        model = ex.load_model(str(tmp_path / "own.keras"))
    pictures = learned.class_visualization(model, [0, 2], steps=10)
    assert pictures.shape == (2, *model.input_size, 3) and pictures.dtype == np.uint8
    if model.channels == 1:
        assert (pictures[..., 0] == pictures[..., 1]).all()
    if model.conv_layers:
        assert learned.channel_visualization(model, model.conv_layers[-1], [1], steps=10).shape == (1, *model.input_size, 3)
    else:
        with pytest.raises(ex.InputError, match="SavedModel, which exposes no inner layers"):
            learned.channel_visualization(model, "base/conv_b", [0])


def test_a_model_without_spatial_layers_or_a_graph_that_cannot_be_rebuilt_is_refused_in_one_sentence(monkeypatch):
    model, _ = _linear_model()
    with pytest.raises(ex.InputError, match="has no layer with a spatial output, so it has no channels"):
        learned.channel_visualization(model, "head", [0])

    def unreplayable(*args, **kwargs):
        raise NotImplementedError("an operation the replay does not know")

    monkeypatch.setattr(learned, "build_probe", unreplayable)
    learned.TRACED.clear()
    with pytest.raises(ex.InputError, match=r"^linear filter cannot be visualised: its graph could not be rebuilt "
                                            r"from pixels \(NotImplementedError: an operation"):
        learned.class_visualization(model, [0], steps=10, seed=11)


def test_the_estimate_prices_each_target_at_the_measured_backward_pass():
    model, _ = _linear_model()
    settings = learned.settings_for(model, steps=40)
    backward, _ = model.runtime.pass_seconds()
    one, three = learned.estimate_seconds(model, 1, settings), learned.estimate_seconds(model, 3, settings)
    assert three - one == pytest.approx(2 * 40 * backward)
    assert learned.estimate_seconds(model, 1, learned.Settings(steps=80)) == pytest.approx(2 * one)


def test_the_command_line_writes_each_visualisation_and_what_the_model_sees(tmp_path, capsys):
    from explainers.cli import EXIT_BAD_INPUT, main

    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--classes", "3", "7", "--steps", "10",
                 "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.png")} == {"3.png", "7.png", "visualizations.png"}
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["3", "7"] and "the model sees" in printed[0]
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--layer", "conv2", "--channels", "0", "5", "--steps", "10",
                 "--tv-weight", "0.5", "--animation", "--out", str(tmp_path / "channels")]) == 0
    assert len(list((tmp_path / "channels").glob("conv2*.png"))) == 2
    digits = ex.load_model(ex.DIGITS_MODEL)  # the options reached the engine: its cache holds this run's frames
    frames = learned.channel_animation(digits, "conv2", [0, 5], steps=10, tv_weight=0.5)
    gif = Image.open(tmp_path / "channels" / "conv2_channel_0.gif")
    assert gif.n_frames == 1 + sum(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "Give either --classes" in capsys.readouterr().err


def _dead_and_live_channels() -> ex.LoadedModel:
    """Channel 0 of "features" is dead (zero weights, no bias: zero gradient everywhere); channel 1 sees red.

    Class 0's logit is the red channel, class 1's its opposite: both can rise.
    """
    inputs = keras.Input((SIZE, SIZE, 3))
    layer = keras.layers.Conv2D(2, 1, use_bias=False, name="features")
    head = keras.layers.Dense(2, activation="softmax", name="head")
    outputs = head(keras.layers.GlobalAveragePooling2D()(layer(keras.layers.Rescaling(1 / 255.0)(inputs))))
    layer.set_weights([100 * np.array([[[[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]]], np.float32)])
    head.set_weights([np.array([[0.0, 0.0], [10.0, -10.0]], np.float32), np.zeros(2, np.float32)])
    return wrap(keras.Model(inputs, outputs), name="dead channel")


@pytest.mark.parametrize("settings", [
    dict(parameterisation="pixel"), dict(parameterisation="pixel", steps=10),
    dict(parameterisation="pixel", steps=40, tv_weight=0.0, norm_weight=0.0, jitter=0, rotation=0.0),
    dict(steps=20), dict(parameterisation="maco", steps=20)],
    ids=["pixel: pulled to black", "pixel, 10 steps: still grey noise", "pixel, no regularisers: the start",
         "fourier: the grey start", "maco: its random-phase start"])
def test_a_dead_channel_is_recorded_as_not_moved_and_a_live_one_as_moved(settings):
    model = _dead_and_live_channels()
    run = learned.channel_run(model, "features", [0, 1], **settings)
    assert run.unmoved.tolist() == [True, False]
    assert learned.class_run(model, [0, 1], **settings).unmoved.tolist() == [False, False]  # logits do move


def test_the_command_line_says_a_picture_did_not_move_instead_of_what_the_model_sees(tmp_path, capsys, monkeypatch):
    from explainers.cli import main
    from explainers.settings import DATA_ROOTS_ENV

    _dead_and_live_channels().model.save(tmp_path / "dead.keras")
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    assert main(["visualize", "--model", str(tmp_path / "dead.keras"), "--layer", "features", "--channels", "0", "1",
                 "--steps", "10", "--out", str(tmp_path / "out")]) == 0
    dead, live = capsys.readouterr().out.splitlines()
    assert dead == "features channel 0: " + learned.UNMOVED_NOTE.format(target="channel")
    assert live.startswith("features channel 1: the model sees ")
