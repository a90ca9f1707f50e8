"""The attribution engine: models, images, layers and attribution methods. No Streamlit here.

    import explainers as ex
    m = ex.load_model("efficientnet_lite0")
    image = ex.decode_image("cat.jpg")
    probabilities = m.predict([image])
    maps = ex.explain(m, [image], method="gradcam")        # (1, H, W) in [0, 1]
"""


from .quiet import native_stderr_silenced_under_dash_m

with native_stderr_silenced_under_dash_m() as silenced:
    import tensorflow as _tf

    if silenced:  # probe CUDA now, so its complaints are silenced too
        _tf.config.list_physical_devices()

from . import comparison, data_roots, dataset_report, datasets, html_report, metrics, model_files, settings, uploads
from .attribution import RESULTS, Attribution, attribute, explain, layer_grid, unavailable_methods
from .device import describe_device
from .errors import InputError, ModelUnavailableError
from .features import FeatureMaps, feature_maps
from .images import content_digest, decode_image
from .labels import parse_labels, read_labels
from .layers import LayerInfo, conv_layer_names, spatial_layers
from .models import DEFAULT_MODEL, DIGITS_MODEL, LoadedModel, available_models, load_model
from .preprocessing import PRESETS
from .methods import REGISTRY, method_names as methods
from . import methods_propagation, methods_extra  # noqa: F401  (their registrations)
from .samples import sample_images
from .targets import LEAST, TOP1

__all__ = [
    "REGISTRY",
    "LEAST",
    "TOP1",
    "RESULTS",
    "Attribution",
    "attribute",
    "explain",
    "FeatureMaps",
    "feature_maps",
    "layer_grid",
    "unavailable_methods",
    "methods",
    "metrics",
    "data_roots",
    "settings",
    "uploads",
    "parse_labels",
    "read_labels",
    "DEFAULT_MODEL",
    "DIGITS_MODEL",
    "PRESETS",
    "InputError",
    "LayerInfo",
    "LoadedModel",
    "ModelUnavailableError",
    "available_models",
    "content_digest",
    "conv_layer_names",
    "decode_image",
    "describe_device",
    "load_model",
    "sample_images",
    "spatial_layers",
]
