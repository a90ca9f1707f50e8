"""`python -m explainers trust`: the trust folder it writes agrees with its own rows and with plain computations;
plugins register methods and metrics that every command then offers; bad input is one sentence and exit 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers import plugins
from explainers.cli import EXIT_BAD_INPUT, main
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.methods.registry import REGISTRY
from explainers.trust import METRICS, markdown_table

CLASSES = ("3", "7")
PER_CLASS = 4


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Two classes of four digits each, copied from the bundled demo."""
    data = tmp_path_factory.mktemp("digits")
    for name in CLASSES:
        (data / name).mkdir()
        for path in sorted((DIGITS_TEST_FOLDER / name).iterdir())[:PER_CLASS]:
            shutil.copy(path, data / name)
    return data


@pytest.fixture(scope="module")
def model():
    return ex.load_model(ex.DIGITS_MODEL)


def _image(data, relative: str) -> np.ndarray:
    return ex.decode_image(data / relative)


def _rows(out) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((out / "rows").glob("*.parquet"))], ignore_index=True)


def _gini(values: np.ndarray) -> float:
    """The Gini index by its pairwise definition, sum |x_i - x_j| / (2 n^2 mean)."""
    values = np.abs(values.ravel()).astype(np.float64)
    return float(np.abs(values[:, None] - values[None, :]).sum() / (2 * len(values) ** 2 * values.mean()))


def _deletion_auc(model, image: np.ndarray, raw: np.ndarray, label: int, steps: int) -> float:
    """Deletion by a plain loop: the most positive pixels first (ties top-left first) set to black, step by step."""
    order = np.argsort(-raw.ravel(), kind="stable")
    pictures = []
    for k in range(steps + 1):
        picture = image.copy().reshape(-1, 3)
        picture[order[: round(k / steps * len(order))]] = 0
        pictures.append(picture.reshape(image.shape))
    probabilities = model.predict(pictures)[:, label]
    return float(np.trapezoid(probabilities, np.linspace(0, 1, steps + 1)))


