"""Bring-your-own models: every file format, head type and refusal, checked on real saved files."""

import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import explainers as ex
from explainers.settings import TRUST_MODEL_CODE_ENV
from helpers import CNN_METHODS, random_images, square_images, trained_binary_model, transfer_model

IMAGES = random_images(2, 40)


def _std_per_map(raw: np.ndarray) -> np.ndarray:
    return raw.reshape(len(raw), -1).std(axis=1)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model = transfer_model()
    model.save(folder / "transfer.keras")
    model.save(folder / "transfer.h5")
    (folder / "pair").mkdir()
    (folder / "pair" / "arch.json").write_text(model.to_json())
    model.save_weights(folder / "pair" / "arch.weights.h5")
    model.export(folder / "saved", verbose=False)
    return folder, model


@pytest.mark.parametrize("name", ["transfer.keras", "transfer.h5", "pair/arch.json", "pair", "saved"])
def test_every_format_loads_and_predicts_like_the_original(files, name):
    folder, original = files
    loaded = ex.load_model(str(folder / name))
    expected = original.predict(np.stack([loaded.resize(IMAGES)[i] / 255.0 for i in range(2)]), verbose=0)
    np.testing.assert_allclose(loaded.predict(IMAGES), expected, atol=1e-5)
    assert loaded.preprocessing == "unit" and loaded.class_names == ["class 0", "class 1", "class 2"]


def test_a_zipped_saved_model_loads(files, tmp_path):
    folder, _ = files
    archive = tmp_path / "saved.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in (folder / "saved").rglob("*"):
            out.write(path, f"my_model/{path.relative_to(folder / 'saved')}")
    assert ex.load_model(str(archive)).format == "SavedModel"


def test_saved_model_gives_input_gradients_of_log_probability_and_refuses_cams(files):
    folder, original = files
    loaded = ex.load_model(str(folder / "saved"))
    assert "SavedModel" in loaded.cam_unavailable and loaded.conv_layers == []
    with pytest.raises(ex.InputError, match="spatial output"):
        ex.attribute(loaded, IMAGES, "gradcam")
    result = ex.attribute(loaded, IMAGES, "saliency", targets=1)
    # Reference: a plain tape on the original Keras model, scoring log p(class 1).
    x = tf.constant(loaded.preprocess(IMAGES))
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.math.log(original(x)[:, 1])
    expected = np.abs(tape.gradient(score, x).numpy()).max(axis=-1)
    np.testing.assert_allclose(result.raw, expected, rtol=1e-3, atol=1e-6)


def test_nested_transfer_model_gives_a_map_for_every_method_and_class(files):
    loaded = ex.load_model(str(files[0] / "transfer.keras"))
    assert loaded.conv_layers == ["base/conv_a", "base/pool_a", "base/conv_b"]
    for method in CNN_METHODS:
        for target in (0, 2):
            result = ex.attribute(loaded, IMAGES, method, targets=target)
            assert (_std_per_map(result.raw) > 0).all(), (method, target)
            assert (result.classes == target).all()


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    path = tmp_path_factory.mktemp("binary") / "binary.h5"
    trained_binary_model().save(path)
    return ex.load_model(str(path), labels=["left", "right"])


def test_binary_sigmoid_model_predicts_two_classes(binary):
    images, labels = square_images(64, seed=9)
    probabilities = binary.predict(images)
    assert probabilities.shape == (64, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.8  # it learned the task


@pytest.mark.parametrize("method", CNN_METHODS)
def test_binary_model_explains_both_classes_differently(binary, method):
    images, _ = square_images(3, seed=11)
    class_0 = ex.attribute(binary, images, method, targets="left").raw
    class_1 = ex.attribute(binary, images, method, targets="right").raw
    assert (_std_per_map(class_0) > 0).all() and (_std_per_map(class_1) > 0).all()
    # |gradient| is the same for +logit and -logit; Eigen-CAM does not look at the class at all
    if method not in ("saliency", "smoothgrad", "eigencam"):
        assert not np.allclose(class_0, class_1)


def test_lambda_model_is_refused_in_safe_mode_and_loads_when_the_host_trusts_it(tmp_path, monkeypatch):
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ex.InputError) as caught:
        ex.load_model(str(tmp_path / "lambda.keras"))
    message = str(caught.value)
    assert "'lambda.keras'" in message and "Lambda" in message and TRUST_MODEL_CODE_ENV in message
    assert message.count(".") <= 3 and "\n" not in message
    monkeypatch.setenv(TRUST_MODEL_CODE_ENV, "1")
    assert ex.load_model(str(tmp_path / "lambda.keras")).predict(IMAGES).shape == (2, 2)


