"""Read a user's model file into a Keras model, refusing anything that would run code from the file.

Formats: ``.keras`` (Keras 3), ``.h5`` (a whole model in legacy HDF5), an
architecture ``.json`` with its weights file beside it, a SavedModel folder, and
a ZIP of any of these (how a folder or a pair of files is uploaded). Every
failure is an InputError with one sentence naming the file.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from explainers.errors import InputError, echo
from explainers.inputs.data_roots import check_path, unusable
from explainers.inputs.uploads import unpack_zip
from explainers.runtime.keras_internals import producing_operation
from explainers.settings import TRUST_MODEL_CODE_ENV, trust_model_code

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".json", ".zip")
FORMATS_SENTENCE = "use a .keras file, a whole-model .h5, an architecture .json with its weights, or a SavedModel folder (or a ZIP of one)"
# What Keras, h5py and TensorFlow raise for a file they cannot read as a model: a bad file, told to
# the user in one sentence. Anything else is a bug of ours and must surface as one.
_UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, OSError, ImportError, RuntimeError,
               NotImplementedError, zipfile.BadZipFile, tf.errors.OpError)

# Operations a SavedModel graph could use to touch the server's files or run Python.
# A SavedModel carries no Python, but its graph runs as written, so these are refused.
_UNSAFE_OPS = {
    "ReadFile", "WriteFile", "MatchingFiles", "DeleteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "Save", "SaveV2", "SaveSlices", "MergeV2Checkpoints", "ImmutableConst", "WholeFileReader",
    "WholeFileReaderV2", "TFRecordReader", "TFRecordReaderV2", "FixedLengthRecordReader",
}


# An absolute path in a library's message: its folders are this server's (an upload's lie in the app's cache),
# so only the file's own name is kept.
_FOLDERS_OF_A_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[/\\](?:[^\s'\"/\\]+[/\\])+")


def _reason(error: BaseException) -> str:
    """The first line of a library's error, for a message: no server folders, at most 200 characters."""
    message = str(error).strip()
    first = message.splitlines()[0] if message else type(error).__name__
    return _FOLDERS_OF_A_PATH.sub("", first)[:200]


def _explain_keras_error(error: Exception, name: str) -> InputError:
    message = str(error)
    first = _reason(error)
    name = echo(name)
    if "safe_mode" in message or "Lambda" in message and "lambda" in message:
        return InputError(
            f"'{name}' contains a Lambda layer with serialised Python code, and loading it would run that code on "
            f"this server, so it is refused; if you trust the file, restart the app with {TRUST_MODEL_CODE_ENV}=1."
        )
    if "Could not locate" in message or "Unknown layer" in message or "custom_objects" in message:
        return InputError(
            f"'{name}' uses a custom layer or function that is not part of Keras ({first}); "
            "this app loads models built from Keras's own layers."
        )
    return InputError(f"'{name}' could not be read as a Keras model; it may be truncated or not a model ({first}).")


def _load_keras_file(path: Path) -> keras.Model:
    if path.name.endswith(".weights.h5"):
        raise InputError(f"'{echo(path.name)}' holds only weights; give the whole model (.keras or .h5) or the architecture "
                         ".json beside it.")
    if path.suffix.lower() == ".keras" and not zipfile.is_zipfile(path):
        # Keras would answer "File not found" with the file's server path.
        raise InputError(f"'{echo(path.name)}' is not a .keras file (a ZIP archive that model.save() writes); it may be "
                         "truncated, or another kind of file renamed.")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trust_model_code())
    except _UNREADABLE as error:  # Keras raises many types for a bad file; all mean the same to a user
        raise _explain_keras_error(error, path.name) from None


def _weights_beside(architecture: Path) -> Path:
    folder = architecture.parent
    for candidate in (f"{architecture.stem}.weights.h5", f"{architecture.stem}.h5"):
        if (folder / candidate).is_file():
            return folder / candidate
    others = sorted(p for p in folder.iterdir() if p.suffix in (".h5", ".hdf5") and p.is_file())
    if len(others) == 1:
        return others[0]
    raise InputError(
        f"'{echo(architecture.name)}' holds only the architecture; put its weights file (.weights.h5) beside it, "
        "or upload both files together."
    )


