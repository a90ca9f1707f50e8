"""Small models with known answers, wrapped the way the engine expects."""

import keras
import numpy as np

import explainers as ex


def wrap(model: keras.Model, classes: int | None = None, name: str = "tiny") -> ex.LoadedModel:
    height, width = model.input_shape[1:3]
    units = classes or int(model.output_shape[-1])
    return ex.LoadedModel(
        spec=name, display_name=name, model=model, input_size=(height, width),
        class_names=[f"class {i}" for i in range(units)], preprocessing="none",
    )


def random_images(count: int, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def gap_dense_model(size: int = 16, classes: int = 4, activation: str = "softmax", seed: int = 1) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(classes, activation=activation, name="head")(x)
    return keras.Model(inputs, outputs)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])
