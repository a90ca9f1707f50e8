"""Object masks for the localisation metrics: from a masks folder, a boxes CSV or a digit's own strokes.

Each source becomes an ``ObjectMasks`` whose ``mask_for(relative_path, image)`` gives the object as an
``(H, W)`` bool array at the image's own size, or raises InputError with one sentence naming the image and
the problem. ``at_model_size`` then puts a mask through the model's own resizing, so a mask and its image
keep the same geometry.

A masks folder or a boxes CSV may be a server path a visitor typed: given the data roots, nothing outside
them is read, and messages repeat only what the user typed and paths relative to it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from explainers.datasets.scan import scan_folder
from explainers.errors import InputError, echo
from explainers.inputs import data_roots
from explainers.inputs.images import FORMAT_NAMES, MAX_IMAGE_BYTES, MAX_PIXELS, as_rgb_array, pixel_limit, resize_batch
from explainers.runtime.cache import cache_dir

if TYPE_CHECKING:  # only its ``resize`` is used: no need to import Keras with the masks
    from explainers.models.loading import LoadedModel

# A mask pixel is the object where its luminance is above this (white on black; grey edges of a drawn mask
# count by which side of the middle they fall).
MASK_THRESHOLD = 127
# The digits demo's strokes: MNIST's background is 0 and its strokes reach 255 with soft edges; above the
# middle keeps the stroke and leaves out the faintest edge.
STROKE_THRESHOLD = 127
# A boxes CSV is read whole before any image: these bound what one file may cost.
MAX_BOX_ROWS = 1_000_000
MAX_BOXES_BYTES = 256 << 20
# The top folder of an upload that holds the masks beside the images (see ``split_masks_folder``).
MASKS_FOLDER = "masks"
_BAD_ROWS_SHOWN = 3  # a CSV's first bad rows a message lists
_BOX_COLUMNS = ("x0", "y0", "x1", "y1")


def _normal(relative_path: str) -> str:
    """A relative path as rows name images: forward slashes, no leading ``./``."""
    text = relative_path.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text.lstrip("/")


def _without_suffix(relative_path: str) -> str:
    path = PurePosixPath(relative_path)
    return path.with_suffix("").as_posix() if path.suffix else path.as_posix()


def luminance(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 luminance of an image array, as Pillow's ``convert("L")`` weighs red, green and blue."""
    return np.asarray(Image.fromarray(as_rgb_array(image)).convert("L"), dtype=np.uint8)


def _mask_pixels(image: Image.Image) -> np.ndarray:
    """``(H, W)`` luminance of a mask in any mode; a transparent pixel counts as black (not the object)."""
    if image.mode == "P":
        image = image.convert("RGBA")  # the palette may carry transparency
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64)
        light = np.asarray(Image.fromarray(rgba[..., :3].astype(np.uint8)).convert("L"), dtype=np.float64)
        return light * rgba[..., 3] / 255.0
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 1.0 if image.mode == "F" and values.max(initial=0) <= 1.0 else (255.0 if values.max(initial=0) <= 255 else 65535.0)
        return values / top * 255.0
    return np.asarray(image.convert("L"), dtype=np.float64)


def read_mask(path: Path, shown: str) -> np.ndarray:
    """The ``(H, W)`` bool object mask in the file ``path`` (white = object); InputError beginning with ``shown``.

    ``shown`` is how the message names the mask, e.g. "The mask 'cat/001.png' for 'cat/001.jpg'". EXIF
    orientation is applied, as it is to images, so a mask lines up with its image as the user sees it.
    """
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a pipe or a device would block or never end
            raise InputError(f"{shown} is not a regular file.")
        if status.st_size > MAX_IMAGE_BYTES:
            raise InputError(f"{shown} is {status.st_size >> 20} MB; an image file may be at most {MAX_IMAGE_BYTES >> 20} MB.")
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"{shown} could not be read: {error.strerror or error}.") from None
    if not data:
        raise InputError(f"{shown} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(f"{shown} is {width}x{height} pixels, over the limit of {pixel_limit()}.")
            image.load()
            return _mask_pixels(ImageOps.exif_transpose(image)) > MASK_THRESHOLD
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{shown} is not an image format this app can read (use {FORMAT_NAMES}).") from None
    except Image.DecompressionBombError:
        raise InputError(f"{shown} declares more pixels than the limit of {pixel_limit()}.") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"{shown} is corrupt or truncated and cannot be decoded ({error}).") from None


