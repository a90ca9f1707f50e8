"""The method comparison as data and pictures, shared by the comparison page, the CLI and reports."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from explainers.attribution import (
    LOW_PROBABILITY,
    Attribution,
    format_probability,
    is_low_probability,
    low_probability_note,
)
from explainers.methods.registry import REGISTRY
from explainers.reports.render import compose_grid, display_map, framed, overlay, thumbnail
from explainers.scores.faithfulness import Curves
from explainers.scores.sanity import SANITY_THRESHOLD, SanityCheck

COMPUTE_SECONDS = "compute seconds"  # per map: what it took when it was computed, whether or not it came from the cache
TOTAL_SECONDS = "compute seconds (all images)"
UNLIKELY = f"class below p = {LOW_PROBABILITY:g}"
TIMING_NOTE = ("Compute seconds are what each map took when it was computed (a batch's time shared by its maps), "
               "also for maps served from the cache; 'from cache' says which were.")


def explained_probabilities(results: Mapping[str, Attribution], probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Per method, ``(N,)`` the model's probability of the class each map explains; ``probabilities`` is ``(N, classes)``."""
    rows = np.arange(len(probabilities))
    return {name: np.asarray(probabilities)[rows, result.classes] for name, result in results.items()}


def low_probability_notes(image_names: Sequence[str], results: Mapping[str, Attribution], class_names: Sequence[str],
                          probabilities: np.ndarray) -> list[str]:
    """One sentence per image and class below ``LOW_PROBABILITY`` among ``results``' maps (each named once)."""
    notes: dict[tuple[int, int], str] = {}
    for name, explained in explained_probabilities(results, probabilities).items():
        for i, p in enumerate(explained):
            klass = int(results[name].classes[i])
            if is_low_probability(p) and (i, klass) not in notes:
                notes[i, klass] = low_probability_note(image_names[i], class_names[klass], float(p))
    return list(notes.values())


def scores_table(results: Mapping[str, Attribution], curves: Mapping[str, Curves], image_names: Sequence[str],
                 class_names: Sequence[str], probabilities: np.ndarray | None = None) -> pd.DataFrame:
    """One row per image and method: the explained class, deletion and insertion AUCs, the map's compute time.

    With ``probabilities`` ``(N, classes)``, also the explained class's probability and whether it is below
    ``LOW_PROBABILITY``.
    """
    explained = explained_probabilities(results, probabilities) if probabilities is not None else {}
    rows = []
    for name, result in results.items():
        seconds = result.map_seconds if result.map_seconds is not None else np.full(len(result.raw), np.nan)
        from_cache = result.from_cache if result.from_cache is not None else np.zeros(len(result.raw), bool)
        for i, image in enumerate(image_names):
            row = {"image": image, "method": REGISTRY[name].label, "class": class_names[result.classes[i]]}
            if name in explained:
                row |= {"class probability": float(explained[name][i]), UNLIKELY: is_low_probability(explained[name][i])}
            rows.append(row | {"deletion AUC": float(curves[name].deletion_auc[i]),
                               "insertion AUC": float(curves[name].insertion_auc[i]),
                               COMPUTE_SECONDS: float(seconds[i]), "from cache": bool(from_cache[i])})
    return pd.DataFrame(rows)