def _load_json(path: Path) -> keras.Model:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InputError(f"'{echo(path.name)}' is not valid JSON, so it cannot be a Keras architecture file.") from None
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputError(f"'{echo(path.name)}' is JSON but not a Keras architecture (no 'class_name'); save one with model.to_json().")
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=not trust_model_code())
    except _UNREADABLE as error:
        raise _explain_keras_error(error, path.name) from None
    weights = _weights_beside(path)
    try:
        model.load_weights(weights)
    except _UNREADABLE as error:
        raise InputError(f"'{echo(weights.name)}' does not fit the architecture in '{echo(path.name)}' "
                         f"({_reason(error)}).") from None
    return model


def _check_graph(function, name: str) -> None:
    graph = function.graph.as_graph_def()
    ops = {node.op for node in graph.node}
    for library_function in graph.library.function:
        ops.update(node.op for node in library_function.node_def)
    unsafe = sorted(ops & _UNSAFE_OPS)
    if unsafe and not trust_model_code():
        raise InputError(
            f"'{name}' is a SavedModel whose graph reads or writes files or runs Python ({', '.join(unsafe)}), so it is "
            f"refused; if you trust it, restart the app with {TRUST_MODEL_CODE_ENV}=1."
        )


class ProbabilitiesToScores(keras.layers.Layer):
    """Turns an opaque model's probabilities back into scores: log p (softmax) or the logit (sigmoid).

    Gradients of a saturated probability vanish; gradients of its log do not,
    and for a softmax output log p differs from the logit only by a term shared
    by every class.
    """

    def __init__(self, kind: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.kind = kind

    def call(self, p):
        p = keras.ops.clip(p, 1e-7, 1.0 - 1e-7)
        return keras.ops.log(p) if self.kind == "softmax" else keras.ops.log(p) - keras.ops.log1p(-p)


def _probability_kind(model: keras.Model) -> str | None:
    """``softmax`` or ``sigmoid`` when an opaque model's outputs look like probabilities, else None (scores)."""
    shape = [d or 32 for d in model.inputs[0].shape[1:]]
    probe = np.random.default_rng(0).uniform(0, 1, (4, *shape)).astype(np.float32)
    out = keras.ops.convert_to_numpy(model(np.concatenate([probe, probe * 255 - 127])))
    if out.ndim != 2 or out.min() < 0 or out.max() > 1:
        return None
    return "softmax" if out.shape[1] > 1 and np.allclose(out.sum(axis=1), 1.0, atol=1e-3) else "sigmoid"


@dataclass
class ModelFile:
    """What a file held, reduced to the one output being explained."""

    model: keras.Model
    format: str  # "Keras (.keras)", "SavedModel"...
    output_names: list[str]  # every output the file's model has; ``model`` returns the chosen one
    chosen: str  # the output ``model`` returns
    probability_kind: str | None = None  # for an opaque model emitting probabilities: "softmax" or "sigmoid"


def _load_saved_model(folder: Path, name: str, output: str | int | None) -> ModelFile:
    """A SavedModel wrapped as a Keras model (no layer access)."""
    try:
        loaded = tf.saved_model.load(str(folder))
    except _UNREADABLE as error:
        raise InputError(f"'{name}' could not be read as a SavedModel; it may be incomplete ({_reason(error)}).") from None
    endpoint = next((e for e in ("serving_default", "serve") if e in loaded.signatures), None)
    if endpoint is None:
        raise InputError(f"'{name}' is a SavedModel without a 'serving_default' signature, so there is no call to explain.")
    function = loaded.signatures[endpoint]
    _check_graph(function, name)
    inputs = function.structured_input_signature[1]
    if len(inputs) != 1:
        raise InputError(f"'{name}' takes {len(inputs)} inputs ({', '.join(inputs)}); this app explains models with one image input.")
    input_signature = next(iter(inputs.values()))  # a TensorSpec: the one input's shape and dtype
    layer = keras.layers.TFSMLayer(str(folder), call_endpoint=endpoint, name="saved_model")
    image = keras.Input(tuple(input_signature.shape[1:]), name="image")
    result = layer(image)
    names = sorted(result) if isinstance(result, dict) else ["output"]
    chosen = names[_pick_output(names, output, name)]
    if isinstance(result, dict):
        result = result[chosen]
    wrapper = keras.Model(image, result, name="saved_model")
    kind = _probability_kind(wrapper)
    if kind is not None:
        wrapper = keras.Model(image, ProbabilitiesToScores(kind, name="scores")(result), name="saved_model")
    return ModelFile(wrapper, "SavedModel", names, chosen, kind)


def _one_output(model: keras.Model, output: str | int | None, name: str) -> tuple[keras.Model, list[str], str]:
    names = [producing_operation(t).name for t in model.outputs]
    chosen = _pick_output(names, output, name)
    if len(names) == 1:
        return model, names, names[0]
    return keras.Model(model.inputs[0], model.outputs[chosen], name=f"{model.name}_{names[chosen]}"), names, names[chosen]


def _pick_output(names: list[str], output: str | int | None, source: str) -> int:
    if output is None:
        return 0
    if isinstance(output, str) and output in names:
        return names.index(output)
    if isinstance(output, int) and 0 <= output < len(names):
        return output
    raise InputError(f"'{source}' has no output {output!r}; its outputs are {', '.join(names)}.")


def _model_inside(folder: Path, name: str) -> Path:
    """The model a folder holds: itself when a SavedModel, else its one model file (looking one level down)."""
    if (folder / "saved_model.pb").exists():
        return folder
    for level in (folder, *sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))):
        if (level / "saved_model.pb").exists():
            return level
        candidates = sorted(p for p in level.iterdir() if p.suffix in (".keras", ".json") or
                            (p.suffix in (".h5", ".hdf5") and not p.name.endswith(".weights.h5")))
        candidates = [p for p in candidates if p.suffix != ".json" or p.stem != "labels"]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            listed = ", ".join(echo(p.name, 40) for p in candidates[:5]) + (", …" if len(candidates) > 5 else "")
            raise InputError(f"'{name}' holds several model files ({listed}); give one.")
    raise InputError(f"'{name}' holds no model; {FORMATS_SENTENCE}.")