def _size(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}"  # width x height, as image sizes are spoken of


@dataclass
class ObjectMasks:
    """Where the object masks of a dataset's images come from, and the mask of each image.

    ``kind`` is "folder", "boxes" or "strokes"; ``source`` names where they came from as the user gave it
    (never a server path the user did not type).
    """

    kind: str
    source: str

    def mask_for(self, relative_path: str, image: np.ndarray) -> np.ndarray:
        """The ``(H, W)`` bool mask, True on the object, of the image at ``relative_path`` (as a dataset listing
        names it) whose decoded pixels are ``image``; InputError naming the image and the problem."""
        raise NotImplementedError


@dataclass
class FolderMasks(ObjectMasks):
    """Mask files in a folder mirroring the images' relative paths, matched by the path without its suffix."""

    root: Path = field(repr=False, default=Path())  # the folder scanned (resolved): never shown
    files: dict[str, str] = field(repr=False, default_factory=dict)  # image path without suffix → mask file
    ambiguous: dict[str, list[str]] = field(repr=False, default_factory=dict)  # the same, for several masks

    def mask_for(self, relative_path: str, image: np.ndarray) -> np.ndarray:
        image_path = _normal(relative_path)
        key = _without_suffix(image_path)
        if key in self.ambiguous:
            names = " and ".join(f"'{echo(name)}'" for name in self.ambiguous[key][:2])
            raise InputError(f"'{echo(image_path)}' has several masks in the masks folder '{self.source}' ({names}); "
                             "keep one.")
        mask_file = self.files.get(key)
        if mask_file is None:
            raise InputError(f"No mask for '{echo(image_path)}' in the masks folder '{self.source}'.")
        shown = f"The mask '{echo(mask_file)}' for '{echo(image_path)}'"
        mask = read_mask(self.root / mask_file, shown)
        if mask.shape != image.shape[:2]:
            raise InputError(f"{shown} is {_size(mask.shape)} pixels but the image is {_size(image.shape)}; a mask "
                             "must have its image's size.")
        if not mask.any():
            raise InputError(f"{shown} has no white pixel (luminance above {MASK_THRESHOLD}), so it marks no object.")
        return mask


@dataclass
class BoxMasks(ObjectMasks):
    """Boxes from a CSV, in pixels of the original image; several boxes of one image make one mask, their union.

    A box covers the pixels whose centres lie in ``x0 <= x < x1``, ``y0 <= y < y1``, pixel ``(i, j)`` having its
    centre at ``(i + 0.5, j + 0.5)``: with whole numbers, columns ``x0`` to ``x1 - 1``.
    """

    spans: dict[str, tuple[int, int]] = field(repr=False, default_factory=dict)  # image path → rows of ``boxes``
    boxes: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros((0, 4)))  # (N, 4)
    lines: np.ndarray = field(repr=False, compare=False, default_factory=lambda: np.zeros(0, np.int64))  # CSV lines

    def mask_for(self, relative_path: str, image: np.ndarray) -> np.ndarray:
        image_path = _normal(relative_path)
        span = self.spans.get(image_path)
        if span is None:
            raise InputError(f"No box for '{echo(image_path)}' in '{self.source}'.")
        height, width = image.shape[:2]
        mask = np.zeros((height, width), bool)
        columns, rows = np.arange(width) + 0.5, np.arange(height) + 0.5
        for (x0, y0, x1, y1), line in zip(self.boxes[span[0]:span[1]], self.lines[span[0]:span[1]]):
            if x1 > width or y1 > height:
                raise InputError(f"The box on line {line} of '{self.source}' ({_numbers((x0, y0, x1, y1))}) reaches "
                                 f"outside '{echo(image_path)}', which is {width}x{height} pixels.")
            mask |= ((rows >= y0) & (rows < y1))[:, None] & ((columns >= x0) & (columns < x1))[None, :]
        if not mask.any():
            raise InputError(f"The boxes for '{echo(image_path)}' in '{self.source}' cover no pixel's centre.")
        return mask


