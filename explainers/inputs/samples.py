"""What ships in ``assets/``: sample photos (see ``assets/CREDITS.md``) and the digits demo."""

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
