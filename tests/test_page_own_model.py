"""Bringing your own model through the sidebar: each bad input gets one sentence and the app keeps working."""

import keras
import pytest
from streamlit.testing.v1 import AppTest

from conftest import PROJECT_ROOT
from explainers.settings import DATA_ROOTS_ENV, TRUST_MODEL_CODE_ENV
from helpers import transfer_model, two_heads_model

ENTRYPOINT = str(PROJECT_ROOT / "dashboard.py")


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("own")
    transfer_model().save(folder / "pets.keras")
    (folder / "truncated.keras").write_bytes((folder / "pets.keras").read_bytes()[:4000])
    (folder / "weights.pt").write_bytes(b"\x80\x02 not keras")
    inputs = keras.Input((12, 12, 3))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs))).save(folder / "dense.keras")
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    merged = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([a, b]))
    keras.Model([a, b], keras.layers.Dense(2)(merged)).save(folder / "two_inputs.keras")
    x = keras.Input((16, 16, 3))
    y = keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.Conv2D(4, 3)(x))
    keras.Model(x, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(y))).save(folder / "lambda.keras")
    transfer_model(channels=4).save(folder / "rgba.keras")
    two_heads_model().save(folder / "two_heads.keras")
    return folder


@pytest.fixture
def app(monkeypatch, tmp_path_factory) -> AppTest:
    monkeypatch.delenv(TRUST_MODEL_CODE_ENV, raising=False)
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path_factory.getbasetemp()))  # the model files and tmp_path
    at = AppTest.from_file(ENTRYPOINT, default_timeout=240)
    at.run()
    at.sidebar.selectbox(key="model_spec").set_value("own").run()
    return at


def _load_path(at: AppTest, path) -> AppTest:
    at.sidebar.text_input(key="own_model_path").set_value(str(path)).run()
    assert not at.exception, at.exception
    return at


def _top_class(at: AppTest) -> str:
    return at.sidebar.dataframe[0].value["class"].iloc[0]


def test_uploaded_model_with_dict_labels_works_on_every_page(app, model_files):
    app.sidebar.file_uploader(key="own_model_files").set_value(
        [("pets.keras", (model_files / "pets.keras").read_bytes(), "application/octet-stream")])
    app.sidebar.file_uploader(key="own_model_labels").set_value(
        [("labels.txt", b"{0: 'cat', 1: 'dog', 2: 'person'}", "text/plain")]).run()
    assert not app.exception and not app.error, (app.exception, [e.value for e in app.error])
    assert _top_class(app) in ("cat", "dog", "person")
    app.switch_page("views/layer_grid.py").run()
    assert not app.exception, app.exception
    assert all(layer.startswith("base/") for layer in app.multiselect(key="grid_layers").value)
    app.switch_page("views/compare.py").run()
    assert not app.exception, app.exception
    assert app.multiselect(key="cmp_methods").value == ["saliency", "smoothgrad", "scorecam"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("truncated.keras", "may be truncated"),
        ("weights.pt", "not a model format this app reads"),
        ("two_inputs.keras", "takes 2 inputs"),
        ("lambda.keras", TRUST_MODEL_CODE_ENV),
        ("rgba.keras", "4 channels"),
        ("missing.keras", "does not exist"),
    ],
)
def test_bad_model_gets_one_sentence_and_the_previous_model_stays(app, model_files, name, expected):
    _load_path(app, model_files / "pets.keras")
    good_top = _top_class(app)
    _load_path(app, model_files / name)
    (error,) = app.sidebar.error
    assert f"'{name}'" in error.value or name in error.value
    assert expected in error.value and "pets.keras stays loaded" in error.value
    assert _top_class(app) == good_top
    app.switch_page("views/compare.py").run()
    assert not app.exception, app.exception


def test_mismatched_labels_are_reported_and_classes_numbered(app, model_files):
    app.sidebar.file_uploader(key="own_model_labels").set_value([("labels.json", b'["cat", "dog"]', "application/json")])
    _load_path(app, model_files / "pets.keras")
    (error,) = app.sidebar.error
    assert "'labels.json' names 2 classes but the model has 3 outputs" in error.value
    assert _top_class(app).startswith("class ")


def test_model_without_conv_layers_offers_gradient_methods_only(app, model_files):
    _load_path(app, model_files / "dense.keras")
    assert not app.sidebar.error
    app.switch_page("views/compare.py").run()
    assert not app.exception, app.exception
    assert app.multiselect(key="cmp_methods").value == ["saliency", "smoothgrad"]
    assert any("Score-CAM" in c.value and "no layer with a spatial" in c.value for c in app.caption)
    app.switch_page("views/layer_grid.py").run()
    assert not app.exception and "no layer with a spatial" in app.info[0].value


def test_a_model_with_two_outputs_offers_a_picker(app, model_files):
    _load_path(app, model_files / "two_heads.keras")
    picker = app.sidebar.selectbox(key="own_model_output")
    assert picker.options == ["species", "healthy"] and len(app.sidebar.dataframe[0].value) == 4
    picker.set_value("healthy").run()
    assert not app.exception and len(app.sidebar.dataframe[0].value) == 2  # a binary head: two classes


