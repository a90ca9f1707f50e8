"""A labelled image folder (``root/<class name>/<image>``) through a model: predictions and Grad-CAM per image.

Each image costs one batched backward pass at a CAM layer, which yields both its
class probabilities and the Grad-CAM of its predicted class. Results are cached
per file (path, size and modification time), so a rerun, or a run stopped and
resumed, only computes images not seen before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from explainers.datasets.mapping import ClassMapping, map_classes
from explainers.datasets.scan import DatasetScan, _relative, scan_folder
from explainers.errors import InputError
from explainers.inputs.images import decode_image
from explainers.methods.cams import combine_cam
from explainers.methods.registry import REGISTRY
from explainers.models.loading import LoadedModel
from explainers.runtime.cache import ResultCache
from explainers.runtime.targets import TOP1, probabilities_from_logits

PER_FILE = ResultCache(max_bytes=512 << 20)


THUMBNAIL = 64  # longest side of the per-image copy kept for class mean images


@dataclass
class Progress:
    done: int
    total: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float:
        rate = self.images_per_second
        return (self.total - self.done) / rate if rate > 0 else float("nan")


@dataclass
class Evaluation:
    """Per evaluated image: its file, true and predicted classes, probabilities and Grad-CAM."""

    root: Path
    files: list[str]  # relative to root
    true: np.ndarray  # (N,) model output index of the image's folder
    probabilities: np.ndarray  # (N, classes)
    cams: np.ndarray  # (N, h, w) Grad-CAM of the predicted class at the CAM layer, each in [0, 1]; (N, 0, 0) without
    thumbnails: np.ndarray  # (N, t, t, 3) uint8
    class_names: list[str]
    cam_layer: str | None
    mapping: ClassMapping
    # Every file left out, as (path relative to root, why): the scan's (not images, outside the class folders,
    # links, folders too deep) and then ``skipped_images``.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # The part of ``skipped`` left out while evaluating: image files of known classes that could not be read or decoded.
    skipped_images: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0  # images the folder holds for known classes
    seconds: float = 0.0

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1) if len(self.probabilities) else np.zeros(0, np.int64)

    @property
    def complete(self) -> bool:
        return len(self.files) + len(self.skipped_images) >= self.total

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.true).mean()) if len(self.true) else float("nan")


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns  # paths are absolute: scan_folder resolves its root


def _decode(paths: list[Path], root: Path) -> list[np.ndarray | str]:
    out: list[np.ndarray | str] = []
    for path in paths:
        try:
            out.append(decode_image(path, _relative(path, root)))
        except InputError as error:
            out.append(str(error))
    return out


def _thumbnails(pixels: np.ndarray) -> np.ndarray:
    """Small copies for class mean images: at most THUMBNAIL pixels a side, one batched resize."""
    height, width = pixels.shape[1:3]
    scale = min(1.0, THUMBNAIL / max(height, width))
    if scale == 1.0:
        return pixels.copy()
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return np.clip(tf.image.resize(pixels, size, antialias=True).numpy().round(), 0, 255).astype(np.uint8)


def _run_batch(model: LoadedModel, images: list[np.ndarray], cam_layer: str | None) -> list[tuple]:
    pixels = model.resize(images)
    x = model.to_input(pixels)
    targets = np.full(len(x), TOP1, np.int32)
    thumbs = _thumbnails(pixels)
    if cam_layer is None:
        logits = model.runtime.forward(x, targets, batch_size=len(x)).logits
        cams = np.zeros((len(x), 0, 0), np.float32)
    else:
        result = model.runtime.gradients(x, targets, (cam_layer,), batch_size=len(x))
        acts, grads = result.activations[0], result.layer_gradients[0]
        cams = combine_cam(acts, REGISTRY["gradcam"].cam_weights(acts, grads), acts.shape[1:3])  # at layer resolution
        peak = cams.reshape(len(cams), -1).max(axis=1)[:, None, None]
        cams = np.where(peak > 0, cams / np.where(peak > 0, peak, 1), 0).astype(np.float32)
        logits = result.logits
    probabilities = probabilities_from_logits(logits, model.output_kind)
    return [(probabilities[i], cams[i], thumbs[i]) for i in range(len(x))]


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
    known = [i for i, folder in enumerate(scan.folder_of_file) if mapping.output_of_folder[folder] >= 0]
    context = ("dataset", model.fingerprint, model.preprocessing, cam_layer)
    results: dict[int, tuple] = {}
    errors: dict[int, str] = {}
    todo = []
    for i in known:
        try:
            key = (*context, _file_key(scan.files[i]))
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
            good = [(item, image) for item, image in zip(batch, decoded) if not isinstance(image, str)]
            errors.update({i: image for (i, _), image in zip(batch, decoded) if isinstance(image, str)})
            if good:
                for ((i, key), _), hit in zip(good, _run_batch(model, [image for _, image in good], cam_layer)):
                    PER_FILE.put(key, hit, hit[0])
                    results[i] = hit
            yield Progress(len(results) + len(errors), len(known), time.perf_counter() - start)
    order = sorted(results)
    rows = [results[i] for i in order]
    unreadable = [(_relative(scan.files[i], scan.root), reason) for i, reason in sorted(errors.items())]
    yield Evaluation(
        root=scan.root,
        files=[_relative(scan.files[i], scan.root) for i in order],
        true=np.asarray([mapping.output_of_folder[scan.folder_of_file[i]] for i in order], np.int64),
        probabilities=np.stack([r[0] for r in rows]) if rows else np.zeros((0, len(model.class_names)), np.float32),
        cams=np.stack([r[1] for r in rows]) if rows else np.zeros((0, 0, 0), np.float32),
        thumbnails=np.stack([r[2] for r in rows]) if rows else np.zeros((0, THUMBNAIL, THUMBNAIL, 3), np.uint8),
        class_names=list(model.class_names),
        cam_layer=cam_layer,
        mapping=mapping,
        skipped=scan.skipped + unreadable,
        skipped_images=unreadable,
        total=len(known),
        seconds=time.perf_counter() - start,
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
