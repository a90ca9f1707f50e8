"""Exported HTML reports are one self-contained file: every image inline, nothing fetched."""

import re

import pytest

import explainers as ex
from explainers.inputs.samples import DIGITS_TEST_FOLDER
from explainers.reports import comparison, render
from explainers.reports import dataset as dataset_report


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


def test_scores_and_report_keep_the_compute_time_of_maps_served_from_the_cache(embedded_model, sample):
    images = [sample("cat_chelsea"), sample("coffee")]
    ex.RESULTS.clear()
    first = {m: ex.attribute(embedded_model, images, m) for m in ("saliency", "gradcam")}
    again = {m: ex.attribute(embedded_model, images, m) for m in first}  # every map from the cache
    curves = {m: ex.scores.deletion_insertion(embedded_model, images, r, steps=4) for m, r in again.items()}
    scores = comparison.scores_table(again, curves, ["cat", "coffee"], embedded_model.class_names)
    assert scores["from cache"].all()
    assert (scores[comparison.COMPUTE_SECONDS] > 0).all()  # what the maps took, not the 0 s this call took
    for name, result in again.items():
        assert result.seconds == 0 and result.compute_seconds == pytest.approx(first[name].compute_seconds)
    summary = comparison.method_summary(scores)
    assert (summary[comparison.TOTAL_SECONDS] > 0).all() and (summary["maps from cache"] == 2).all()
    html = comparison.report_html("EfficientNet-Lite0", images, ["cat", "coffee"], again, curves, scores)
    assert comparison.TOTAL_SECONDS in html and "from cache" in html
    assert f"<td>{summary[comparison.TOTAL_SECONDS].iloc[0]:.3f}</td>" in html


def test_report_notes_and_frames_maps_of_a_class_below_the_threshold(embedded_model, sample):
    images = [sample("cat_chelsea"), sample("coffee")]
    mau = embedded_model.class_names.index("Egyptian Mau")
    probabilities = embedded_model.predict(images)
    assert probabilities[0, mau] > 0.5 and probabilities[1, mau] < ex.attribution.LOW_PROBABILITY
    results = {"gradcam": ex.attribute(embedded_model, images, "gradcam", targets=[mau, mau])}
    curves = {"gradcam": ex.scores.deletion_insertion(embedded_model, images, results["gradcam"], steps=4)}
    names = ["cat", "coffee"]
    scores = comparison.scores_table(results, curves, names, embedded_model.class_names, probabilities)
    assert scores[comparison.UNLIKELY].tolist() == [False, True]
    labels = [comparison.row_label(n, "Egyptian Mau", probabilities[i, mau]) for i, n in enumerate(names)]
    assert labels[1].endswith(f"below {ex.attribution.LOW_PROBABILITY:g})") and "below" not in labels[0]
    html = comparison.report_html("EfficientNet-Lite0", images, labels, results, curves, scores,
                                  probabilities=probabilities, image_names=names,
                                  class_names=embedded_model.class_names)
    assert f"Classes below p = {ex.attribution.LOW_PROBABILITY:g}" in html
    assert "coffee is explained as Egyptian Mau" in html and "cat is explained as" not in html
    framed = comparison.comparison_cell(images[1], results["gradcam"].raw[1], 120, marked=True)
    plain = comparison.comparison_cell(images[1], results["gradcam"].raw[1], 120)
    assert tuple(framed[0, 0]) == render.LOW_PROBABILITY_FRAME and tuple(plain[0, 0]) != render.LOW_PROBABILITY_FRAME


def test_comparison_report_holds_the_sanity_check_it_is_given_with_the_stages_that_ran():
    from explainers.scores import sanity
    from helpers import random_images, transfer_model, wrap

    model = wrap(transfer_model(size=32))  # three weighted layers: the check runs the stages top 1 and all 3
    images = random_images(2, 32)
    results = {m: ex.attribute(model, images, m) for m in ("saliency", "gradcam")}
    curves = {m: ex.scores.deletion_insertion(model, images, r, steps=4) for m, r in results.items()}
    scores = comparison.scores_table(results, curves, ["a", "b"], model.class_names)
    checks = sanity.sanity_checks(model, images, {m: (None, {}) for m in results})
    html = comparison.report_html("tiny", images, ["a", "b"], results, curves, scores, sanity=checks)
    _assert_self_contained(html, images=3)  # the grid, the curves and the sanity check
    assert "<h2>Sanity check</h2>" in html and "<th>top 1</th>" in html and "<th>top 3 (all)</th>" in html
    for check in checks.values():
        assert f"<td>{check.correlations[-1].mean():.3f}</td>" in html
    assert "Sanity check" not in comparison.report_html("tiny", images, ["a", "b"], results, curves, scores)
