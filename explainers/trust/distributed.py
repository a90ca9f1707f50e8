"""``trust --ray``: the same evaluation as in-process, as a Ray Data pipeline, giving the same TrustResult.

The driver draws the sample (``evaluate.sample_listing``) and cuts it into steps of
``IMAGES_PER_STEP`` images; Ray tasks read, decode and resize each step's images and
their object masks; a fixed pool of actors, each holding one model built from a
picklable ``ModelSpec`` with the run's plugins loaded, scores a step with
``scoring.score_images``, the unit the in-process run uses. Each actor returns one row
per image, its scores in list columns; the driver puts rows back in the sample's order,
so the result, and the folder written from it, are the in-process run's. A killed
actor's step is retried by Ray Data and arrives once. Ray is imported inside these
functions only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from explainers.datasets.sources import Listing, Reader
from explainers.distributed.cluster import (
    ACTOR_START_SECONDS,
    READ_CPUS,
    ModelSpec,
    actor_model,
    check_ray_options,
    run_on_ray,
)
from explainers.distributed.session import LOCAL
from explainers.errors import InputError
from explainers.inputs.images import resize_batch
from explainers.models.loading import LoadedModel
from explainers.trust.evaluate import IMAGES_PER_STEP, Sampled, TrustResult, images_frame, rows_frame, sample_listing
from explainers.trust.masks import ObjectMasks, mask_at_size
from explainers.trust.scoring import ImageRow, Row, TrustRequest, score_images

if TYPE_CHECKING:
    import pyarrow as pa


def _read_step(batch: pa.Table, root: str, remote: bool, size: tuple[int, int],
               masks: ObjectMasks | None) -> dict[str, np.ndarray]:
    """Decode a step's images (one input row holds a step's lists) at the model's input size, with their masks.

    An unreadable image keeps its row with its reason in ``error``; an image whose mask is missing or misfit keeps
    its row with ``has_mask`` false and the reason in ``mask_problem``, as in-process."""
    import pyarrow.compute as pc

    sources, paths = (pc.list_flatten(batch[name]).to_pylist() for name in ("source", "path"))
    reader = Reader(root, remote)
    blank = np.zeros((*size, 3), np.uint8)
    pixels, errors, object_masks, has_mask, problems = [], [], [], [], []
    for source, path in zip(sources, paths):
        decoded = reader.decode(source, path)
        mask, problem = None, ""
        if not isinstance(decoded, str) and masks is not None:
            try:
                mask = mask_at_size(masks.mask_for(path, decoded), size)
            except InputError as error:
                problem = str(error)
        pixels.append(blank if isinstance(decoded, str) else decoded)
        errors.append(decoded if isinstance(decoded, str) else "")
        object_masks.append(np.zeros(size, bool) if mask is None else mask)
        has_mask.append(mask is not None)
        problems.append(problem)
    return {"path": np.asarray(paths, dtype=object),
            "true": pc.list_flatten(batch["true"]).to_numpy().astype(np.int32),
            "position": pc.list_flatten(batch["position"]).to_numpy().astype(np.int64),
            "pixels": resize_batch(pixels, size), "error": np.asarray(errors, dtype=object),
            "mask": np.stack(object_masks), "has_mask": np.asarray(has_mask),
            "mask_problem": np.asarray(problems, dtype=object)}


class TrustScorer:
    """The Ray actor: loads the run's plugins and builds the model once, then scores steps with ``score_images``."""

    def __init__(self, spec: ModelSpec, fingerprint: str, request: TrustRequest, plugins: tuple[str, ...],
                 threads: int) -> None:
        self.model = actor_model(spec, fingerprint, threads, plugins)
        self.request = request

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import pyarrow as pa

        good = [i for i, error in enumerate(batch["error"]) if not error]
        scored = score_images(self.model, self.request, [str(batch["path"][i]) for i in good],
                              [int(batch["true"][i]) for i in good], [batch["pixels"][i] for i in good],
                              [batch["mask"][i] if batch["has_mask"][i] else None for i in good])
        by_image: dict[str, list[Row]] = {}
        for row in scored.rows:
            by_image.setdefault(row.image, []).append(row)
        image_of = {image.image: (image, computed) for image, computed in zip(scored.images, scored.computed_per_image)}
        columns: dict[str, list] = {name: [] for name in (*ImageRow._fields, "position", "error", "mask_problem",
                                                          "computed", "methods", "metrics", "values")}
        for i, path in enumerate(batch["path"]):
            path = str(path)
            image, computed = image_of.get(path, (None, 0))
            for name in ImageRow._fields:
                columns[name].append(getattr(image, name) if image is not None else None)
            columns["image"][-1] = path
            rows = by_image.get(path, [])
            columns["position"].append(int(batch["position"][i]))
            columns["error"].append(str(batch["error"][i]))
            columns["mask_problem"].append(str(batch["mask_problem"][i]))
            columns["computed"].append(computed)
            columns["methods"].append([r.method for r in rows])
            columns["metrics"].append([r.metric for r in rows])
            columns["values"].append([r.value for r in rows])
        return pa.table(columns)


