"""Which device TensorFlow computes on, in one line for the sidebar."""

from __future__ import annotations

import tensorflow as tf


def describe_device() -> str:
    """E.g. ``"GPU: NVIDIA A100 (TensorFlow 2.21.0)"`` or ``"CPU, no GPU found (TensorFlow 2.21.0)"``."""
    gpus = tf.config.list_physical_devices("GPU")
    version = f"TensorFlow {tf.__version__}"
    if not gpus:
        return f"CPU, no GPU found ({version})"
    names = []
    for gpu in gpus:
        try:
            names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except (ValueError, RuntimeError):
            names.append(gpu.name)
    return f"GPU: {', '.join(names)} ({version})"
