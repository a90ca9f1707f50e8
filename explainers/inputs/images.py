"""Decode whatever image a user brings into RGB uint8 pixels, or say in one sentence why not."""

from __future__ import annotations

import hashlib
import io
import stat
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from explainers.errors import InputError, echo

# Pillow's own guard against decompression bombs (a crafted header that would make us allocate
# gigabytes), about 89.5 megapixels: Pillow refuses anything larger as it opens it, so this is the
# real limit, and every message names this figure. Were Pillow's guard switched off (None), this check alone would
# keep Pillow's default figure.
MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 1024 * 1024 * 1024 // 4 // 3
# No image file is read whole past this size: a huge file in a dataset folder (or named
# like an image) would otherwise be loaded into memory before its header was checked.
MAX_IMAGE_BYTES = 256 << 20
# The formats the app reads, by the name users know and the file endings that name them: every list of
# accepted files (upload pickers, dataset scans) and every message that names formats is made from this.
IMAGE_FORMATS = {"JPEG": (".jpg", ".jpeg"), "PNG": (".png",), "WebP": (".webp",), "BMP": (".bmp",), "GIF": (".gif",),
                 "TIFF": (".tif", ".tiff")}
IMAGE_SUFFIXES = tuple(suffix for suffixes in IMAGE_FORMATS.values() for suffix in suffixes)
FORMAT_NAMES = ", ".join(list(IMAGE_FORMATS)[:-1]) + " or " + list(IMAGE_FORMATS)[-1]  # "JPEG, PNG, … or TIFF"

ImageLike = np.ndarray | Image.Image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha over white, 16-bit and float scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data (and 32-bit ints holding 16-bit data) scale by 65535; floats in 0..1 by 1.
        top = 1.0 if image.mode == "F" and values.max(initial=0) <= 1.0 else (255.0 if values.max(initial=0) <= 255 else 65535.0)
        image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def pixel_limit() -> str:
    """The pixel limit as people read it: "89.5 megapixels"."""
    return f"{MAX_PIXELS / 1e6:.1f} megapixels"


def decode_image(data: bytes | str | Path, name: str | None = None) -> np.ndarray:
    """Decode an image file (bytes or path) into ``(H, W, 3)`` uint8 RGB.

    EXIF orientation is applied; any mode (grayscale, palette, RGBA, CMYK,
    16-bit) is converted; the first frame of an animation is used. Raises
    InputError with one sentence naming ``name`` when the data is not a readable image.
    """
    if isinstance(data, (str, Path)):
        name = echo(name or Path(data).name)
        try:
            status = Path(data).stat()
            if not stat.S_ISREG(status.st_mode):  # reading a pipe or a device would block or never end
                raise InputError(f"'{name}' is not a regular file.")
            size = status.st_size
            if size > MAX_IMAGE_BYTES:
                raise InputError(f"'{name}' is {size >> 20} MB; an image file may be at most {MAX_IMAGE_BYTES >> 20} MB.")
            data = Path(data).read_bytes()
        except OSError as error:
            raise InputError(f"'{name}' could not be read: {error.strerror or error}.") from None
    name = echo(name) if name else "the image"
    if not data:
        raise InputError(f"'{name}' is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            # Past MAX_PIXELS Pillow only warns: the size is checked below, in a sentence that gives it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(f"'{name}' is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), "
                                 f"over the limit of {pixel_limit()}.")
            image.load()
            image = _to_rgb(ImageOps.exif_transpose(image))
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"'{name}' is not an image format this app can read (use {FORMAT_NAMES}).") from None
    except Image.DecompressionBombError:  # past twice Pillow's limit it refuses to open the file at all
        raise InputError(f"'{name}' declares more pixels than the limit of {pixel_limit()}.") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputError(f"'{name}' is corrupt or truncated and cannot be decoded ({error}).") from None
    return np.asarray(image, dtype=np.uint8).copy()


def as_rgb_array(image: ImageLike) -> np.ndarray:
    """An already-decoded image (PIL or array) as ``(H, W, 3)`` uint8 RGB."""
    if isinstance(image, Image.Image):
        return np.asarray(_to_rgb(image), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise InputError(f"An image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}.")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:
        return np.asarray(_to_rgb(Image.fromarray(array.astype(np.uint8), "RGBA")))
    if array.dtype != np.uint8:
        top = 1.0 if array.max(initial=0) <= 1.0 else 255.0
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return array


def resize_batch(images: Sequence[ImageLike], size: tuple[int, int]) -> np.ndarray:
    """Resize every image to ``size`` = (H, W), stretching rather than cropping.

    Stretching keeps the whole photo in view, so an attribution map resized back
    lines up with every pixel the user sees. Returns ``(N, H, W, 3)`` uint8.
    """
    height, width = size
    out = np.empty((len(images), height, width, 3), np.uint8)
    for i, image in enumerate(images):
        array = as_rgb_array(image)
        if array.shape[:2] == (height, width):
            out[i] = array
            continue
        out[i] = np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR))
    return out


def blur(pixels: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of each ``(H, W, 3)`` uint8 image in an ``(N, H, W, 3)`` stack."""
    return np.stack([np.asarray(Image.fromarray(p).filter(ImageFilter.GaussianBlur(radius))) for p in pixels])


def content_digest(images: Iterable[ImageLike]) -> str:
    """A hash of the pixels (and shapes) of ``images``: a cache key that ignores file names."""
    digest = hashlib.blake2b(digest_size=16)
    for image in images:
        array = np.ascontiguousarray(as_rgb_array(image))
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
