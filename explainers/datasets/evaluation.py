"""What a dataset evaluation keeps per image: a few numbers and a small map, never the full probability vector.

A validation set of 100,000 images and 1,000 classes would need 400 MB for its
probabilities; the views (confusion matrix, per-class scores, top-3 text, least
likely class, class attention) need only the top-k, p(true) and the least likely
class, so that is what is kept, in memory and in a results folder alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explainers.datasets.mapping import ClassMapping
from explainers.errors import InputError
from explainers.inputs.images import decode_image


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


def is_uri(location: str) -> bool:
    return "://" in location


@dataclass
class Evaluation:
    """Per evaluated image: its file, true class, top-k classes, p(true), least likely class and Grad-CAM."""

    root: str  # the evaluated folder, or the URI it was read from
    files: list[str]  # relative to root; a full URI when the images were not in a local folder
    true: np.ndarray  # (N,) int64 model output index of the image's folder
    top_classes: np.ndarray  # (N, k) int32, most probable first; k = min(TOP_K, classes)
    top_probabilities: np.ndarray  # (N, k) float32
    p_true: np.ndarray  # (N,) float32 probability of the true class
    least_class: np.ndarray  # (N,) int32 least likely class
    least_probability: np.ndarray  # (N,) float32
    cams: np.ndarray  # (N, h, w) float32 Grad-CAM of the predicted class at the CAM layer, in [0, 1]; (N, 0, 0) without
    class_names: list[str]
    cam_layer: str | None
    mapping: ClassMapping
    # Every file left out, as (path relative to root, why): the scan's (not images, outside the class folders,
    # links, folders too deep) and then ``skipped_images``.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    # The part of ``skipped`` left out while evaluating: image files of known classes that could not be read or decoded.
    skipped_images: list[tuple[str, str]] = field(default_factory=list)
    skipped_images_true: list[int] = field(default_factory=list)  # the true class of each of ``skipped_images``
    total: int = 0  # images the folder holds for known classes
    seconds: float = 0.0
    model_name: str = ""
    runner: str = "in-process"  # or "ray local", "ray <address>" for a results folder the Ray pipeline wrote
    input_size: tuple[int, int] | None = None  # the model's (H, W): images are shown at its scale

    @property
    def predicted(self) -> np.ndarray:
        return self.top_classes[:, 0].astype(np.int64) if len(self.top_classes) else np.zeros(0, np.int64)

    @property
    def complete(self) -> bool:
        return len(self.files) + len(self.skipped_images) >= self.total

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.true).mean()) if len(self.true) else float("nan")

    @property
    def root_name(self) -> str:
        return self.root.rstrip("/").rsplit("/", 1)[-1] or self.root

    def location(self, index: int) -> str:
        """Where image ``index`` was read from: a local path or a URI."""
        file = self.files[index]
        return file if is_uri(file) else str(Path(self.root) / file)


def read_image(location: str, roots: Sequence[Path] | None = None) -> np.ndarray | None:
    """The image at a local ``location`` as (H, W, 3) uint8, or None when it cannot be read here.

    With ``roots`` given (the dashboard), a path outside them is not read: a results
    folder names its images, and a crafted one must not make the server show files
    it would not list. A URI is never fetched from here.
    """
    if is_uri(location):
        return None
    path = Path(location)
    try:
        if roots is not None:
            from explainers.inputs.data_roots import inside

            path = path.resolve()
            if not inside(path, roots):
                return None
        return decode_image(path)
    except (InputError, OSError, RuntimeError, ValueError):
        return None
