"""The dataset page's Strategies and Concepts tabs in AppTest, on the bundled shortcut demo (a 7 often carries a
small white square in the top left corner): the planted shortcut is found, the numbers are the engine's, bad concept
folders are one sentence and the rest of the page stays."""

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.concepts.factorisation import FACTORISATION, discover_concepts
from explainers.concepts.strategies import strategies_of_results
from explainers.concepts.tcav import dataset_images, read_image_folder, tcav_settings
from explainers.inputs.samples import SHORTCUT_CONCEPTS_FOLDER, SHORTCUT_MANIFEST, SHORTCUT_TEST_FOLDER
from explainers.settings import DATA_ROOTS_ENV
from helpers import zip_bytes

PAGE = "views/dataset.py"
MARKED_CLASS = json.loads(SHORTCUT_MANIFEST.read_text())["shortcut_class"]


@pytest.fixture(scope="module")
def shortcut_app() -> AppTest:
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page(PAGE).run()
    at.radio(key="ds_source").set_value("Shortcut demo (bundled)").run()
    assert not at.exception, at.exception
    return at


def _table(at: AppTest, column: str):
    return next(frame.value for frame in at.main.dataframe if column in frame.value.columns)


def test_strategies_tab_shows_the_engines_strategies_and_flags_the_marked_class(shortcut_app):
    summary = _table(shortcut_app, "possible shortcuts").set_index("class")
    evaluation = ex.datasets.evaluate(ex.load_model(ex.SHORTCUT_MODEL), SHORTCUT_TEST_FOLDER)
    engine = strategies_of_results(evaluation)  # the tab's defaults: grouped by true class, the number chosen
    assert list(summary.index) == list(engine.classes)
    for name, result in engine.classes.items():
        assert summary.loc[name, "strategies"] == result.k
        assert summary.loc[name, "possible shortcuts"] == sum(c.shortcut for c in result.clusters)
    assert summary.loc[MARKED_CLASS, "possible shortcuts"] >= 1

    shortcut_app.selectbox(key="ds_str_class").set_value(MARKED_CLASS).run()
    where = _table(shortcut_app, "in that corner")
    flagged = where[where["possible shortcut"]]
    assert len(flagged) >= 1 and set(flagged["top corner"]) == {"top left"}
    assert any("top left corner" in w.value for w in shortcut_app.warning)
    result = engine.classes[MARKED_CLASS]
    np.testing.assert_array_equal(where["images"].to_numpy(), [c.size for c in result.clusters])


def test_concepts_wait_for_their_tab_and_button_then_find_the_mark(shortcut_app):
    assert not [b for b in shortcut_app.button if b.key == "ds_tcav_run"]  # a hidden tab reads no image
    shortcut_app.session_state["ds_tab"] = "Concepts"
    shortcut_app.run()
    assert not shortcut_app.exception, shortcut_app.exception
    assert shortcut_app.multiselect(key="ds_tcav_classes").value[0] == MARKED_CLASS
    shortcut_app.button(key="ds_tcav_run").click().run()
    assert not shortcut_app.exception, shortcut_app.exception
    scores = _table(shortcut_app, "TCAV score").set_index(["class", "concept"])
    assert scores.loc[(MARKED_CLASS, "mark"), "verdict"] == "significant"
    assert scores.loc[(MARKED_CLASS, "mark"), "TCAV score"] >= 0.9
    other = next(c for c in shortcut_app.multiselect(key="ds_tcav_classes").value if c != MARKED_CLASS)
    assert scores.loc[(other, "mark"), "verdict"] == "not significant"
    assert any(b.key == "ds_tcav_json" for b in shortcut_app.get("download_button"))


