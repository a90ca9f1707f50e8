"""A labelled image folder (``root/<class name>/<image>``) through a model: predictions and Grad-CAM per image.

Each image costs one batched backward pass at a CAM layer, which yields both its
class probabilities and the Grad-CAM of its predicted class. Results are cached
per file (path, size and modification time), so a rerun, or a run stopped and
resumed, only computes images not seen before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import data_roots, settings
from .errors import InputError
from .images import IMAGE_SUFFIXES, decode_image
from .labels import imagenet_wordnet_ids
from .memo import ResultCache
from .methods import REGISTRY, combine_cam
from .models import LoadedModel
from .settings import SCAN_MAX_DEPTH_ENV, SCAN_MAX_ENTRIES_ENV
from .targets import TOP1, probabilities_from_logits

PER_FILE = ResultCache(max_bytes=512 << 20)
THUMBNAIL = 64  # longest side of the per-image copy kept for class mean images
BY_POSITION, BY_NAME, BY_WORDNET_ID = "by position", "by name", "by WordNet id"
NOT_AN_IMAGE, OUTSIDE_CLASSES = "not an image file (by its extension)", "not inside a class folder"


@dataclass
class DatasetScan:
    """What a class-per-subfolder tree holds, before anything is decoded."""

    root: Path
    folders: list[str]  # class folder names, sorted (the order image_dataset_from_directory uses)
    files: list[Path]
    folder_of_file: np.ndarray  # (N,) index into ``folders``
    empty_folders: list[str]
    skipped: list[tuple[str, str]]  # (path relative to root, why it was left out)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _visible(name: str) -> bool:
    return not name.startswith((".", "__MACOSX"))


class _Walker:
    """Lists folders within bounds: at most ``max_entries`` entries in all, ``max_depth`` levels down.

    An entry that cannot be read is reported, never raised. With ``roots`` given,
    a link whose target lies outside them is reported and not followed, so a scan
    never leaves the data roots; a link back to a folder already listed is not
    followed twice.
    """

    def __init__(self, root: Path, roots: Sequence[Path] | None, max_entries: int, max_depth: int,
                 on_progress: Callable[[int], None] | None) -> None:
        self.root, self.roots = root, roots
        self.max_entries, self.max_depth, self.on_progress = max_entries, max_depth, on_progress
        self.seen = 0
        self.visited: set[Path] = set()
        self.skipped: list[tuple[str, str]] = []

    def _skip(self, path: Path, reason: str) -> None:
        self.skipped.append((_relative(path, self.root) or ".", reason))

    def _count(self) -> None:
        self.seen += 1
        if self.seen > self.max_entries:
            raise InputError(
                f"'{self.root.name or self.root}' holds more than {self.max_entries:,} files and folders, the most one "
                f"scan reads (set by {SCAN_MAX_ENTRIES_ENV}); give a smaller folder.")
        if self.on_progress and self.seen % 1000 == 0:
            self.on_progress(self.seen)

    def entries(self, folder: Path) -> tuple[list[Path], list[Path]]:
        """(subfolders, files) directly inside ``folder``, sorted, hidden ones left out."""
        real = folder.resolve()
        if real in self.visited:
            self._skip(folder, "a link to a folder already scanned, not followed again")
            return [], []
        self.visited.add(real)
        folders, files = [], []
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    self._count()
                    if not _visible(entry.name):
                        continue
                    path = folder / entry.name
                    try:
                        if entry.is_symlink() and self.roots is not None and not data_roots.inside(path.resolve(), self.roots):
                            self._skip(path, "a link to outside the folders this dashboard may read, not followed")
                        elif entry.is_dir():
                            folders.append(path)
                        elif entry.is_file():
                            files.append(path)
                        else:  # a FIFO or device would block or never end a read
                            self._skip(path, "a link to nothing" if entry.is_symlink() else "not a regular file")
                    except (OSError, RuntimeError) as error:  # a dangling link or a link loop
                        self._skip(path, f"could not be read ({getattr(error, 'strerror', None) or error})")
        except OSError as error:
            self._skip(folder, f"could not be read ({error.strerror or error})")
        return sorted(folders), sorted(files)

    def files_below(self, folder: Path, depth: int) -> list[Path]:
        """Every file in ``folder`` and its subfolders, ``depth`` being ``folder``'s level below the root."""
        folders, files = self.entries(folder)
        for sub in folders:
            if depth + 1 > self.max_depth:
                self._skip(sub, f"more than {self.max_depth} folder levels deep (set by {SCAN_MAX_DEPTH_ENV}), not scanned")
            else:
                files += self.files_below(sub, depth + 1)
        return sorted(files)


