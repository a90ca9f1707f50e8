"""The dataset page in AppTest: opens on the digits demo; cells, bad folders and ZIP uploads."""

import re
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.datasets import analysis
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.settings import DATA_ROOTS_ENV
from helpers import zip_bytes

PAGE = "views/dataset.py"


@pytest.fixture(scope="module")
def demo_app() -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _cell_count(at: AppTest) -> int:
    text = next(m.value for m in at.markdown if "** were true" in m.value or "** was true" in m.value)
    return int(re.search(r"\*\*([\d,]+) image", text).group(1).replace(",", ""))


def test_page_opens_on_the_digits_demo(demo_app):
    assert demo_app.radio(key="ds_source").value.startswith("Digits demo")
    assert float(_metric(demo_app, "Accuracy").rstrip("%")) > 95
    assert _metric(demo_app, "Images") == "1,000" and _metric(demo_app, "Skipped files") == "0"
    assert not [b for b in demo_app.button if b.key == "ds_rescan"]  # a bundled folder does not change
    keys = {button.key for button in demo_app.get("download_button")}
    assert {"ds_predictions_csv", "ds_confusion_csv", "ds_confusion_png", "ds_attention_png"} <= keys


def test_choosing_a_cell_lists_that_cells_images(demo_app):
    evaluation = ex.datasets.evaluate(ex.load_model(ex.DIGITS_MODEL), DIGITS_TEST_FOLDER)
    matrix = analysis.confusion(evaluation)
    for true, predicted in (("7", "3"), ("4", "4"), ("2", "3")):
        demo_app.selectbox(key="ds_cell_true").set_value(true)
        demo_app.selectbox(key="ds_cell_predicted").set_value(predicted).run()
        assert not demo_app.exception
        expected = matrix.counts[matrix.rows.index(int(true)), matrix.columns.index(int(predicted))]
        assert _cell_count(demo_app) == expected
        shown = [c.value for c in demo_app.caption if re.fullmatch(r"\d: (<1|>99|\d{1,3})%( · \d: (<1|>99|\d{1,3})%){2}", c.value)]
        assert len(shown) == min(expected, 24)
        assert any(c.value.startswith("Under each image: its file, then the model's three most probable classes")
                   for c in demo_app.caption)


def test_errors_only_filter_keeps_the_misclassified_rows(demo_app):
    demo_app.toggle(key="ds_errors_only").set_value(True).run()
    table = next(d.value for d in demo_app.main.dataframe if "correct" in d.value.columns)
    assert len(table) > 0 and not table["correct"].any()
    demo_app.toggle(key="ds_errors_only").set_value(False).run()


@pytest.fixture
def folder_app(tmp_path, monkeypatch) -> AppTest:
    monkeypatch.setenv(DATA_ROOTS_ENV, str(tmp_path))
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.sidebar.selectbox(key="model_spec").set_value(ex.DIGITS_MODEL).run()
    at.switch_page(PAGE).run()
    return at


def test_server_folder_with_bad_files_reports_them_and_still_scores(folder_app, tmp_path):
    for digit in ("1", "8"):
        shutil.copytree(DIGITS_TEST_FOLDER / digit, tmp_path / "data" / digit)
    (tmp_path / "data" / "8" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (tmp_path / "data" / "8" / "notes.txt").write_text("found by the scan, never a candidate")
    (tmp_path / "data" / "4").mkdir()
    folder_app.radio(key="ds_source").set_value("A folder on the server").run()
    folder_app.text_input(key="ds_path").set_value(str(tmp_path / "data")).run()
    assert not folder_app.exception, folder_app.exception
    # One count of every file left out, whether found by the scan (notes.txt) or while evaluating (broken.jpg).
    assert _metric(folder_app, "Images") == "200" and _metric(folder_app, "Skipped files") == "2"
    assert [e.label for e in folder_app.expander if e.label.startswith("Skipped")] == [
        "Skipped files (2): unreadable or corrupt images: 1 · not images (by their extension): 1"]
    assert any("Empty class folder(s): 4" in w.value for w in folder_app.warning)
    victim = sorted((tmp_path / "data" / "1").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:50])  # edited in place: the same path, now truncated
    folder_app.button(key="ds_rescan").click().run()
    assert _metric(folder_app, "Images") == "199" and _metric(folder_app, "Skipped files") == "3"
    folder_app.text_input(key="ds_path").set_value(str(tmp_path / "nowhere")).run()
    assert not folder_app.exception and "is not a folder" in folder_app.error[0].value
    assert folder_app.sidebar.dataframe[0].value is not None  # the rest of the app still works