def test_concepts_found_without_examples_run_on_their_button_and_show_the_engines_numbers(shortcut_app):
    shortcut_app.session_state["ds_tab"] = "Concepts"
    shortcut_app.run()
    assert shortcut_app.selectbox(key="ds_nmf_class").value == MARKED_CLASS
    assert not [t for t in shortcut_app.main.dataframe if "importance (logit)" in t.value.columns]  # not before
    shortcut_app.button(key="ds_nmf_run").click().run()
    assert not shortcut_app.exception, shortcut_app.exception
    table = _table(shortcut_app, "importance (logit)")
    assert len(table) == FACTORISATION.params[0].default
    assert (np.diff(table["importance (logit)"].to_numpy()) <= 0).all()  # most important first
    assert np.abs(table["share"]).sum() == pytest.approx(1.0, abs=1e-6)
    model = ex.load_model(ex.SHORTCUT_MODEL)
    images = dataset_images(model, str(SHORTCUT_TEST_FOLDER), [MARKED_CLASS], tcav_settings(class_images=100), False)
    engine = discover_concepts(model, images.classes[0].images, model.class_names.index(MARKED_CLASS))
    np.testing.assert_allclose(table["importance (logit)"], [c.importance for c in engine.concepts], rtol=1e-3,
                               atol=1e-4)


@pytest.mark.parametrize(("entries", "sentence"), [
    ({"concepts/one/a.png": (SHORTCUT_CONCEPTS_FOLDER / "mark").iterdir().__next__().read_bytes()},
     "The concept 'one' has only 1 image; a concept needs at least 10"),
    ({"concepts/readme.txt": b"no folders here"}, "holds no concept folder"),
])
def test_a_bad_concept_zip_is_one_sentence_and_the_page_goes_on(shortcut_app, entries, sentence):
    shortcut_app.session_state["ds_tab"] = "Concepts"
    shortcut_app.radio(key="ds_tcav_source").set_value("A ZIP of concept folders").run()
    shortcut_app.file_uploader(key="ds_concepts_zip").set_value(
        [("concepts.zip", zip_bytes(entries), "application/zip")]).run()
    assert not shortcut_app.exception, shortcut_app.exception
    assert [e.value for e in shortcut_app.error if sentence in e.value], [e.value for e in shortcut_app.error]
    assert any(h.value == "Export" for h in shortcut_app.subheader)  # the rest of the page is drawn
    assert "/" not in next(e.value for e in shortcut_app.error if sentence in e.value).split("'")[0]  # no server path


def test_server_concept_folders_never_lead_outside_the_data_roots(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    marks = sorted((SHORTCUT_CONCEPTS_FOLDER / "mark").iterdir())
    for folder, files in ((root / "concepts" / "mark", marks[:12]), (outside / "secret", marks[12:24])):
        folder.mkdir(parents=True)
        for file in files:
            (folder / file.name).write_bytes(file.read_bytes())
    (root / "concepts" / "leak").symlink_to(outside / "secret")  # a concept folder that is a link out
    (root / "concepts" / "mark" / "linked.png").symlink_to(outside / "secret" / marks[12].name)  # a file linked out
    monkeypatch.setenv(DATA_ROOTS_ENV, str(root))
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.run()
    at.switch_page(PAGE).run()
    at.radio(key="ds_source").set_value("Shortcut demo (bundled)").run()
    at.session_state["ds_tab"] = "Concepts"
    at.radio(key="ds_tcav_source").set_value("Folders on the server").run()
    at.text_input(key="ds_concepts_path").set_value("concepts").run()
    assert not at.exception, at.exception
    assert at.multiselect(key="ds_tcav_concepts").options == ["mark"]  # the link out is no concept
    assert any(b.key == "ds_tcav_run" for b in at.button)  # the one concept was read and the test planned
    assert not any(str(tmp_path) in e.value for e in at.error)
    read = read_image_folder(root / "concepts" / "mark", 50, 0, "mark", [root.resolve()])
    assert len(read.names) == 12 and "linked.png" not in read.names  # the file linked out is not read
    assert len(read_image_folder(root / "concepts" / "mark", 50, 0, "mark").names) == 13  # without roots: the CLI