def method_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per method, in the order the methods were run: mean AUCs over images, total compute seconds, maps from cache."""
    order = list(dict.fromkeys(scores["method"]))
    summary = scores.groupby("method", sort=False).agg(**{
        "deletion AUC": ("deletion AUC", "mean"), "insertion AUC": ("insertion AUC", "mean"),
        TOTAL_SECONDS: (COMPUTE_SECONDS, "sum"), "maps from cache": ("from cache", "sum"),
    })
    return summary.loc[order].reset_index()


def comparison_cell(image: np.ndarray, raw: np.ndarray, height: int | None, clip: float = 99.0,
                    opacity: float = 0.5, colormap: str = "jet", marked: bool = False) -> np.ndarray:
    """One method's map over one image, at ``height`` pixels tall (None: the image's own size).

    ``marked`` frames it: the map explains a class below ``LOW_PROBABILITY``.
    """
    if height is not None:
        image = thumbnail(image, height)
    cell = overlay(image, display_map(raw, image.shape[:2], clip), opacity, colormap)
    return framed(cell) if marked else cell


def comparison_grid(images: Sequence[np.ndarray], row_labels: Sequence[str], results: Mapping[str, Attribution],
                    clip: float = 99.0, opacity: float = 0.5, colormap: str = "jet",
                    marked: Sequence[bool] | None = None) -> np.ndarray:
    """Images as rows, the original then one overlay per method as columns, labelled: one shareable picture.

    Rows whose ``marked`` is True have their maps framed (a class below ``LOW_PROBABILITY``).
    """
    marked = list(marked) if marked is not None else [False] * len(images)
    rows = [[image] + [comparison_cell(image, results[n].raw[i], None, clip, opacity, colormap, marked[i])
                       for n in results]
            for i, image in enumerate(images)]
    return compose_grid(rows, list(row_labels), ["image"] + [REGISTRY[n].label for n in results])


def _method_style(name: str) -> dict:
    """A method's line in a report's figure: its registered colour, and its registered shape at every point."""
    from explainers.reports.figures import MARKERS

    method = REGISTRY[name]
    return {"color": method.colour, "marker": MARKERS[method.shape], "markersize": 4}


def _methods_legend(axes, methods: Sequence[str]):
    """The methods' legend, each by its colour and shape, beside the axes' top right."""
    from matplotlib.lines import Line2D

    return axes.legend([Line2D([], [], linewidth=2, **_method_style(n)) for n in methods],
                       [REGISTRY[n].label for n in methods], title="method", fontsize=7, title_fontsize=7,
                       loc="upper left", bbox_to_anchor=(1.01, 1.0))


def curves_figure(curves: Mapping[str, Curves]):
    """Mean deletion (solid) and insertion (dashed) curves per method in its registered colour and point shape,
    as a Figure.

    Two legends: the methods by colour and shape, the kind of curve by line style.
    """
    from matplotlib.lines import Line2D
    from matplotlib.typing import LineStyleType

    from explainers.reports.figures import new_figure

    figure, axes = new_figure(7, 4)
    styles: dict[str, LineStyleType] = {"deletion": "-", "insertion": "--"}
    for name, curve in curves.items():
        for kind, style in styles.items():
            axes.plot(curve.fractions, getattr(curve, kind).mean(axis=0), linestyle=style, **_method_style(name))
    axes.set_xlabel("fraction of pixels removed (deletion) or revealed (insertion)")
    axes.set_ylabel("class probability")
    methods = _methods_legend(axes, list(curves))
    axes.add_artist(methods)  # a second legend() call would replace it
    axes.legend([Line2D([], [], color="black", linestyle=style) for style in styles.values()], list(styles),
                title="curve", fontsize=7, title_fontsize=7, loc="lower left", bbox_to_anchor=(1.01, 0.0),
                handlelength=3)
    return figure


def curves_png(curves: Mapping[str, Curves]) -> bytes:
    """``curves_figure`` as PNG bytes, for reports."""
    from explainers.reports.figures import figure_png

    return figure_png(curves_figure(curves))


def sanity_table(checks: Mapping[str, SanityCheck]) -> pd.DataFrame:
    """Per method, the mean rank correlation with its original map at each stage that ran, and whether it is flagged."""
    return pd.DataFrame([{"method": REGISTRY[name].label,
                          **{stage: float(c.mean()) for stage, c in zip(check.stage_labels, check.correlations)},
                          "flagged": check.flagged} for name, check in checks.items()])


def sanity_figure(checks: Mapping[str, SanityCheck]):
    """The sanity check as a Figure: mean rank correlation per stage (one category per stage that ran), each method
    in its colour and shape, the flag threshold dotted."""
    from explainers.reports.figures import new_figure

    figure, axes = new_figure(7, 3.5)
    stages = list(dict.fromkeys(label for check in checks.values() for label in check.stage_labels))
    for name, check in checks.items():
        axes.plot([stages.index(label) for label in check.stage_labels], check.correlations.mean(axis=1),
                  **_method_style(name) | {"markersize": 6})
    axes.axhline(SANITY_THRESHOLD, color="gray", linestyle=":")
    axes.set_xticks(range(len(stages)), stages)
    axes.set_xlabel("weighted layers re-drawn, from the top")
    axes.set_ylabel("rank correlation with the original map")
    _methods_legend(axes, list(checks))
    return figure


def report_html(model_name: str, images: Sequence[np.ndarray], row_labels: Sequence[str],
                results: Mapping[str, Attribution], curves: Mapping[str, Curves], scores: pd.DataFrame,
                agreement: np.ndarray | None = None, clip: float = 99.0, opacity: float = 0.5,
                colormap: str = "jet", probabilities: np.ndarray | None = None,
                image_names: Sequence[str] | None = None, class_names: Sequence[str] | None = None,
                sanity: Mapping[str, SanityCheck] | None = None) -> str:
    """The comparison as one offline HTML file: grid, faithfulness scores and curves, agreement, settings.

    With ``probabilities`` ``(N, classes)``, ``image_names`` and ``class_names``, maps of a class below
    ``LOW_PROBABILITY`` are framed in the grid and named in a note above it. With ``sanity``, the sanity check
    run for these maps: its figure and its table.
    """
    from explainers.reports.figures import figure_png
    from explainers.reports.html import Section, html_report
    from explainers.reports.render import png_bytes

    labels = [REGISTRY[n].label for n in results]
    settings = pd.DataFrame([{"method": REGISTRY[n].label, "colour": REGISTRY[n].colour, "shape": REGISTRY[n].shape,
                              "layer": r.layer or "",
                              "parameters": ", ".join(f"{k}={v}" for k, v in r.params.items()) or "none",
                              "reference": REGISTRY[n].reference} for n, r in results.items()])
    notes, marked = [], None
    if probabilities is not None:
        explained = explained_probabilities(results, probabilities)
        marked = [any(is_low_probability(p[i]) for p in explained.values()) for i in range(len(images))]
        notes = low_probability_notes(image_names or list(row_labels), results,
                                      class_names or [str(c) for c in range(np.shape(probabilities)[1])], probabilities)
    caption = f"Each row an image and its explained class; maps clipped at the {clip:g}th percentile."
    if notes:
        caption += f" Maps framed in orange explain a class the model gives less than p = {LOW_PROBABILITY:g}."
    sections = []
    if notes:
        sections.append(Section(f"Classes below p = {LOW_PROBABILITY:g}", " ".join(notes)))
    sections += [
        Section("Maps", png=png_bytes(comparison_grid(images, row_labels, results, clip, opacity, colormap, marked)),
                caption=caption),
        Section("Faithfulness", "Deletion: the class probability as the most important pixels are removed (lower is "
                "better). Insertion: as they are revealed on a blurred copy (higher is better). Means over images. "
                + TIMING_NOTE, table=method_summary(scores), png=curves_png(curves)),
        Section("Scores per image", table=scores),
    ]
    if sanity:
        flagged = [REGISTRY[n].label for n, check in sanity.items() if check.flagged]
        verdict = (f"Flagged (above {SANITY_THRESHOLD:g} at the last stage, so it explains the image more than the "
                   f"model): {', '.join(flagged)}." if flagged else "Every method's map changes when the weights go.")
        sections.append(Section(
            "Sanity check", "The model's weights re-drawn from the top layer down, in the stages that ran; each "
            "number is the mean rank correlation of a method's map with its map on the model itself (Adebayo et al. "
            f"2018, arXiv:1810.03292). {verdict}", table=sanity_table(sanity), png=figure_png(sanity_figure(sanity)),
            caption=f"Dotted line: the flag threshold, {SANITY_THRESHOLD:g}."))
    if agreement is not None:
        sections.append(Section("Agreement", "Spearman rank correlation between the methods' maps, mean over images.",
                                table=pd.DataFrame(agreement, columns=labels).assign(method=labels)[["method", *labels]]))
    sections.append(Section("Settings", table=settings))
    return html_report("Attribution method comparison", f"{model_name} · {len(images)} image(s)", sections)


def row_label(image_name: str, class_name: str, probability: float) -> str:
    """A grid row's label: the image, its explained class and that class's probability, marked when below
    ``LOW_PROBABILITY``."""
    below = f", below {LOW_PROBABILITY:g}" if is_low_probability(probability) else ""
    return f"{image_name}: {class_name} ({format_probability(probability)}{below})"
