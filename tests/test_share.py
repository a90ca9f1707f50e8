"""A copied link reopens the same view: widget values travel in the URL's query parameters."""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import PROJECT_ROOT


def _open(params: dict, page: str) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.query_params.update(params)
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_layer_grid_link_reopens_its_selections():
    at = _open({"image_names": ["coffee", "rocket"], "grid_method": "layercam", "grid_top_n": "3",
                "grid_layers": ["block_5_expand", "head_conv"], "grid_colormap": "inferno"}, "pages/layer_grid.py")
    assert at.sidebar.multiselect(key="image_names").value == ["coffee", "rocket"]
    assert at.selectbox(key="grid_method").value == "layercam"
    assert at.number_input(key="grid_top_n").value == 3
    assert at.multiselect(key="grid_layers").value == ["block_5_expand", "head_conv"]
    assert at.selectbox(key="grid_colormap").value == "inferno"


def test_the_url_follows_the_view_and_a_copied_link_reproduces_it():
    first = _open({}, "pages/layer_grid.py")
    first.selectbox(key="grid_method").set_value("gradcam_plus_plus")
    first.slider(key="grid_opacity").set_value(0.8).run()
    link = {key: first.query_params[key] for key in first.query_params}
    assert link["grid_method"] == "gradcam_plus_plus" and link["grid_opacity"] == "0.8"
    assert link["image_names"] == ["cat_chelsea", "coffee"]
    assert not any(key.startswith("cmp_") for key in link)  # only this page's and the sidebar's state
    second = _open(link, "pages/layer_grid.py")
    assert second.selectbox(key="grid_method").value == "gradcam_plus_plus"
    assert second.slider(key="grid_opacity").value == pytest.approx(0.8)


def test_a_hand_edited_link_falls_back_instead_of_failing():
    at = _open({"grid_top_n": "99", "grid_method": "nonsense", "grid_opacity": "abc", "image_names": ["nope", "coffee"]},
               "pages/layer_grid.py")
    assert at.number_input(key="grid_top_n").value == 5  # clamped to the widget's range
    assert at.selectbox(key="grid_method").value == "gradcam"
    assert at.sidebar.multiselect(key="image_names").value == ["coffee"]
    assert [w.value for w in at.sidebar.warning] == [
        "The link's image 'nope' is not among this app's images; the other images it names are shown."]


def test_a_link_naming_no_known_image_shows_the_defaults_and_says_which_name_was_missing():
    at = _open({"image_names": ["nope", "gone"]}, "pages/layer_grid.py")
    assert at.sidebar.multiselect(key="image_names").value == ["cat_chelsea", "coffee"]
    assert [w.value for w in at.sidebar.warning] == [
        "The link's images 'nope' and 'gone' are not among this app's images; the default images are shown instead."]
    assert at.subheader  # the page draws its grid for them rather than asking for images
    at.run()
    assert not at.sidebar.warning  # said once, for the link that was opened


def test_the_link_follows_the_view_when_the_page_stops_early():
    at = _open({}, "pages/dataset.py")
    at.radio(key="ds_source").set_value("A ZIP upload").run()
    assert not at.exception, at.exception
    assert any("Give the folder" in info.value for info in at.info)  # the page stopped before its results
    assert at.query_params["ds_source"] == "A ZIP upload"
