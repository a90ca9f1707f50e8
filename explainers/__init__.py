"""The attribution engine: models, images, layers and attribution methods. No Streamlit here.

    import explainers as ex
    m = ex.load_model("efficientnet_lite0")
    image = ex.decode_image("cat.jpg")
    probabilities = m.predict([image])
    maps = ex.explain(m, [image], method="gradcam")        # (1, H, W) in [0, 1]

The package is laid out by concern: ``inputs`` (images, uploads, server paths),
``models`` (loading and describing classifiers), ``runtime`` (compiled passes,
targets, caches), ``methods`` (one registration per attribution method),
``scores`` (faithfulness, sanity, agreement), ``datasets`` (a labelled folder
through a model) and ``reports`` (pictures and files for people).
"""

from explainers.runtime.quiet import native_stderr_silenced_under_dash_m

with native_stderr_silenced_under_dash_m() as silenced:
    import tensorflow as _tf

    if silenced:  # probe CUDA now, so its complaints are silenced too
        _tf.config.list_physical_devices()

from explainers import datasets, inputs, methods, models, reports, runtime, scores, settings  # noqa: E402
from explainers.attribution import RESULTS, Attribution, attribute, explain, layer_grid, unavailable_methods  # noqa: E402
from explainers.errors import InputError, ModelUnavailableError  # noqa: E402
from explainers.features import FeatureMaps, feature_maps  # noqa: E402
from explainers.inputs import data_roots, images, samples, uploads  # noqa: E402
from explainers.inputs.images import content_digest, decode_image  # noqa: E402
from explainers.inputs.samples import sample_images  # noqa: E402
from explainers.learned import channel_visualization, class_visualization  # noqa: E402
from explainers.methods import (
    REGISTRY,  # noqa: E402
    method_names,  # noqa: E402
)
from explainers.models import (  # noqa: E402
    DEFAULT_MODEL,
    DIGITS_MODEL,
    SHORTCUT_MODEL,
    LoadedModel,
    available_models,
    load_model,
)
from explainers.models.labels import parse_labels, read_labels  # noqa: E402
from explainers.models.layers import LayerInfo, conv_layer_names, spatial_layers  # noqa: E402
from explainers.models.preprocessing import PRESETS  # noqa: E402
from explainers.runtime.device import describe_device  # noqa: E402
from explainers.runtime.targets import LEAST, TOP1  # noqa: E402

__all__ = [
    "DEFAULT_MODEL",
    "DIGITS_MODEL",
    "LEAST",
    "PRESETS",
    "REGISTRY",
    "RESULTS",
    "SHORTCUT_MODEL",
    "TOP1",
    "Attribution",
    "FeatureMaps",
    "InputError",
    "LayerInfo",
    "LoadedModel",
    "ModelUnavailableError",
    "attribute",
    "available_models",
    "channel_visualization",
    "class_visualization",
    "content_digest",
    "conv_layer_names",
    "data_roots",
    "datasets",
    "decode_image",
    "describe_device",
    "explain",
    "feature_maps",
    "images",
    "inputs",
    "layer_grid",
    "load_model",
    "method_names",
    "methods",
    "models",
    "parse_labels",
    "read_labels",
    "reports",
    "runtime",
    "sample_images",
    "samples",
    "scores",
    "settings",
    "spatial_layers",
    "unavailable_methods",
    "uploads",
]
