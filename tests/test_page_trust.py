"""The "Which method to trust" page in AppTest, on the digits demo: its numbers are the engine's, its settings travel in
the link, a written folder opens with no model pass, a Stop keeps what was scored, and bad input gets one sentence."""

from __future__ import annotations

import dataclasses
import io
import re
import traceback
import zipfile

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image
from scipy.stats import kendalltau
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.datasets.sources import list_images
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.runtime import stopping
from explainers.runtime.passes import Runtime
from explainers.settings import DATA_ROOTS_ENV, MAX_REQUEST_SECONDS_ENV
from explainers.trust import evaluate, get_metric, scoring, storage
from explainers.trust.evaluate import evaluate_trust
from explainers.trust.masks import masks_from_strokes
from explainers.trust.report import trust_report_html
from explainers.trust.scoring import trust_request
from explainers.trust.summary import summarise
from helpers import open_link
from ui import budget

PAGE = "views/trust.py"
METHODS = ["gradcam", "saliency"]
METRICS = ["deletion", "sparseness", "pointing_game"]
OFF = [m for m in ("insertion", "road_morf", "road_lerf", "model_randomisation", "max_sensitivity", "relevance_mass")]
# The demo, three digits of each class, two fast methods, three metrics (one of them a localisation metric).
SMALL = {"trust_methods": METHODS, "trust_per_class": "3", **{f"trust_use_{m}": "false" for m in OFF}}


def _open(params: dict, page: str = PAGE) -> AppTest:
    return open_link(params, page, timeout=600)


@pytest.fixture(scope="module")
def digits() -> ex.LoadedModel:
    return ex.load_model(ex.DIGITS_MODEL)


@pytest.fixture
def page_passes(monkeypatch) -> list[str]:
    """The model passes the trust page itself causes (the sidebar's predictions and a model's warm-up aside)."""
    calls: list[str] = []
    original = Runtime.gradients

    def counted(self, *args, **kwargs):
        if any(frame.filename.endswith(("views/trust.py", "ui/trust_results.py")) for frame in traceback.extract_stack()):
            calls.append("pass")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Runtime, "gradients", counted)
    return calls


def _expected(digits: ex.LoadedModel, per_class: int = 3, methods=METHODS, metrics=METRICS, masks=True):
    """The same request through the engine, outside the page."""
    listing = list_images(DIGITS_TEST_FOLDER, digits)
    request = trust_request(digits, methods, metrics, has_masks=masks)
    result = evaluate_trust(digits, listing, request, per_class=per_class, seed=0,
                            masks=masks_from_strokes() if masks else None)
    return result, summarise(result.rows, methods, metrics, seed=0)


def _table(at: AppTest) -> pd.DataFrame:
    """The method × metric table: a row per metric, a column per method, then the images each metric scored."""
    (table,) = at.main.table
    return table.value


def _cell_text(mean: float, low: float, high: float, star: bool) -> str:
    return ("★ " if star else "") + f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def _chart_rows(at: AppTest, says: str) -> pd.DataFrame:
    """The data of the one chart whose spec holds ``says``, as the browser receives it."""
    (chart,) = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart" and says in e.proto.spec]
    (dataset,) = chart.proto.datasets
    return pa.ipc.open_stream(dataset.data.data).read_pandas()


