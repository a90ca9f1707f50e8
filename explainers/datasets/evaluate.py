"""A labelled image folder (``root/<class name>/<image>``) through a model: predictions and Grad-CAM per image.

Each image costs one batched backward pass at a CAM layer (``results.score_rows``,
the same pass the Ray pipeline runs), which yields both its class probabilities
and the Grad-CAM of its predicted class; only the compact row is kept. Rows are
cached per file (path, size, modification time and true class), so a rerun, or a
run stopped and resumed, only computes images not seen before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from explainers.datasets.evaluation import Evaluation, Progress
from explainers.datasets.mapping import ClassMapping, map_classes
from explainers.datasets.results import RESULT_COLUMNS, TOP_K, cam_shape, score_rows
from explainers.datasets.scan import DatasetScan, _relative, scan_folder
from explainers.datasets.sources import Reader
from explainers.models.loading import LoadedModel
from explainers.runtime.cache import ResultCache

PER_FILE = ResultCache(max_bytes=512 << 20)
ROW_OVERHEAD = 1100  # bytes a cached row takes besides its map (its tuple, lists and numbers; measured)

__all__ = ["PER_FILE", "Evaluation", "Progress", "evaluate", "evaluate_iter"]


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns  # paths are absolute: scan_folder resolves its root


def _decode(paths: list[Path], root: Path) -> list[np.ndarray | str]:
    """Each image's pixels or the reason it cannot be used, as the Ray pipeline's readers give them."""
    reader = Reader(str(root), remote=False)
    return [reader.decode(str(path), _relative(path, root)) for path in paths]


def _stack(values: list[tuple], classes: int, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Rows (RESULT_COLUMNS values each) as the Evaluation's per-image arrays; ``shape`` is the maps' (h, w)."""
    k = min(TOP_K, classes)
    return {
        "top_classes": np.asarray([r[0] for r in values], np.int32).reshape(len(values), k),
        "top_probabilities": np.asarray([r[1] for r in values], np.float32).reshape(len(values), k),
        "p_true": np.asarray([r[2] for r in values], np.float32),
        "least_class": np.asarray([r[3] for r in values], np.int32),
        "least_probability": np.asarray([r[4] for r in values], np.float32),
        "cams": np.frombuffer(b"".join(r[5] for r in values), "<f2").reshape(len(values), *shape).astype(np.float32),
    }


def evaluate_iter(
    model: LoadedModel,
    scan: DatasetScan,
    mapping: ClassMapping | None = None,
    cam_layer: str | None = "default",
    batch_size: int = 64,
    cached_only: bool = False,
) -> Iterator[Progress | Evaluation]:
    """Yield Progress after each batch, then the Evaluation; stop iterating to cancel (work done stays cached).

    ``cam_layer="default"`` uses the model's last spatial layer, None skips
    Grad-CAM. ``cached_only`` gathers what earlier (possibly stopped) runs computed.
    """
    mapping = mapping or map_classes(scan.folders, model)
    if cam_layer == "default":
        cam_layer = model.default_cam_layer
    shape = cam_shape(model, cam_layer)
    known = [i for i, folder in enumerate(scan.folder_of_file) if mapping.output_of_folder[folder] >= 0]
    true_of = {i: int(mapping.output_of_folder[scan.folder_of_file[i]]) for i in known}
    context = ("dataset", model.fingerprint, cam_layer)
    results: dict[int, tuple] = {}
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
    # Decoding the next batch overlaps the model's pass on this one (PIL and TF release the GIL).
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(_decode, [scan.files[i] for i, _ in batches[0]], scan.root) if batches else None
        for b, batch in enumerate(batches):
            decoded = pending.result()
            if b + 1 < len(batches):
                pending = pool.submit(_decode, [scan.files[i] for i, _ in batches[b + 1]], scan.root)
            rows = score_rows(model, [_relative(scan.files[i], scan.root) for i, _ in batch],
                              [true_of[i] for i, _ in batch], decoded, cam_layer)
            for j, (i, key) in enumerate(batch):
                if rows["error"][j] is not None:
                    errors[i] = rows["error"][j]
                    continue
                row = tuple(rows[name][j] for name in RESULT_COLUMNS)
                PER_FILE.put(key, row, np.empty(len(row[-1]) + ROW_OVERHEAD, np.uint8))
                results[i] = row
            yield Progress(len(results) + len(errors), len(known), time.perf_counter() - start)
    path_of = {i: _relative(scan.files[i], scan.root) for i in (*results, *errors)}
    # Sorted by path, as open_results sorts a results folder's rows, so both give the same Evaluation.
    order = sorted(results, key=path_of.get)
    failed = sorted(errors, key=path_of.get)
    unreadable = [(path_of[i], errors[i]) for i in failed]
    yield Evaluation(
        root=str(scan.root),
        files=[path_of[i] for i in order],
        true=np.asarray([true_of[i] for i in order], np.int64),
        **_stack([results[i] for i in order], len(model.class_names), shape),
        class_names=list(model.class_names),
        cam_layer=cam_layer,
        mapping=mapping,
        skipped=scan.skipped + unreadable,
        skipped_images=unreadable,
        skipped_images_true=[true_of[i] for i in failed],
        total=len(known),
        seconds=time.perf_counter() - start,
        model_name=model.display_name,
        input_size=tuple(model.input_size),
    )


def evaluate(model: LoadedModel, folder: str | Path, mapping_mode: str = "auto", cam_layer: str | None = "default",
             batch_size: int = 64, on_progress: Callable[[Progress], None] | None = None) -> Evaluation:
    """Scan ``folder``, predict every image and take its Grad-CAM; the one-call form of ``evaluate_iter``."""
    scan = scan_folder(folder)
    for step in evaluate_iter(model, scan, map_classes(scan.folders, model, mapping_mode), cam_layer, batch_size):
        if isinstance(step, Evaluation):
            return step
        if on_progress:
            on_progress(step)
    raise AssertionError("evaluate_iter ends with an Evaluation")
