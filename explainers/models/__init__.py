"""Loading classifiers (embedded, zoo, files) into one LoadedModel, with their labels and preprocessing."""

from explainers.models import files, zoo  # noqa: F401
from explainers.models.loading import (
    DEFAULT_MODEL,
    DIGITS_MODEL,
    KERAS_PREFIX,
    SHORTCUT_MODEL,
    LoadedModel,
    available_models,
    detect_preprocessing,
    load_model,
    weights_fingerprint,
)

__all__ = ["DEFAULT_MODEL", "DIGITS_MODEL", "KERAS_PREFIX", "LoadedModel", "SHORTCUT_MODEL", "available_models",
           "detect_preprocessing", "files", "load_model", "weights_fingerprint", "zoo"]
