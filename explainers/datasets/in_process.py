"""A labelled image folder (``root/<class name>/<image>``) through a model: predictions and Grad-CAM per image.

Each image costs one batched backward pass at a CAM layer (``scoring.score_rows``,
the same pass the Ray pipeline runs), which yields both its class probabilities
and the Grad-CAM of its predicted class; only the compact row is kept. Rows are
cached per file (path, size, modification time and true class), so a rerun, or a
run stopped and resumed, only computes images not seen before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from explainers.datasets.evaluation import Evaluation, Progress
from explainers.datasets.mapping import ClassMapping, map_classes
from explainers.datasets.scan import DatasetScan, relative_path, scan_folder
from explainers.datasets.scoring import (
    DEFAULT_LAYER,
    RESULT_COLUMNS,
    TOP_K,
    CamLayer,
    ScoredRow,
    cam_shape,
    chosen_cam_layer,
    score_rows,
)
from explainers.datasets.sources import Reader
from explainers.models.loading import LoadedModel
from explainers.runtime.cache import ResultCache

PER_FILE = ResultCache(max_bytes=512 << 20)
ROW_OVERHEAD = 1100  # bytes a cached row takes besides its map (its record, lists and numbers; measured)

__all__ = ["PER_FILE", "evaluate", "evaluate_iter"]


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns  # paths are absolute: scan_folder resolves its root


def _decode(paths: list[Path], root: Path) -> list[np.ndarray | str]:
    """Each image's pixels or the reason it cannot be used, as the Ray pipeline's readers give them."""
    reader = Reader(str(root), remote=False)
    return [reader.decode(str(path), relative_path(path, root)) for path in paths]


def _decoded_ahead(pool: ThreadPoolExecutor, batches: list[list[Path]], root: Path) -> Iterator[list[np.ndarray | str]]:
    """Each batch's images decoded (as ``_decode``), the next batch decoding on ``pool`` while the caller scores this
    one (PIL and TF release the GIL)."""
    ready: Future[list[np.ndarray | str]] | None = None
    for files in batches:
        following = pool.submit(_decode, files, root)
        if ready is not None:
            yield ready.result()
        ready = following
    if ready is not None:
        yield ready.result()


class StackedRows(NamedTuple):
    """Scored rows as the Evaluation's per-image arrays (its fields of the same names)."""

    top_classes: np.ndarray
    top_probabilities: np.ndarray
    p_true: np.ndarray
    least_class: np.ndarray
    least_probability: np.ndarray
    cams: np.ndarray


def _stack(rows: list[ScoredRow], classes: int, shape: tuple[int, int]) -> StackedRows:
    """Rows as the Evaluation's per-image arrays; ``shape`` is the maps' (h, w)."""
    k = min(TOP_K, classes)
    return StackedRows(
        top_classes=np.asarray([r.top_classes for r in rows], np.int32).reshape(len(rows), k),
        top_probabilities=np.asarray([r.top_probabilities for r in rows], np.float32).reshape(len(rows), k),
        p_true=np.asarray([r.p_true for r in rows], np.float32),
        least_class=np.asarray([r.least_class for r in rows], np.int32),
        least_probability=np.asarray([r.least_probability for r in rows], np.float32),
        cams=np.frombuffer(b"".join(r.cam for r in rows), "<f2").reshape(len(rows), *shape).astype(np.float32),
    )


