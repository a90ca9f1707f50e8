"""The Keras model zoo for online users: which constructor, weights file, input size and preprocessing.

Weights are looked for in the Keras cache (``$KERAS_HOME/models`` or
``~/.keras/models``), the same place ``keras.applications`` keeps them, so a
user can copy a file there by hand on an offline machine. When a file is
missing we download it ourselves with a deadline, because Keras's own download
has no timeout and would hang the app on a network that drops packets.
"""

from __future__ import annotations

import concurrent.futures
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import keras

from explainers.errors import ModelUnavailableError

DOWNLOAD_DEADLINE_SECONDS = 60.0
_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class ZooEntry:
    name: str  # as in keras.applications
    weights_file: str
    weights_url: str
    input_size: tuple[int, int]
    preprocessing: str  # a key of preprocessing.PRESETS
    default_layers: tuple[str, ...] = field(default=())

    def build(self, weights: str | None) -> keras.Model:
        return getattr(keras.applications, self.name)(weights=weights)


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "MobileNetV2",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
            _KERAS_APPS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
            (224, 224),
            "tf",
            ("block_2_expand", "block_9_expand", "Conv_1"),
        ),
        ZooEntry(
            "VGG16",
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            _KERAS_APPS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
            (224, 224),
            "caffe",
            ("block2_conv2", "block4_conv3", "block5_conv3"),
        ),
        ZooEntry(
            "VGG19",
            "vgg19_weights_tf_dim_ordering_tf_kernels.h5",
            _KERAS_APPS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
            (224, 224),
            "caffe",
            ("block2_conv2", "block4_conv4", "block5_conv4"),
        ),
        ZooEntry(
            "ResNet50",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            _KERAS_APPS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
            (224, 224),
            "caffe",
            ("conv2_block3_out", "conv4_block6_out", "conv5_block3_out"),
        ),
        ZooEntry(
            "InceptionV3",
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            _KERAS_APPS + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
            (299, 299),
            "tf",
            ("mixed2", "mixed7", "mixed10"),
        ),
        ZooEntry(
            "EfficientNetB0",
            "efficientnetb0.h5",
            "https://storage.googleapis.com/keras-applications/efficientnetb0.h5",
            (224, 224),
            "none",  # EfficientNetB0 rescales and normalises inside the model
            ("block2b_expand_conv", "block5c_expand_conv", "top_conv"),
        ),
    )
}


def keras_models_dir() -> Path:
    """The folder ``keras.applications`` caches weights in, read from the environment now."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _download(url: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=20) as response:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)


def fetch_weights(entry: ZooEntry, deadline: float = DOWNLOAD_DEADLINE_SECONDS) -> Path:
    """Path of ``entry``'s weights in the Keras cache, downloading them first if missing.

    Raises ModelUnavailableError (one sentence naming the file and folder) when
    the download fails or does not finish within ``deadline`` seconds.
    """
    target = keras_models_dir() / entry.weights_file
    if target.exists():
        return target
    # A worker thread bounds the whole download, name resolution included, which
    # socket timeouts alone do not cover; an abandoned worker only leaves a .part file.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(_download, entry.weights_url, target)
    pool.shutdown(wait=False)
    try:
        future.result(timeout=deadline)
    except (OSError, ValueError, concurrent.futures.TimeoutError) as error:  # no network, a refused or broken download
        timed_out = isinstance(error, concurrent.futures.TimeoutError)
        reason = f"no answer within {deadline:.0f} s" if timed_out else str(getattr(error, "reason", error))
        raise ModelUnavailableError(
            f"{entry.name} needs its ImageNet weights '{entry.weights_file}', which are not in "
            f"{target.parent} and could not be downloaded ({reason}); copy the file there to use {entry.name} offline."
        ) from None
    return target
