"""Class and channel visualisation against cases whose answer is known."""

import keras
import numpy as np
import pytest

import explainers as ex
from explainers import learned
from helpers import wrap

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
    settings = dict(steps=60, jitter=0, rotation=0.0, norm_weight=0.0, tv_weight=0.1)
    picture = learned.class_visualization(model, [index], **settings)[0].astype(np.float64)
    correlation = np.corrcoef(picture.ravel(), sign * weights.ravel())[0, 1]
    assert correlation > 0.9, correlation


def test_seeded_and_cached():
    model, _ = _linear_model()
    settings = dict(steps=5, seed=7)
    first = learned.class_visualization(model, ["class 0"], **settings)
    learned.VISUALIZATIONS.clear()
    again = learned.class_visualization(model, ["class 0"], **settings)
    np.testing.assert_array_equal(first, again)  # the same seed, recomputed: the same picture
    assert learned.class_visualization(model, [0], **settings) is learned.VISUALIZATIONS.get(
        ("class", model.fingerprint, model.preprocessing, (0,), learned.Settings(**settings))).pictures


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
    assert gif.format == "GIF" and gif.n_frames == len(frames)


def test_a_channel_that_sums_one_colour_is_visualised_in_that_colour():
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    # Channel 0 sees red only, channel 1 blue only, with the activation scale of a trained layer (tens).
    colours = keras.layers.Conv2D(2, 1, use_bias=False, name="colours")
    features = colours(x)
    colours.set_weights([100 * np.array([[[[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]]], np.float32)])
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(features))
    model = wrap(keras.Model(inputs, outputs), name="colour channels")
    pictures = learned.channel_visualization(model, "colours", [0, 1], steps=40, jitter=0, rotation=0.0, tv_weight=0.1)
    red, blue = pictures[0].mean(axis=(0, 1)), pictures[1].mean(axis=(0, 1))
    assert red[0] > red[2] + 60 and blue[2] > blue[0] + 60, (red, blue)


def test_bad_requests_get_one_sentence():
    model, _ = _linear_model()
    with pytest.raises(ex.InputError, match="'zebra' is not a class"):
        learned.class_visualization(model, ["zebra"])
    with pytest.raises(ex.InputError, match="outside 0 to 1"):
        learned.class_visualization(model, [5])
    with pytest.raises(ex.InputError, match="steps must be between"):
        learned.class_visualization(model, [0], steps=0)
    with pytest.raises(ex.InputError, match="Unknown visualisation setting 'stepz'"):
        learned.class_visualization(model, [0], stepz=3)
    with pytest.raises(ex.InputError, match="Channel 4 is outside 0 to 1"):
        inner = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(2, 1, name="c"),
                                  keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
        learned.channel_visualization(wrap(inner), "c", [4])


def test_the_command_line_writes_each_visualisation_and_what_the_model_sees(tmp_path, capsys):
    from explainers.cli import EXIT_BAD_INPUT, main

    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--classes", "3", "7", "--steps", "5",
                 "--out", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.glob("*.png")} == {"3.png", "7.png", "visualizations.png"}
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["3", "7"] and "the model sees" in printed[0]
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--layer", "conv2", "--channels", "0", "5", "--steps", "3",
                 "--out", str(tmp_path / "channels")]) == 0
    assert len(list((tmp_path / "channels").glob("conv2*.png"))) == 2
    assert main(["visualize", "--model", ex.DIGITS_MODEL, "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "Give either --classes" in capsys.readouterr().err
