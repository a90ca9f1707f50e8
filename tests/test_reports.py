"""Exported HTML reports are one self-contained file: every image inline, nothing fetched."""

import re

import explainers as ex
from explainers.datasets import report as dataset_report
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.reports import comparison


def _assert_self_contained(html: str, images: int) -> None:
    sources = re.findall(r"<img[^>]*src='([^']*)'", html)
    assert len(sources) == images and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r"(src|href)=['\"]?https?:", html)  # opens offline


def test_comparison_report_embeds_its_pictures_and_scores(embedded_model, sample):
    images = [sample("cat_chelsea"), sample("coffee")]
    results = {m: ex.attribute(embedded_model, images, m) for m in ("saliency", "gradcam")}
    curves = {m: ex.scores.deletion_insertion(embedded_model, images, r, steps=4) for m, r in results.items()}
    scores = comparison.scores_table(results, curves, ["cat <b>", "coffee"], embedded_model.class_names)
    html = comparison.report_html("EfficientNet-Lite0", images, ["cat <b>", "coffee"], results, curves, scores)
    _assert_self_contained(html, images=2)  # the grid and the curves
    assert "Egyptian Mau" in html and "espresso" in html and "Grad-CAM" in html
    assert "cat <b>" not in html and "cat &lt;b&gt;" in html  # names are escaped


def test_dataset_report_embeds_matrix_and_attention():
    evaluation = ex.datasets.evaluate(ex.load_model(ex.DIGITS_MODEL), DIGITS_TEST_FOLDER)
    html = dataset_report.report_html(evaluation, "Digits CNN")
    _assert_self_contained(html, images=2)
    assert f"{evaluation.accuracy:.3f}" in html and "Top confusions" in html
