"""The completeness gap of the methods that report one, as the pages show it: a table, and advice above the tolerance.

What the gap is: ``explainers.methods.completeness``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from explainers.attribution import Attribution
from explainers.methods.completeness import COMPLETENESS_TOLERANCE, SCORE_FLOOR, Completeness
from explainers.methods.registry import REGISTRY

ATTRIBUTION_SUM = "sum of the map"
SCORE_CHANGE = "f(x) − f(x0)"
DELTA = "delta"
GAP = "completeness gap"
GAP_HELP = (f"|sum of the map − (f(x) − f(x0))| / |f(x) − f(x0)|, where f is the explained class's pre-softmax "
            f"score, x the image and x0 the method's baseline (a change under {SCORE_FLOOR:g} counts as "
            f"{SCORE_FLOOR:g}). Integrated Gradients and DeepLIFT claim 0; above "
            f"{COMPLETENESS_TOLERANCE:.0%} the map does not share out the score change it claims to.")


def reporting(results: Mapping[str, Attribution]) -> list[str]:
    """The methods among ``results`` whose maps carry completeness figures, in their order."""
    return list(_reported(results))


def _reported(results: Mapping[str, Attribution]) -> dict[str, Completeness]:
    """``{method: its maps' completeness figures}`` for the methods among ``results`` that report them, in order."""
    return {name: result.completeness for name, result in results.items() if result.completeness is not None}


def gap_caption(result: Attribution, image_index: int) -> str | None:
    """``completeness gap 2.1%`` for a map that reports one (with a warning sign above the tolerance), else None."""
    if result.completeness is None:
        return None
    gap = float(result.completeness.relative_gap[image_index])
    return f"{'⚠ ' if gap > COMPLETENESS_TOLERANCE else ''}completeness gap {gap:.1%}"


def completeness_table(results: Mapping[str, Attribution], image_names: Sequence[str]) -> pd.DataFrame:
    """One row per image and reporting method: the map's sum, f(x) - f(x0), their difference and the relative gap
    (a fraction: 0.05 is 5%)."""
    rows = []
    for name, figures in _reported(results).items():
        for i, image in enumerate(image_names):
            rows.append({"method": REGISTRY[name].label, "image": image,
                         ATTRIBUTION_SUM: float(figures.attribution_sum[i]), SCORE_CHANGE: float(figures.score_change[i]),
                         DELTA: float(figures.delta[i]), GAP: float(figures.relative_gap[i])})
    return pd.DataFrame(rows, columns=["method", "image", ATTRIBUTION_SUM, SCORE_CHANGE, DELTA, GAP])


def _settings(params: Mapping) -> str:
    return ", ".join(f"{name} = {value:g}" if isinstance(value, float) else f"{name} = {value}"
                     for name, value in params.items())


def completeness_advice(results: Mapping[str, Attribution], image_names: Sequence[str]) -> list[str]:
    """One paragraph per reporting method with a map above the tolerance: which maps, at which settings, and what
    to do (the method's registered advice)."""
    notes = []
    for name, figures in _reported(results).items():
        params = results[name].params
        above = [f"{image} ({figures.relative_gap[i]:.1%})" for i, image in enumerate(image_names)
                 if figures.above_tolerance[i]]
        if above:
            settings = f" at {_settings(params)}" if params else ""
            notes.append(f"{REGISTRY[name].label}{settings}: the maps of {', '.join(above)} miss the class score's "
                         f"change f(x) − f(x0) by more than {COMPLETENESS_TOLERANCE:.0%}. "
                         f"{REGISTRY[name].completeness_advice}")
    return notes