def test_the_table_shows_the_engines_numbers_with_each_metrics_winner(digits, page_passes):
    at = _open(SMALL)
    assert page_passes  # the page evaluated (the detector of its passes works)
    result, summary = _expected(digits)
    # Means by a plain groupby of the engine's rows; intervals from its bootstrap with the same seed.
    means = result.rows.groupby(["method", "metric"])["value"].mean()
    table = _table(at)
    assert list(table.columns) == ["Grad-CAM", "Saliency", "images"]
    assert list(table.index) == ["Deletion ↓", "Sparseness (Gini) ↑", "Pointing game ↑"]
    for metric, row in zip(METRICS, table.index):
        spec = get_metric(metric)
        best = (max if spec.higher_is_better else min)(means[m, metric] for m in METHODS)
        for method, label in zip(METHODS, table.columns):
            estimate = summary.overall[method][metric]
            assert estimate.low <= means[method, metric] <= estimate.high
            assert table.loc[row, label] == _cell_text(means[method, metric], estimate.low, estimate.high,
                                                       means[method, metric] == best)
        assert table.loc[row, "images"] == "30"
    assert any(f"{len(result.images)} of the 30 sampled images of 'test'" in c.value for c in at.caption)

    # The heatmap: per class, the mean of the chosen metric (deletion, the first) over that class's images.
    cells = _chart_rows(at, "true class")
    plain = result.rows[result.rows.metric == "deletion"].groupby(["method", "true_class"])["value"].mean()
    assert len(cells) == 2 * 10
    labels = {"Grad-CAM": "gradcam", "Saliency": "saliency"}
    for cell in cells.to_dict("records"):
        assert cell["mean"] == pytest.approx(plain[labels[cell["method"]], int(cell["class"])])
        assert cell["text"] == f"{cell['mean']:.3f}"

    # The agreement matrix: Kendall τ between the metrics' orderings of the two methods' plain means.
    names = {get_metric(m).label: m for m in METRICS}
    for cell in _chart_rows(at, "Kendall").itertuples():
        first, second = names[cell.a], names[cell.b]
        turned = [np.array([means[m, metric] for m in METHODS]) * (1 if get_metric(metric).higher_is_better else -1)
                  for metric in (first, second)]
        assert cell.tau == pytest.approx(1.0 if first == second else kendalltau(*turned).statistic)

    # Stability as the engine gives it, and one card per method with a verdict per metric.
    stability = next(d.value for d in at.main.dataframe if "top stays on top" in d.value.columns)
    assert stability["top stays on top"].tolist() == pytest.approx([summary.stability[m] for m in METRICS])
    cards = [m.value for m in at.main.markdown if m.value.startswith(("**Grad-CAM** ·", "**Saliency** ·"))]
    assert len(cards) == 2
    lines = [m.value for m in at.main.markdown if "**Deletion**:" in m.value]
    assert len(lines) == 2 and all(len(card.split("  \n")) == 3 for card in lines)
    estimate = summary.overall["saliency"]["pointing_game"]
    assert any(f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}], higher is better" in line
               for line in lines)

    # The images where the methods disagree most: the lowest mean rank correlation, each with both maps.
    worst = result.images.sort_values(["map_agreement", "image"]).head(4)
    shown = [c.value for c in at.main.caption if "· agreement" in c.value]
    assert [text.split(" · ")[0] for text in shown] == worst["image"].tolist()
    assert [text.rsplit(" ", 1)[-1] for text in shown] == [f"{a:.2f}" for a in worst["map_agreement"]]
    assert {b.key for b in at.get("download_button")} >= {"trust_report", "trust_json", "trust_rows"}


def test_the_link_carries_every_setting_and_a_visit_elsewhere_keeps_them(page_passes):
    at = _open(SMALL)
    at.slider(key="trust_metric_deletion__steps").set_value(8)
    at.number_input(key="trust_seed").set_value(5)
    at.radio(key="trust_target").set_value("predicted").run()
    assert not at.exception, at.exception
    link = at.query_params
    assert link["trust_methods"] == METHODS and link["trust_per_class"] == "3" and link["trust_seed"] == "5"
    assert link["trust_metric_deletion__steps"] == "8" and link["trust_target"] == "predicted"
    assert link["trust_use_insertion"] == "false" and link["trust_use_deletion"] == "true"
    assert link["trust_layer_gradcam"] == "conv3" and link["trust_masks"] == "The digits' strokes"
    assert link["trust_source"] == "Digits demo (bundled)"
    table = _table(at)

    at.switch_page("views/overview.py").run()
    page_passes.clear()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.slider(key="trust_metric_deletion__steps").value == 8 and at.number_input(key="trust_seed").value == 5
    assert at.radio(key="trust_target").value == "predicted" and not at.checkbox(key="trust_use_insertion").value
    assert _table(at).equals(table) and not page_passes  # the results were kept: nothing evaluated again

    # The link itself, opened afresh, sets every widget back.
    again = _open(dict(link))
    assert again.slider(key="trust_metric_deletion__steps").value == 8
    assert again.multiselect(key="trust_methods").value == METHODS
    assert again.radio(key="trust_target").value == "predicted"
    assert _table(again).equals(table)


