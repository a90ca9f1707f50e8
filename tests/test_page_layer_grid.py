"""The layer-grid page: renders, follows the class, never recomputes for display settings, exports."""

import io
import zipfile

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.reports import render


@pytest.fixture
def engine_calls(monkeypatch):
    calls = []
    original = ex.layer_grid

    def spy(model, images, layers, targets=None, method="gradcam", **kwargs):
        result = original(model, images, layers, targets, method, **kwargs)
        calls.append({"layers": list(layers), "targets": list(targets), "method": method, "maps": result})
        return result

    monkeypatch.setattr(ex, "layer_grid", spy)
    # Other tests may have drawn this page already; start from empty caches so every
    # computation this test causes is seen.
    st.cache_data.clear()
    ex.RESULTS.clear()
    return calls


@pytest.fixture
def page(engine_calls) -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=180)
    at.run()
    at.switch_page("views/layer_grid.py").run()
    assert not at.exception, at.exception
    return at


def images_in_main(at: AppTest) -> int:
    return sum(1 for element in at.main if type(element).__name__ == "Image")


def test_renders_two_images_by_three_layers_for_the_top_two_classes(page, engine_calls):
    assert page.multiselect(key="grid_layers").value == ["block_2_expand", "block_9_expand", "head_conv"]
    (call,) = engine_calls  # both bands, all cells: one engine call
    assert call["layers"] == ["block_2_expand", "block_9_expand", "head_conv"]
    assert call["targets"] == [285, 967, 282, 968]  # top-1 then top-2 of cat and coffee
    assert images_in_main(page) >= 2 * 2 * (1 + 3)
    headers = [m.value for m in page.markdown]
    assert "**block_9_expand · 14x14**" in headers and "**head_conv · 7x7**" in headers
    assert [s.value for s in page.subheader] == ["Top-1 class", "Top-2 class"]


def test_switching_the_class_changes_the_maps(page, engine_calls):
    page.radio(key="grid_class_mode").set_value("One class by name").run()
    page.selectbox(key="grid_class").set_value(281).run()  # tabby cat, for both images
    assert not page.exception
    last = engine_calls[-1]
    assert last["targets"] == [281, 281]
    before = engine_calls[0]["maps"][0]  # cat, Egyptian Mau
    after = last["maps"][0]  # cat, tabby cat
    assert not np.allclose(before, after, atol=1e-3)
    assert page.subheader[0].value == "Class: tabby cat"


def test_display_settings_never_call_the_engine(page, engine_calls):
    calls = len(engine_calls)
    page.slider(key="grid_opacity").set_value(0.8).run()
    page.selectbox(key="grid_colormap").set_value("viridis").run()
    page.radio(key="grid_mode").set_value(render.HEATMAP).run()
    assert not page.exception
    assert len(engine_calls) == calls


def test_layers_by_position_from_the_end(page, engine_calls):
    page.radio(key="grid_layer_mode").set_value("By position from the end").run()
    spatial = ex.load_model().conv_layers
    # Opens on the same layers "By name" shows, written as positions.
    assert engine_calls[-1]["layers"] == ["block_2_expand", "block_9_expand", "head_conv"] and not page.error
    page.text_input(key="grid_positions").input("1, 2, 999").run()
    assert engine_calls[-1]["layers"] == [spatial[-2], spatial[-1]]
    assert [e.value for e in page.error] == [
        f"Positions from the end: 999 is outside 1 to {len(spatial)}, this model's spatial layers counted from the end."]
    page.text_input(key="grid_positions").input("0, abc, 3, 3").run()  # every bad token named, the good one used
    assert engine_calls[-1]["layers"] == [spatial[-3]]
    assert [e.value for e in page.error] == [
        f"Positions from the end: 0 is outside 1 to {len(spatial)}, this model's spatial layers counted from the end.",
        "Positions from the end: 'abc' is not a whole number.",
        "Positions from the end: 3 is listed more than once; the layer is shown once."]


def test_method_choice_reaches_the_engine(page, engine_calls):
    page.selectbox(key="grid_method").set_value("layercam").run()
    assert engine_calls[-1]["method"] == "layercam"


def test_downloads_are_offered(page):
    labels = [b.proto.label for b in page.get("download_button")]
    assert labels == ["Grid as PNG", "Every cell (ZIP)"]


def test_grid_png_decodes_at_the_expected_size():
    cells = [[np.zeros((300, 451, 3), np.uint8)] * 4, [np.zeros((400, 600, 3), np.uint8)] * 4]
    picture = render.compose_grid(cells, ["cat: Egyptian Mau (0.79)", "coffee: espresso (0.90)"],
                                  ["image", "a · 56x56", "b · 14x14", "c · 7x7"], cell_height=224)
    decoded = Image.open(io.BytesIO(render.png_bytes(picture)))
    widest = round(600 * 224 / 400)  # each column takes its widest cell
    assert decoded.height == 24 + 2 * (224 + 4)
    assert decoded.width > 4 * widest and decoded.mode == "RGB"


def test_cells_zip_holds_one_png_per_cell():
    data = render.zip_of_pngs({"cat_block_9": np.zeros((30, 40, 3), np.uint8), "cat_head": np.ones((30, 40, 3), np.uint8)})
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["cat_block_9.png", "cat_head.png"]
        assert Image.open(archive.open("cat_head.png")).size == (40, 30)


def test_feature_maps_are_the_most_active_channels(embedded_model, sample):
    features = ex.feature_maps(embedded_model, sample("coffee"), "block_9_expand", 8)
    assert features.maps.shape == (8, 14, 14) and features.maps.max() == 1.0
    assert (np.diff(features.mean_activation) <= 0).all()  # most active first


def test_least_likely_class_band_explains_each_images_least_probable_class(page, engine_calls):
    page.radio(key="grid_class_mode").set_value("Least likely").run()
    assert not page.exception, page.exception
    assert [h.value for h in page.subheader] == ["Least likely class"]
    model = ex.load_model()
    probabilities = model.predict([ex.decode_image(ex.sample_images()[n]) for n in ("cat_chelsea", "coffee")])
    assert engine_calls[-1]["targets"] == probabilities.argmin(axis=1).tolist()


def test_switching_the_model_takes_the_new_models_default_layers(page):
    page.sidebar.selectbox(key="model_spec").set_value(ex.DIGITS_MODEL).run()
    assert not page.exception, page.exception
    assert not [info for info in page.info if "Choose at least one layer" in info.value]
    assert page.multiselect(key="grid_layers").value == list(ex.load_model(ex.DIGITS_MODEL).default_layers)
    assert images_in_main(page) >= 2 * 2 * (1 + len(ex.load_model(ex.DIGITS_MODEL).default_layers))
