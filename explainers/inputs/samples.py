"""What ships in ``assets/``: sample photos (see ``assets/CREDITS.md``), the digits demo and the known-shortcut demo."""

from __future__ import annotations

from pathlib import Path

from explainers.inputs.images import IMAGE_SUFFIXES

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "assets" / "samples"


def sample_images() -> dict[str, Path]:
    """``{display name: path}`` for every bundled sample photo, sorted by name."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


DIGITS_DIR = SAMPLES_DIR.parent / "digits"
DIGITS_MODEL_FILE = DIGITS_DIR / "digits_cnn.keras"
DIGITS_TEST_FOLDER = DIGITS_DIR / "test"  # 100 held-out MNIST digits per class, one folder per digit

# The known-shortcut demo (tools/build_shortcut_demo.py; assets/shortcut/README.md): the same held-out digits, most
# 7s carrying a small square in the top-left corner, and a CNN that learnt to read the square as "7".
SHORTCUT_DIR = SAMPLES_DIR.parent / "shortcut"
SHORTCUT_MODEL_FILE = SHORTCUT_DIR / "shortcut_cnn.keras"
SHORTCUT_TEST_FOLDER = SHORTCUT_DIR / "test"  # 100 per class, one folder per digit; which carry the mark: the manifest
SHORTCUT_MANIFEST = SHORTCUT_DIR / "manifest.json"  # the mark's box and class, the marked test files, measured reliance
SHORTCUT_CONCEPTS_FOLDER = SHORTCUT_DIR / "concepts"  # TCAV concept folders: mark/ (the shortcut), stripes/ (a control)
SHORTCUT_RANDOM_FOLDER = SHORTCUT_DIR / "random"  # 100 unmarked digits, 10 per class, none in test/ or training