def _photos_zip_app(files: dict[str, bytes]) -> AppTest:
    """The dataset page, on the sidebar's default model, after uploading ``files`` as photos.zip."""
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page(PAGE).run()
    at.radio(key="ds_source").set_value("A ZIP upload").run()
    at.file_uploader(key="ds_zip").set_value([("photos.zip", zip_bytes(files), "application/zip")]).run()
    assert not at.exception, at.exception
    return at


def test_zip_upload_is_evaluated_and_an_escaping_zip_is_refused(folder_app):
    files = {f"digits/{p.parent.name}/{p.name}": p.read_bytes() for d in ("0", "6")
             for p in sorted((DIGITS_TEST_FOLDER / d).glob("*.png"))[:10]}
    folder_app.radio(key="ds_source").set_value("A ZIP upload").run()
    folder_app.file_uploader(key="ds_zip").set_value([("digits.zip", zip_bytes(files), "application/zip")]).run()
    assert not folder_app.exception, folder_app.exception
    assert _metric(folder_app, "Images") == "20"
    assert not [b for b in folder_app.button if b.key == "ds_rescan"]  # an upload cannot change: nothing to rescan
    folder_app.file_uploader(key="ds_zip").set_value([("evil.zip", zip_bytes({"../../x.png": b"1"}), "application/zip")]).run()
    assert not folder_app.exception and "points outside the archive" in folder_app.error[0].value


def test_a_folder_outside_the_data_roots_is_refused_and_the_page_carries_on(folder_app, tmp_path):
    shutil.copytree(DIGITS_TEST_FOLDER / "2", tmp_path / "data" / "2")
    shutil.copytree(DIGITS_TEST_FOLDER / "9", tmp_path / "data" / "9")
    folder_app.radio(key="ds_source").set_value("A folder on the server").run()
    for text in ("/usr/share", "../../", "~", str(tmp_path / "data" / ".." / "..")):
        folder_app.text_input(key="ds_path").set_value(text).run()
        assert not folder_app.exception, folder_app.exception
        assert folder_app.error[0].value == f"'{text}' is not inside the folders this dashboard may read ({tmp_path.resolve()})."
        assert not folder_app.metric  # nothing was listed or evaluated
    folder_app.text_input(key="ds_path").set_value("data").run()  # relative: from the root
    assert not folder_app.exception and _metric(folder_app, "Images") == "200"


def test_without_data_roots_only_the_demo_and_uploads_are_offered(monkeypatch):
    monkeypatch.delenv(DATA_ROOTS_ENV, raising=False)
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page(PAGE).run()
    assert at.radio(key="ds_source").options == ["Digits demo (bundled)", "Shortcut demo (bundled)", "A ZIP upload"]


def test_a_wide_models_first_cell_is_one_the_matrix_shows_and_holds_images():
    # The only mistake predicts espresso, a class with no folder: the condensed matrix puts it in "other classes".
    samples = ex.sample_images()
    files = {"photos/Egyptian Mau/cat.png": samples["cat_chelsea"].read_bytes(),
             "photos/tabby cat/coffee.png": samples["coffee"].read_bytes()}
    at = _photos_zip_app(files)
    assert len(ex.load_model().class_names) == 1000  # the sidebar's default model
    assert at.selectbox(key="ds_cell_true").value == "tabby cat"
    assert at.selectbox(key="ds_cell_predicted").value == analysis.OTHER
    assert _cell_count(at) == 1


def test_the_default_cell_is_the_largest_mistake_or_else_the_largest_cell():
    names = [f"c{i}" for i in range(5)]
    mistakes = analysis.Confusion(np.array([[5, 2, 0], [0, 9, 3]]), rows=[0, 1], columns=[0, 1, -1], names=names)
    assert analysis.default_cell(mistakes) == (1, -1)
    perfect = analysis.Confusion(np.array([[5, 0], [0, 9]]), rows=[0, 1], columns=[0, 1], names=names)
    assert analysis.default_cell(perfect) == (1, 1)


@pytest.mark.parametrize("probability, text", [(0.58, "58%"), (0.0, "<1%"), (0.004, "<1%"), (0.996, ">99%"),
                                               (1.0, "100%"), (0.01, "1%")])
def test_gallery_probabilities_are_whole_percentages_that_never_round_to_a_false_zero(probability, text):
    assert analysis.percent_text(probability) == text


