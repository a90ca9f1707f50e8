"""The dashboard runs end to end in Streamlit's AppTest on the embedded model."""

import pytest
from streamlit.testing.v1 import AppTest

from conftest import PROJECT_ROOT

ENTRYPOINT = str(PROJECT_ROOT / "dashboard.py")
PAGE_FILES = sorted(p.relative_to(PROJECT_ROOT).as_posix() for p in (PROJECT_ROOT / "views").glob("*.py"))


@pytest.fixture
def app() -> AppTest:
    at = AppTest.from_file(ENTRYPOINT, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def test_entrypoint_shows_the_embedded_models_predictions(app):
    assert app.sidebar.selectbox(key="model_spec").value == "efficientnet_lite0"
    assert app.sidebar.multiselect(key="image_names").value == ["cat_chelsea", "coffee"]
    sidebar_table = app.sidebar.dataframe[0].value
    assert sidebar_table["class"].iloc[0] == "Egyptian Mau"
    assert any("Device:" in c.value for c in app.sidebar.caption)
    assert not app.error


@pytest.mark.parametrize("page", PAGE_FILES)
def test_every_page_renders_without_exceptions(app, page):
    app.switch_page(page).run()
    assert not app.exception, app.exception
    assert app.title


def test_top5_follows_the_chosen_image(app):
    app.sidebar.selectbox(key="top5_image").set_value("coffee").run()
    assert app.sidebar.dataframe[0].value["class"].iloc[0] == "espresso"


def test_unavailable_zoo_model_says_so_and_falls_back(app):
    app.sidebar.selectbox(key="model_spec").set_value("keras:MobileNetV2").run()
    assert not app.exception
    (error,) = app.sidebar.error
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5" in error.value
    assert "EfficientNet-Lite0 stays loaded" in error.value
    assert app.sidebar.dataframe[0].value["class"].iloc[0] == "Egyptian Mau"


@pytest.mark.parametrize("page", PAGE_FILES)
def test_a_view_run_on_its_own_shows_one_sentence_and_nothing_else(page):
    # It passed no sign-in gate and no sidebar chose a model: it must show nothing of a model or an image.
    from ui.selection import RUN_ALONE

    at = AppTest.from_file(str(PROJECT_ROOT / page), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [RUN_ALONE]
    assert not at.title and not at.sidebar.selectbox and not at.main.selectbox and not at.dataframe


def test_layer_picker_shows_a_map_per_image_for_the_chosen_layer(app):
    assert app.selectbox(key="overview_layer").value == "head_conv_relu"
    app.selectbox(key="overview_layer").set_value("block_9_expand").run()
    assert not app.exception
    assert any("14x14 · 672 channels" in c.value for c in app.caption)
    images = [e for e in app.main if type(e).__name__ == "Image"]
    assert len(images) == 4  # two predictions, two layer maps


def test_uploads_join_the_selection_and_a_corrupt_one_gets_one_sentence(app):
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (64, 48), 128).save(buffer, "PNG")  # grayscale: converted, not refused
    app.sidebar.file_uploader(key="uploads").set_value(
        [("gray.png", buffer.getvalue(), "image/png"), ("broken.jpg", b"\xff\xd8\xff\xe0 not really", "image/jpeg")]
    ).run()
    assert not app.exception
    assert app.sidebar.multiselect(key="image_names").value == ["cat_chelsea", "coffee", "upload: gray.png"]
    (error,) = app.sidebar.error
    assert error.value.startswith("'broken.jpg' ")
    assert len(app.sidebar.dataframe) == 1  # the rest of the sidebar carries on


@pytest.mark.parametrize("page", PAGE_FILES)
def test_a_link_with_paths_too_long_for_the_system_says_so_and_every_page_works(page, tmp_path, monkeypatch):
    from explainers.settings import DATA_ROOTS_ENV

    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    at = AppTest.from_file(ENTRYPOINT, default_timeout=180)
    at.query_params.update({"model_spec": "own", "own_model_path": "m" * 3000,
                            "ds_source": "A folder on the server", "ds_path": "d" * 3000})
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert at.title
    (error,) = at.sidebar.error
    assert error.value.endswith("cannot be opened: file name too long. EfficientNet-Lite0 stays loaded.")
    assert len(error.value) < 250  # the path is cut, not echoed whole
    assert at.sidebar.dataframe[0].value["class"].iloc[0] == "Egyptian Mau"
    if page == "views/dataset.py":
        assert [e.value for e in at.main.error] == [f"'{'d' * 66}…{'d' * 33}' cannot be opened: file name too long."]