def test_a_long_request_waits_for_its_button_which_states_the_estimate(monkeypatch, page_passes):
    at = _open({"trust_per_class": "10"})  # the defaults: five methods, every metric, 100 digits
    [button] = [b for b in at.button if b.key == "trust_run_estimated"]
    assert re.fullmatch(r"Evaluate 100 images \(about \d+ (s|min)\)", button.label), button.label
    assert not page_passes and not at.main.table

    monkeypatch.setenv(MAX_REQUEST_SECONDS_ENV, "5")
    at = _open({"trust_per_class": "10"})
    [refusal] = [e.value for e in at.error]
    assert re.fullmatch(r"Evaluating 100 images would take about \d+ (s|min), more than the 5 s this server allows "
                        r"one request, so it is not run\.", refusal), refusal
    assert not [b for b in at.button if b.key == "trust_run_estimated"] and not page_passes


def test_a_stop_keeps_what_was_scored_and_resume_computes_only_the_rest(monkeypatch, digits):
    monkeypatch.setattr(budget, "AUTO_RUN_SECONDS", 1e9)
    scoring.VALUES.clear()  # every value of this request is computed here, whatever ran before
    original = evaluate.score_images
    calls = []

    def stopped_in_the_second_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise stopping.Stopped()  # what a Stop click does to the run under way, between batches
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "score_images", stopped_in_the_second_step)
    at = _open({**SMALL, "trust_per_class": "4", "trust_seed": "11"})  # 40 images: a step of 32, then 8
    monkeypatch.setattr(evaluate, "score_images", original)
    at.button(key="trust_stop").click().run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == ["Stopped after 32 of 40 images; the results below cover those."]
    assert any(c.value.startswith("32 of the 40 sampled images") for c in at.caption)

    listing = list_images(DIGITS_TEST_FOLDER, digits)
    sample = evaluate.sample_listing(listing, 4, 11)
    request = trust_request(digits, METHODS, METRICS, has_masks=True)
    scored = dataclasses.replace(listing, sources=sample.sources[:32], paths=sample.paths[:32], true=sample.true[:32])
    first = evaluate_trust(digits, scored, request, None, 11, masks_from_strokes())
    means = first.rows.groupby(["method", "metric"])["value"].mean()
    assert _table(at).loc["Deletion ↓", "Saliency"].lstrip("★ ").startswith(f"{means['saliency', 'deletion']:.3f} [")
    assert _table(at).loc["Sparseness (Gini) ↑", "Grad-CAM"].lstrip("★ ").startswith(
        f"{means['gradcam', 'sparseness']:.3f} [")

    at.button(key="trust_resume").click().run()
    assert not at.exception, at.exception
    assert not at.warning
    # Only the 8 images the stopped run had not scored were computed: 8 × 2 methods × 3 metrics values.
    assert any(c.value.startswith("40 of the 40 sampled images") and "; 48 values computed in this run" in c.value
               for c in at.caption)