def evaluate_iter(
    model: LoadedModel,
    scan: DatasetScan,
    mapping: ClassMapping | None = None,
    cam_layer: CamLayer = DEFAULT_LAYER,
    batch_size: int = 64,
    cached_only: bool = False,
) -> Iterator[Progress | Evaluation]:
    """Yield Progress after each batch, then the Evaluation; stop iterating to cancel (work done stays cached).

    ``cam_layer=DEFAULT_LAYER`` uses the model's last spatial layer, None skips
    Grad-CAM. ``cached_only`` gathers what earlier (possibly stopped) runs computed.
    """
    mapping = mapping or map_classes(scan.folders, model)
    layer = chosen_cam_layer(model, cam_layer)
    shape = cam_shape(model, layer)
    known = [i for i, folder in enumerate(scan.folder_of_file) if mapping.output_of_folder[folder] >= 0]
    true_of = {i: int(mapping.output_of_folder[scan.folder_of_file[i]]) for i in known}
    context = ("dataset", model.fingerprint, layer)
    results: dict[int, ScoredRow] = {}
    errors: dict[int, str] = {}
    todo = []
    for i in known:
        try:
            # The true class is part of the key: p(true) depends on the class mapping, the pass does not.
            key = (*context, _file_key(scan.files[i]), true_of[i])
        except OSError as error:
            errors[i] = f"could not be read ({error.strerror or error})"
            continue
        hit = PER_FILE.get(key)
        if hit is not None:
            results[i] = hit
        elif not cached_only:
            todo.append((i, key))
    # A seeded shuffle: a run stopped early has scored a sample of every class, not the first folders.
    todo = [todo[j] for j in np.random.default_rng(0).permutation(len(todo))]
    start = time.perf_counter()
    batches = [todo[s : s + batch_size] for s in range(0, len(todo), batch_size)]
    # Decoding the next batch overlaps the model's pass on this one.
    with ThreadPoolExecutor(max_workers=1) as pool:
        batch_files = [[scan.files[i] for i, _ in batch] for batch in batches]
        for batch, decoded in zip(batches, _decoded_ahead(pool, batch_files, scan.root)):
            rows = score_rows(model, [relative_path(scan.files[i], scan.root) for i, _ in batch],
                              [true_of[i] for i, _ in batch], decoded, layer)
            for j, (i, key) in enumerate(batch):
                if rows["error"][j] is not None:
                    errors[i] = rows["error"][j]
                    continue
                row = ScoredRow(**{name: rows[name][j] for name in RESULT_COLUMNS})
                PER_FILE.put(key, row, np.empty(len(row.cam) + ROW_OVERHEAD, np.uint8))
                results[i] = row
            yield Progress(len(results) + len(errors), len(known), time.perf_counter() - start)
    path_of = {i: relative_path(scan.files[i], scan.root) for i in (*results, *errors)}
    # Sorted by path, as open_results sorts a results folder's rows, so both give the same Evaluation.
    order = sorted(results, key=path_of.__getitem__)
    failed = sorted(errors, key=path_of.__getitem__)
    unreadable = [(path_of[i], errors[i]) for i in failed]
    stacked = _stack([results[i] for i in order], len(model.class_names), shape)
    yield Evaluation(
        root=str(scan.root),
        files=[path_of[i] for i in order],
        true=np.asarray([true_of[i] for i in order], np.int64),
        top_classes=stacked.top_classes,
        top_probabilities=stacked.top_probabilities,
        p_true=stacked.p_true,
        least_class=stacked.least_class,
        least_probability=stacked.least_probability,
        cams=stacked.cams,
        class_names=list(model.class_names),
        cam_layer=layer,
        mapping=mapping,
        skipped=scan.skipped + unreadable,
        skipped_images=unreadable,
        skipped_images_true=[true_of[i] for i in failed],
        total=len(known),
        seconds=time.perf_counter() - start,
        model_name=model.display_name,
        input_size=model.input_size,
    )


def evaluate(model: LoadedModel, folder: str | Path, mapping_mode: str = "auto", cam_layer: CamLayer = DEFAULT_LAYER,
             batch_size: int = 64, on_progress: Callable[[Progress], None] | None = None) -> Evaluation:
    """Scan ``folder``, predict every image and take its Grad-CAM; the one-call form of ``evaluate_iter``."""
    scan = scan_folder(folder)
    for step in evaluate_iter(model, scan, map_classes(scan.folders, model, mapping_mode), cam_layer, batch_size):
        if isinstance(step, Evaluation):
            return step
        if on_progress:
            on_progress(step)
    raise AssertionError("evaluate_iter ends with an Evaluation")