def model_uploads(names: Sequence[str]) -> list[tuple[str, ...]]:
    """Uploaded file names grouped into models, in upload order: each model file on its own, and an
    architecture .json with its weights file; the first name of a group is the file to read.

    The weights of ``arch.json`` are ``arch.weights.h5`` or ``arch.h5``, else the one weights file
    (or the one .h5) no other architecture took, as a folder holding them is read.
    """
    def is_h5(name: str) -> bool:
        return name.lower().endswith((".h5", ".hdf5"))

    architectures = [name for name in names if name.lower().endswith(".json")]
    weights_of: dict[str, str] = {}
    for architecture in architectures:  # named after it first, so a loose file cannot take another's weights
        stem = architecture[: -len(".json")]
        named = [f for f in (f"{stem}.weights.h5", f"{stem}.h5") if f in names and f not in weights_of.values()]
        if named:
            weights_of[architecture] = named[0]
    for architecture in architectures:
        loose = [f for f in names if is_h5(f) and f not in weights_of.values()]
        weights_only = [f for f in loose if f.endswith(".weights.h5")]
        pick = weights_only if len(weights_only) == 1 else loose if len(loose) == 1 else []
        if architecture not in weights_of and pick:
            weights_of[architecture] = pick[0]
    taken = set(weights_of.values())
    return [(name, weights_of[name]) if name in weights_of else (name,) for name in names if name not in taken]


def read_model(path: Path, output: str | int | None = None) -> ModelFile:
    """The model at ``path`` with its ``output`` (name or index; default the first) as its only output.

    Raises InputError with one sentence naming the file by its name, never its folders (an upload's lie in
    the app's cache), also for what the operating system refuses (a name too long, no permission).
    """
    name = echo(path.name or str(path))
    try:
        return _read_model(path, name, output)
    except OSError as error:
        raise unusable(name, error) from None


def _read_model(path: Path, name: str, output: str | int | None) -> ModelFile:
    if not check_path(path, name).exists():
        raise InputError(f"'{name}' does not exist.")
    if path.is_dir():
        inner = _model_inside(path, name)
        return _load_saved_model(inner, name, output) if inner.is_dir() else read_model(inner, output)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return read_model(unpack_zip(path, name), output)
    formats = {".keras": "Keras (.keras)", ".h5": "Keras HDF5 (.h5)", ".hdf5": "Keras HDF5 (.h5)", ".json": "architecture JSON + weights"}
    if suffix in formats:
        model = _load_json(path) if suffix == ".json" else _load_keras_file(path)
        chosen_model, names, chosen = _one_output(model, output, name)
        return ModelFile(chosen_model, formats[suffix], names, chosen)
    raise InputError(f"'{name}' is not a model format this app reads; {FORMATS_SENTENCE}.")


def file_version(path: str | Path) -> str:
    """A token that changes when the model at ``path`` is overwritten, so caches keyed by path go stale with it."""
    path = Path(path)
    try:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        stats = [p.stat() for p in files]
    except OSError:
        return ""
    return f"{len(stats)}-{sum(s.st_size for s in stats)}-{max((s.st_mtime_ns for s in stats), default=0)}"