def test_a_written_folder_opens_with_no_model_pass(monkeypatch, tmp_path, digits, page_passes):
    result, summary = _expected(digits)
    storage.write_trust(result, summary, tmp_path / "out", 3, 0, trust_report_html(result, summary))
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    at = _open({"trust_source": "A trust results folder on the server", "trust_results_path": "out"})
    assert not page_passes
    assert any("read from the folder with no model pass" in c.value for c in at.caption)
    opened = _table(at)
    fresh = _open(SMALL)
    assert opened.equals(_table(fresh))  # the same table as the run that wrote it
    assert any("Their maps need the model" in c.value for c in at.caption)
    at.text_input(key="trust_results_path").set_value("nowhere").run()
    assert not at.exception and len(at.error) == 1 and "'nowhere'" in at.error[0].value


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_zip_with_masks_scores_and_lists_a_misfit_and_a_missing_mask_in_one_sentence_each(digits):
    files = {}
    for digit in ("3", "7"):
        for path in sorted((DIGITS_TEST_FOLDER / digit).glob("*.png"))[:3]:
            files[f"digits/{digit}/{path.name}"] = path.read_bytes()
            strokes = np.asarray(Image.open(path).convert("L")) > 127
            files[f"digits/masks/{digit}/{path.name}"] = _png(strokes)
    misfit, missing = sorted(n for n in files if n.startswith("digits/masks/"))[:2]
    files[misfit] = _png(np.ones((20, 20), bool))
    del files[missing]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)

    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=600)
    at.query_params.update({**SMALL, "model_spec": ex.DIGITS_MODEL, "trust_source": "A ZIP upload"})
    at.switch_page(PAGE).run()
    at.file_uploader(key="trust_zip").set_value([("digits.zip", buffer.getvalue(), "application/zip")]).run()
    assert not at.exception, at.exception
    assert at.radio(key="trust_masks").value == "The masks/ folder in the ZIP"
    misfit, missing = misfit.removeprefix("digits/masks/"), missing.removeprefix("digits/masks/")
    reasons = {misfit: f"The mask '{misfit}' for '{misfit}' is 20x20 pixels but the image is 28x28; a mask must have "
                       "its image's size.",
               missing: f"No mask for '{missing}' in the masks folder 'masks/ in the ZIP'."}
    listed = next(d.value for d in at.main.dataframe if list(d.value.columns) == ["image", "why"])
    assert dict(zip(listed["image"], listed["why"])) == reasons
    [warning] = [w.value for w in at.warning if "No localisation values" in w.value]
    assert warning == ("No localisation values for 2 images, scored by the other metrics; the first: "
                       f"{reasons[listed['image'].iloc[0]]}")
    table = _table(at)  # the rest is scored: every method and metric, the localisation metric on the 4 with masks
    assert list(table.index) == ["Deletion ↓", "Sparseness (Gini) ↑", "Pointing game ↑"]
    assert table["images"].tolist() == ["6", "6", "4"]


def test_without_masks_the_localisation_metrics_are_off_with_the_reason_and_the_choices_stay():
    at = _open({**SMALL, "trust_masks": "None", "trust_use_pointing_game": "false", "trust_use_relevance_mass": "true"})
    assert at.checkbox(key="_trust_off_pointing_game").disabled and at.checkbox(key="_trust_off_relevance_mass").disabled
    assert "Pointing game needs object masks or boxes, and none were given." in [c.value for c in at.caption]
    assert list(_table(at).index) == ["Deletion ↓", "Sparseness (Gini) ↑"]  # the rest is scored
    assert at.query_params["trust_use_relevance_mass"] == "true"  # the choice travels while it cannot apply

    at.radio(key="trust_masks").set_value("The digits' strokes").run()  # masks again: the visitor's choices are back
    assert not at.exception, at.exception
    assert list(_table(at).index) == ["Deletion ↓", "Sparseness (Gini) ↑", "Relevance mass accuracy ↑"]


def test_a_boxes_csv_with_bad_rows_is_refused_in_one_sentence_and_the_rest_runs():
    at = _open({**SMALL, "trust_masks": "A boxes CSV (upload)"})
    csv = b"path,x0,y0,x1,y1\n3/a.png,0,0,10,10\n3/b.png,5,0,2,10\n"
    at.file_uploader(key="trust_boxes_file").set_value([("boxes.csv", csv, "text/csv")]).run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["'boxes.csv' has a bad row, so no box was read (line 3: x1 <= x0); each "
                                           "row is path,x0,y0,x1,y1 in pixels."]
    assert at.checkbox(key="_trust_off_pointing_game").disabled
    assert list(_table(at).index) == ["Deletion ↓", "Sparseness (Gini) ↑"]
    assert at.query_params["uploads_left_out"] == "trust"  # the link says the upload could not travel
