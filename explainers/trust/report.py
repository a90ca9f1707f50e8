"""A trust evaluation as one offline HTML file, and the tables it is made of (the CLI prints the first of them).

Every score is shown the same way, ``mean [low, high]`` with three decimals (the 95% bootstrap interval over
images); shares of resamples as whole percents; each metric's heading says which way is better.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from explainers.errors import InputError
from explainers.methods.registry import get_method
from explainers.reports.html import Section, html_report
from explainers.trust.evaluate import TrustResult
from explainers.trust.registry import get_metric
from explainers.trust.summary import CONFIDENCE, Estimate, TrustSummary, Verdict

NO_VALUE = "–"  # a mean or interval with no image behind it (a localisation metric without masks, say)
DISAGREEING_IMAGES = 10  # the images where the methods' maps agree least, listed in the report


def number(value: float | None) -> str:
    """A score as every table shows it: three decimals, or ``–`` when there is none."""
    return NO_VALUE if value is None or not math.isfinite(value) else f"{value:.3f}"


def share(value: float | None) -> str:
    """A share (0..1) as a whole percent, or ``–``."""
    return NO_VALUE if value is None or not math.isfinite(value) else f"{value:.0%}"


def interval(estimate: Estimate | None) -> str:
    """``0.512 [0.480, 0.545]``: the mean and its interval, or ``–`` when no image has a value."""
    if estimate is None or not estimate.images or not math.isfinite(estimate.mean):
        return NO_VALUE
    return f"{number(estimate.mean)} [{number(estimate.low)}, {number(estimate.high)}]"


def method_label(name: str) -> str:
    """A method's label; its name when it is not registered here (a folder scored with another session's plugin)."""
    try:
        return get_method(name).label
    except InputError:
        return name


def metric_heading(name: str) -> str:
    """``Deletion (lower is better)``: a metric's label with its direction, as every table heads its column."""
    metric = get_metric(name)
    return f"{metric.label} ({metric.direction})"


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in params.items()) or "none"


def best(metric: str, estimates: dict[str, Estimate | None]) -> str:
    """The method with the best mean by ``metric``, or ``tie: A, B`` when several share it; ``–`` when none has one."""
    registered = get_metric(metric)
    means = {k: e.mean for k, e in estimates.items() if e is not None and e.images and math.isfinite(e.mean)}
    if not means:
        return NO_VALUE
    top = max(means.values()) if registered.higher_is_better else min(means.values())
    winners = [method_label(k) for k, mean in means.items() if _same(mean, top)]
    return winners[0] if len(winners) == 1 else "tie: " + ", ".join(winners)


def overall_table(summary: TrustSummary) -> pd.DataFrame:
    """One row per method, one column per metric (``mean [low, high]``), then each metric's winner and the images
    scored for it."""
    rows = [{"method": method_label(method),
             **{metric_heading(m): interval(summary.overall[method].get(m)) for m in summary.metrics}}
            for method in summary.methods]
    rows.append({"method": "best", **{metric_heading(m): best(m, {k: summary.overall[k].get(m) for k in summary.methods})
                                      for m in summary.metrics}})
    rows.append({"method": "images with a value", **{metric_heading(m): f"{_images(summary, m):,}"
                                                     for m in summary.metrics}})
    return pd.DataFrame(rows)


def metrics_table(summary: TrustSummary) -> pd.DataFrame:
    """The same answer turned for a terminal: one row per metric (its direction, each method's ``mean [low, high]``,
    the winner and how often the top method stays on top across resamples)."""
    return pd.DataFrame([{
        "metric": get_metric(m).label, "better": "higher" if get_metric(m).higher_is_better else "lower",
        **{method_label(k): interval(summary.overall[k].get(m)) for k in summary.methods},
        "best": best(m, {k: summary.overall[k].get(m) for k in summary.methods}),
        "top stays on top": share(summary.stability.get(m))} for m in summary.metrics])


