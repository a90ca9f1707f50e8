"""The CLI writes the dashboard's views to a folder, consistent with the engine; bad input is one line and exit 2."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.cli import main
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.runtime.caches import clear_all


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("cat_chelsea", "coffee"):
        shutil.copy(ex.sample_images()[name], folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_layers_lists_the_models_layers_in_order(capsys):
    assert main(["layers", "--model", ex.DIGITS_MODEL]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[1:]] == ex.load_model(ex.DIGITS_MODEL).conv_layers


def test_gradcam_writes_an_overlay_per_image_layer_and_class_and_a_grid_each(photos, tmp_path, capsys):
    layers = ["block_9_expand", "head_conv"]
    assert main(["gradcam", "--images", str(photos), "--layers", *layers, "--top", "2", "--out", str(tmp_path)]) == 0
    assert "broken.jpg" in capsys.readouterr().err  # skipped and reported, not fatal
    model = ex.load_model()
    for name in ("cat_chelsea", "coffee"):
        image = ex.decode_image(ex.sample_images()[name])
        top2 = np.argsort(-model.predict([image])[0])[:2]
        overlays = sorted(p.name for p in (tmp_path / name).glob("*.png"))
        assert len(overlays) == 4 and any(ex.reports.render.safe_stem(model.class_names[top2[1]]) in o for o in overlays)
        assert Image.open(tmp_path / name / overlays[0]).size == (image.shape[1], image.shape[0])
        assert (tmp_path / f"{name}_grid.png").exists()


def test_compare_writes_grids_and_scores_matching_the_engine(photos, tmp_path, capsys):
    assert main(["compare", "--images", str(photos), "--methods", "saliency", "gradcam", "--steps", "8",
                 "--out", str(tmp_path)]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 4 and set(scores["method"]) == {"Saliency", "Grad-CAM"}
    model = ex.load_model()
    images = [ex.decode_image(ex.sample_images()[n]) for n in ("cat_chelsea", "coffee")]
    clear_all()  # a fresh computation, not the cache the CLI just filled
    result = ex.attribute(model, images, "gradcam")
    curves = ex.scores.deletion_insertion(model, images, result, steps=8)
    row = scores[scores["method"] == "Grad-CAM"].set_index("image")
    np.testing.assert_allclose(row.loc[["cat_chelsea", "coffee"], "deletion AUC"], curves.deletion_auc, rtol=1e-5)
    assert row.loc["coffee", "class"] == "espresso"
    assert {p.name for p in tmp_path.glob("*_compare.png")} == {"cat_chelsea_compare.png", "coffee_compare.png"}


def test_compare_marks_a_class_the_model_rules_out(photos, tmp_path, capsys):
    assert main(["compare", "--images", str(photos), "--methods", "gradcam", "--steps", "8", "--target", "Egyptian Mau",
                 "--out", str(tmp_path)]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv").set_index("image")
    model = ex.load_model()
    coffee = model.predict([ex.decode_image(ex.sample_images()["coffee"])])[0][model.class_names.index("Egyptian Mau")]
    assert coffee < 0.01
    np.testing.assert_allclose(scores.loc["coffee", "class probability"], coffee, rtol=1e-4)
    assert bool(scores.loc["coffee", "class below p = 0.01"]) and not bool(scores.loc["cat_chelsea", "class below p = 0.01"])
    err = capsys.readouterr().err
    assert "coffee is explained as Egyptian Mau" in err and "cat_chelsea is explained" not in err
    # Each written grid equals the grid drawn framed (coffee) or not (the cat), from the same maps.
    from explainers.reports.comparison import comparison_grid, row_label

    for name, framed in (("coffee", True), ("cat_chelsea", False)):
        image = ex.decode_image(ex.sample_images()[name])
        result = ex.attribute(model, [image], "gradcam", targets="Egyptian Mau")
        probability = float(scores.loc[name, "class probability"])
        expected = comparison_grid([image], [row_label(name, "Egyptian Mau", probability)], {"gradcam": result},
                                   marked=[framed])
        written = np.asarray(Image.open(tmp_path / f"{name}_compare.png").convert("RGB"))
        assert written.shape == expected.shape and np.abs(written.astype(int) - expected).max() <= 1, name


def test_evaluate_on_the_digits_demo_writes_consistent_files(tmp_path):
    assert main(["evaluate", "--model", ex.DIGITS_MODEL, "--data", str(DIGITS_TEST_FOLDER), "--out", str(tmp_path)]) == 0
    predictions = pd.read_csv(tmp_path / "predictions.csv", dtype={"true_class": str, "predicted_class": str})
    clear_all()
    engine = ex.datasets.evaluate(ex.load_model(ex.DIGITS_MODEL), DIGITS_TEST_FOLDER)
    assert predictions["file"].tolist() == engine.files
    assert predictions["predicted_class"].tolist() == [engine.class_names[p] for p in engine.predicted]
    matrix = pd.read_csv(tmp_path / "confusion_matrix.csv", index_col=0)
    crosstab = pd.crosstab(predictions["true_class"], predictions["predicted_class"]).reindex(
        index=engine.class_names, columns=engine.class_names, fill_value=0)
    np.testing.assert_array_equal(matrix.to_numpy(), crosstab.to_numpy())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(predictions["correct"].mean()) and metrics["accuracy"] > 0.95
    assert len(metrics["per_class"]) == 10 and (tmp_path / "class_attention.png").exists()


@pytest.mark.parametrize("argv, expected", [
    (["layers", "--model", "/no/such/model.keras"], "'model.keras' does not exist."),
    (["evaluate", "--data", "/no/such/folder", "--out", "/tmp/unused"], "'/no/such/folder' is not a folder."),
    (["evaluate", "--model", "digits_cnn", "--data", "s3://bucket/val", "--out", "/tmp/unused"],
     "'s3://bucket/val' is a URI; without --ray, evaluate reads local folders only: add --ray to read it through "
     "pyarrow."),
])
def test_bad_input_is_one_line_on_stderr_and_exit_2(argv, expected):
    process = subprocess.run([sys.executable, "-m", "explainers", *argv], capture_output=True, text=True,
                             cwd=PROJECT_ROOT, env={**os.environ}, timeout=300)
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [f"error: {expected}"]


def test_every_subcommand_has_help(capsys):
    for command in ("layers", "gradcam", "compare", "evaluate"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0 and "--model" in capsys.readouterr().out


def test_preprocess_help_says_what_each_preset_computes_with_the_constants_it_uses(capsys):
    with pytest.raises(SystemExit):
        main(["gradcam", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert " ".join(ex.models.preprocessing.describe_presets().split()) in text
    for name, preset in ex.PRESETS.items():
        assert f"{name}: {preset.description}" in text
        black, white = (preset.apply(np.full((1, 1, 3), v, np.float32))[0, 0] for v in (0.0, 255.0))
        if name == "caffe":  # minus the BGR mean: black shows the mean itself
            assert all(f"{-v:g}" in preset.description for v in black)
        if name == "torch":  # (x / 255 - mean) / std: black and white give the std and the mean back
            std = 1 / (white - black)
            assert all(f"{v:g}" in preset.description for v in np.round(np.concatenate([std, -black * std]), 3))
