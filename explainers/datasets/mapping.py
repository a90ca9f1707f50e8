"""Which model output each class folder stands for."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explainers.errors import InputError, echo
from explainers.models.labels import imagenet_wordnet_ids
from explainers.models.loading import LoadedModel

BY_POSITION, BY_NAME, BY_WORDNET_ID = "by position", "by name", "by WordNet id"


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
        best = max(matches, key=lambda m: matches[m])
        mode = best if matches[best] * 2 > len(folders) else BY_POSITION
    if mode == BY_POSITION:
        outputs = [i if i < len(model.class_names) else -1 for i in range(len(folders))]
    elif mode in lookups:
        table = lookups[mode]
        outputs = [table.get(f.lower(), table.get(f, -1)) for f in folders]
    else:
        raise InputError(f"'{echo(mode)}' is not a class mapping; use auto, {BY_POSITION}, {BY_NAME} or {BY_WORDNET_ID}.")
    return ClassMapping(np.asarray(outputs, np.int64), mode, [f for f, o in zip(folders, outputs) if o < 0])
