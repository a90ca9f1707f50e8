"""A class's discovered concepts drawn: one row per concept, most important first, with its importance, its exemplars
with its heatmap over them, and its best-matching crops. The numbers come from ``explainers.concepts.factorisation``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from explainers.concepts.factorisation import DISCOVERED_FILE, DiscoveredConcept, Discovery, discovered_json
from explainers.reports.render import compose_grid, overlay, png_bytes, safe_stem

CELL = 96  # pixels a side of each drawn cell
PICTURE_PREFIX = "discovered_"


def _at_height(image: np.ndarray, height: int) -> np.ndarray:
    """``image`` ``height`` pixels tall, its aspect kept: nearest neighbour when enlarged, so a crop's few pixels
    stay sharp (a digit's crop is 12 pixels a side)."""
    from PIL import Image

    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    method = Image.Resampling.NEAREST if image.shape[0] < height else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(image).resize((width, height), method))


def _label(concept: DiscoveredConcept) -> str:
    return f"{concept.number}: importance {concept.importance:+.3g} ({concept.share:+.0%})"


def concept_cells(discovery: Discovery, size: tuple[int, int] = (CELL, CELL), colormap: str = "jet",
                  opacity: float = 0.5) -> tuple[list[list[np.ndarray]], list[str], list[str]]:
    """The cells of ``discovery``'s picture, its row labels and its column labels: per concept its exemplars with
    its heatmap over them, then its crops (a blank where a concept has fewer). ``size`` is (height, width) of a blank;
    every cell is ``size[0]`` tall, its aspect kept."""
    exemplars = max((len(concept.exemplars) for concept in discovery.concepts), default=0)
    crops = max((len(concept.crops) for concept in discovery.concepts), default=0)
    columns = [f"exemplar {i}" for i in range(1, exemplars + 1)] + [f"crop {i}" for i in range(1, crops + 1)]
    blank = np.full((*size, 3), 255, np.uint8)
    rows, labels = [], []
    for concept in discovery.concepts:
        row = []
        for index, heatmap in zip(concept.exemplars, concept.exemplar_maps):
            image = discovery.images.pixels[index]
            row.append(_at_height(overlay(image, heatmap, opacity, colormap), size[0]))
        row += [blank] * (exemplars - len(row))
        row += [_at_height(crop.pixels, size[0]) for crop in concept.crops]
        rows.append(row + [blank] * (len(columns) - len(row)))
        labels.append(_label(concept))
    return rows, labels, columns


def discovery_picture(discovery: Discovery, size: tuple[int, int] = (CELL, CELL), colormap: str = "jet",
                      opacity: float = 0.5) -> np.ndarray:
    """One class's concepts as a labelled grid: a row per concept, most important first."""
    rows, labels, columns = concept_cells(discovery, size, colormap, opacity)
    return compose_grid(rows, labels, columns, cell_height=size[0])


def picture_name(class_name: str) -> str:
    return f"{PICTURE_PREFIX}{safe_stem(class_name)}.png"


def write_pictures(discoveries: Sequence[Discovery], out: Path, size: tuple[int, int] = (CELL, CELL)
                   ) -> dict[str, str]:
    """A PNG per class in ``out`` (which must exist). Returns each class's file name; two names that make the same
    file name get a numbered suffix."""
    written: dict[str, str] = {}
    taken: set[str] = set()
    for discovery in discoveries:
        file, number = picture_name(discovery.class_name), 1
        while file in taken:
            number += 1
            file = picture_name(f"{discovery.class_name}_{number}")
        taken.add(file)
        (out / file).write_bytes(png_bytes(discovery_picture(discovery, size)))
        written[discovery.class_name] = file
    return written


def write_json(discoveries: Sequence[Discovery], out: Path, pictures: dict[str, str] | None = None) -> Path:
    """``out/discovered.json`` (``discovered_json``); the path written."""
    path = Path(out) / DISCOVERED_FILE
    path.write_text(json.dumps(discovered_json(discoveries, pictures), indent=2))
    return path
