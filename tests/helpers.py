"""Small models with known answers, wrapped the way the engine expects, and other pieces the tests share."""

import io
import zipfile

import keras
import numpy as np

import explainers as ex
from explainers.methods.attention import reads_attention
from explainers.methods.registry import REGISTRY

# Every method that runs on a convolutional network: all but those reading a Vision Transformer's attention.
CNN_METHODS = [name for name, method in REGISTRY.items() if not reads_attention(method)]


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


def small_base(size: int = 32, channels: int = 3, name: str = "base") -> keras.Model:
    """A two-block CNN used as the 'pretrained' base of a transfer model."""
    inputs = keras.Input((size, size, channels))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(inputs)
    x = keras.layers.MaxPooling2D(name="pool_a")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_b")(x)
    return keras.Model(inputs, x, name=name)


def transfer_model(size: int = 32, classes: int = 3, activation: str = "softmax", seed: int = 2,
                   channels: int = 3) -> keras.Model:
    """``Sequential([base, GlobalAveragePooling2D(), Dense(classes)])``: the usual fine-tuning shape."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((size, size, channels)), small_base(size, channels), keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(classes, activation=activation, name="head")],
        name="transfer",
    )


def square_images(count: int, size: int = 32, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Gray noise with one bright square, on the left half (class 0) or the right half (class 1)."""
    rng = np.random.default_rng(seed)
    images, labels = [], rng.integers(0, 2, count)
    for label in labels:
        image = rng.integers(40, 90, (size, size, 3)).astype(np.uint8)
        side = size // 4
        top = int(rng.integers(0, size - side))
        left = int(rng.integers(0, size // 2 - side)) + (size // 2 if label else 0)
        image[top : top + side, left : left + side] = 230
        images.append(image)
    return images, labels


def trained_binary_model(size: int = 32, seed: int = 3) -> keras.Model:
    """A transfer model with one sigmoid unit, trained until it tells left squares from right ones."""
    model = transfer_model(size, classes=1, activation="sigmoid", seed=seed)
    images, labels = square_images(256, size, seed)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(np.stack(images) / 255.0, labels.astype(np.float32), epochs=15, batch_size=32, verbose=0)
    return model


def two_heads_model() -> keras.Model:
    """One image input, two outputs: ``species`` (4-way softmax) and ``healthy`` (one sigmoid unit)."""
    x = keras.Input((16, 16, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x))
    heads = [keras.layers.Dense(4, activation="softmax", name="species")(features),
             keras.layers.Dense(1, activation="sigmoid", name="healthy")(features)]
    return keras.Model(x, heads)


def open_link(params: dict, page: str, timeout: float = 300):
    """The dashboard as a link with ``params`` opens it on ``page``: an AppTest after its first run, no exception."""
    from streamlit.testing.v1 import AppTest

    from conftest import PROJECT_ROOT

    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=timeout)
    at.query_params.update(params)
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def open_own_model(model_file, page: str):
    """The dashboard with the model file ``model_file`` typed in as the sidebar's own model, switched to ``page``;
    the file's folder must be among the data roots."""
    from streamlit.testing.v1 import AppTest

    from conftest import PROJECT_ROOT

    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard.py"), default_timeout=300)
    at.session_state["model_spec"] = "own"
    at.run()
    at.sidebar.text_input(key="own_model_path").set_value(str(model_file)).run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def record_gradient_batches(runtime, monkeypatch) -> list[tuple[bool, int]]:
    """What ``runtime.gradients`` sends from now on, as (backward, batch length) per batch: the passes a cost
    model must count."""
    sent, original = [], runtime.gradients

    def spy(x, targets, layers=(), *, backward=True, batch_size=16, **kwargs):
        sent.extend((backward, min(batch_size, len(x) - start)) for start in range(0, len(x), batch_size))
        return original(x, targets, layers, backward=backward, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(runtime, "gradients", spy)
    return sent


def two_conv_model(size: int, channels: int, seed: int, name: str):
    """Rescaling, conv_a (4 channels), conv_b (``channels``), global average pooling and a linear 3-class ``head``:
    three weighted layers, scores equal to outputs. Wrapped, built with ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(x)
    x = keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return wrap(keras.Model(inputs, keras.layers.Dense(3, name="head")(x)), name=name)


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    """A ZIP archive (deflated) holding ``entries``, name -> content, as an upload's bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()