def _numbers(values: Sequence[float]) -> str:
    return ", ".join(f"{value:g}" for value in values)


@dataclass
class StrokeMasks(ObjectMasks):
    """The image's own bright pixels as its object: the strokes of a light digit on a dark ground."""

    threshold: int = STROKE_THRESHOLD

    def mask_for(self, relative_path: str, image: np.ndarray) -> np.ndarray:
        mask = luminance(image) > self.threshold
        if not mask.any():
            raise InputError(f"'{echo(_normal(relative_path))}' has no pixel brighter than {self.threshold}, so it has "
                             "no strokes to serve as its mask.")
        return mask


def masks_from_folder(folder: str | Path, *, roots: Sequence[Path] | None = None, shown: str | None = None) -> FolderMasks:
    """The masks in ``folder``, which mirrors the images' folder: ``MASKS/cat/001.png`` is the mask of
    ``DATA/cat/001.jpg`` (any image suffix, matched by the path without it). White is the object, in any mode.

    With ``roots`` (a server's data roots) the folder must lie inside them and nothing outside is read. The
    folder is listed as a dataset is (bounded; one top folder holding the class folders is stepped into), so
    it mirrors the images whichever way both were packed. ``shown`` is how messages name the folder
    (default: ``folder`` as given). InputError in one sentence when it is not a usable folder.
    """
    shown = echo(shown if shown is not None else folder)
    scan = scan_folder(folder, roots=roots)
    files: dict[str, str] = {}
    ambiguous: dict[str, list[str]] = {}
    for path in scan.files:
        relative = path.relative_to(scan.root).as_posix()
        key = _without_suffix(relative)
        if key in files:
            ambiguous.setdefault(key, [files[key]]).append(relative)
        files[key] = relative
    for key in ambiguous:
        del files[key]
    return FolderMasks("folder", shown, scan.root, files, ambiguous)


def _open_csv(csv_path: str | Path, roots: Sequence[Path] | None, shown: str) -> Path:
    """The CSV's real path, after the data-roots check and the checks that make reading it safe."""
    path = data_roots.resolve_given(csv_path, roots)
    try:
        status = path.stat()
    except FileNotFoundError:
        raise InputError(f"'{shown}' does not exist.") from None
    except OSError as error:
        raise data_roots.unusable(shown, error) from None
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"'{shown}' is a folder; give the boxes CSV file.")
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"'{shown}' is not a regular file.")
    if status.st_size > MAX_BOXES_BYTES:
        raise InputError(f"'{shown}' is {status.st_size >> 20} MB; a boxes CSV may be at most {MAX_BOXES_BYTES >> 20} MB.")
    return path


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _row_problem(fields: list[str]) -> str | None:
    """What is wrong with one data row, None when it is a usable box."""
    if len(fields) < 5:
        return f"too few columns ({len(fields)} of 5)"
    if not _normal(fields[0]):
        return "no path"
    for name, text in zip(_BOX_COLUMNS, fields[1:5]):
        if _number(text) is None:
            return f"{name} '{echo(text.strip(), 20)}' is not a number"
    x0, y0, x1, y1 = (float(text) for text in fields[1:5])
    if min(x0, y0) < 0:
        return "a negative coordinate"
    if x1 <= x0:
        return "x1 <= x0"
    if y1 <= y0:
        return "y1 <= y0"
    return None


def _is_header(fields: list[str]) -> bool:
    return len(fields) >= 5 and all(_number(text) is None for text in fields[1:5])