def test_saved_model_that_writes_files_is_refused(tmp_path):
    class Writer(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
        def serve(self, x):
            tf.io.write_file(str(tmp_path / "written.txt"), "pwned")
            return {"scores": tf.reduce_mean(x, axis=[1, 2])}

    module = Writer()
    tf.saved_model.save(module, str(tmp_path / "writer"), signatures={"serving_default": module.serve})
    with pytest.raises(ex.InputError, match="WriteFile"):
        ex.load_model(str(tmp_path / "writer"))
    assert not (tmp_path / "written.txt").exists()


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda p: (p / "m.keras").write_bytes((p.parent / "good.keras").read_bytes()[:5000]), "truncated"),
        (lambda p: (p / "m.keras").write_bytes(b"not a zip at all"), "truncated"),
        (lambda p: (p / "m.pt").write_bytes(b"\x80\x02torch"), "not a model format"),
        (lambda p: (p / "m.weights.h5").write_bytes(b"x"), "only weights"),
    ],
    ids=["truncated", "garbage", "wrong-extension", "weights-only"],
)
def test_bad_model_files_get_one_sentence_naming_the_file(tmp_path, setup, expected):
    transfer_model().save(tmp_path / "good.keras")
    folder = tmp_path / "bad"
    folder.mkdir()
    setup(folder)
    path = next(folder.iterdir())
    with pytest.raises(ex.InputError) as caught:
        ex.load_model(str(path))
    assert f"'{path.name}'" in str(caught.value) and expected in str(caught.value)
    assert "\n" not in str(caught.value) and "Traceback" not in str(caught.value)


def test_architecture_without_weights_says_what_is_missing(tmp_path):
    (tmp_path / "arch.json").write_text(transfer_model().to_json())
    with pytest.raises(ex.InputError, match="weights file"):
        ex.load_model(str(tmp_path / "arch.json"))


def test_model_without_conv_layers_disables_cams_but_explains_gradients(tmp_path):
    inputs = keras.Input((12, 12, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "dense.keras")
    loaded = ex.load_model(str(tmp_path / "dense.keras"))
    assert "no layer with a spatial" in loaded.cam_unavailable
    with pytest.raises(ex.InputError, match="spatial output"):
        ex.attribute(loaded, IMAGES, "scorecam")
    assert (_std_per_map(ex.attribute(loaded, IMAGES, "saliency").raw) > 0).all()


def test_two_image_inputs_are_refused(tmp_path):
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    merged = keras.layers.Concatenate()([a, b])
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(merged))
    keras.Model([a, b], outputs).save(tmp_path / "pair.keras")
    with pytest.raises(ex.InputError, match="'pair.keras' takes 2 inputs"):
        ex.load_model(str(tmp_path / "pair.keras"))


def test_four_channel_model_is_refused_with_the_reason(tmp_path):
    transfer_model(channels=4).save(tmp_path / "rgba.keras")
    with pytest.raises(ex.InputError, match="4 channels"):
        ex.load_model(str(tmp_path / "rgba.keras"))


def test_grayscale_model_gets_luma_input(tmp_path):
    model = transfer_model(size=28, channels=1, classes=10)
    model.save(tmp_path / "gray.keras")
    loaded = ex.load_model(str(tmp_path / "gray.keras"))
    assert loaded.channels == 1 and loaded.preprocess(IMAGES).shape == (2, 28, 28, 1)
    gray = np.asarray(ex.images.Image.fromarray(loaded.resize(IMAGES)[0]).convert("L"), np.float32) / 255.0
    np.testing.assert_allclose(loaded.preprocess(IMAGES)[0, ..., 0], gray, atol=1 / 255 + 1e-6)
    for method in ("gradcam", "integrated_gradients", "scorecam"):
        assert ex.explain(loaded, IMAGES, method).shape == (2, 40, 40)


