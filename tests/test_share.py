"""A copied link reopens the same view: widget values travel in the URL's query parameters."""

from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

import explainers as ex
from helpers import open_link


def _open(params: dict, page: str) -> AppTest:
    return open_link(params, page)


def test_a_layer_grid_link_reopens_its_selections():
    at = _open({"image_names": ["coffee", "rocket"], "grid_method": "layercam", "grid_top_n": "3",
                "grid_layers": ["block_5_expand", "head_conv"], "grid_colormap": "inferno"}, "views/layer_grid.py")
    assert at.sidebar.multiselect(key="image_names").value == ["coffee", "rocket"]
    assert at.selectbox(key="grid_method").value == "layercam"
    assert at.slider(key="grid_top_n").value == 3
    assert at.multiselect(key="grid_layers").value == ["block_5_expand", "head_conv"]
    assert at.selectbox(key="grid_colormap").value == "inferno"


def test_the_url_follows_the_view_and_a_copied_link_reproduces_it():
    first = _open({}, "views/layer_grid.py")
    first.selectbox(key="grid_method").set_value("gradcam_plus_plus")
    first.slider(key="grid_opacity").set_value(0.8).run()
    link = {key: first.query_params[key] for key in first.query_params}
    assert link["grid_method"] == "gradcam_plus_plus" and link["grid_opacity"] == "0.8"
    assert link["image_names"] == ["cat_chelsea", "coffee"]
    assert not any(key.startswith("cmp_") for key in link)  # only this page's and the sidebar's state
    second = _open(link, "views/layer_grid.py")
    assert second.selectbox(key="grid_method").value == "gradcam_plus_plus"
    assert second.slider(key="grid_opacity").value == pytest.approx(0.8)


def test_a_hand_edited_link_falls_back_instead_of_failing():
    at = _open({"grid_top_n": "99", "grid_method": "nonsense", "grid_opacity": "abc", "image_names": ["nope", "coffee"]},
               "views/layer_grid.py")
    assert at.slider(key="grid_top_n").value == 5  # clamped to the widget's range
    assert at.selectbox(key="grid_method").value == "gradcam"
    assert at.sidebar.multiselect(key="image_names").value == ["coffee"]
    assert [w.value for w in at.sidebar.warning] == [
        "The link's image 'nope' is not among this app's images; the other images it names are shown."]


def test_a_link_naming_no_known_image_shows_the_defaults_and_says_which_name_was_missing():
    at = _open({"image_names": ["nope", "gone"]}, "views/layer_grid.py")
    assert at.sidebar.multiselect(key="image_names").value == ["cat_chelsea", "coffee"]
    assert [w.value for w in at.sidebar.warning] == [
        "The link's images 'nope' and 'gone' are not among this app's images; the default images are shown instead."]
    assert at.subheader  # the page draws its grid for them rather than asking for images
    at.run()
    assert not at.sidebar.warning  # said once, for the link that was opened


def test_the_link_follows_the_view_when_the_page_stops_early():
    at = _open({}, "views/dataset.py")
    at.radio(key="ds_source").set_value("A ZIP upload").run()
    assert not at.exception, at.exception
    assert any("Give the folder" in info.value for info in at.info)  # the page stopped before its results
    assert at.query_params["ds_source"] == "A ZIP upload"


@pytest.fixture(scope="module")
def own_models(tmp_path_factory):

    from helpers import transfer_model, two_heads_model

    folder = tmp_path_factory.mktemp("shared_models")
    transfer_model().save(folder / "pets.keras")
    (folder / "pets.txt").write_text("cat\ndog\nperson\n")
    two_heads_model().save(folder / "two_heads.keras")
    return folder


@pytest.fixture
def roots(own_models, monkeypatch):
    from explainers.settings import DATA_ROOTS_ENV

    monkeypatch.setenv(DATA_ROOTS_ENV, str(own_models))
    return own_models


def _link(at: AppTest) -> dict:
    return {key: at.query_params[key] for key in at.query_params}


def _top5(at: AppTest):
    return at.sidebar.dataframe[0].value