def masks_from_boxes(csv_path: str | Path, *, roots: Sequence[Path] | None = None, shown: str | None = None) -> BoxMasks:
    """The boxes in a CSV of rows ``path,x0,y0,x1,y1``: the image's path as the dataset folder names it
    (``cat/001.jpg``) and a box in pixels of the original image. A header row is optional; several rows for one
    path mean several boxes, their union; columns past the fifth are ignored.

    Every row is checked before any is used: a file with bad rows is refused in one sentence naming its first
    bad lines and what is wrong. At most ``MAX_BOX_ROWS`` rows. With ``roots`` the file must lie inside the
    data roots. ``shown`` is how messages name the file (default: ``csv_path`` as given).
    """
    shown = echo(shown if shown is not None else csv_path)
    path = _open_csv(csv_path, roots, shown)
    paths: list[str] = []
    coordinates: list[tuple[float, float, float, float]] = []
    lines: list[int] = []
    bad: list[tuple[int, str]] = []
    first = True  # only the first non-blank line may be a header
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            for fields in reader:
                line = reader.line_num
                if not any(text.strip() for text in fields):
                    continue  # a blank line
                if first:
                    first = False
                    if _is_header(fields):
                        continue
                if len(paths) + len(bad) >= MAX_BOX_ROWS:
                    raise InputError(f"'{shown}' holds more than {MAX_BOX_ROWS:,} rows, the most a boxes CSV may hold.")
                problem = _row_problem(fields)
                if problem is not None:
                    bad.append((line, problem))
                    continue
                paths.append(_normal(fields[0]))
                x0, y0, x1, y1 = (float(text) for text in fields[1:5])  # _row_problem checked there are four
                coordinates.append((x0, y0, x1, y1))
                lines.append(line)
    except UnicodeDecodeError:
        raise InputError(f"'{shown}' is not a text CSV in UTF-8.") from None
    except csv.Error as error:
        raise InputError(f"'{shown}' is not a readable CSV near line {reader.line_num} ({error}).") from None
    except OSError as error:
        raise data_roots.unusable(shown, error) from None
    if bad:
        listed = "; ".join(f"line {line}: {problem}" for line, problem in bad[:_BAD_ROWS_SHOWN])
        if len(bad) > _BAD_ROWS_SHOWN:
            listed += f"; and {len(bad) - _BAD_ROWS_SHOWN:,} more"
        rows = "a bad row" if len(bad) == 1 else f"{len(bad):,} bad rows"
        raise InputError(f"'{shown}' has {rows}, so no box was read ({listed}); each row is path,x0,y0,x1,y1 in pixels.")
    if not paths:
        raise InputError(f"'{shown}' holds no boxes; each row is path,x0,y0,x1,y1 in pixels.")
    order = sorted(range(len(paths)), key=paths.__getitem__)  # one image's boxes side by side, in file order
    spans: dict[str, tuple[int, int]] = {}
    for position, index in enumerate(order):
        start, _ = spans.get(paths[index], (position, position))
        spans[paths[index]] = (start, position + 1)
    return BoxMasks("boxes", shown, spans, np.asarray(coordinates, np.float64)[order], np.asarray(lines, np.int64)[order])


def masks_from_strokes(threshold: int = STROKE_THRESHOLD) -> StrokeMasks:
    """Each image's pixels brighter than ``threshold`` (luminance, 0–255) as its mask: the digits demo's strokes."""
    if not 0 <= threshold < 255:
        raise InputError(f"The stroke threshold must be from 0 to 254; got {threshold}.")
    return StrokeMasks("strokes", "the digits' strokes", int(threshold))


def at_model_size(model: LoadedModel, mask: np.ndarray) -> np.ndarray:
    """``mask`` at the model's input size: ``mask_at_size`` with the model's own input size."""
    return mask_at_size(mask, model.input_size)