def test_gallery_top_three_names_each_class_with_its_share():
    assert analysis.top_classes_text(np.array([3, 2, 0, 1]), np.array([0.58, 0.42, 0.0, 0.0]),
                                   list("012345")) == "3: 58% · 2: 42% · 0: <1%"


def test_a_results_folder_opens_with_its_images_only_when_they_lie_inside_the_data_roots(folder_app, tmp_path):
    from explainers.cli import main

    shutil.copytree(DIGITS_TEST_FOLDER / "1", tmp_path / "data" / "1")
    shutil.copytree(DIGITS_TEST_FOLDER / "7", tmp_path / "data" / "7")
    assert main(["evaluate", "--model", ex.DIGITS_MODEL, "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "inside")]) == 0
    # The same rows, but naming images outside the data roots: the page must not read them.
    assert main(["evaluate", "--model", ex.DIGITS_MODEL, "--data", str(DIGITS_TEST_FOLDER), "--out",
                 str(tmp_path / "outside")]) == 0
    folder_app.radio(key="ds_source").set_value("A results folder on the server").run()
    folder_app.text_input(key="ds_results_path").set_value("inside").run()
    assert not folder_app.exception, folder_app.exception
    assert _metric(folder_app, "Images") == "200"
    assert any("read from the folder with no model pass" in c.value for c in folder_app.caption)
    assert not any("cannot be read from this server" in c.value for c in folder_app.caption)
    assert all(c.value.startswith("mean image") for c in folder_app.caption if "when right" in c.value)
    folder_app.text_input(key="ds_results_path").set_value("outside").run()
    assert not folder_app.exception, folder_app.exception
    assert _metric(folder_app, "Images") == "1,000"
    assert any("cannot be read from this server" in c.value for c in folder_app.caption)
    assert any("each class's mean Grad-CAM is shown alone" in c.value for c in folder_app.caption)


def _matrix_spec(at: AppTest) -> dict:
    import json

    (chart,) = [e for e in at.main if getattr(e, "type", "") == "vega_lite_chart"]
    return json.loads(chart.proto.spec)


def test_matrix_cells_are_square_and_the_chart_follows_the_class_count(demo_app):
    spec = _matrix_spec(demo_app)  # ten digit classes
    assert spec["width"] == spec["height"] == {"step": 72}
    # Two classes of the embedded model's thousand: rows for those two, columns for them and "other classes".
    samples = ex.sample_images()
    files = {"photos/Egyptian Mau/cat.png": samples["cat_chelsea"].read_bytes(),
             "photos/espresso/coffee.png": samples["coffee"].read_bytes()}
    at = _photos_zip_app(files)
    spec = _matrix_spec(at)  # a small square chart of 80-pixel cells, not one stretched over the page
    assert spec["width"] == spec["height"] == {"step": 80}


def test_picking_a_row_of_the_per_image_table_shows_that_image_with_its_map(demo_app):
    (table,) = [d for d in demo_app.main.dataframe if "correct" in d.value.columns]
    assert table.proto.selection_mode == [table.proto.SelectionMode.SINGLE_ROW]
    row = 123
    file = table.value["file"].iloc[row]
    images_before = len([e for e in demo_app.main if type(e).__name__ == "Image"])
    demo_app.session_state[table.key] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    demo_app.run()
    assert not demo_app.exception, demo_app.exception
    shown = [e for e in demo_app.main if type(e).__name__ == "Image"]
    assert len(shown) == images_before + 1
    assert file in [c.value for c in demo_app.main.caption] or any(file in str(e.proto) for e in shown)
    evaluation = ex.datasets.evaluate(ex.load_model(ex.DIGITS_MODEL), DIGITS_TEST_FOLDER)
    index = evaluation.files.index(file)
    expected = analysis.top_classes_text(evaluation.top_classes[index], evaluation.top_probabilities[index],
                                       evaluation.class_names)
    assert expected in [c.value for c in demo_app.main.caption]


def test_a_typed_folder_path_too_long_for_the_system_gets_one_short_sentence(folder_app):
    for source, key in (("A folder on the server", "ds_path"), ("A results folder on the server", "ds_results_path")):
        folder_app.radio(key="ds_source").set_value(source).run()
        folder_app.text_input(key=key).set_value("r" * 300).run()
        assert not folder_app.exception, folder_app.exception
        assert [e.value for e in folder_app.error] == [f"'{'r' * 66}…{'r' * 33}' cannot be opened: file name too long."]
