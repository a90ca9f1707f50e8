"""The attribution engine: models, images, layers and (soon) attribution methods. No Streamlit here.

    import explainers as ex
    m = ex.load_model("efficientnet_lite0")
    probabilities = m.predict([ex.decode_image("cat.jpg")])
"""


from .device import describe_device
from .errors import InputError, ModelUnavailableError
from .images import content_digest, decode_image
from .layers import LayerInfo, conv_layer_names, spatial_layers
from .models import DEFAULT_MODEL, LoadedModel, available_models, load_model
from .preprocessing import PRESETS
from .samples import sample_images

__all__ = [
    "DEFAULT_MODEL",
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