def test_a_model_by_path_travels_with_its_labels_preprocessing_and_output(roots):
    sender = _open({"model_spec": "own", "own_model_path": str(roots / "pets.keras")}, "views/overview.py")
    sender.sidebar.text_input(key="own_model_labels_path").set_value(str(roots / "pets.txt"))
    sender.sidebar.selectbox(key="own_model_preprocessing").set_value("caffe").run()
    assert not sender.exception and not sender.error, [e.value for e in sender.error]
    link = _link(sender)
    assert link["own_model_labels_path"] == str(roots / "pets.txt") and link["own_model_preprocessing"] == "caffe"

    recipient = _open(link, "views/overview.py")
    assert recipient.sidebar.selectbox(key="own_model_preprocessing").value == "caffe"
    assert list(_top5(recipient)["class"]) == list(_top5(sender)["class"])  # names, not "class 1"
    assert set(_top5(recipient)["class"]) == {"cat", "dog", "person"}
    assert _top5(recipient)["probability"].tolist() == pytest.approx(_top5(sender)["probability"].tolist())


def test_a_links_output_is_the_one_explained_from_the_first_run(roots):
    at = _open({"model_spec": "own", "own_model_path": str(roots / "two_heads.keras"), "own_model_output": "healthy"},
               "views/overview.py")
    assert at.sidebar.selectbox(key="own_model_output").value == "healthy"
    assert len(_top5(at)) == 2  # the binary head's two classes, not the first head's four
    assert _link(at)["own_model_output"] == "healthy"


def test_an_uploaded_model_is_named_as_left_out_where_the_link_is_offered_and_where_it_is_opened(own_models):
    sender = _open({"image_names": ["coffee"]}, "views/overview.py")
    sender.sidebar.selectbox(key="model_spec").set_value("own").run()
    sender.sidebar.file_uploader(key="own_model_files").set_value(
        [("pets.keras", (own_models / "pets.keras").read_bytes(), "application/octet-stream")]).run()
    assert not sender.exception, sender.exception
    link = _link(sender)
    assert "model_spec" not in link and link["uploads_left_out"] == "model"
    offered = " ".join(c.value for c in sender.sidebar.caption)
    assert "Not in this link: an uploaded model." in offered

    recipient = _open(link, "views/overview.py")
    assert [w.value for w in recipient.sidebar.warning] == [
        "The sender's view used an uploaded model, which a link cannot carry: this app's default model is shown "
        "instead."]
    assert recipient.sidebar.selectbox(key="model_spec").value == "efficientnet_lite0"


def test_copy_link_holds_the_views_link():
    at = _open({"image_names": ["coffee", "rocket"], "grid_method": "layercam"}, "views/layer_grid.py")
    (code,) = at.sidebar.code
    path, _, query = code.value.partition("?")
    assert path.endswith("layer_grid")
    assert parse_qs(query) == {key: value if isinstance(value, list) else [value] for key, value in _link(at).items()}
    assert parse_qs(query)["grid_method"] == ["layercam"] and parse_qs(query)["image_names"] == ["coffee", "rocket"]


def test_a_links_unknown_image_names_are_cut_in_its_note_however_long_or_many():
    names = ["x" * 60_000] + [f"nope{i}" for i in range(50)] + ["coffee"]
    at = _open({"image_names": names}, "views/overview.py")
    assert at.sidebar.multiselect(key="image_names").value == ["coffee"]
    assert [w.value for w in at.sidebar.warning] == [
        f"The link's images '{'x' * 66}…{'x' * 33}', 'nope0', 'nope1' and 48 more are not among this app's images; "
        "the other images it names are shown."]


def test_every_optimisation_setting_in_a_link_is_clamped_to_the_bounds_its_widget_and_its_check_hold():
    from explainers import learned
    from ui import param_widgets, view_settings

    own = view_settings.LEARNED
    keys = {param.name: param_widgets.key(own.name, param.name, view_settings.LEARNED_PREFIX) for param in own.params}
    # In pixel space, where every setting applies and so has its widget; the parameterisation has choices, no bounds.
    bounded = [p for p in own.params if not p.choices]
    at = _open({keys["parameterisation"]: "pixel", **{keys[p.name]: str(p.high * 10 + 1) for p in bounded}},
               "views/learned.py")
    shown = {p.name: next(w for w in at.main if getattr(w, "key", None) == keys[p.name]).value for p in bounded}
    assert shown == {p.name: p.high for p in bounded}
    learned.Settings(parameterisation="pixel", **shown)  # what the page shows, the engine accepts
    with pytest.raises(ex.InputError, match="steps"):
        learned.Settings(steps=int({p.name: p for p in own.params}["steps"].high) + 1)

