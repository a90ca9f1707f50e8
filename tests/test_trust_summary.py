"""The trust summary against plain computations: bootstrap means, intervals, rankings, stability, agreement, cards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from explainers.trust.registry import METRICS, register_metric
from explainers.trust.summary import bootstrap_means, summarise

HIGHER, LOWER = "test_summary_higher", "test_summary_lower"


@pytest.fixture(autouse=True)
def two_metrics():
    """Two metrics that only read the rows: one higher-is-better with a bar, one lower-is-better."""
    register_metric(HIGHER, "Higher", "complexity", "test", higher_is_better=True, help="test", threshold=0.5)(
        lambda batch, params: np.zeros(len(batch)))
    register_metric(LOWER, "Lower", "faithfulness", "test", higher_is_better=False, help="test")(
        lambda batch, params: np.zeros(len(batch)))
    yield
    METRICS.pop(HIGHER)
    METRICS.pop(LOWER)


def _rows(values: dict[tuple[str, str], np.ndarray], classes: np.ndarray) -> pd.DataFrame:
    """Rows as an evaluation writes them, from {(method, metric): per-image values}."""
    rows = []
    for (method, metric), column in values.items():
        rows += [(f"img{i}.png", int(classes[i]), int(classes[i]), method, metric, float(v)) for i, v in enumerate(column)]
    return pd.DataFrame(rows, columns=["image", "true_class", "explained_class", "method", "metric", "value"])


def test_bootstrap_means_equal_a_plain_resampling_loop():
    values = np.random.default_rng(3).normal(size=(37, 3))
    values[5, 1] = np.nan  # a value an image lacks is left out of its resample's mean
    fast = bootstrap_means(values, 200, np.random.default_rng(11))
    rng = np.random.default_rng(11)
    for b in range(200):
        drawn = values[rng.integers(0, 37, 37)]
        for k in range(3):
            column = drawn[:, k]
            assert fast[b, k] == pytest.approx(column[np.isfinite(column)].mean())


def test_intervals_cover_the_mean_and_shrink_with_more_images():
    rng = np.random.default_rng(0)
    widths = []
    for count in (20, 500):
        rows = _rows({("a", HIGHER): rng.normal(0.6, 0.2, count), ("b", HIGHER): rng.normal(0.4, 0.2, count)},
                     np.zeros(count, int))
        summary = summarise(rows, ["a", "b"], [HIGHER], resamples=500)
        for method in "ab":
            estimate = summary.overall[method][HIGHER]
            assert estimate.low <= estimate.mean <= estimate.high
            assert estimate.images == count
        widths.append(summary.overall["a"][HIGHER].high - summary.overall["a"][HIGHER].low)
    assert widths[1] < widths[0] / 3  # about sqrt(25) = 5 times narrower


def test_ranking_follows_each_metrics_direction_and_stability_reads_the_resamples():
    rng = np.random.default_rng(1)
    count = 300
    clear = {("good", HIGHER): rng.normal(0.9, 0.05, count), ("bad", HIGHER): rng.normal(0.1, 0.05, count),
             ("good", LOWER): rng.normal(0.1, 0.05, count), ("bad", LOWER): rng.normal(0.9, 0.05, count)}
    summary = summarise(_rows(clear, np.zeros(count, int)), ["bad", "good"], [HIGHER, LOWER], resamples=300)
    assert summary.ranking == {HIGHER: ["good", "bad"], LOWER: ["good", "bad"]}
    assert summary.stability == {HIGHER: 1.0, LOWER: 1.0}
    assert summary.agreement.loc[HIGHER, LOWER] == pytest.approx(1.0)
    # Two methods drawn from one distribution: the top one stays on top in about half of the resamples.
    same = {("x", HIGHER): rng.normal(0.5, 0.2, count), ("y", HIGHER): rng.normal(0.5, 0.2, count)}
    tie = summarise(_rows(same, np.zeros(count, int)), ["x", "y"], [HIGHER], resamples=1000)
    assert 0.1 < tie.stability[HIGHER] < 0.9


def test_agreement_is_kendall_tau_between_the_metrics_orderings():
    methods = ["m1", "m2", "m3", "m4"]
    higher_means = [0.9, 0.7, 0.5, 0.2]
    lower_means = [0.3, 0.1, 0.6, 0.4]  # lower is better: best order m2, m1, m4, m3
    values = {}
    for method, h, lo in zip(methods, higher_means, lower_means):
        values[(method, HIGHER)] = np.full(10, h) + np.linspace(-0.01, 0.01, 10)
        values[(method, LOWER)] = np.full(10, lo) + np.linspace(-0.01, 0.01, 10)
    summary = summarise(_rows(values, np.zeros(10, int)), methods, [HIGHER, LOWER], resamples=50)
    expected = kendalltau(higher_means, [-v for v in lower_means]).statistic
    assert summary.agreement.loc[HIGHER, LOWER] == pytest.approx(expected)
    assert summary.ranking[LOWER] == ["m2", "m1", "m4", "m3"]


def test_per_class_estimates_use_only_that_class():
    classes = np.array([0] * 30 + [1] * 30)
    column = np.where(classes == 0, 0.2, 0.8) + np.random.default_rng(2).normal(0, 0.01, 60)
    summary = summarise(_rows({("a", HIGHER): column}, classes), ["a"], [HIGHER], resamples=200)
    assert summary.per_class[0]["a"][HIGHER].mean == pytest.approx(column[:30].mean())
    assert summary.per_class[1]["a"][HIGHER].mean == pytest.approx(column[30:].mean())
    assert summary.per_class[1]["a"][HIGHER].images == 30


def test_cards_say_best_tied_or_behind_and_judge_the_bar():
    rng = np.random.default_rng(4)
    count = 200
    values = {("best", HIGHER): rng.normal(0.9, 0.05, count), ("close", HIGHER): rng.normal(0.895, 0.05, count),
              ("far", HIGHER): rng.normal(0.3, 0.05, count)}
    summary = summarise(_rows(values, np.zeros(count, int)), ["best", "close", "far"], [HIGHER], resamples=300)
    verdicts = {method: cards[0] for method, cards in summary.cards.items()}
    assert verdicts["best"].standing == "best" and verdicts["best"].bar == "passes"
    assert verdicts["close"].standing == "tied with the best"
    assert verdicts["far"].standing == "behind the best" and verdicts["far"].bar == "fails"
    assert not verdicts["far"].good and verdicts["close"].good
    assert "0.9" in verdicts["best"].text and "higher is better" in verdicts["best"].text


def test_a_tie_at_the_top_keeps_the_top_method_on_top_whichever_is_listed_first():
    column = np.random.default_rng(5).normal(0.5, 0.2, 100)
    tied = {("first", HIGHER): column, ("second", HIGHER): column.copy()}
    summary = summarise(_rows(tied, np.zeros(100, int)), ["first", "second"], [HIGHER], resamples=200)
    assert summary.stability[HIGHER] == 1.0
