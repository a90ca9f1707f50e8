"""Sessions render in threads of one server: the same pictures and reports from 8 threads as from one."""

import ast
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.datasets import analysis
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.reports import comparison, render
from explainers.reports import dataset as dataset_report
from helpers import gap_dense_model, random_images, wrap

THREADS = 8


@pytest.fixture(scope="module")
def outputs():
    """Named renderings, each a function of nothing that returns bytes."""
    model = wrap(gap_dense_model(size=32))
    images = random_images(3, 32, seed=11)
    results = {m: ex.attribute(model, images, m) for m in ("saliency", "gradcam", "layercam")}
    curves = {m: ex.scores.deletion_insertion(model, images, r, steps=4) for m, r in results.items()}
    names = ["a", "b", "c"]
    scores = comparison.scores_table(results, curves, names, model.class_names)
    digits = ex.load_model(ex.DIGITS_MODEL)
    scan = ex.datasets.scan_folder(DIGITS_TEST_FOLDER)
    keep = np.isin(scan.folder_of_file, [3, 5, 8])
    scan.files, scan.folder_of_file = [f for f, k in zip(scan.files, keep) if k], scan.folder_of_file[keep]
    evaluation = list(ex.datasets.evaluate_iter(digits, scan))[-1]
    attention = analysis.class_attention(evaluation)

    def undated(html: str) -> bytes:
        return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d", "", html).encode()

    return {
        "comparison grid": lambda: render.png_bytes(comparison.comparison_grid(images, names, results, colormap="magma")),
        "curves": lambda: comparison.curves_png(curves),
        "comparison report": lambda: undated(comparison.report_html("tiny", images, names, results, curves, scores)),
        "confusion matrix": lambda: dataset_report.confusion_png(analysis.confusion(evaluation), normalize=True),
        "attention grid": lambda: render.png_bytes(dataset_report.attention_grid(attention, "viridis", 0.6)),
        "dataset report": lambda: undated(dataset_report.report_html(evaluation, "Digits CNN")),
        "zip of cells": lambda: render.zip_of_pngs({f"cell{i}": render.overlay(im, im[..., 0] / 255) for i, im in
                                                    enumerate(images)}),
    }


def test_renderings_from_eight_threads_equal_a_serial_run(outputs):
    serial = {name: make() for name, make in outputs.items()}
    jobs = [(name, make) for name, make in outputs.items() for _ in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        threaded = list(pool.map(lambda job: (job[0], job[1]()), jobs))
    for name, data in threaded:
        assert data == serial[name], f"{name} differs when rendered from {THREADS} threads at once"


def test_no_server_code_uses_pyplot():
    # pyplot's current figure is global to the process, shared by every session's thread.
    for folder in ("explainers", "ui", "views"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            tree = ast.parse(Path(path).read_text())
            imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                        for alias in node.names} | {node.module for node in ast.walk(tree)
                                                    if isinstance(node, ast.ImportFrom) and node.module}
            assert not any("pyplot" in (name or "") for name in imported), f"{path} imports pyplot"


def test_pass_counter_counts_every_pass_from_many_threads():
    model = wrap(gap_dense_model(size=16))
    x = model.preprocess(random_images(1, 16))
    targets = np.full(1, -1, np.int32)
    model.runtime.forward(x, targets)  # traced once before the race
    before = model.runtime.passes_run
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda _: model.runtime.forward(x, targets), range(200)))
    assert model.runtime.passes_run - before == 200
