"""Turn maps into pictures: colour them and blend them over the photo. Display only; never recomputes a map."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps

COLORMAPS = ("jet", "turbo", "inferno", "viridis", "magma", "gray")
OVERLAY, HEATMAP, IMAGE = "overlay", "heatmap only", "image only"
DISPLAY_MODES = (OVERLAY, HEATMAP, IMAGE)


def colorize(map_: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """``(H, W)`` values in [0, 1] -> ``(H, W, 3)`` uint8 RGB."""
    lookup = (colormaps[colormap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return lookup[np.clip(np.rint(map_ * 255), 0, 255).astype(np.uint8)]


def overlay(image: np.ndarray, map_: np.ndarray, opacity: float = 0.5, colormap: str = "jet",
            mode: str = OVERLAY) -> np.ndarray:
    """Blend a ``(H, W)`` map in [0, 1] over a ``(H, W, 3)`` uint8 image of the same size."""
    if mode == IMAGE:
        return image
    heat = colorize(map_, colormap)
    if mode == HEATMAP:
        return heat
    return (image.astype(np.float32) * (1 - opacity) + heat.astype(np.float32) * opacity).round().astype(np.uint8)


# The frame around a map of a class the model gives less than attribution.LOW_PROBABILITY (Okabe-Ito orange).
LOW_PROBABILITY_FRAME = (230, 159, 0)


def framed(image: np.ndarray, colour: tuple[int, int, int] = LOW_PROBABILITY_FRAME, width: int | None = None) -> np.ndarray:
    """A copy of a ``(H, W, 3)`` uint8 image with a ``width``-pixel border drawn inside its edge (default: 2% of
    its shorter side, at least 3 pixels), so a marked cell stands out in a grid."""
    width = width or max(3, round(min(image.shape[:2]) * 0.02))
    out = image.copy()
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


def thumbnail(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` scaled to ``height`` pixels tall, keeping its aspect ratio."""
    from PIL import Image

    width = max(1, round(image.shape[1] * height / image.shape[0]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def compose_grid(
    cells: list[list[np.ndarray]], row_labels: list[str], column_labels: list[str], cell_height: int = 224
) -> np.ndarray:
    """One picture of a labelled grid: ``cells[r][c]`` uint8 RGB images, each scaled to ``cell_height``.

    Columns take the width of their widest cell; labels go above columns and
    left of rows, so the file explains itself when shared.
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=14)
    scaled = [[thumbnail(cell, cell_height) for cell in row] for row in cells]
    widths = [max(row[c].shape[1] for row in scaled) for c in range(len(column_labels))]
    label_width = max([int(font.getlength(label)) for label in row_labels] + [0]) + 16
    header, gap = 24, 4
    canvas = Image.new(
        "RGB",
        (label_width + sum(widths) + gap * len(widths), header + (cell_height + gap) * len(scaled)),
        "white",
    )
    draw = ImageDraw.Draw(canvas)
    x_positions = np.cumsum([label_width] + [w + gap for w in widths])[:-1]
    for x, label in zip(x_positions, column_labels):
        draw.text((int(x), 4), label, fill="black", font=font)
    for r, (row, label) in enumerate(zip(scaled, row_labels)):
        y = header + r * (cell_height + gap)
        draw.text((4, y + cell_height // 2 - 8), label, fill="black", font=font)
        for x, cell in zip(x_positions, row):
            canvas.paste(Image.fromarray(cell), (int(x), y))
    return np.asarray(canvas)


def stretch_contrast(picture: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """A ``(H, W, 3)`` uint8 picture with its ``low``-``high`` percentiles (over all channels) spread to 0..255.

    For display only: an optimised input keeps most pixels near its grey start, so its content sits in a narrow band.
    """
    lo, hi = np.percentile(picture, [low, high])
    if hi <= lo:
        return picture.copy()
    return np.clip((picture.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)


def safe_stem(text: str) -> str:
    """``text`` as a file name stem: anything but letters, digits, dot and dash becomes one underscore."""
    import re

    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "_"


def png_bytes(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray, quality: int = 100) -> bytes:
    """A ``(H, W, 3)`` uint8 RGB image as JPEG: at quality 100, the bytes Streamlit's ``st.image`` makes of the array."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def zip_of_pngs(files: dict[str, np.ndarray]) -> bytes:
    """A ZIP archive holding each image as ``<name>.png``."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # PNGs are compressed already
        for name, image in files.items():
            # A fixed date: the same cells give the same archive, whenever they are downloaded.
            archive.writestr(zipfile.ZipInfo(f"{name}.png", date_time=(1980, 1, 1, 0, 0, 0)), png_bytes(image))
    return buffer.getvalue()


def display_map(raw: np.ndarray, size: tuple[int, int], clip_percentile: float = 100.0) -> np.ndarray:
    """A raw ``(h, w)`` map's magnitude in [0, 1] at ``size`` = (H, W), clipped at a percentile.

    Gradient maps are dominated by a few spikes; clipping at the 99th percentile
    shows their structure. Display only: the raw map is unchanged.
    """
    from explainers.methods.maps import upsample

    magnitude = np.abs(raw).astype(np.float32)
    top = float(np.percentile(magnitude, clip_percentile)) or 1.0
    return np.clip(upsample(np.clip(magnitude / top, 0, 1)[None], size)[0], 0, 1)