def test_a_model_saved_again_over_the_same_path_is_reloaded(app, tmp_path):
    path = tmp_path / "retrained.keras"
    transfer_model(classes=3).save(path)
    _load_path(app, path)
    assert len(app.sidebar.dataframe[0].value) == 3
    transfer_model(classes=5, seed=9).save(path)  # the user retrains and overwrites the file
    app.run()
    assert not app.exception and len(app.sidebar.dataframe[0].value) == 5


@pytest.mark.parametrize("target", ["existing", "missing"])
def test_a_model_or_labels_path_outside_the_data_roots_is_refused_alike(app, model_files, tmp_path, monkeypatch, target):
    monkeypatch.setenv(DATA_ROOTS_ENV, str(model_files))
    _load_path(app, model_files / "pets.keras")
    good_top = _top_class(app)
    outside = tmp_path / "elsewhere.keras"
    if target == "existing":
        transfer_model().save(outside)
    _load_path(app, outside)
    (error,) = app.sidebar.error
    assert error.value == (f"'{outside}' is not inside the folders this dashboard may read ({model_files.resolve()}). "
                           "pets.keras stays loaded.")
    assert _top_class(app) == good_top
    _load_path(app, model_files / "pets.keras")
    app.sidebar.text_input(key="own_model_labels_path").set_value("../labels.txt").run()
    assert not app.exception and "is not inside the folders" in app.sidebar.error[0].value
    (model_files / "labels.txt").write_text("cat\ndog\nperson\n")
    app.sidebar.text_input(key="own_model_labels_path").set_value("labels.txt").run()  # relative: from the root
    assert not app.sidebar.error and _top_class(app) in {"cat", "dog", "person"}


def test_without_data_roots_there_is_no_path_box(app, monkeypatch):
    monkeypatch.delenv(DATA_ROOTS_ENV)
    app.run()
    assert not app.exception
    assert not [t for t in app.sidebar.text_input if t.key in ("own_model_path", "own_model_labels_path")]
    assert "Upload a model file." in [i.value for i in app.sidebar.info]


def test_a_path_too_long_for_the_system_gets_one_short_sentence(app, model_files):
    _load_path(app, model_files / "pets.keras")
    good_top = _top_class(app)
    _load_path(app, "x" * 300)  # typed: a relative path, from the data root
    (error,) = app.sidebar.error
    assert error.value == f"'{'x' * 66}…{'x' * 33}' cannot be opened: file name too long. pets.keras stays loaded."
    assert _top_class(app) == good_top
    _load_path(app, model_files / "pets.keras")
    app.sidebar.text_input(key="own_model_labels_path").set_value("y" * 300).run()
    assert not app.exception, app.exception
    assert app.sidebar.error[0].value.endswith("cannot be opened: file name too long. Classes are shown by number.")


def test_an_uploaded_text_file_named_keras_is_refused_without_any_server_path(app):
    from explainers.runtime.cache import cache_dir

    app.sidebar.file_uploader(key="own_model_files").set_value(
        [("notes.keras", b"my notes, not a model", "application/octet-stream")]).run()
    assert not app.exception, app.exception
    (error,) = app.sidebar.error
    assert error.value.startswith("'notes.keras' is not a .keras file (a ZIP archive that model.save() writes)")
    assert "/" not in error.value.replace("model.save()", "") and str(cache_dir()) not in error.value
    assert "File not found" not in error.value


def test_each_uploaded_model_gets_its_own_folder_and_is_titled_by_its_file(app, model_files, tmp_path):
    model = transfer_model(classes=3, seed=5)
    (tmp_path / "arch.json").write_text(model.to_json())
    model.save_weights(tmp_path / "arch.weights.h5")
    pets = ("pets.keras", (model_files / "pets.keras").read_bytes(), "application/octet-stream")
    app.sidebar.file_uploader(key="own_model_files").set_value([pets]).run()
    assert not app.sidebar.error and not [s for s in app.sidebar.selectbox if s.key == "own_model_upload"]
    # The picker keeps the earlier file as the architecture and its weights are added.
    architecture = ("arch.json", (tmp_path / "arch.json").read_bytes(), "application/json")
    weights = ("arch.weights.h5", (tmp_path / "arch.weights.h5").read_bytes(), "application/octet-stream")
    app.sidebar.file_uploader(key="own_model_files").set_value([pets, architecture, weights]).run()
    assert not app.exception and not app.sidebar.error, (app.exception, [e.value for e in app.sidebar.error])
    picker = app.sidebar.selectbox(key="own_model_upload")
    assert picker.options == ["pets.keras", "arch.json"] and picker.value == "arch.json"  # the latest upload
    assert any("**arch.json**" in m.value for m in app.main.markdown)  # titled by its file, not a hash
    arch_top = app.sidebar.dataframe[0].value["probability"].tolist()
    picker.set_value("pets.keras").run()
    assert not app.exception and not app.sidebar.error
    assert any("**pets.keras**" in m.value for m in app.main.markdown)
    assert app.sidebar.dataframe[0].value["probability"].tolist() != arch_top
