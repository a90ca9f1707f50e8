"""The sample photos that ship in ``assets/samples`` (see ``assets/CREDITS.md``)."""

from __future__ import annotations

from pathlib import Path

from .images import IMAGE_SUFFIXES

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"


def sample_images() -> dict[str, Path]:
    """``{display name: path}`` for every bundled sample photo, sorted by name."""
    return {p.stem: p for p in sorted(SAMPLES_DIR.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