def test_trust_writes_the_documented_folder_whose_answer_follows_its_rows(digits, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["trust", "--model", ex.DIGITS_MODEL, "--data", str(digits), "--methods", "gradcam,saliency",
                 "--metrics", "sparseness", "deletion", "--deletion-steps", "4", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "plan: 8 images" in printed.err and "estimate:" in printed.err
    assert "Deletion (steps=4)" in printed.err  # the metric's parameter, from its option

    answer = json.loads((out / "trust.json").read_text())
    assert {"methods", "ranking", "stability", "agreement", "per_class", "cards", "request"} <= set(answer)
    assert answer["request"]["metrics"] == {"sparseness": {}, "deletion": {"steps": 4}}
    rows = _rows(out)
    assert len(rows) == 8 * 2 * 2 and rows.groupby(["method", "metric"]).size().eq(8).all()
    means = rows.groupby(["metric", "method"]).value.mean()
    for metric, higher_is_better in (("sparseness", True), ("deletion", False)):
        by_mean = sorted(["gradcam", "saliency"], key=lambda m: means[metric, m], reverse=higher_is_better)
        assert answer["ranking"][metric] == by_mean
        for method in ("gradcam", "saliency"):
            estimate = answer["methods"][method][metric]
            assert estimate["mean"] == pytest.approx(means[metric, method], abs=1e-6)
            assert estimate["low"] <= estimate["mean"] <= estimate["high"] and estimate["images"] == 8
    by_class = rows.groupby(["metric", "true_class", "method"]).value.mean()
    assert set(answer["per_class"]) == set(CLASSES)
    assert answer["per_class"]["7"]["saliency"]["deletion"]["mean"] == pytest.approx(by_class["deletion", 7, "saliency"],
                                                                                     abs=1e-6)

    first = rows.query("method == 'saliency'").iloc[0]
    image = _image(digits, first.image)
    raw = ex.attribute(model, [image], "saliency", targets=[int(first.true_class)]).raw[0]
    value = rows.query("image == @first.image and method == 'saliency'").set_index("metric").value
    assert value["sparseness"] == pytest.approx(_gini(raw), rel=1e-6)
    assert value["deletion"] == pytest.approx(_deletion_auc(model, image, raw, int(first.true_class), 4), abs=1e-4)

    report = (out / "report.html").read_text()
    for text in ("Which method to trust", "Grad-CAM", "Saliency", "Deletion (lower is better)", "Kendall τ",
                 "Card: Saliency", "Per class: Sparseness (Gini) (higher is better)"):
        assert text in report
    label = {"gradcam": "Grad-CAM", "saliency": "Saliency"}[answer["ranking"]["deletion"][0]]
    deletion = next(line for line in printed.out.splitlines() if line.lstrip().startswith("Deletion"))
    assert re.search(rf"\]\s+{label}\s+\d+%$", deletion)  # the winner, then how often it stays on top


def test_localisation_uses_a_masks_folder_and_an_image_without_its_mask_only_loses_those_values(digits, model, tmp_path,
                                                                                                  capsys):
    masks = tmp_path / "masks"
    images = sorted(p.relative_to(digits).as_posix() for p in digits.rglob("*.png"))
    for relative in images[1:]:  # the first image has no mask
        strokes = _image(digits, relative).mean(axis=-1) > 127
        (masks / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.where(strokes, 255, 0).astype(np.uint8)).save(masks / relative)
    out = tmp_path / "out"
    assert main(["trust", "--model", ex.DIGITS_MODEL, "--data", str(digits), "--masks", str(masks), "--methods",
                 "gradcam", "--metrics", "relevance_mass,sparseness", "--out", str(out)]) == 0
    assert f"no localisation for: {images[0]}:" in capsys.readouterr().err
    answer = json.loads((out / "trust.json").read_text())
    assert [p["image"] for p in answer["mask_problems"]] == [images[0]]
    rows = _rows(out)
    assert set(rows.query("metric == 'relevance_mass'").image) == set(images[1:])
    assert set(rows.query("metric == 'sparseness'").image) == set(images)  # the rest keeps working
    relative = images[3]
    image = _image(digits, relative)
    raw = ex.attribute(model, [image], "gradcam", targets=[int(relative.split("/")[0])]).raw[0]
    positive, inside = np.clip(raw, 0, None), image.mean(axis=-1) > 127
    value = rows.query("image == @relative and metric == 'relevance_mass'").value.item()
    assert value == pytest.approx(positive[inside].sum() / positive.sum(), rel=1e-5)
    assert images[0] in (out / "report.html").read_text()


PLUGIN = '''
import numpy as np

from explainers.methods.registry import Param, register
from explainers.trust import register_metric


@register("random_map", "Random map", "this test's plugin")
def random_map(job, params):
    maps = np.stack([np.random.default_rng(seed).random(job.size) for seed in job.seeds]).astype(np.float32)
    return maps, job.top_classes()


@register_metric("map_power", "Mean power of the map", "complexity", "this test's plugin", higher_is_better=True,
                 help="The mean of |map| to the power `power`.",
                 params=(Param("power", 1.0, "exponent", 0.5, 4.0, 0.5),))
def map_power(batch, params):
    return (np.abs(batch.maps.reshape(len(batch), -1)) ** params["power"]).mean(axis=1)
'''


@pytest.fixture
def plugin(tmp_path):
    """A plugin file registering a random-map method and a metric; what it registered is gone afterwards."""
    path = tmp_path / "my_plugin.py"
    path.write_text(PLUGIN)
    methods, metrics = set(REGISTRY), set(METRICS)
    yield path
    for name in set(REGISTRY) - methods:
        REGISTRY.pop(name)
    for name in set(METRICS) - metrics:
        METRICS.pop(name)
    plugins._LOADED.pop(path.resolve(), None)
    sys.modules.pop(plugins.module_name(path.resolve()), None)


def test_a_plugins_method_and_metric_appear_in_every_command_and_in_the_output(plugin, digits, model, tmp_path, capsys):
    assert main(["methods", "--plugin", str(plugin)]) == 0
    assert "| Random map | `random_map` |" in capsys.readouterr().out
    assert main(["metrics", "--plugin", str(plugin)]) == 0
    assert "| Mean power of the map | `map_power` | complexity | higher |" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["trust", "--plugin", str(plugin), "--model", ex.DIGITS_MODEL, "--data", str(digits), "--methods",
                 "random_map", "saliency", "--metrics", "map_power,sparseness", "--map-power-power", "2",
                 "--out", str(out)]) == 0
    answer = json.loads((out / "trust.json").read_text())
    assert answer["request"]["metrics"]["map_power"] == {"power": 2.0}
    assert set(answer["methods"]) == {"random_map", "saliency"}
    assert set(answer["ranking"]["map_power"]) == {"random_map", "saliency"}
    rows = _rows(out).query("method == 'random_map' and metric == 'map_power'")
    relative = rows.image.iloc[0]
    raw = ex.attribute(model, [_image(digits, relative)], "random_map", targets=[int(relative.split("/")[0])]).raw[0]
    assert rows.value.iloc[0] == pytest.approx(float((np.abs(raw) ** 2).mean()), rel=1e-5)
    # A uniform random map spreads its relevance evenly: the Gini index of U(0, 1) is 1/3, below Saliency's.
    assert answer["methods"]["random_map"]["sparseness"]["mean"] == pytest.approx(1 / 3, abs=0.03)
    assert answer["ranking"]["sparseness"] == ["saliency", "random_map"]
    assert "Random map" in (out / "report.html").read_text()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


def test_a_plugin_that_raises_or_is_missing_is_one_sentence_and_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("import math\n\nvalue = math.sqrt(-1)  # ValueError: math domain error\nprint('never')\n")
    assert main(["metrics", "--plugin", str(broken)]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys) == (f"error: The plugin '{broken}' raised ValueError at line 3: math domain error.")
    several = tmp_path / "several_lines.py"
    several.write_text("raise RuntimeError('first line\\nsecond line')\n")
    assert main(["layers", "--model", ex.DIGITS_MODEL, "--plugin", str(several)]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys) == f"error: The plugin '{several}' raised RuntimeError at line 1: first line."
    assert main(["methods", f"--plugin={tmp_path / 'absent.py'}"]) == EXIT_BAD_INPUT
    assert _one_error_line(capsys) == f"error: The plugin '{tmp_path / 'absent.py'}' does not exist."
    assert str(several.resolve()) not in {str(p) for p in plugins._LOADED}  # a failed plugin can be fixed and retried


def test_a_plugin_whose_option_another_option_is_already_is_one_sentence(tmp_path, capsys):
    clashing = tmp_path / "clashing_plugin.py"
    clashing.write_text("from explainers.methods.registry import Param\nfrom explainers.trust import register_metric\n"
                        "register_metric('batch', 'Batch', 'complexity', 'none', higher_is_better=True, help='none', "
                        "params=(Param('size', 1, 'none', 1, 9),))(lambda batch, params: None)\n")
    try:
        assert main(["trust", "--plugin", str(clashing), "--help"]) == EXIT_BAD_INPUT
        assert _one_error_line(capsys) == ("error: The option --batch-size of Batch is another option already; rename "
                                           "'batch' or its parameter 'size' in its registration.")
    finally:
        METRICS.pop("batch", None)
        plugins._LOADED.pop(clashing.resolve(), None)
        sys.modules.pop(plugins.module_name(clashing.resolve()), None)


def test_the_dashboards_plugins_come_from_the_environment(plugin, tmp_path, monkeypatch, caplog):
    broken = tmp_path / "broken_plugin.py"
    broken.write_text("raise ImportError('no module named nowhere')\n")
    monkeypatch.setenv(ex.settings.PLUGINS_ENV, f"{plugin}{os.pathsep}{broken}")
    monkeypatch.setattr(plugins, "_ENVIRONMENT", {})
    errors = plugins.load_environment_plugins()
    assert errors == [f"The plugin '{broken}' raised ImportError at line 1: no module named nowhere."]
    assert "random_map" in REGISTRY and "map_power" in METRICS
    assert plugins.load_environment_plugins() == errors  # each page run asks again: nothing runs twice
    assert [r.getMessage() for r in caplog.records if r.name == "explainers.plugins"] == errors


def test_the_dashboard_loads_the_plugins_of_its_environment_when_it_starts(plugin, monkeypatch):
    monkeypatch.setenv(ex.settings.PLUGINS_ENV, str(plugin))
    monkeypatch.setattr(plugins, "_ENVIRONMENT", {})
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert "random_map" in REGISTRY and "map_power" in METRICS  # before any page lists methods or metrics


@pytest.mark.parametrize("extra, expected", [
    (["--metrics", "pointing_game"], "Pointing game needs object masks or boxes, and none were given."),
    (["--sample", "0"], "The sample must be at least 1 image per class; got 0."),
    (["--sample", "two"], "--sample is a whole number of images per class; got 'two'."),
    (["--methods", "gradcam,no_such_method"], "'no_such_method' is not an attribution method; choose one of "),
    (["--metrics", "deletion", "--deletion-steps", "2"], "The steps of Deletion must be an integer from 4 to 64; got 2."),
])
def test_bad_trust_input_is_one_sentence_and_exit_2(digits, tmp_path, capsys, extra, expected):
    argv = ["trust", "--model", ex.DIGITS_MODEL, "--data", str(digits), "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == EXIT_BAD_INPUT
    assert _one_error_line(capsys).startswith(f"error: {expected}")
    assert not (tmp_path / "out" / "trust.json").exists()


def test_the_readme_metric_table_is_the_registrys(capsys):
    assert markdown_table() in (PROJECT_ROOT / "README.md").read_text()
    assert main(["metrics"]) == 0
    assert capsys.readouterr().out.strip() == markdown_table()


def test_every_command_takes_plugins_and_trust_offers_every_metrics_parameters(capsys):
    for command in ("layers", "methods", "metrics", "gradcam", "compare", "visualize", "evaluate", "report", "trust"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0 and "--plugin FILE.py" in capsys.readouterr().out, command
    with pytest.raises(SystemExit):
        main(["trust", "--help"])
    text = capsys.readouterr().out
    for name, metric in METRICS.items():
        for param in metric.params:
            assert f"--{name}-{param.name}".replace("_", "-") in text
    assert "from 10% to 90%" in text  # a registration's own percent signs survive argparse's formatting
