"""Methods evaluated over a dataset: a per-class sample of a listing, scored batch by batch, stoppable at any batch.

Every batch's values are cached as it ends (``scoring.VALUES``), so stopping keeps the work done
and running again computes only what is new. The sample is drawn per class with a seed and taken
in a seeded order across classes: a run stopped early has scored some of every class.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from explainers.datasets.evaluation import Progress
from explainers.datasets.sources import Listing, Reader
from explainers.errors import InputError
from explainers.estimates import sized_passes_seconds
from explainers.methods.registry import PassGroup, get_method, in_batches
from explainers.models.loading import LoadedModel
from explainers.trust.masks import ObjectMasks, at_model_size
from explainers.trust.registry import CostContext, get_metric
from explainers.trust.remake import MAX_MAP_BATCH
from explainers.trust.scoring import ImageRow, Row, TrustRequest, score_images

IMAGES_PER_STEP = 32  # images scored together: one step of the progress bar, and what a Stop may lose at most


class Sampled(NamedTuple):
    """The images an evaluation scores, in the order it scores them."""

    sources: list[str]  # what the reader opens
    paths: list[str]  # what rows name them by
    true: list[int]
    classes_short: list[int]  # classes with fewer images than the sample asked for


def sample_listing(listing: Listing, per_class: int | None, seed: int = 0) -> Sampled:
    """Up to ``per_class`` images of each class (all when None), drawn with ``seed``, then shuffled across classes."""
    if per_class is not None and per_class < 1:
        raise InputError(f"The sample must be at least 1 image per class; got {per_class}.")
    rng = np.random.default_rng(seed)
    true = np.asarray(listing.true)
    chosen, short = [], []
    for label in np.unique(true):
        members = np.flatnonzero(true == label)
        if per_class is not None and len(members) > per_class:
            members = np.sort(rng.choice(members, per_class, replace=False))
        elif per_class is not None and len(members) < per_class:
            short.append(int(label))
        chosen.extend(members.tolist())
    order = [chosen[j] for j in rng.permutation(len(chosen))]
    return Sampled([listing.sources[i] for i in order], [listing.paths[i] for i in order],
                   [int(listing.true[i]) for i in order], short)


@dataclass
class TrustResult:
    """Every score of an evaluation, one row per image × method × metric, with what it was asked."""

    rows: pd.DataFrame  # Row's columns
    images: pd.DataFrame  # ImageRow's columns, one row per scored image
    request: TrustRequest
    class_names: list[str]
    model_name: str
    root: str  # the dataset's folder name or URI, as shown
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, why it was not scored)
    total: int = 0  # images the sample holds
    seconds: float = 0.0
    masks: str = ""  # where the masks came from, as shown; empty without masks
    computed: int = 0  # values computed in this run; the rest came from the cache (an earlier, perhaps stopped, run)
    # (image, why) for images scored without their localisation values: a missing, empty or misfit mask.
    mask_problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.images) + len(self.skipped) >= self.total


def rows_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(Row._fields)).astype({"value": np.float64})


def images_frame(rows: list[ImageRow]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ImageRow._fields))


def evaluate_trust_iter(model: LoadedModel, listing: Listing, request: TrustRequest, per_class: int | None = None,
                        seed: int = 0, masks: ObjectMasks | None = None) -> Iterator[Progress | TrustResult]:
    """Yield Progress after each step of ``IMAGES_PER_STEP`` images, then the TrustResult; stop iterating to cancel."""
    sample = sample_listing(listing, per_class, seed)
    reader = Reader(listing.root, listing.remote)
    rows: list[Row] = []
    image_rows: list[ImageRow] = []
    skipped: list[tuple[str, str]] = []
    mask_problems: list[tuple[str, str]] = []
    computed = 0
    start = time.perf_counter()
    total = len(sample.paths)
    for begin in range(0, total, IMAGES_PER_STEP):
        step = slice(begin, begin + IMAGES_PER_STEP)
        paths, trues, images, object_masks = [], [], [], []
        for source, path, true in zip(sample.sources[step], sample.paths[step], sample.true[step]):
            decoded = reader.decode(source, path)
            if isinstance(decoded, str):
                skipped.append((path, decoded))
                continue
            mask = None
            if masks is not None:
                try:
                    mask = at_model_size(model, masks.mask_for(path, decoded))
                except InputError as error:
                    mask_problems.append((path, str(error)))
            paths.append(path)
            trues.append(true)
            images.append(decoded)
            object_masks.append(mask)
        if paths:
            scored = score_images(model, request, paths, trues, images, object_masks)
            rows.extend(scored.rows)
            image_rows.extend(scored.images)
            computed += scored.computed
        yield Progress(min(begin + IMAGES_PER_STEP, total), total, time.perf_counter() - start)
    yield TrustResult(rows=rows_frame(rows), images=images_frame(image_rows), request=request,
                      class_names=list(model.class_names), model_name=model.display_name,
                      root=listing.root.rstrip("/").rsplit("/", 1)[-1], skipped=skipped, total=total,
                      seconds=time.perf_counter() - start, masks=masks.source if masks is not None else "",
                      computed=computed, mask_problems=mask_problems)


def evaluate_trust(model: LoadedModel, listing: Listing, request: TrustRequest, per_class: int | None = None,
                   seed: int = 0, masks: ObjectMasks | None = None) -> TrustResult:
    """The one-call form of ``evaluate_trust_iter``."""
    for step in evaluate_trust_iter(model, listing, request, per_class, seed, masks):
        if isinstance(step, TrustResult):
            return step
    raise AssertionError("evaluate_trust_iter ends with a TrustResult")


class CostPart(NamedTuple):
    """One part of what an evaluation costs: its model passes, and the seconds of its work besides them."""

    what: str  # "predictions", a method's label, or a metric's label
    passes: list[PassGroup]
    work_seconds: float = 0.0


def _step_parts(request: TrustRequest, images: int, size: tuple[int, int]) -> list[CostPart]:
    """What ``score_images`` costs for one step of ``images`` images, none of them cached: their predictions, each
    method's maps at the batch size it is sent (``MAX_MAP_BATCH`` at most), then each metric over every method's
    maps at once (one MetricBatch)."""
    map_batch = min(request.batch_size, MAX_MAP_BATCH)
    methods = [(get_method(m.method), dict(m.params)) for m in request.methods]
    parts = [CostPart("predictions", in_batches(False, images, request.batch_size))]
    parts += [CostPart(method.label, method.cost(params, images, map_batch, size)) for method, params in methods]

    def remade(maps: int) -> list[PassGroup]:
        share, extra = divmod(maps, len(methods))  # the batch's maps are each method's map of every image
        return [group for k, (method, params) in enumerate(methods)
                for group in method.cost(params, share + (k < extra), map_batch, size)]

    context = CostContext(images * len(methods), size, request.batch_size, remade)
    for requested in request.metrics:
        metric, params = get_metric(requested.name), dict(requested.params)
        parts.append(CostPart(metric.label, metric.cost(params, context), metric.work(params, context)))
    return parts


def _merged(groups: list[PassGroup]) -> list[PassGroup]:
    """The same passes with the groups of one kind and size added up, largest passes first."""
    counts: dict[tuple[bool, int], int] = {}
    for group in groups:
        if group.images_per_pass > 0 and group.passes > 0:
            kind = (group.backward, group.images_per_pass)
            counts[kind] = counts.get(kind, 0) + group.passes
    return [PassGroup(backward=backward, images_per_pass=per_pass, passes=count) for (backward, per_pass), count in
            sorted(counts.items(), key=lambda item: (not item[0][0], -item[0][1]))]


def request_passes(model: LoadedModel, request: TrustRequest, images: int) -> list[CostPart]:
    """What an evaluation of ``images`` images costs with nothing cached, per part (the predictions, each method's
    maps, each metric over all methods' maps): the passes as the registrations state them and the seconds of work
    besides (``Metric.work``). The images are counted in steps of ``IMAGES_PER_STEP``, as the evaluation scores
    them, so every pass is counted at the size it is sent. What the estimate and the benchmark's floor are made of.
    """
    size = model.input_size
    full, rest = divmod(max(images, 0), IMAGES_PER_STEP)
    totals: dict[str, tuple[list[PassGroup], float]] = {}
    for step_images, repeat in ((IMAGES_PER_STEP, full), (rest, 1)):
        if step_images and repeat:
            for part in _step_parts(request, step_images, size):
                passes, work = totals.get(part.what, ([], 0.0))
                totals[part.what] = (passes + [group._replace(passes=group.passes * repeat) for group in part.passes],
                                     work + part.work_seconds * repeat)
    return [CostPart(what, _merged(passes), work) for what, (passes, work) in totals.items()]


def trust_seconds(model: LoadedModel, request: TrustRequest, images: int, scored: int = 0) -> float:
    """About how long an evaluation of ``images`` images takes when the first ``scored`` of them have every value
    cached (a stopped run's, which its progress counts): the registered passes of the others, each at the measured
    cost of a pass of its size, plus the metrics' registered work besides the passes (``request_passes``). A cached
    image costs only its reading and prediction, left out.

    Counting single cached values instead would need every image's pixels, and with the predicted class as the
    target a prediction, before the estimate: not cheap on a large or remote dataset, so it is not done.
    """
    return sum(sized_passes_seconds(model, part.passes) + part.work_seconds
               for part in request_passes(model, request, images - scored))


__all__ = ["IMAGES_PER_STEP", "CostPart", "Sampled", "TrustResult", "evaluate_trust", "evaluate_trust_iter", "request_passes",
           "sample_listing", "trust_seconds"]