def _images(summary: TrustSummary, metric: str) -> int:
    """The images with a value of ``metric`` (the most any method has: a map can be undefined, a constant one)."""
    return max((summary.overall[k][metric].images for k in summary.methods if metric in summary.overall[k]), default=0)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def ordering(summary: TrustSummary, metric: str) -> str:
    """``Saliency > Grad-CAM = RISE``: the methods best first by ``metric``'s means, ``=`` between equal means."""
    order = summary.ranking.get(metric, [])
    if not order:
        return NO_VALUE
    means = [summary.overall[k][metric].mean for k in order]
    text = method_label(order[0])
    for previous, mean, method in zip(means, means[1:], order[1:]):
        text += f" {'=' if _same(previous, mean) else '>'} {method_label(method)}"
    return text


def ranking_table(summary: TrustSummary) -> pd.DataFrame:
    """Per metric: the methods best first, and how often the top one stays on top across bootstrap resamples."""
    return pd.DataFrame([{"metric": metric_heading(m), "ranking, best first": ordering(summary, m),
                          "top method stays on top in": share(summary.stability.get(m))} for m in summary.metrics])


def agreement_table(summary: TrustSummary) -> pd.DataFrame:
    """Kendall τ between each pair of metrics' rankings of the methods (each turned so that better ranks first)."""
    agreement = summary.agreement
    labels = {m: get_metric(m).label for m in agreement.index}
    return pd.DataFrame([{"metric": labels[a], **{labels[b]: number(agreement.loc[a, b]) for b in agreement.columns}}
                         for a in agreement.index])


def class_table(result: TrustResult, summary: TrustSummary, metric: str) -> pd.DataFrame:
    """One metric per class: a row per class, a column per method (``mean [low, high]``), the class's winner."""
    rows = []
    for label, table in summary.per_class.items():
        estimates = {method: table[method].get(metric) for method in summary.methods}
        counts = [e.images for e in estimates.values() if e is not None]
        if not max(counts, default=0):
            continue
        name = result.class_names[label] if 0 <= label < len(result.class_names) else str(label)
        rows.append({"class": name, "images": f"{max(counts):,}",
                     **{method_label(k): interval(e) for k, e in estimates.items()}, "best": best(metric, estimates)})
    return pd.DataFrame(rows)


def verdict_words(verdict: Verdict) -> str:
    """``best of 3``, ``tied with the best (2 of 3)``, ``behind the best (3 of 3)``, with the bar when there is one."""
    words = f"best of {verdict.of}" if verdict.rank == 1 else f"{verdict.standing} ({verdict.rank} of {verdict.of})"
    if verdict.bar:
        threshold = get_metric(verdict.metric).threshold
        words += f"; {verdict.bar}" + (" against" if verdict.bar == "unclear" else "") + f" the bar of {threshold:g}"
    return words


def card_table(summary: TrustSummary, method: str) -> pd.DataFrame:
    """A method's card: one verdict per metric with the numbers behind it."""
    return pd.DataFrame([{"metric": metric_heading(v.metric), "verdict": verdict_words(v),
                          "mean [95% interval]": interval(v.estimate), "good": "yes" if v.good else "no"}
                         for v in summary.cards.get(method, [])])


def disagreement_table(result: TrustResult, count: int = DISAGREEING_IMAGES) -> pd.DataFrame:
    """The images whose maps the methods agree on least (mean Spearman correlation between every pair of maps)."""
    images = result.images.dropna(subset=["map_agreement"]).nsmallest(count, "map_agreement")
    names = result.class_names

    def name(label: int) -> str:
        return names[label] if 0 <= label < len(names) else str(label)

    return pd.DataFrame([{"image": row.image, "class explained": name(int(row.explained_class)),
                          "p(class)": number(row.p_explained), "maps' mean rank correlation": number(row.map_agreement)}
                         for row in images.itertuples()])


def _evaluated(result: TrustResult) -> Section:
    """What was asked: the images, the class explained, the masks and the methods with their parameters."""
    described = result.request.describe()
    methods = pd.DataFrame([{"method": method_label(name), "name": name, "layer": chosen["layer"] or "",
                             "parameters": _params(chosen["params"])} for name, chosen in described["methods"].items()])
    explained = "each image's true class (its folder)" if result.request.target == "true" else \
        "each image's predicted class (the model's top class)"
    done = "" if result.complete else (f" The run stopped early: {len(result.images):,} of {result.total:,} sampled "
                                       "images were scored, so every number covers those only.")
    text = (f"{len(result.images):,} images of '{result.root}' scored by {result.model_name}, explaining {explained}"
            f"{'; object masks: ' + result.masks if result.masks else '; no object masks'}; "
            f"{result.seconds:.1f} s.{done}")
    return Section("What was evaluated", text=text, table=methods)