def mask_at_size(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``mask`` at ``size`` = (H, W), ``(H, W)`` bool: drawn white on black and put through exactly the model's own
    image resizing (``resize_batch``, which stretches, as ``LoadedModel.resize`` does), then taken where above the
    middle grey, so a mask lands on the same pixels as the object in the resized image. A Ray reader, which has
    no model, resizes the same way."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"A mask is (H, W); got shape {mask.shape}.")
    drawn = np.repeat(np.where(mask, np.uint8(255), np.uint8(0))[..., None], 3, axis=-1)
    return resize_batch([drawn], size)[0][..., 0] > MASK_THRESHOLD


class SplitUpload(NamedTuple):
    """An unpacked upload, as a folder of class folders and, when it holds one, its masks folder."""

    images_root: Path
    masks_root: Path | None


def _visible(path: Path) -> bool:
    return not path.name.startswith((".", "__MACOSX"))


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if _visible(path))
    except OSError:
        return []  # the scan that follows says what is wrong with the folder


def _holds_folders(folder: Path) -> bool:
    return any(path.is_dir() for path in _children(folder))


def split_masks_folder(root: str | Path) -> SplitUpload:
    """The images and the masks of an unpacked upload (a ZIP from ``uploads.unpack_zip``, or a local folder).

    The masks sit in a top folder named ``masks`` (any case) beside the images, mirroring their paths::

        cat/001.jpg                         images/cat/001.jpg
        dog/002.png           or            images/dog/002.png
        masks/cat/001.png                   masks/cat/001.png
        masks/dog/002.png                   masks/dog/002.png

    all of it optionally inside one top folder (``data/cat/001.jpg``, ``data/masks/cat/001.png``). Masks may
    have any image suffix; white is the object. Without a ``masks`` folder the answer is ``(root, None)``.

    When the masks sit beside the class folders, ``images_root`` is a folder in the cache holding links to
    the class folders only, so that listing it does not take ``masks`` for a class; image paths relative to it
    are the same as relative to ``root``. Links are followed when no data roots are given, as for uploads, so
    this is for uploads and local folders, not a server folder a visitor typed.
    """
    root = Path(root).expanduser().resolve()
    top = _children(root)
    if len(top) == 1 and top[0].is_dir() and _holds_folders(top[0]):
        root, top = top[0], _children(top[0])  # one top folder, as a ZIP of ``data/`` unpacks
    masks = [path for path in top if path.is_dir() and path.name.lower() == MASKS_FOLDER]
    if not masks:
        return SplitUpload(root, None)
    masks_root = masks[0]
    others = [path for path in top if path.is_dir() and path != masks_root]
    if len(others) == 1 and _holds_folders(others[0]):
        return SplitUpload(others[0], masks_root)  # images/ and masks/
    return SplitUpload(_class_folders_view(root, others), masks_root)


def _class_folders_view(root: Path, folders: list[Path]) -> Path:
    """A folder, named as ``root``, holding links to ``folders`` only; made once per root and set of folders."""
    digest = hashlib.blake2b(digest_size=12)
    for part in [str(root), *(folder.name for folder in folders)]:
        digest.update(part.encode() + b"\0")
    home = cache_dir() / "uploads" / f"split-{digest.hexdigest()}"
    view = home / root.name
    if view.is_dir():
        return view
    home.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=home.parent, prefix=".staging-"))
    try:
        (staging / root.name).mkdir()
        for folder in folders:
            (staging / root.name / folder.name).symlink_to(folder, target_is_directory=True)
        try:
            os.replace(staging, home)
        except OSError:  # another session made the same view meanwhile
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return view


__all__ = ["MASKS_FOLDER", "MASK_THRESHOLD", "MAX_BOX_ROWS", "MAX_BOXES_BYTES", "STROKE_THRESHOLD", "BoxMasks",
           "FolderMasks", "ObjectMasks", "SplitUpload", "StrokeMasks", "at_model_size", "luminance",
           "masks_from_boxes", "masks_from_folder", "masks_from_strokes", "read_mask", "split_masks_folder"]
