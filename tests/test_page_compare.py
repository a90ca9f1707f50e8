"""The comparison page renders its defaults and its scores, and display settings cost no computation."""

import json
import re

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.reports import comparison
from explainers.scores import sanity


@pytest.fixture(scope="module")
def page() -> AppTest:
    """One app for the module (a cold page costs about a minute); tests that change methods come last."""
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page("views/compare.py").run()
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
    # Served from the cache, a map still says what it took to compute: never 0.00 s for a method that took time.
    header = next(m.value for m in page.markdown if m.value.startswith("**Score-CAM**  \n"))
    seconds = re.fullmatch(r"\*\*Score-CAM\*\*  \n(\d+\.\d\d) s · from cache", header)
    assert seconds and float(seconds.group(1)) > 0, header


def test_runtime_tab_shows_compute_time_and_cache_apart(page):
    table = next(d.value for d in page.dataframe if comparison.TOTAL_SECONDS in d.value.columns)
    assert list(table["method"]) == ["Saliency", "SmoothGrad", "Score-CAM"]
    assert (table[comparison.TOTAL_SECONDS] > 0).all()  # the maps came from the cache on this run, and took time once
    assert (table["maps from cache"] == 2).all()


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def encodings(spec: dict) -> list[dict]:
    """The encodings of a chart and of every layer in it."""
    return [spec.get("encoding", {})] + [e for layer in spec.get("layer", []) for e in encodings(layer)]


def test_curves_use_the_registered_colours_and_a_legend_that_tells_the_curves_apart(page):
    curves = next(s for s in charts(page) if any("strokeDash" in e for e in encodings(s)))
    encoding = next(e for e in encodings(curves) if "strokeDash" in e)
    assert encoding["color"]["scale"]["domain"] == ["Saliency", "SmoothGrad", "Score-CAM"]
    assert encoding["color"]["scale"]["range"] == [ex.REGISTRY[n].colour for n in ("saliency", "smoothgrad", "scorecam")]
    dash = encoding["strokeDash"]
    assert dash["legend"]["symbolType"] == "stroke"  # the legend draws a solid and a dashed line, not two dots
    assert dash["scale"]["domain"] == ["deletion", "insertion"]
    assert dash["scale"]["range"][0] != dash["scale"]["range"][1]


def test_sanity_check_runs_on_a_button_at_a_stated_cost_and_never_reruns_silently(page, monkeypatch):
    assert not [t for t in page.toggle if t.key == "cmp_sanity"]
    button = page.button(key="cmp_sanity_run")
    estimate = re.fullmatch(r"Run the sanity check \(about (\d+) s\)", button.label)
    assert estimate and int(estimate.group(1)) > 0, button.label
    runs = []
    original = sanity.sanity_checks
    monkeypatch.setattr(sanity, "sanity_checks", lambda *a, **k: runs.append(original(*a, **k)) or runs[-1])
    st.cache_data.clear()
    button.click().run()
    assert not page.exception, page.exception
    assert len(runs) == 1 and list(runs[0]) == ["saliency", "smoothgrad", "scorecam"]
    chart = next(s for s in charts(page) if "rank correlation" in json.dumps(s))
    y = next(e["y"] for e in encodings(chart) if "y" in e and e["y"]["field"] == "rank correlation")
    lowest = min(float(c.correlations.mean(axis=1).min()) for c in runs[0].values())
    assert y["scale"]["domain"][0] <= lowest and y["scale"]["domain"][1] >= 1  # every point inside the axis
    colour = next(e["color"] for e in encodings(chart) if "color" in e)
    assert colour["scale"]["range"] == [ex.REGISTRY[n].colour for n in ("saliency", "smoothgrad", "scorecam")]

    page.slider(key="cmp_opacity").set_value(0.4).run()  # unrelated: the result stays, nothing reruns
    assert len(runs) == 1 and any("rank correlation" in json.dumps(s) for s in charts(page))
    page.radio(key="cmp_class_mode").set_value("Least likely").run()
    assert not page.exception, page.exception
    assert len(runs) == 1  # another class: no silent rerun
    assert not any("rank correlation" in json.dumps(s) for s in charts(page))  # the old result is hidden
    assert any("hidden" in i.value for i in page.info)
    assert re.fullmatch(r"Run again \(about \d+ s\)", page.button(key="cmp_sanity_run").label)


def test_maps_of_a_class_below_the_threshold_carry_a_note_and_a_mark(page):
    # Each image's least likely class (set by the test above) is one the model all but rules out.
    assert page.radio(key="cmp_class_mode").value == "Least likely"
    warning = " ".join(w.value for w in page.warning)
    assert "cat_chelsea is explained as" in warning and "coffee is explained as" in warning
    assert f"below {ex.attribution.LOW_PROBABILITY:g}" in warning
    images = " ".join(str(e.proto) for e in page.main if type(e).__name__ == "Image")
    assert images.count(f"class below p = {ex.attribution.LOW_PROBABILITY:g}") == 2 * (1 + 3)  # photos and maps


def test_adding_a_method_and_a_class_by_name(page):
    page.multiselect(key="cmp_methods").set_value(["gradcam", "integrated_gradients"]).run()
    page.radio(key="cmp_class_mode").set_value("One class by name").run()
    page.selectbox(key="cmp_class").set_value(281).run()
    assert not page.exception
    image_captions = [str(e.proto) for e in page.main if type(e).__name__ == "Image"]
    assert any("cat_chelsea: tabby cat" in caption for caption in image_captions)
    table = next(d.value for d in page.dataframe if "deletion AUC" in d.value.columns)
    assert list(table["method"]) == ["Grad-CAM", "Integrated Gradients"]


def test_the_sanity_check_of_a_model_with_few_weighted_layers_states_and_plots_the_stages_it_runs(monkeypatch,
                                                                                                   tmp_path):
    from explainers.settings import DATA_ROOTS_ENV
    from helpers import open_own_model, transfer_model

    transfer_model().save(tmp_path / "small.keras")  # three weighted layers
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    at = open_own_model(tmp_path / "small.keras", "views/compare.py")
    stated = next(c.value for c in at.caption if "randomised copy" in c.value)
    assert "top 1 and 3 of 3 weighted layers" in stated and "(2 stages × 3 methods × 2 images = 12 maps)" in stated
    at.button(key="cmp_sanity_run").click().run()
    assert not at.exception, at.exception
    chart = next(s for s in charts(at) if "rank correlation" in json.dumps(s))
    x = next(e["x"] for e in encodings(chart) if "x" in e)
    assert x["type"] == "ordinal" and x["sort"] == ["top 1", "top 3 (all)"]

    # The report the page offers holds the check just run: build it as a click on the download would.
    from streamlit.delta_generator import DeltaGenerator

    reports, offer = [], DeltaGenerator.download_button

    def keep_report(self, label, data, *args, **kwargs):
        if kwargs.get("key") == "cmp_report":
            reports.append(data() if callable(data) else data)
        return offer(self, label, data, *args, **kwargs)

    monkeypatch.setattr(DeltaGenerator, "download_button", keep_report)
    at.run()
    assert len(reports) == 1 and "<h2>Sanity check</h2>" in reports[0] and "<th>top 3 (all)</th>" in reports[0]