def _metrics(result: TrustResult) -> Section:
    """Each metric's definition: its family, direction, parameters, exact rule and reference."""
    described = result.request.describe()
    metrics = pd.DataFrame([{"metric": get_metric(name).label, "name": name, "family": get_metric(name).family,
                             "better": "higher" if get_metric(name).higher_is_better else "lower",
                             "parameters": _params(params), "what it computes": get_metric(name).help,
                             "reference": get_metric(name).reference} for name, params in described["metrics"].items()])
    return Section("The metrics: what each computes", table=metrics)


def _problems(result: TrustResult) -> list[Section]:
    sections = []
    skipped = pd.DataFrame(result.skipped, columns=["image", "why it was not scored"])
    sections.append(Section("Images not scored", text="" if len(skipped) else "None: every sampled image was read.",
                            table=skipped if len(skipped) else None))
    if result.masks:
        problems = pd.DataFrame(result.mask_problems, columns=["image", "mask problem"])
        text = ("Scored, but without localisation values, because of their mask." if len(problems)
                else "None: every scored image had a usable mask.")
        sections.append(Section("Mask problems", text=text, table=problems if len(problems) else None))
    return sections


def trust_report_html(result: TrustResult, summary: TrustSummary) -> str:
    """The evaluation as one self-contained HTML file: what was asked, the method × metric table with intervals
    and winners, ranking stability, metric agreement, a table per metric by class, the cards, the images where
    the methods disagree most, the images not scored or scored without a mask, and each metric's definition."""
    confidence = f"{CONFIDENCE:.0%}"
    sections = [_evaluated(result)]
    sections.append(Section(
        "Methods × metrics", table=overall_table(summary),
        text=f"Each cell: the mean over images, then its {confidence} bootstrap interval (percentile; "
             f"{summary.resamples:,} resamples of the images, the same images for every method). Each heading says "
             "which way is better; 'best' is the method with the best mean."))
    sections.append(Section(
        "How stable is each ranking?", table=ranking_table(summary),
        text="The share of bootstrap resamples in which the top method by the mean is still the top one: near 100%, "
             "the winner does not depend on which images were sampled; near 100% divided by the number of methods, "
             "the data cannot tell the methods apart."))
    if len(summary.agreement) >= 2:
        sections.append(Section(
            "Do the metrics agree?", table=agreement_table(summary),
            text="Kendall τ between two metrics' rankings of the methods, each turned so that better ranks first: "
                 f"1, the same order; 0, unrelated; −1, opposite orders; {NO_VALUE} when one metric's means are all "
                 "equal, so it gives no order. Metrics that disagree measure different things: trust a method for what the "
                 "metrics that favour it measure."))
    for metric in summary.metrics:
        table = class_table(result, summary, metric)
        if len(table):
            sections.append(Section(f"Per class: {metric_heading(metric)}", table=table,
                                    text="Means per true class, with their intervals; 'best' by the mean."))
    for method in summary.methods:
        card = card_table(summary, method)
        if len(card):
            sections.append(Section(
                f"Card: {method_label(method)}", table=card,
                text="Per metric: its rank by the mean; 'tied with the best' when its interval overlaps the best "
                     "method's; a bar, when the metric has one, is passed when the whole interval is on its good "
                     "side."))
    disagreeing = disagreement_table(result)
    if len(disagreeing) and len(summary.methods) >= 2:
        sections.append(Section(
            "Where the methods disagree most", table=disagreeing,
            text="The images whose maps the methods agree on least: the mean Spearman correlation between every pair "
                 "of methods' maps of the image (1: the same ranking of pixels)."))
    sections += _problems(result)
    sections.append(_metrics(result))
    subtitle = (f"{result.model_name} on {result.root} · {len(result.images):,} images, {len(summary.methods)} "
                f"methods, {len(summary.metrics)} metrics")
    return html_report("Which method to trust", subtitle, sections)


__all__ = ["agreement_table", "best", "card_table", "class_table", "disagreement_table", "interval", "metric_heading", "metrics_table",
           "number", "ordering", "overall_table", "ranking_table", "trust_report_html"]
