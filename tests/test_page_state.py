"""Each page keeps its view for the session: a visit to another page and back changes none of its settings or results.

Streamlit deletes the value of every widget a run does not draw; ``share.keep`` puts a page's
values back when it is drawn again.
"""

import io
import zipfile

import pytest
from streamlit.testing.v1 import AppTest

from conftest import PROJECT_ROOT
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.scores import sanity
from ui import cached


def _app() -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.session_state["image_names"] = ["coffee"]  # one image: the pages draw fast
    at.run()
    return at


def _visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _away_and_back(at: AppTest, page: str) -> AppTest:
    _visit(at, "views/overview.py")
    return _visit(at, page)


def test_the_layer_grid_keeps_its_layers_method_display_and_feature_maps():
    at = _visit(_app(), "views/layer_grid.py")
    at.selectbox(key="grid_method").set_value("layercam")
    at.multiselect(key="grid_layers").set_value(["block_5_expand", "head_conv"])
    at.slider(key="grid_opacity").set_value(0.8)
    at.selectbox(key="grid_colormap").set_value("inferno").run()
    at.selectbox(key="grid_features_layer").set_value("head_conv")
    at.slider(key="grid_features_count").set_value(8).run()
    assert not at.exception, at.exception

    _away_and_back(at, "views/layer_grid.py")
    assert at.selectbox(key="grid_method").value == "layercam"
    assert at.multiselect(key="grid_layers").value == ["block_5_expand", "head_conv"]
    assert at.slider(key="grid_opacity").value == pytest.approx(0.8)
    assert at.selectbox(key="grid_colormap").value == "inferno"
    assert at.selectbox(key="grid_features_layer").value == "head_conv"
    assert at.slider(key="grid_features_count").value == 8
    assert at.query_params["grid_method"] == "layercam"  # the link follows the kept view


def test_choices_are_kept_when_the_run_that_linked_them_was_replaced_before_its_end(monkeypatch):
    # In the server each click in the browser stops the run under way and starts the next at once; the stopped
    # run ends at its next Streamlit call. Here the grid's run is stopped as the server stops it, after its maps.
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    at = _visit(_app(), "views/layer_grid.py")
    computed = cached.layer_grid

    def replaced_by_a_click(*args, **kwargs):
        maps = computed(*args, **kwargs)
        get_script_run_ctx().script_requests.request_stop()  # what a click (here: another page) does to this run
        return maps

    monkeypatch.setattr(cached, "layer_grid", replaced_by_a_click)
    at.selectbox(key="grid_method").set_value("layercam")
    at.selectbox(key="grid_colormap").set_value("inferno").run()
    assert not at.exception, at.exception
    assert at.query_params["grid_colormap"] == "inferno"  # the link showed the choices...
    assert not at.subheader  # ...but the run ended before drawing the grid
    monkeypatch.setattr(cached, "layer_grid", computed)

    _away_and_back(at, "views/layer_grid.py")
    assert at.selectbox(key="grid_method").value == "layercam"
    assert at.selectbox(key="grid_colormap").value == "inferno"
    assert at.subheader  # this time the grid is drawn
    assert at.query_params["grid_colormap"] == "inferno"


def test_compare_keeps_its_methods_colormap_and_sanity_result(monkeypatch):
    runs = []
    original = sanity.sanity_checks
    monkeypatch.setattr(sanity, "sanity_checks", lambda *a, **k: runs.append(original(*a, **k)) or runs[-1])
    at = _visit(_app(), "views/compare.py")
    at.multiselect(key="cmp_methods").set_value(["saliency", "gradcam"])
    at.selectbox(key="cmp_colormap").set_value("inferno").run()
    at.button(key="cmp_sanity_run").click().run()
    assert not at.exception, at.exception
    assert len(runs) == 1

    _away_and_back(at, "views/compare.py")
    assert at.multiselect(key="cmp_methods").value == ["saliency", "gradcam"]
    assert at.selectbox(key="cmp_colormap").value == "inferno"
    charts = [chart.proto.spec for chart in at.get("vega_lite_chart")]
    assert any("rank correlation" in spec for spec in charts)  # the result is shown again, not run again
    assert len(runs) == 1


def _digits_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for digit in ("0", "6"):
            for path in sorted((DIGITS_TEST_FOLDER / digit).glob("*.png"))[:10]:
                archive.writestr(f"digits/{digit}/{path.name}", path.read_bytes())
    return buffer.getvalue()


def _images_metric(at: AppTest) -> str | None:
    return next((m.value for m in at.metric if m.label == "Images"), None)


def test_the_dataset_page_keeps_an_uploaded_zips_results_until_the_zip_is_removed():
    at = _visit(_app(), "views/dataset.py")
    at.radio(key="ds_source").set_value("A ZIP upload").run()
    at.file_uploader(key="ds_zip").set_value([("digits.zip", _digits_zip(), "application/zip")]).run()
    at.toggle(key="ds_errors_only").set_value(True).run()
    assert not at.exception, at.exception
    assert _images_metric(at) == "20"

    _away_and_back(at, "views/dataset.py")
    assert at.radio(key="ds_source").value == "A ZIP upload"
    assert _images_metric(at) == "20"
    assert at.toggle(key="ds_errors_only").value is True
    assert any("digits.zip, uploaded earlier in this session" in c.value for c in at.caption)
    assert not [i for i in at.info if "Give the folder" in i.value]

    at.file_uploader(key="ds_zip").set_value([("digits.zip", _digits_zip(), "application/zip")]).run()
    at.file_uploader(key="ds_zip").set_value([]).run()  # the visitor removes it: its results go
    assert not at.exception, at.exception
    assert _images_metric(at) is None
    assert any("Give the folder" in i.value for i in at.info)
