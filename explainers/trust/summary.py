"""From scores to an answer: means with bootstrap intervals, rankings and how stable they are, whether the
metrics agree, and one card per method with a verdict per metric and the numbers behind it.

Intervals are percentile bootstrap intervals over images, paired across methods (each resample
draws the same images for every method), so a ranking's stability is read from the same resamples.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from explainers.trust.registry import Metric, get_metric

RESAMPLES = 1000
CONFIDENCE = 0.95
_CELLS_PER_CHUNK = 4_000_000  # resampled values held at once: 1,000 resamples of 100,000 images go in chunks


class Estimate(NamedTuple):
    mean: float
    low: float  # the 95% bootstrap interval
    high: float
    images: int  # images with a value


class Verdict(NamedTuple):
    """One metric's judgement of one method, in words, with its numbers."""

    metric: str
    rank: int  # 1 = best among the methods evaluated
    of: int
    estimate: Estimate
    standing: str  # "best", "tied with the best", "behind the best"
    bar: str  # "passes", "fails", "unclear", or "" for a metric with no absolute bar
    text: str

    @property
    def good(self) -> bool:
        return self.standing != "behind the best" and self.bar != "fails"


@dataclass
class TrustSummary:
    methods: list[str]
    metrics: list[str]
    overall: dict[str, dict[str, Estimate]]  # method -> metric -> estimate
    per_class: dict[int, dict[str, dict[str, Estimate]]]  # class -> method -> metric -> estimate
    ranking: dict[str, list[str]]  # metric -> methods, best first
    stability: dict[str, float]  # metric -> share of resamples in which the top method stays on top
    agreement: pd.DataFrame  # metric × metric Kendall τ between their rankings of the methods
    cards: dict[str, list[Verdict]]  # method -> one verdict per metric
    resamples: int


def _matrix(rows: pd.DataFrame, metric: str, methods: Sequence[str]) -> np.ndarray:
    """(images, methods) values of ``metric``: images scored by every method, NaN values kept."""
    table = rows[rows.metric == metric].pivot_table(index="image", columns="method", values="value", aggfunc="first",
                                                    dropna=False)
    table = table.reindex(columns=list(methods))
    return table.dropna(how="all").to_numpy(np.float64)


def bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, methods) means of ``values`` (images, methods) over images drawn with replacement, the same
    draws for every method; NaN values are left out of their mean."""
    count = len(values)
    out = np.empty((resamples, values.shape[1]))
    chunk = max(1, _CELLS_PER_CHUNK // max(1, count * values.shape[1]))
    for begin in range(0, resamples, chunk):
        size = min(chunk, resamples - begin)
        drawn = values[rng.integers(0, count, (size, count))]  # (size, images, methods)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample that drew no valued image: NaN says so
            out[begin:begin + size] = np.nanmean(drawn, axis=1)
    return out


def _estimates(values: np.ndarray, means: np.ndarray) -> list[Estimate]:
    tail = (1 - CONFIDENCE) / 2 * 100
    out = []
    for k in range(values.shape[1]):
        column = values[:, k]
        valued = int(np.isfinite(column).sum())
        if not valued:
            out.append(Estimate(float("nan"), float("nan"), float("nan"), 0))
            continue
        draws = means[:, k][np.isfinite(means[:, k])]
        mean = float(np.nanmean(column))
        # Resampled means are summed in another order than the mean: where every value is the same, the interval
        # would miss its own mean by a rounding error. It is widened to hold it (cards compare intervals).
        out.append(Estimate(mean, min(mean, float(np.percentile(draws, tail))),
                            max(mean, float(np.percentile(draws, 100 - tail))), valued))
    return out


def _oriented(metric: Metric, means: np.ndarray) -> np.ndarray:
    """Means turned so that higher is better; NaN (no value) sorts last."""
    turned = means if metric.higher_is_better else -means
    return np.where(np.isfinite(turned), turned, -np.inf)


def summarise(rows: pd.DataFrame, methods: Sequence[str], metrics: Sequence[str], resamples: int = RESAMPLES,
              seed: int = 0) -> TrustSummary:
    """Everything the page, the report and ``trust.json`` show, from an evaluation's rows."""
    rng = np.random.default_rng(seed)
    methods, metrics = list(methods), list(metrics)
    overall: dict[str, dict[str, Estimate]] = {m: {} for m in methods}
    ranking: dict[str, list[str]] = {}  # as TrustSummary's
    stability: dict[str, float] = {}
    oriented_means: dict[str, np.ndarray] = {}  # metric -> each method's mean, turned so that higher is better
    for metric_name in metrics:
        metric = get_metric(metric_name)
        values = _matrix(rows, metric_name, methods)
        if not len(values):
            ranking[metric_name], stability[metric_name] = [], float("nan")
            continue
        means = bootstrap_means(values, resamples, rng)
        for method, estimate in zip(methods, _estimates(values, means)):
            overall[method][metric_name] = estimate
        point = np.array([overall[m][metric_name].mean for m in methods])
        order = np.argsort(-_oriented(metric, point), kind="stable")
        ranking[metric_name] = [methods[k] for k in order if np.isfinite(point[k])]
        # The top method stays on top in a resample when no other beats it there; a tie keeps it on top, so two
        # methods tied at the best mean share the credit instead of the first listed taking it all.
        resampled = _oriented(metric, means)
        stability[metric_name] = float(np.mean(resampled[:, order[0]] >= resampled.max(axis=1)))
        oriented_means[metric_name] = _oriented(metric, point)
    per_class = _per_class(rows, methods, metrics, max(200, resamples // 5), rng)
    return TrustSummary(methods, metrics, overall, per_class, ranking, stability,
                        _agreement(oriented_means, metrics), _cards(overall, ranking, methods, metrics), resamples)


def _per_class(rows: pd.DataFrame, methods: list[str], metrics: list[str], resamples: int,
               rng: np.random.Generator) -> dict[int, dict[str, dict[str, Estimate]]]:
    out: dict[int, dict[str, dict[str, Estimate]]] = {}
    for label, group in rows.groupby("true_class", sort=True):
        table: dict[str, dict[str, Estimate]] = {m: {} for m in methods}
        for metric_name in metrics:
            values = _matrix(group, metric_name, methods)
            if not len(values):
                continue
            for method, estimate in zip(methods, _estimates(values, bootstrap_means(values, resamples, rng))):
                table[method][metric_name] = estimate
        out[int(label)] = table
    return out


def _agreement(oriented_means: dict[str, np.ndarray], metrics: list[str]) -> pd.DataFrame:
    """Kendall τ between each pair of metrics' orderings of the methods (1: same order; −1: reversed)."""
    names = [m for m in metrics if m in oriented_means]
    matrix = np.full((len(names), len(names)), np.nan)
    for a, first in enumerate(names):
        for b, second in enumerate(names):
            x, y = oriented_means[first], oriented_means[second]
            valued = np.isfinite(x) & np.isfinite(y)
            if valued.sum() >= 2:
                tau = kendalltau(x[valued], y[valued]).statistic
                matrix[a, b] = 1.0 if a == b else (tau if np.isfinite(tau) else np.nan)
    return pd.DataFrame(matrix, index=names, columns=names)


def _cards(overall: dict[str, dict[str, Estimate]], ranking: dict[str, list[str]], methods: list[str],
           metrics: list[str]) -> dict[str, list[Verdict]]:
    cards: dict[str, list[Verdict]] = {m: [] for m in methods}
    for metric_name in metrics:
        order = ranking.get(metric_name) or []
        if not order:
            continue
        metric = get_metric(metric_name)
        best = overall[order[0]][metric_name]
        for method in order:
            estimate = overall[method][metric_name]
            rank = order.index(method) + 1
            if rank == 1:
                standing = "best"
            elif best.low <= estimate.high and estimate.low <= best.high:
                standing = "tied with the best"
            else:
                standing = "behind the best"
            bar = _bar(metric, estimate)
            numbers = f"{estimate.mean:.3g} [{estimate.low:.3g}, {estimate.high:.3g}], {metric.direction}"
            words = f"{standing} ({rank} of {len(order)})" if rank > 1 else f"best of {len(order)}"
            if bar:
                words += f"; {bar} the bar of {metric.threshold:g}"
            cards[method].append(Verdict(metric_name, rank, len(order), estimate, standing, bar,
                                         f"{metric.label}: {words}: {numbers}"))
    return cards


def _bar(metric: Metric, estimate: Estimate) -> str:
    """Against the metric's absolute bar: ``passes`` when the whole interval is on its good side."""
    if metric.threshold is None:
        return ""
    good_side = (estimate.low > metric.threshold) if metric.higher_is_better else (estimate.high < metric.threshold)
    bad_side = (estimate.high < metric.threshold) if metric.higher_is_better else (estimate.low > metric.threshold)
    return "passes" if good_side else "fails" if bad_side else "unclear"
