"""What a first visit shows before the visitor chooses: read by the start-up frame (which imports no engine), the
sidebar and the warm-up alike."""

DEFAULT_IMAGES = ("cat_chelsea", "coffee")  # bundled samples, by name
DEFAULT_MODEL_NAME = "EfficientNet-Lite0 (embedded)"  # its label in the model picker