def _steps(sample: Sampled) -> list[dict[str, list]]:
    """The sample cut into steps of IMAGES_PER_STEP, each one input row (and one block) of the pipeline."""
    return [{"source": sample.sources[start:start + IMAGES_PER_STEP], "path": sample.paths[start:start + IMAGES_PER_STEP],
             "true": sample.true[start:start + IMAGES_PER_STEP],
             "position": list(range(start, min(start + IMAGES_PER_STEP, len(sample.paths))))}
            for start in range(0, len(sample.paths), IMAGES_PER_STEP)]


def _result(tables: Sequence[pa.Table], model: LoadedModel, listing: Listing, request: TrustRequest,
            masks: ObjectMasks | None, total: int, seconds: float) -> TrustResult:
    """The TrustResult the in-process run gives for the same sample: rows and images in the sample's order."""
    records = sorted((record for table in tables for record in table.to_pylist()), key=lambda r: r["position"])
    rows: list[Row] = []
    images: list[ImageRow] = []
    skipped: list[tuple[str, str]] = []  # (image, why it could not be read)
    mask_problems: list[tuple[str, str]] = []  # (image, why its mask was left out)
    computed = 0
    for record in records:
        if record["error"]:
            skipped.append((record["image"], record["error"]))
            continue
        if record["mask_problem"]:
            mask_problems.append((record["image"], record["mask_problem"]))
        images.append(ImageRow(*(record[name] for name in ImageRow._fields)))
        rows.extend(Row(record["image"], record["true_class"], record["explained_class"], method, metric, value)
                    for method, metric, value in zip(record["methods"], record["metrics"], record["values"]))
        computed += record["computed"]
    return TrustResult(rows=rows_frame(rows), images=images_frame(images), request=request,
                       class_names=list(model.class_names), model_name=model.display_name,
                       root=listing.root.rstrip("/").rsplit("/", 1)[-1], skipped=skipped, total=total, seconds=seconds,
                       masks=masks.source if masks is not None else "", computed=computed, mask_problems=mask_problems)


def evaluate_trust_ray(model: LoadedModel, listing: Listing, request: TrustRequest, *, per_class: int | None = None,
                       seed: int = 0, masks: ObjectMasks | None = None, address: str = LOCAL,
                       spec: ModelSpec | None = None, actors: int = 1, cpus_per_actor: float = 1.0,
                       gpus_per_actor: float = 0.0, plugins: Sequence[str | Path] = (),
                       on_progress: Callable[[int, int], None] | None = None) -> TrustResult:
    """``evaluate_trust`` on Ray: the same sample, scores and TrustResult, scored by ``actors`` model copies.

    ``model`` is the driver's copy (class names, fingerprint); each actor builds its own from ``spec`` (default:
    ``ModelSpec.of(model)``) after importing ``plugins`` (paths every node can read). ``address`` is ``"local"``
    or a running cluster's ``host:port``; an existing connection of this process is used as it is. A masks
    folder must be readable on every node. Raises InputError with one sentence for an unreachable cluster, a
    cluster without room, or a failed run.
    """
    check_ray_options(actors, cpus_per_actor, gpus_per_actor)
    spec = spec or ModelSpec.of(model)
    sample = sample_listing(listing, per_class, seed)
    total = len(sample.paths)
    plugin_files = tuple(str(Path(p).expanduser().resolve()) for p in plugins)

    def pipeline() -> tuple[list[pa.Table], float]:
        import ray

        if on_progress:
            ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows its own
        steps = ray.data.from_items(_steps(sample), override_num_blocks=max(1, math.ceil(total / IMAGES_PER_STEP)))
        steps.context.wait_for_min_actors_s = ACTOR_START_SECONDS
        decoded = steps.map_batches(
            _read_step,  # type: ignore[arg-type]  # Ray's stubs take a one-argument fn; fn_kwargs supplies the rest
            batch_size=1, batch_format="pyarrow", num_cpus=READ_CPUS, compute=ray.data.TaskPoolStrategy(size=actors),
            fn_kwargs={"root": listing.root, "remote": listing.remote, "size": tuple(model.input_size),
                       "masks": masks})
        scored = decoded.map_batches(
            TrustScorer, batch_size=IMAGES_PER_STEP, compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
            fn_constructor_kwargs={"spec": spec, "fingerprint": model.fingerprint, "request": request,
                                   "plugins": plugin_files, "threads": max(1, math.floor(cpus_per_actor))})
        tables: list[pa.Table] = []
        done, start = 0, time.perf_counter()
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            table = cast("pa.Table", batch)  # batch_format="pyarrow"; Ray annotates the union of every format
            tables.append(table)
            done += table.num_rows
            if on_progress:
                on_progress(done, total)
        return tables, time.perf_counter() - start

    if not total:
        return _result([], model, listing, request, masks, 0, 0.0)
    tables, seconds = run_on_ray(address, actors, cpus_per_actor, gpus_per_actor, pipeline)
    return _result(tables, model, listing, request, masks, total, seconds)


__all__ = ["TrustScorer", "evaluate_trust_ray"]
