"""A trust output folder: ``trust.json`` (the answer), ``rows/*.parquet`` (every score), ``images.parquet`` and
``report.html``. Opening one needs no model and runs no pass.

``trust.json`` holds ``{"methods": {method: {metric: {"mean", "low", "high", "images"}}}, "ranking":
{metric: [methods, best first]}, "stability", "agreement", "per_class", "cards", "request", ...}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from explainers.errors import InputError, echo
from explainers.trust.evaluate import TrustResult
from explainers.trust.registry import MapRequest, get_metric
from explainers.trust.scoring import ImageRow, MetricRequest, Row, TrustRequest
from explainers.trust.summary import Estimate, TrustSummary, summarise

TRUST_FILE = "trust.json"
ROWS_FOLDER = "rows"
IMAGES_FILE = "images.parquet"
REPORT_FILE = "report.html"
ROWS_PER_PART = 1_000_000  # rows per Parquet file: a part stays a few tens of MB


def _number(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _estimate(estimate: Estimate) -> dict[str, Any]:
    return {"mean": _number(estimate.mean), "low": _number(estimate.low), "high": _number(estimate.high),
            "images": estimate.images}


def as_json(result: TrustResult, summary: TrustSummary, per_class: int | None, seed: int) -> dict[str, Any]:
    """``trust.json``'s content: the answer, per class as well, with what was asked."""
    names = result.class_names
    return {
        "model": result.model_name,
        "dataset": result.root,
        "masks": result.masks,
        "request": result.request.describe(),
        "sample_per_class": per_class,
        "seed": seed,
        "images": len(result.images),
        "total": result.total,
        "complete": result.complete,
        "seconds": round(result.seconds, 3),
        "class_names": names,
        "metrics_info": {m: {"label": get_metric(m).label, "family": get_metric(m).family,
                             "higher_is_better": get_metric(m).higher_is_better} for m in summary.metrics},
        "methods": {method: {metric: _estimate(e) for metric, e in by_metric.items()}
                    for method, by_metric in summary.overall.items()},
        "ranking": summary.ranking,
        "stability": {m: _number(v) for m, v in summary.stability.items()},
        "agreement": {a: {b: _number(summary.agreement.loc[a, b]) for b in summary.agreement.columns}
                      for a in summary.agreement.index},
        "per_class": {names[label] if 0 <= label < len(names) else str(label):
                      {method: {metric: _estimate(e) for metric, e in by_metric.items()}
                       for method, by_metric in table.items()} for label, table in summary.per_class.items()},
        "cards": {method: [v.text for v in verdicts] for method, verdicts in summary.cards.items()},
        "resamples": summary.resamples,
        "skipped": [{"image": image, "why": why} for image, why in result.skipped],
        "mask_problems": [{"image": image, "why": why} for image, why in result.mask_problems],
    }


def write_trust(result: TrustResult, summary: TrustSummary, out: Path, per_class: int | None, seed: int,
                report_html: str | None = None) -> list[Path]:
    """Write the folder; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    rows_dir = out / ROWS_FOLDER
    rows_dir.mkdir(exist_ok=True)
    for old in rows_dir.glob("part-*.parquet"):
        old.unlink()  # a rerun into the same folder must not leave an earlier run's rows beside its own
    written = []
    for part, begin in enumerate(range(0, max(len(result.rows), 1), ROWS_PER_PART)):
        path = rows_dir / f"part-{part:05d}.parquet"
        result.rows.iloc[begin:begin + ROWS_PER_PART].to_parquet(path, index=False)
        written.append(path)
    result.images.to_parquet(out / IMAGES_FILE, index=False)
    (out / TRUST_FILE).write_text(json.dumps(as_json(result, summary, per_class, seed), indent=1))
    written += [out / IMAGES_FILE, out / TRUST_FILE]
    if report_html is not None:
        (out / REPORT_FILE).write_text(report_html)
        written.append(out / REPORT_FILE)
    return written


def _request(described: dict[str, Any]) -> TrustRequest:
    methods = tuple(MapRequest(name, chosen.get("layer"), tuple(sorted(chosen.get("params", {}).items())))
                    for name, chosen in described["methods"].items())
    metrics = tuple(MetricRequest(name, tuple(sorted(params.items()))) for name, params in described["metrics"].items())
    return TrustRequest(methods, metrics, described.get("target", "true"))


def open_trust(folder: Path, shown_as: str | None = None) -> tuple[TrustResult, TrustSummary, dict[str, Any]]:
    """A trust folder as the evaluation left it: (result, summary recomputed from its rows, trust.json's content).

    InputError with one sentence when the folder is not one, or names a metric not registered here (a plugin's
    that was not loaded). ``shown_as`` is how errors name the folder (never a server path the visitor did not type).
    """
    name = echo(shown_as or folder.name)
    try:
        described = json.loads((folder / TRUST_FILE).read_text())
        request = _request(described["request"])
        parts = sorted((folder / ROWS_FOLDER).glob("part-*.parquet"))
        rows = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True) if parts else pd.DataFrame(
            columns=list(Row._fields))
        images = pd.read_parquet(folder / IMAGES_FILE)
    except FileNotFoundError:
        raise InputError(f"'{name}' is not a trust results folder: it lacks {TRUST_FILE}, {ROWS_FOLDER}/ or "
                         f"{IMAGES_FILE}.") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise InputError(f"'{name}' holds a damaged trust result ({type(error).__name__}).") from None
    missing_columns = (set(Row._fields) - set(rows.columns)) | (set(ImageRow._fields) - set(images.columns))
    if missing_columns:
        raise InputError(f"'{name}' holds rows without the column {sorted(missing_columns)[0]!r}.")
    for metric in request.metric_names:
        try:
            get_metric(metric)
        except InputError:
            raise InputError(f"'{name}' was scored with the metric '{echo(metric)}', which is not registered here; "
                             "load the plugin that registers it.") from None
    result = TrustResult(
        rows=rows, images=images, request=request, class_names=list(described.get("class_names", [])),
        model_name=described.get("model", ""), root=described.get("dataset", ""),
        skipped=[(s["image"], s["why"]) for s in described.get("skipped", [])],
        total=int(described.get("total", len(images))), seconds=float(described.get("seconds", 0.0)),
        masks=described.get("masks", ""),
        mask_problems=[(s["image"], s["why"]) for s in described.get("mask_problems", [])])
    summary = summarise(rows, request.method_names, request.metric_names, int(described.get("resamples", 1000)),
                        int(described.get("seed", 0)))
    return result, summary, described
