"""A class's strategies drawn: one row per cluster, its mean map over its mean image and its exemplars with their
own maps. The numbers come from ``explainers.concepts.strategies``; images that cannot be read leave maps alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from explainers.concepts.strategies import CORNERS, ClassStrategies, Cluster, Strategies
from explainers.errors import counted
from explainers.reports.render import colorize, compose_grid, overlay, png_bytes, safe_stem

MEAN_IMAGE_SAMPLE = 16  # members read per cluster for its mean image: enough to see the typical picture
CELL = 96  # pixels a side of each drawn cell
PICTURE_PREFIX = "strategies_"

Reader = Callable[[str], np.ndarray | None]  # a location -> (H, W, 3) uint8, or None when it cannot be read here


def _at_size(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Display maps ``(n, h, w)`` in [0, 1] at ``size`` (bilinear), clipped back to [0, 1]."""
    from explainers.methods.maps import upsample

    return np.clip(upsample(maps.astype(np.float32), size), 0, 1)


def _mean_image(cluster: Cluster, locations: Sequence[str], read: Reader, size: tuple[int, int],
                seed: int) -> np.ndarray | None:
    """The mean of up to MEAN_IMAGE_SAMPLE members' images (exemplars first, then a seeded pick), or None."""
    from explainers.inputs.images import resize_batch

    others = np.setdiff1d(cluster.members, cluster.exemplars)
    picked = list(cluster.exemplars) + list(np.random.default_rng(seed).permutation(others))
    images = []
    for index in picked[: MEAN_IMAGE_SAMPLE]:
        image = read(locations[int(index)])
        if image is not None:
            images.append(image)
    if not images:
        return None
    return resize_batch(images, size).mean(axis=0).round().astype(np.uint8)


def _label(number: int, cluster: Cluster) -> str:
    flag = "  SHORTCUT?" if cluster.shortcut else ""
    return f"{number}: {counted(cluster.size, 'image')} ({cluster.share:.0%}){flag}"


def strategy_cells(result: ClassStrategies, locations: Sequence[str], read: Reader | None = None,
                   size: tuple[int, int] = (CELL, CELL), colormap: str = "jet", opacity: float = 0.5,
                   seed: int = 0) -> tuple[list[list[np.ndarray]], list[str], list[str]]:
    """The cells of ``result``'s picture, its row labels and column labels. ``locations`` gives where each of the
    class's images can be read (``read``, None: maps only); a map without its image is drawn alone."""
    exemplars = max((len(cluster.exemplars) for cluster in result.clusters), default=0)
    columns = ["mean image", "mean map"] + [f"exemplar {i}" for i in range(1, exemplars + 1)]
    blank = np.full((*size, 3), 255, np.uint8)
    rows, labels = [], []
    for number, cluster in enumerate(result.clusters, 1):
        mean_image = _mean_image(cluster, locations, read, size, seed) if read is not None else None
        mean_map = _at_size(cluster.mean_map[None], size)[0]
        row = [mean_image if mean_image is not None else blank,
               overlay(mean_image, mean_map, opacity, colormap) if mean_image is not None else colorize(mean_map, colormap)]
        for index, map_ in zip(cluster.exemplars, _at_size(cluster.exemplar_maps, size)):
            image = read(locations[int(index)]) if read is not None else None
            if image is None:
                row.append(colorize(map_, colormap))
            else:
                from explainers.inputs.images import resize_batch

                row.append(overlay(resize_batch([image], size)[0], map_, opacity, colormap))
        rows.append(row + [blank] * (len(columns) - len(row)))
        labels.append(_label(number, cluster))
    return rows, labels, columns


def strategy_picture(result: ClassStrategies, locations: Sequence[str], read: Reader | None = None,
                     size: tuple[int, int] = (CELL, CELL), colormap: str = "jet", opacity: float = 0.5) -> np.ndarray:
    """One class's strategies as a labelled grid: a row per cluster, largest first."""
    rows, labels, columns = strategy_cells(result, locations, read, size, colormap, opacity)
    return compose_grid(rows, labels, columns, cell_height=size[0])


def picture_name(class_name: str) -> str:
    return f"{PICTURE_PREFIX}{safe_stem(class_name)}.png"


def write_pictures(strategies: Strategies, out: Path, locate: Callable[[ClassStrategies], Sequence[str]],
                   read: Reader | None = None, size: tuple[int, int] = (CELL, CELL)) -> dict[str, str]:
    """A PNG per class in ``out`` (which must exist); ``locate`` gives where a class's images can be read. Returns
    each class's file name; two names that make the same file name get a numbered suffix."""
    written: dict[str, str] = {}
    taken: set[str] = set()
    for name, result in strategies.classes.items():
        file, number = picture_name(name), 1
        while file in taken:
            number += 1
            file = picture_name(f"{name}_{number}")
        taken.add(file)
        (out / file).write_bytes(png_bytes(strategy_picture(result, locate(result), read, size)))
        written[name] = file
    return written


def summary_table(strategies: Strategies) -> pd.DataFrame:
    """One row per clustered class: its maps, its strategies, the largest one's share, and how many are flagged."""
    return pd.DataFrame([{"class": name, "maps": result.sampled_from, "strategies": result.k,
                          "chosen by": result.chosen_by, "largest share": result.clusters[0].share,
                          "possible shortcuts": sum(cluster.shortcut for cluster in result.clusters)}
                         for name, result in strategies.classes.items()])


def where_table(result: ClassStrategies) -> pd.DataFrame:
    """Where each of a class's strategies puts its mass, as shares of its mean map, and why it is flagged."""
    rows = []
    for number, cluster in enumerate(result.clusters, 1):
        mass = cluster.mass
        corner = max(CORNERS, key=mass.corners.__getitem__)
        rows.append({"strategy": number, "images": cluster.size, "share of class": cluster.share,
                     "border": mass.border, "centre": mass.centre, "top corner": corner,
                     "in that corner": mass.corners[corner],
                     **({"on the object": mass.inside} if mass.inside is not None else {}),
                     "possible shortcut": cluster.shortcut})
    return pd.DataFrame(rows)
