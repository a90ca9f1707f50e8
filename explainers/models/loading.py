"""Load a classifier by name or path into one object the rest of the engine works with."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from explainers.errors import InputError
from explainers.inputs.images import ImageLike, resize_batch
from explainers.inputs.samples import DIGITS_MODEL_FILE, SHORTCUT_MODEL_FILE
from explainers.models import efficientnet_lite, zoo
from explainers.models.files import read_model
from explainers.models.labels import check_label_count, imagenet_class_names, read_labels
from explainers.models.layers import LayerInfo, spatial_layers, spread_over_depth
from explainers.models.preprocessing import PRESETS, preprocess
from explainers.runtime.passes import Runtime
from explainers.runtime.probe import output_kind
from explainers.runtime.targets import TOP1, probabilities_from_logits

DEFAULT_MODEL = "efficientnet_lite0"
DIGITS_MODEL = "digits_cnn"
SHORTCUT_MODEL = "shortcut_cnn"
KERAS_PREFIX = "keras:"


@dataclass(eq=False)
class LoadedModel:
    """A Keras classifier with everything needed to feed it and name its outputs.

    ``network_fingerprint`` is a hash of the architecture, the weights and the chosen output: what
    compiled passes and their timings depend on. ``fingerprint`` adds what the network receives
    and how its scores are read (preprocessing, channels, input size, output kind): every cache of
    results keys on it, so two sessions with the same model share results, while a retrained model
    or the same network under another preprocessing never does.
    """

    spec: str  # what load_model was called with: "efficientnet_lite0", "keras:VGG16", a path
    display_name: str
    model: keras.Model
    input_size: tuple[int, int]  # (H, W)
    class_names: list[str]
    preprocessing: str  # a key of preprocessing.PRESETS
    default_layers: tuple[str, ...] = ()
    network_fingerprint: str = field(default="")
    channels: int = 3  # 1 for a grayscale model: images are converted to luma
    output_kind: str = ""  # softmax, sigmoid or linear: how the model's scores become probabilities
    format: str = "Keras"
    output_names: tuple[str, ...] = ()  # all of the file's outputs; ``model`` returns the chosen one
    labels_source: str = ""  # where class_names came from, for the model card

    def __post_init__(self) -> None:
        if not self.network_fingerprint:
            self.network_fingerprint = weights_fingerprint(self.model)
        if not self.default_layers:
            self.default_layers = tuple(spread_over_depth(self.layers))
        if not self.output_kind:
            self.output_kind = output_kind(self.model)

    @property
    def fingerprint(self) -> str:
        """The key of every cached result: the network and everything that shapes what it receives and returns.

        Derived on each read, so a variant (``dataclasses.replace``) can never carry a stale one.
        """
        return _fingerprint(self.network_fingerprint, self.preprocessing, self.channels, self.input_size,
                            self.output_kind)

    @functools.cached_property
    def layers(self) -> list[LayerInfo]:
        """Layers with spatial outputs, in graph order, nested models included."""
        return spatial_layers(self.model)

    @functools.cached_property
    def runtime(self) -> Runtime:
        """Compiled passes over this model, built on first use, and their measured cost (``pass_seconds()``)."""
        return Runtime(self.model, self.output_kind, self.network_fingerprint)

    def layer_label(self, path: str) -> str:
        """What a layer picker shows for ``path``: a transformer block's tokens as "block N (tokens → 8×8) · path"."""
        return next((info.label for info in self.layers if info.path == path), path)

    @property
    def default_cam_layer(self) -> str | None:
        """The last spatial layer that is not pooling: where Grad-CAM looks by default."""
        candidates = [info.path for info in self.layers if "Pooling" not in info.class_name]
        return candidates[-1] if candidates else None

    @property
    def cam_unavailable(self) -> str | None:
        """Why CAM methods cannot run on this model, or None when they can."""
        if self.format == "SavedModel":
            return "A SavedModel exposes no inner layers, so CAM methods need this model saved as .keras or .h5."
        if not self.layers:
            return "This model has no layer with a spatial (height x width) output, so CAM methods have nothing to look at."
        return None

    @property
    def conv_layers(self) -> list[str]:
        """Ordered names of the layers a CAM method can use (``"nested/inner"`` inside nested models)."""
        return [info.path for info in self.layers]

    def resize(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 at the model's input size."""
        return resize_batch(images, self.input_size)

    def variant(self, class_names: Sequence[str] | None = None, labels_source: str = "", preprocessing: str | None = None) -> LoadedModel:
        """The same network with other class names or preprocessing, sharing its compiled passes.

        Raises InputError when the names do not fit the outputs or the preset is unknown.
        """
        changes: dict = {}
        if class_names is not None:
            check_label_count(list(class_names), len(self.class_names), labels_source or "the labels")
            changes.update(class_names=list(class_names), labels_source=labels_source)
        if preprocessing is not None:
            _check_preset(preprocessing)
            changes["preprocessing"] = preprocessing
        twin = dataclasses.replace(self, **changes)
        # Passes depend on the network only: every variant shares one runtime (cheap until a pass is traced),
        # and the layer list when it was built already.
        twin.__dict__["runtime"] = self.runtime
        twin.__dict__.update({k: v for k, v in self.__dict__.items() if k == "layers"})
        return twin

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 pixels at the input size to the model's float32 input."""
        return preprocess(pixels, self.preprocessing, self.channels)

    def preprocess(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Images (PIL or uint8 arrays, any size) to a model-ready float32 batch."""
        return self.to_input(self.resize(images))

    def predict(self, images: Sequence[ImageLike], batch_size: int = 32) -> np.ndarray:
        """``(N, classes)`` class probabilities, from the same compiled forward pass the methods use."""
        if len(images) == 0:
            return np.zeros((0, len(self.class_names)), np.float32)
        x = self.preprocess(images)
        logits = self.runtime.forward(x, np.full(len(x), TOP1, np.int32), batch_size=batch_size).logits
        return probabilities_from_logits(logits, self.output_kind)

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Per image, the ``k`` most probable classes as ``(index, name, probability)``."""
        order = np.argsort(-probabilities, axis=-1)[:, :k]
        return [[(int(c), self.class_names[c], float(row[c])) for c in top] for top, row in zip(order, probabilities)]


@functools.lru_cache(maxsize=256)
def _fingerprint(network: str, preprocessing: str, channels: int, input_size: tuple[int, int], output_kind: str) -> str:
    described = f"{network}|preprocessing {preprocessing}|channels {channels}|input {input_size}|output {output_kind}"
    return hashlib.blake2b(described.encode(), digest_size=16).hexdigest()


def weights_fingerprint(model: keras.Model, salt: str = "") -> str:
    """A content hash of the architecture's weight shapes and values.

    ``salt`` tells apart functions sharing all their weights: two outputs of one
    SavedModel, whose variables are loaded whole whichever output is chosen.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(salt.encode())
    # The architecture too: two networks sharing weights but not activations must not share maps.
    digest.update("|".join(_layer_signature(layer) for layer in _leaf_layers(model)).encode())
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


_SHAPING_CONFIG = ("activation", "max_value", "negative_slope", "threshold", "axis", "strides", "padding", "pool_size")


def _layer_signature(layer) -> str:
    """A layer's kind and the settings that change what it computes, names left out (they vary between builds)."""
    try:
        config = layer.get_config()
    except (NotImplementedError, TypeError, ValueError):  # a wrapped SavedModel function has no config
        config = {}
    return f"{type(layer).__name__}{[(k, config[k]) for k in _SHAPING_CONFIG if k in config]}"


def available_models() -> dict[str, str]:
    """``{spec: label}`` for the model picker: the embedded default first, then the zoo."""
    models = {DEFAULT_MODEL: "EfficientNet-Lite0 (embedded)", DIGITS_MODEL: "Digits CNN (bundled demo, MNIST)",
              SHORTCUT_MODEL: "Shortcut CNN (bundled demo, MNIST with a planted mark)"}
    models.update({f"{KERAS_PREFIX}{name}": f"{name} (Keras zoo)" for name in zoo.ZOO})
    return models


def _load_embedded() -> LoadedModel:
    return LoadedModel(
        spec=DEFAULT_MODEL,
        display_name="EfficientNet-Lite0",
        model=efficientnet_lite.load_efficientnet_lite0(),
        input_size=efficientnet_lite.INPUT_SIZE,
        class_names=list(imagenet_class_names()),
        preprocessing="efficientnet_lite",
        default_layers=("block_2_expand", "block_9_expand", "head_conv"),
    )


def _load_zoo(name: str) -> LoadedModel:
    entry = zoo.ZOO.get(name)
    if entry is None:
        raise InputError(f"'{name}' is not in the model zoo; choose one of {', '.join(zoo.ZOO)}.")
    return LoadedModel(
        spec=f"{KERAS_PREFIX}{name}",
        display_name=name,
        model=entry.build(str(zoo.fetch_weights(entry))),
        input_size=entry.input_size,
        class_names=list(imagenet_class_names()),
        preprocessing=entry.preprocessing,
        default_layers=entry.default_layers,
    )


def detect_preprocessing(model: keras.Model) -> str | None:
    """``"none"`` when the model rescales or normalises its own input (a Rescaling or
    Normalization layer before any weighted layer), else None: the user must say."""
    for layer in _leaf_layers(model):
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            return "none"
        if layer.weights:
            return None
    return None


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _image_input(model: keras.Model, name: str) -> tuple[tuple[int, int], int]:
    """(H, W) and channels of the model's one image input, or InputError saying why it is not one."""
    if len(model.inputs) != 1:
        raise InputError(f"'{name}' takes {len(model.inputs)} inputs; this app explains models with one image input.")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4:
        raise InputError(f"'{name}' takes inputs of shape {shape[1:]}, not images (height, width, channels).")
    height, width, channels = shape[1:]
    if channels not in (1, 3):
        raise InputError(
            f"'{name}' expects images with {channels} channels (channels-last); this app feeds RGB (3) or grayscale (1) images."
        )
    return (height or 224, width or 224), int(channels)


def _default_class_names(model: keras.Model, name: str) -> list[str]:
    units = model.outputs[0].shape
    if len(units) != 2:
        raise InputError(f"'{name}' outputs shape {tuple(units[1:])}; this app explains classifiers with one score per class.")
    classes = max(int(units[-1]), 2)  # a single sigmoid unit is a binary classifier
    return list(imagenet_class_names()) if classes == 1000 else [f"class {i}" for i in range(classes)]


def _with_labels(model: LoadedModel, labels: str | Path | Sequence[str] | None) -> LoadedModel:
    if labels is None:
        return model
    if isinstance(labels, (str, Path)):
        return model.variant(read_labels(labels), Path(labels).name)
    return model.variant([str(n) for n in labels], "the labels given")


def _load_file(path: Path, preprocessing: str | None, output: str | int | None) -> LoadedModel:
    loaded = read_model(path, output)
    name = path.name or str(path)
    input_size, channels = _image_input(loaded.model, name)
    class_names = _default_class_names(loaded.model, name)
    return LoadedModel(
        spec=str(path),
        display_name=name,
        model=loaded.model,
        input_size=input_size,
        class_names=class_names,
        preprocessing=preprocessing or detect_preprocessing(loaded.model) or "unit",
        channels=channels,
        output_kind=loaded.probability_kind or "",
        format=loaded.format,
        output_names=tuple(loaded.output_names),
        labels_source="ImageNet (1000 outputs)" if len(class_names) == 1000 else "",
        network_fingerprint=weights_fingerprint(loaded.model, salt=loaded.chosen if len(loaded.output_names) > 1 else ""),
    )


def _check_preset(preprocessing: str) -> None:
    if preprocessing not in PRESETS:
        raise InputError(f"'{preprocessing}' is not a preprocessing preset; choose one of {', '.join(PRESETS)}.")


def load_model(
    spec: str = DEFAULT_MODEL,
    preprocessing: str | None = None,
    labels: str | Path | Sequence[str] | None = None,
    output: str | int | None = None,
) -> LoadedModel:
    """Load ``"efficientnet_lite0"`` (embedded, offline), ``"keras:<Application>"`` or a model path.

    A path may be a ``.keras`` or ``.h5`` file, an architecture ``.json`` with its
    weights beside it, a SavedModel folder, or a ZIP of one. For model files:
    ``preprocessing`` is a preset name (default: ``"none"`` when the model rescales
    its own input, else ``"unit"``); ``labels`` a labels file or a list of names;
    ``output`` the output to explain (name or index) when there are several. Zoo
    models know their own preprocessing and ImageNet labels.
    Raises InputError (ModelUnavailableError when weights cannot be fetched).
    """
    if preprocessing is not None:
        _check_preset(preprocessing)
    if spec == DEFAULT_MODEL:
        return _load_embedded()
    if spec == DIGITS_MODEL:
        digits = _load_file(DIGITS_MODEL_FILE, None, None).variant([str(d) for d in range(10)], "digits 0-9")
        return dataclasses.replace(digits, spec=DIGITS_MODEL, display_name="Digits CNN", format="Keras (.keras), bundled")
    if spec == SHORTCUT_MODEL:
        shortcut = _load_file(SHORTCUT_MODEL_FILE, None, None).variant([str(d) for d in range(10)], "digits 0-9")
        return dataclasses.replace(shortcut, spec=SHORTCUT_MODEL, display_name="Shortcut CNN",
                                   format="Keras (.keras), bundled")
    if spec.startswith(KERAS_PREFIX):
        return _load_zoo(spec[len(KERAS_PREFIX) :])
    return _with_labels(_load_file(Path(spec), preprocessing, output), labels)
