"""Load a classifier by name or path into one object the rest of the engine works with."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from . import efficientnet_lite, zoo
from .errors import InputError
from .images import ImageLike, resize_batch
from .labels import imagenet_class_names
from .layers import LayerInfo, spatial_layers, spread_over_depth
from .preprocessing import PRESETS, preprocess
from .runtime import Runtime

DEFAULT_MODEL = "efficientnet_lite0"
KERAS_PREFIX = "keras:"


@dataclass(eq=False)
class LoadedModel:
    """A Keras classifier with everything needed to feed it and name its outputs.

    ``fingerprint`` is a hash of the weights: caches key on it, so two sessions
    with the same model share results and a retrained model never does.
    """

    spec: str  # what load_model was called with: "efficientnet_lite0", "keras:VGG16", a path
    display_name: str
    model: keras.Model
    input_size: tuple[int, int]  # (H, W)
    class_names: list[str]
    preprocessing: str  # a key of preprocessing.PRESETS
    default_layers: tuple[str, ...] = ()
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = weights_fingerprint(self.model)
        if not self.default_layers:
            self.default_layers = tuple(spread_over_depth(self.layers))

    @functools.cached_property
    def layers(self) -> list[LayerInfo]:
        """Layers with spatial outputs, in graph order, nested models included."""
        return spatial_layers(self.model)

    @functools.cached_property
    def runtime(self) -> Runtime:
        """Compiled passes over this model, built on first use."""
        return Runtime(self.model)

    @property
    def default_cam_layer(self) -> str | None:
        """The last spatial layer that is not pooling: where Grad-CAM looks by default."""
        candidates = [info.path for info in self.layers if "Pooling" not in info.class_name]
        return candidates[-1] if candidates else None

    @property
    def conv_layers(self) -> list[str]:
        """Ordered names of the layers a CAM method can use (``"nested/inner"`` inside nested models)."""
        return [info.path for info in self.layers]

    def resize(self, images: Sequence[ImageLike]) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 at the model's input size."""
        return resize_batch(images, self.input_size)

    def preprocess(self, images: Sequence[ImageLike]) -> np.ndarray:
        """Images (PIL or uint8 arrays, any size) to a model-ready float32 batch."""
        return preprocess(self.resize(images), self.preprocessing)

    def predict(self, images: Sequence[ImageLike], batch_size: int = 32) -> np.ndarray:
        """``(N, classes)`` class probabilities."""
        batch = self.preprocess(images)
        outputs = [
            keras.ops.convert_to_numpy(self.model(batch[i : i + batch_size], training=False))
            for i in range(0, len(batch), batch_size)
        ]
        return np.concatenate(outputs, axis=0) if outputs else np.zeros((0, len(self.class_names)), np.float32)

    def top_k(self, probabilities: np.ndarray, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Per image, the ``k`` most probable classes as ``(index, name, probability)``."""
        order = np.argsort(-probabilities, axis=-1)[:, :k]
        return [[(int(c), self.class_names[c], float(row[c])) for c in top] for top, row in zip(order, probabilities)]


def weights_fingerprint(model: keras.Model) -> str:
    """A content hash of the architecture's weight shapes and values."""
    digest = hashlib.blake2b(digest_size=16)
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def available_models() -> dict[str, str]:
    """``{spec: label}`` for the model picker: the embedded default first, then the zoo."""
    models = {DEFAULT_MODEL: "EfficientNet-Lite0 (embedded)"}
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


def _load_file(path: Path, preprocessing: str) -> LoadedModel:
    if not path.exists():
        raise InputError(f"'{path}' does not exist.")
    if path.suffix not in (".keras", ".h5"):
        raise InputError(f"'{path.name}' is not a model file this app reads (.keras or .h5).")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad file; all mean the same to a user
        raise InputError(f"'{path.name}' could not be loaded as a Keras model: {str(error).splitlines()[0]}") from None
    height, width = model.input_shape[1:3]
    classes = int(model.output_shape[-1])
    return LoadedModel(
        spec=str(path),
        display_name=path.name,
        model=model,
        input_size=(height or 224, width or 224),
        class_names=[f"class {i}" for i in range(classes)] if classes != 1000 else list(imagenet_class_names()),
        preprocessing=preprocessing,
    )


def load_model(spec: str = DEFAULT_MODEL, preprocessing: str = "unit") -> LoadedModel:
    """Load ``"efficientnet_lite0"`` (embedded, offline), ``"keras:<Application>"`` or a model file path.

    ``preprocessing`` applies to model files only (zoo models know their own).
    Raises InputError (ModelUnavailableError when weights cannot be fetched).
    """
    if preprocessing not in PRESETS:
        raise InputError(f"'{preprocessing}' is not a preprocessing preset; choose one of {', '.join(PRESETS)}.")
    if spec == DEFAULT_MODEL:
        return _load_embedded()
    if spec.startswith(KERAS_PREFIX):
        return _load_zoo(spec[len(KERAS_PREFIX) :])
    return _load_file(Path(spec), preprocessing)