def scan_folder(root: str | Path, *, roots: Sequence[Path] | None = None, max_entries: int | None = None,
                max_depth: int | None = None, on_progress: Callable[[int], None] | None = None) -> DatasetScan:
    """List a class-per-subfolder tree; InputError with one sentence when it is not one.

    A single top folder holding the class folders (how a ZIP of ``data/`` unpacks)
    is stepped into. With ``roots`` (a server's data roots) the folder must lie
    inside them and the scan never leaves them. At most ``max_entries`` entries
    and ``max_depth`` levels are read (defaults: the server's settings);
    ``on_progress`` gets the entries read so far, every thousand.
    """
    root = data_roots.resolve_inside(root, roots) if roots is not None else Path(root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"'{root}' is not a folder.")
    walker = _Walker(root, roots, max_entries or settings.scan_max_entries(), max_depth or settings.scan_max_depth(),
                     on_progress)
    subfolders, loose = walker.entries(root)
    if len(subfolders) == 1 and not loose:
        holds_folders = bool(walker.entries(subfolders[0])[0])
        walker.visited.discard(subfolders[0].resolve())  # only peeked into: it is listed again below
    if len(subfolders) == 1 and not loose and holds_folders:
        return scan_folder(subfolders[0], roots=roots, max_entries=max(1, walker.max_entries - walker.seen),
                           max_depth=walker.max_depth, on_progress=on_progress)
    if not subfolders:
        raise InputError(f"'{root.name or root}' has no class subfolders; arrange images as <folder>/<class name>/<image>.")
    files, owners, empty = [], [], []
    skipped = [(p.name, OUTSIDE_CLASSES) for p in loose]
    for index, folder in enumerate(subfolders):
        found = walker.files_below(folder, 1)
        images = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
        image_set = set(images)
        skipped += [(_relative(p, root), NOT_AN_IMAGE) for p in found if p not in image_set]
        if not images:
            empty.append(folder.name)
        files += images
        owners += [index] * len(images)
    skipped += walker.skipped
    if not files:
        raise InputError(f"'{root.name or root}' has class folders but no images in them.")
    return DatasetScan(root, [p.name for p in subfolders], files, np.asarray(owners, np.int64), empty, skipped)


@dataclass
class ClassMapping:
    """Which model output each class folder stands for."""

    output_of_folder: np.ndarray  # (F,) model output index, -1 when the model has no such class
    mode: str
    unknown: list[str]  # folders the model has no class for


def map_classes(folders: list[str], model: LoadedModel, mode: str = "auto") -> ClassMapping:
    """Folder names to model outputs: by name (or WordNet id for ImageNet models) when
    most folders match one, else by position, as ``keras.utils.image_dataset_from_directory``
    numbers sorted folders. ``mode`` forces one of the three."""
    lookups = {BY_NAME: {n.lower(): i for i, n in enumerate(model.class_names)}}
    if len(model.class_names) == 1000:
        lookups[BY_WORDNET_ID] = {w: i for i, w in enumerate(imagenet_wordnet_ids())}
    if mode == "auto":
        # Names win when most folders carry one; the rest are then reported as unknown.
        matches = {m: sum(f.lower() in table or f in table for f in folders) for m, table in lookups.items()}
        best = max(matches, key=matches.get)
        mode = best if matches[best] * 2 > len(folders) else BY_POSITION
    if mode == BY_POSITION:
        outputs = [i if i < len(model.class_names) else -1 for i in range(len(folders))]
    elif mode in lookups:
        table = lookups[mode]
        outputs = [table.get(f.lower(), table.get(f, -1)) for f in folders]
    else:
        raise InputError(f"'{mode}' is not a class mapping; use auto, {BY_POSITION}, {BY_NAME} or {BY_WORDNET_ID}.")
    outputs = np.asarray(outputs, np.int64)
    return ClassMapping(outputs, mode, [f for f, o in zip(folders, outputs) if o < 0])


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
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0  # images the folder holds for known classes
    seconds: float = 0.0

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1) if len(self.probabilities) else np.zeros(0, np.int64)

    @property
    def complete(self) -> bool:
        return len(self.files) + len(self.skipped_images) >= self.total

    @property
    def skipped_images(self) -> list[tuple[str, str]]:
        """Image files that could not be decoded (other skipped files were never candidates)."""
        return [s for s in self.skipped if s[1] not in (NOT_AN_IMAGE, OUTSIDE_CLASSES)]

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
        skipped=scan.skipped + [(_relative(scan.files[i], scan.root), reason) for i, reason in sorted(errors.items())],
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
