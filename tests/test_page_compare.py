"""The comparison page renders its defaults and its scores, and display settings cost no computation."""

import pytest
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT


@pytest.fixture(scope="module")
def page() -> AppTest:
    """One app for the module (a cold page costs about a minute); tests that change methods come last."""
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def test_renders_the_three_default_methods_with_scores(page):
    assert page.multiselect(key="cmp_methods").value == ["saliency", "smoothgrad", "scorecam"]
    headers = " ".join(m.value for m in page.markdown)
    for label in ("Saliency", "SmoothGrad", "Score-CAM"):
        assert f"**{label}**" in headers
    table = next(d.value for d in page.dataframe if "deletion AUC" in d.value.columns)
    assert list(table["method"]) == ["Saliency", "SmoothGrad", "Score-CAM"]
    assert table["deletion AUC"].between(0, 1).all() and table["insertion AUC"].between(0, 1).all()
    labels = [b.proto.label for b in page.get("download_button")]
    assert labels == ["Comparison grid (PNG)", "Scores per image (CSV)", "Export report (HTML)"]


def test_display_settings_compute_nothing(page):
    stored = len(ex.RESULTS)
    page.slider(key="cmp_opacity").set_value(0.9).run()
    page.select_slider(key="cmp_clip").set_value(95.0).run()
    page.selectbox(key="cmp_colormap").set_value("inferno").run()
    assert not page.exception
    assert len(ex.RESULTS) == stored  # nothing new was computed or stored
    assert any(m.value == "**Score-CAM**  \ncached" for m in page.markdown)


def test_adding_a_method_and_a_class_by_name(page):
    page.multiselect(key="cmp_methods").set_value(["gradcam", "integrated_gradients"]).run()
    page.radio(key="cmp_class_mode").set_value("One class by name").run()
    page.selectbox(key="cmp_class").set_value(281).run()
    assert not page.exception
    image_captions = [str(e.proto) for e in page.main if type(e).__name__ == "Image"]
    assert any("cat_chelsea: tabby cat" in caption for caption in image_captions)
    table = next(d.value for d in page.dataframe if "deletion AUC" in d.value.columns)
    assert list(table["method"]) == ["Grad-CAM", "Integrated Gradients"]