def test_several_outputs_let_the_user_choose(tmp_path):
    inputs = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inputs))
    species = keras.layers.Dense(4, activation="softmax", name="species")(features)
    healthy = keras.layers.Dense(1, activation="sigmoid", name="healthy")(features)
    keras.Model(inputs, [species, healthy]).save(tmp_path / "multi.keras")
    first = ex.load_model(str(tmp_path / "multi.keras"))
    assert first.output_names == ("species", "healthy") and len(first.class_names) == 4
    second = ex.load_model(str(tmp_path / "multi.keras"), output="healthy")
    assert second.predict(IMAGES).shape == (2, 2)
    assert ex.explain(second, IMAGES, "gradcam", targets=0).shape == (2, 40, 40)
    with pytest.raises(ex.InputError, match="no output 'colour'; its outputs are species, healthy"):
        ex.load_model(str(tmp_path / "multi.keras"), output="colour")


def test_logits_head_and_multilabel_head_give_the_right_probabilities(tmp_path):
    transfer_model(activation=None).save(tmp_path / "logits.keras")
    transfer_model(classes=5, activation="sigmoid").save(tmp_path / "tags.keras")
    logits = ex.load_model(str(tmp_path / "logits.keras"))
    raw = logits.model.predict(logits.preprocess(IMAGES), verbose=0)
    np.testing.assert_allclose(logits.predict(IMAGES), tf.nn.softmax(raw).numpy(), atol=1e-6)
    tags = ex.load_model(str(tmp_path / "tags.keras"))
    probabilities = tags.predict(IMAGES)
    assert probabilities.shape == (2, 5) and not np.allclose(probabilities.sum(axis=1), 1.0)
    assert tags.output_kind == "sigmoid"
    np.testing.assert_allclose(
        tags.runtime.class_probabilities(tags.preprocess(IMAGES), np.array([3, 3], np.int32)), probabilities[:, 3],
        atol=1e-5)


def test_preprocessing_is_detected_from_a_rescaling_layer_and_can_be_overridden(tmp_path):
    from helpers import gap_dense_model

    gap_dense_model().save(tmp_path / "rescales.keras")
    assert ex.load_model(str(tmp_path / "rescales.keras")).preprocessing == "none"
    assert ex.load_model(str(tmp_path / "rescales.keras"), preprocessing="tf").preprocessing == "tf"


def test_labels_file_in_dict_literal_form_loads_and_a_wrong_count_is_refused(tmp_path, files):
    (tmp_path / "labels.txt").write_text("{0: 'cat', 1: 'dog', 2: 'person'}")
    loaded = ex.load_model(str(files[0] / "transfer.keras"), labels=str(tmp_path / "labels.txt"))
    assert loaded.class_names == ["cat", "dog", "person"]
    assert ex.explain(loaded, IMAGES, "gradcam", targets="dog").shape == (2, 40, 40)
    (tmp_path / "short.txt").write_text("cat\ndog\n")
    with pytest.raises(ex.InputError, match="'short.txt' names 2 classes but the model has 3 outputs"):
        ex.load_model(str(files[0] / "transfer.keras"), labels=str(tmp_path / "short.txt"))


@pytest.mark.parametrize("name, content", [("notes.keras", b"my notes"), ("notes.h5", b"my notes"),
                                           ("arch.json", b"{not json"), ("model.zip", b"PK not a zip"),
                                           ("missing.keras", None)])
def test_a_refusal_names_the_file_but_never_its_folders(tmp_path, name, content):
    # An upload lies in the app's cache: no message may show where.
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(ex.InputError) as caught:
        ex.load_model(str(tmp_path / name))
    message = str(caught.value)
    assert message.startswith(f"'{name}' ") and str(tmp_path) not in message and "File not found" not in message


def test_uploaded_files_are_grouped_into_models_titled_by_their_files():
    from explainers.models.files import model_uploads

    assert model_uploads(["pets.keras", "arch.json", "arch.weights.h5", "old.h5"]) == [
        ("pets.keras",), ("arch.json", "arch.weights.h5"), ("old.h5",)]
    assert model_uploads(["a.json", "b.json", "b.h5", "loose.weights.h5"]) == [
        ("a.json", "loose.weights.h5"), ("b.json", "b.h5")]  # named weights first, then the one left over
    assert model_uploads(["arch.json", "whole.h5"]) == [("arch.json", "whole.h5")]  # as a folder of the two is read
    assert model_uploads(["arch.json"]) == [("arch.json",)]  # read_model then says the weights are missing
